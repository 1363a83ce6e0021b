//! What the relay reads of a `JoinPublic` request before it appends it: the room's
//! published GroupInfo (written by a member) and the joiner's external commit (written by
//! any registered account), both untrusted. The first two bytes say where the GroupInfo
//! ends. The check must refuse, never panic.
#![no_main]

use hearth_protocol::{AccountKey, Handle};
use hearth_relay::external_join::check_external_join;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = (u16::from_be_bytes(*head) as usize).min(rest.len());
    let (group_info, commit) = rest.split_at(split);
    let handle = Handle::new("dave").expect("a valid handle");
    let _ = check_external_join(group_info, commit, &AccountKey([7; 32]), &handle);
});
