//! Checking a room admin's signature (decision 0013, part 5).
//!
//! Room admins are known to the relay only by per-room pseudonyms: Ed25519 keys each admin
//! derives for one room and announces to the room inside MLS. A request that needs an
//! admin carries the pseudonym and its signature over [`hearth_protocol::admin_message`]
//! of the exact change; the session checks the signature here, and the store checks that
//! the room lists the pseudonym. Which account sent the request plays no part.

use ed25519_dalek::{Signature as DalekSignature, VerifyingKey};
use hearth_protocol::{
    admin_message, AdminAction, AdminKey, AdminProof, CapHash, ErrorCode, RoomId, WireError,
};

/// The pseudonym that signed `action` for `room` in the epoch of `cap_hash`: `Ok(None)`
/// when no proof is given, an error when the signature does not verify (strictly: weak
/// keys and non-canonical signatures are refused).
pub(crate) fn signer(
    room: &RoomId,
    cap_hash: &CapHash,
    proof: Option<&AdminProof>,
    action: &AdminAction,
) -> Result<Option<AdminKey>, WireError> {
    let Some(proof) = proof else {
        return Ok(None);
    };
    let verified = VerifyingKey::from_bytes(&proof.admin.0).is_ok_and(|key| {
        key.verify_strict(
            &admin_message(room, cap_hash, action),
            &DalekSignature::from_bytes(&proof.signature.0),
        )
        .is_ok()
    });
    if verified {
        Ok(Some(proof.admin))
    } else {
        Err(WireError::new(
            ErrorCode::Forbidden,
            "the room admin's signature does not verify for this change",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use hearth_protocol::Signature;

    #[test]
    fn only_the_signed_change_in_the_signed_epoch_passes() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let (room, cap) = (RoomId([1; 16]), CapHash([2; 32]));
        let action = AdminAction::Unpublish;
        let proof = AdminProof {
            admin: AdminKey(key.verifying_key().to_bytes()),
            signature: Signature(key.sign(&admin_message(&room, &cap, &action)).to_bytes()),
        };
        assert_eq!(
            signer(&room, &cap, Some(&proof), &action).unwrap(),
            Some(proof.admin)
        );
        assert_eq!(signer(&room, &cap, None, &action).unwrap(), None);
        let other = AdminAction::SetRetention {
            retention_secs: None,
        };
        assert!(signer(&room, &cap, Some(&proof), &other).is_err());
        assert!(signer(&room, &CapHash([3; 32]), Some(&proof), &action).is_err());
        assert!(signer(&RoomId([4; 16]), &cap, Some(&proof), &action).is_err());
        let forged = AdminProof {
            admin: AdminKey([9; 32]),
            ..proof
        };
        assert!(signer(&room, &cap, Some(&forged), &action).is_err());
    }
}
