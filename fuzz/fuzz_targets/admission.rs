//! Admission tokens (decision 0016), both ends: what the relay decodes from a client
//! (a batch of blinded points to evaluate, a token to check) and what a client decodes
//! from the relay (its key, the evaluations and the batch proof). Nothing may panic; a
//! token or batch made up by the fuzzer must not be taken.
#![no_main]

use arbitrary::Arbitrary;
use hearth_protocol::{AdmissionKey, AdmissionToken, BlindedToken, ADMISSION_BATCH};
use hearth_relay::service::admission_keys::AdmissionKeys;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    blinded: Vec<[u8; 32]>,
    token_input: [u8; 32],
    token_output: [[u8; 32]; 2],
    use_current_key: bool,
    key: [u8; 32],
    evaluated: Vec<[u8; 32]>,
    proof: [[u8; 32]; 2],
}

fuzz_target!(|input: Input| {
    let keys = AdmissionKeys::new(std::time::Duration::from_secs(30));
    let key = if input.use_current_key {
        keys.current()
    } else {
        AdmissionKey(input.key)
    };
    let blinded: Vec<BlindedToken> = input.blinded.iter().map(|b| BlindedToken(*b)).collect();
    if let Ok((evaluated, _)) = keys.issue(&key, &blinded) {
        assert_eq!(evaluated.len(), ADMISSION_BATCH);
    }
    let mut output = [0u8; 64];
    output[..32].copy_from_slice(&input.token_output[0]);
    output[32..].copy_from_slice(&input.token_output[1]);
    let token = AdmissionToken {
        input: input.token_input,
        output,
    };
    assert!(
        keys.admit(&key, &token, std::time::Instant::now()).is_err(),
        "a made-up token was taken"
    );
    let mut proof = [0u8; 64];
    proof[..32].copy_from_slice(&input.proof[0]);
    proof[32..].copy_from_slice(&input.proof[1]);
    assert!(
        !hearth_core::client::fuzzing::admission_batch(input.key, &input.evaluated, proof),
        "a made-up batch was taken"
    );
});
