//! A backup file someone hands over (`hearth import-backup`): its header, checksum,
//! envelope, format version and KDF parameters, all read before a passphrase is tried.
//! With the first byte odd, the target wraps the rest in the magic and a valid checksum,
//! so the envelope decoder and the KDF bounds are reached; with it even, the rest is the
//! whole file.
#![no_main]

use hearth_core::backup::fuzzing::read_envelope;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// The backup file's magic (see `hearth_core::backup`).
const MAGIC: &[u8; 8] = b"HRTHBAK\0";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = read_envelope(rest);
        return;
    }
    let mut file = MAGIC.to_vec();
    file.extend_from_slice(rest);
    let checksum = Sha256::digest(&file);
    file.extend_from_slice(&checksum);
    let _ = read_envelope(&file);
});
