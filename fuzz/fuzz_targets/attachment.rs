//! What a member decodes from the relay when it saves a file: the blob's bytes, in pieces
//! of any size, opened by `attachment::Decryptor` against the file's message. The first
//! bytes choose the announced size and how the blob is cut; the rest is the blob. The
//! blob of a real file sealed under the same key is mixed in, so the fuzzer reaches the
//! chunks that open, and the diagnosis of moved or repeated ones.
#![no_main]

use hearth_core::attachment::{Decryptor, Encryptor};
use hearth_protocol::BlobId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[size_byte, cut, mode], rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let plain = vec![size_byte; usize::from(size_byte) * 700];
    let Ok(mut sealer) = Encryptor::new(&plain[..], plain.len() as u64) else {
        return;
    };
    let mut blob = Vec::new();
    while sealer.next_chunk(&mut blob).unwrap_or(false) {}
    let Ok(file) = sealer.finish(BlobId([0; 16]), "f".into(), "x/y".into(), None) else {
        return;
    };
    // Mode 0: the fuzzer's bytes alone; else they overwrite part of the real blob.
    let input = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let at = usize::from(mode) * 97 % (blob.len() + 1);
        let mut mixed = blob.clone();
        mixed.truncate(at);
        mixed.extend_from_slice(rest);
        mixed
    };
    let Ok(mut opener) = Decryptor::new(&file, Vec::new()) else {
        return;
    };
    let piece = usize::from(cut).max(1) * 61;
    let mut result = Ok(());
    for part in input.chunks(piece) {
        result = opener.push(part);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        if let Ok(out) = opener.finish() {
            // Only the real file opens.
            assert_eq!(out, plain);
        }
    }
});
