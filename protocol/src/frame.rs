//! Length-prefixed framing: a 4-byte big-endian length, then that many postcard bytes.
//!
//! [`decode_frame`] first checks whether a whole frame is buffered (an incomplete frame
//! is normal and yields `Ok(None)`), refuses a length over the limit before reading the
//! body, and only then parses.

use serde::{de::DeserializeOwned, Serialize};

use crate::limits::{LENGTH_PREFIX_LEN, MAX_FRAME_LEN};

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The announced or actual length exceeds the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The frame's body is not a valid encoding of the expected type.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The stream ended in the middle of a frame.
    #[error("stream ended in the middle of a frame")]
    Truncated,
}

/// Encodes `value` as one frame (length prefix included), refusing more than `max` bytes.
pub fn encode_frame<T: Serialize>(value: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let max = max.min(MAX_FRAME_LEN);
    let mut out = vec![0u8; LENGTH_PREFIX_LEN];
    out = postcard::to_extend(value, out).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = out.len() - LENGTH_PREFIX_LEN;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    // `len <= MAX_FRAME_LEN`, which fits in u32.
    out[..LENGTH_PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Reads the length prefix at the start of `buf`, if all four bytes are there.
///
/// Fails early when the announced length exceeds `max`, so a reader never buffers more.
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let max = max.min(MAX_FRAME_LEN);
    let Some(prefix) = buf.get(..LENGTH_PREFIX_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(Some(len))
}

/// Decodes one frame from the start of `buf`.
///
/// Returns `Ok(None)` while the frame is incomplete, or the value and the number of bytes
/// it took.
pub fn decode_frame<T: DeserializeOwned>(
    buf: &[u8],
    max: usize,
) -> Result<Option<(T, usize)>, FrameError> {
    let Some(len) = frame_len(buf, max)? else {
        return Ok(None);
    };
    let total = LENGTH_PREFIX_LEN + len;
    let Some(body) = buf.get(LENGTH_PREFIX_LEN..total) else {
        return Ok(None);
    };
    let value = decode_body(body)?;
    Ok(Some((value, total)))
}

/// Decodes a frame body (without its length prefix); the whole body must be consumed.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the frame's value",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{ClientFrame, Request};
    use proptest::prelude::*;

    #[test]
    fn incomplete_frames_wait_for_more() {
        let frame = encode_frame(
            &ClientFrame {
                id: 7,
                request: Request::Ping,
            },
            1024,
        )
        .unwrap();
        for cut in 0..frame.len() {
            assert_eq!(decode_frame::<ClientFrame>(&frame[..cut], 1024), Ok(None));
        }
        let (value, used) = decode_frame::<ClientFrame>(&frame, 1024).unwrap().unwrap();
        assert_eq!(value.id, 7);
        assert_eq!(used, frame.len());
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        let prefix = (2_000_000u32).to_be_bytes();
        assert!(matches!(
            decode_frame::<ClientFrame>(&prefix, MAX_FRAME_LEN),
            Err(FrameError::TooLarge { len: 2_000_000, .. })
        ));
    }

    #[test]
    fn encoding_refuses_values_over_the_limit() {
        let big = Request::Deposit {
            to: crate::AccountKey([0; 32]),
            payload: vec![0; 100],
        };
        assert!(matches!(
            encode_frame(
                &ClientFrame {
                    id: 1,
                    request: big
                },
                50
            ),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut body = postcard::to_allocvec(&ClientFrame {
            id: 1,
            request: Request::Ping,
        })
        .unwrap();
        body.push(0);
        assert!(matches!(
            decode_body::<ClientFrame>(&body),
            Err(FrameError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn frames_round_trip(id in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let frame = ClientFrame { id, request: Request::Deposit { to: crate::AccountKey([3; 32]), payload } };
            let bytes = encode_frame(&frame, MAX_FRAME_LEN).unwrap();
            let (back, used) = decode_frame::<ClientFrame>(&bytes, MAX_FRAME_LEN).unwrap().unwrap();
            prop_assert_eq!(back, frame);
            prop_assert_eq!(used, bytes.len());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_frame::<ClientFrame>(&bytes, MAX_FRAME_LEN);
            let _ = decode_frame::<crate::ServerFrame>(&bytes, MAX_FRAME_LEN);
        }
    }
}
