//! Checking an external commit (someone joining a public room by themselves, RFC 9420
//! section 12.4.3.2) before the relay appends it and rotates the room's capability.
//!
//! A joiner's commit is the one MLS message the relay can read: external commits travel
//! as PublicMessages, and a public room's GroupInfo (with its ratchet tree) is what its
//! members published. The relay rebuilds the public view of the group from that GroupInfo
//! with openmls's [`PublicGroup`] (the delivery-service view RFC 9420 section 16.12
//! describes), lets it verify the commit (framing, epoch, the joiner's signature, the new
//! leaf) and then checks what hearth's members would refuse anyway:
//!
//! - the commit comes from a new member (`NewMemberCommit`), with an UpdatePath;
//! - its only proposal is the ExternalInit (no removes, no PSKs, nothing else);
//! - the new leaf's credential is the authenticated account's handle and its signature
//!   key is the account's key: nobody joins under another person's name.
//!
//! Refusing here means a garbage or hostile `JoinPublic` can never take the room's
//! capability away from its members.

use hearth_protocol::{AccountKey, Handle};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_rust_crypto::OpenMlsRustCrypto;

/// Why an external commit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    /// The published GroupInfo cannot be read (its publisher's fault, not the joiner's).
    #[error("the room's published group info is unreadable: {0}")]
    GroupInfo(String),
    /// The commit is not a well-formed, correctly signed external commit for that
    /// GroupInfo.
    #[error("not a valid external commit for the published group info: {0}")]
    Invalid(String),
    /// It does more than add the joiner.
    #[error("an external commit may only add the joiner")]
    Proposals,
    /// The new leaf is not the authenticated account.
    #[error("the joiner's leaf names another identity than the account that sent it")]
    Identity,
}

/// The public view of a room's group, rebuilt from its published GroupInfo (TLS-codec
/// `MlsMessage` bytes, with the ratchet tree extension). Verifying it costs one signature
/// per member, so the relay keeps it per listing ([`JoinChecks`]).
pub fn public_group(group_info: &[u8]) -> Result<PublicGroup, JoinRefused> {
    let MlsMessageBodyIn::GroupInfo(info) = MlsMessageIn::tls_deserialize_exact(group_info)
        .map_err(|e| JoinRefused::GroupInfo(e.to_string()))?
        .extract()
    else {
        return Err(JoinRefused::GroupInfo("not a group info".into()));
    };
    let tree = info
        .extensions()
        .ratchet_tree()
        .ok_or_else(|| JoinRefused::GroupInfo("no ratchet tree".into()))?
        .ratchet_tree()
        .clone();
    let provider = OpenMlsRustCrypto::default();
    let (group, _) = PublicGroup::from_external(
        provider.crypto(),
        provider.storage(),
        tree,
        info,
        ProposalStore::new(),
    )
    .map_err(|e| JoinRefused::GroupInfo(e.to_string()))?;
    Ok(group)
}

/// Checks that `commit` (TLS-codec `MlsMessage` bytes) is an external commit against
/// `group_info` (see [`public_group`]) that adds exactly the account `account` with the
/// handle `handle`, and nothing else.
pub fn check_external_join(
    group_info: &[u8],
    commit: &[u8],
    account: &AccountKey,
    handle: &Handle,
) -> Result<(), JoinRefused> {
    check_external_commit(&public_group(group_info)?, commit, account, handle)
}

/// [`check_external_join`] against a public group already rebuilt.
pub fn check_external_commit(
    group: &PublicGroup,
    commit: &[u8],
    account: &AccountKey,
    handle: &Handle,
) -> Result<(), JoinRefused> {
    let invalid = |e: &dyn std::fmt::Display| JoinRefused::Invalid(e.to_string());
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let message = MlsMessageIn::tls_deserialize_exact(commit)
        .map_err(|e| invalid(&e))?
        .try_into_protocol_message()
        .map_err(|e| invalid(&e))?;
    if !matches!(message, ProtocolMessage::PublicMessage(_)) {
        return Err(JoinRefused::Invalid("not a public message".into()));
    }
    let processed = group
        .process_message(&crypto, message)
        .map_err(|e| invalid(&e))?;
    if !matches!(processed.sender(), Sender::NewMemberCommit) {
        return Err(JoinRefused::Invalid("not sent by a new member".into()));
    }
    let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
        return Err(JoinRefused::Invalid("not a commit".into()));
    };
    if staged
        .queued_proposals()
        .any(|p| !matches!(p.proposal(), Proposal::ExternalInit(_)))
    {
        return Err(JoinRefused::Proposals);
    }
    let leaf = staged
        .update_path_leaf_node()
        .ok_or_else(|| JoinRefused::Invalid("no leaf for the joiner".into()))?;
    let named = BasicCredential::try_from(leaf.credential().clone())
        .map(|basic| basic.identity() == handle.as_str().as_bytes())
        .unwrap_or(false);
    if !named || leaf.signature_key().as_slice() != account.0.as_slice() {
        return Err(JoinRefused::Identity);
    }
    Ok(())
}

/// A rebuilt public group, by the SHA-256 of the GroupInfo it came from.
type Kept = std::collections::VecDeque<([u8; 32], std::sync::Arc<PublicGroup>)>;

/// Public groups already rebuilt, per published GroupInfo: a flood of joins against one
/// listing verifies its tree once. At most [`JoinChecks::CAPACITY`] listings are kept (the
/// oldest goes first), a few kilobytes each.
#[derive(Default)]
pub struct JoinChecks {
    groups: std::sync::Mutex<Kept>,
}

impl JoinChecks {
    /// Listings kept.
    pub const CAPACITY: usize = 32;

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The public group of `group_info`, rebuilt or kept.
    pub fn group(&self, group_info: &[u8]) -> Result<std::sync::Arc<PublicGroup>, JoinRefused> {
        use sha2::Digest as _;
        let key: [u8; 32] = sha2::Sha256::digest(group_info).into();
        if let Some((_, group)) = self.kept().iter().find(|(k, _)| *k == key) {
            return Ok(group.clone());
        }
        let group = std::sync::Arc::new(public_group(group_info)?);
        let mut groups = self.kept();
        if groups.len() >= Self::CAPACITY {
            groups.pop_front();
        }
        groups.push_back((key, group.clone()));
        Ok(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmls_basic_credential::SignatureKeyPair;

    fn published_group_info() -> Vec<u8> {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(b"alice".to_vec()).into(),
            signature_key: signer.public().into(),
        };
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519)
            .use_ratchet_tree_extension(true)
            .build();
        let group = MlsGroup::new(&provider, &signer, &config, credential).unwrap();
        group
            .export_group_info(provider.crypto(), &signer, true)
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    #[test]
    fn a_listing_is_verified_once_and_garbage_is_refused() {
        let checks = JoinChecks::default();
        let info = published_group_info();
        let first = checks.group(&info).unwrap();
        let again = checks.group(&info).unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &again), "kept, not rebuilt");
        assert!(matches!(
            checks.group(&[1, 2, 3]),
            Err(JoinRefused::GroupInfo(_))
        ));
        for _ in 0..JoinChecks::CAPACITY {
            checks.group(&published_group_info()).unwrap();
        }
        let rebuilt = checks.group(&info).unwrap();
        assert!(
            !std::sync::Arc::ptr_eq(&first, &rebuilt),
            "the oldest went first"
        );
    }
}
