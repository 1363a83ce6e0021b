//! The relay's close code and reason as a client reads them
//! (`hearth_protocol::CloseReason::parse`): the first 8 bytes are the code, the rest the
//! reason. What is read must write back as itself, and what is shown must come from the
//! client's own table (no relay text).
#![no_main]

use hearth_protocol::CloseReason;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (code, reason) = data.split_at(data.len().min(8));
    let mut bytes = [0u8; 8];
    bytes[..code.len()].copy_from_slice(code);
    let code = u64::from_le_bytes(bytes);
    let parsed = CloseReason::parse(code, reason);
    if !matches!(parsed, CloseReason::Unknown { .. }) {
        assert_eq!(u64::from(parsed.code()), code);
        assert_eq!(parsed.reason().as_bytes(), reason);
    }
    let shown = parsed.to_string();
    assert!(shown.chars().all(|c| c.is_ascii() && !c.is_ascii_control()));
    let _ = parsed.retry();
});
