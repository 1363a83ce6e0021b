//! Join points: where in a room's log a newcomer's history starts, signed by the member
//! who brings them in (issue 10).
//!
//! A member's transcript position `(seq, hash)` (see [`crate::transcript`]) travels in a
//! private-use GroupInfo extension, so it is covered by the GroupInfo signature of the
//! member who wrote it and the relay cannot move it:
//!
//! - in a **Welcome**, the inviter's position just before the commit that adds the
//!   newcomer: the newcomer hashes every entry after it up to and including the first
//!   commit (that commit; before it there can only be messages of the old epoch, since a
//!   commit in between would have made the relay refuse ours), and processes from there;
//! - in a **published GroupInfo** of a public room, the publisher's position; a joiner
//!   hashes the entries between it and its own external commit.

use openmls::prelude::{Extension, UnknownExtension};
use serde::{Deserialize, Serialize};

/// The private-use GroupInfo extension type carrying a [`JoinPoint`].
pub const JOIN_POINT_EXTENSION: u16 = 0xff02;

/// A member's transcript position: the last seq it processed and its hash there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinPoint {
    /// The last seq processed.
    pub seq: u64,
    /// The transcript hash at `seq`.
    pub hash: [u8; 32],
}

impl JoinPoint {
    /// The GroupInfo extension carrying this position (postcard of the struct).
    pub fn extension(&self) -> Extension {
        // Encoding a u64 and an array into a Vec cannot fail.
        let bytes = postcard::to_allocvec(self).unwrap_or_default();
        Extension::Unknown(JOIN_POINT_EXTENSION, UnknownExtension(bytes))
    }

    /// Reads the position from a GroupInfo's extension of [`JOIN_POINT_EXTENSION`]
    /// (`None` if absent or malformed).
    pub fn from_extension(extension: Option<&UnknownExtension>) -> Option<JoinPoint> {
        postcard::from_bytes(&extension?.0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn join_points_round_trip(seq in any::<u64>(), hash in any::<[u8; 32]>()) {
            let point = JoinPoint { seq, hash };
            let Extension::Unknown(kind, bytes) = point.extension() else {
                panic!("an unknown extension");
            };
            prop_assert_eq!(kind, JOIN_POINT_EXTENSION);
            prop_assert_eq!(JoinPoint::from_extension(Some(&bytes)), Some(point));
        }

        #[test]
        fn garbage_is_no_join_point(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            // Never panics; a short or long read is simply absent or some position.
            let _ = JoinPoint::from_extension(Some(&UnknownExtension(bytes)));
        }
    }
}
