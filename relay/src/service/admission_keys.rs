//! The relay's side of anonymous admission (decision 0016, RFC 9497 VOPRF with
//! `ristretto255-SHA512`): one key at a time, kept in memory only, that blindly evaluates
//! batches of tokens for signed-in accounts that are not banned and checks the tokens
//! room connections present. A ban replaces the key ([`AdmissionKeys::replace`]); the
//! one before is still taken for the grace period, so room connections can be admitted
//! again without a gap, and a banned account, which gets no tokens of the new key, is
//! closed out at its end.
//!
//! Nothing here names an account with a connection: issuing sees the account and
//! blinded points; admitting sees a token it cannot match to any issue.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hearth_protocol::{
    AdmissionKey, AdmissionProof, AdmissionToken, BlindedToken, ErrorCode, EvaluatedToken,
    WireError, ADMISSION_BATCH,
};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use voprf::{BlindedElement, Group, Ristretto255, VoprfServer};

/// One key with its public half as sent.
#[derive(Clone)]
struct Key {
    public: AdmissionKey,
    server: VoprfServer<Ristretto255>,
}

impl Key {
    fn fresh() -> Self {
        // `OsRng` does not fail on the platforms the relay builds for; a failure of the
        // library's own (a zero scalar) is retried.
        loop {
            if let Ok(server) = VoprfServer::<Ristretto255>::new(&mut rand_core::OsRng) {
                let bytes = Ristretto255::serialize_elem(server.get_public_key());
                let mut public = [0u8; 32];
                public.copy_from_slice(&bytes);
                return Key {
                    public: AdmissionKey(public),
                    server,
                };
            }
        }
    }
}

struct Keys {
    current: Key,
    /// The key before, and until when its tokens are still taken.
    previous: Option<(Key, Instant)>,
}

/// The relay's admission key, its predecessor during the grace period, and a watch
/// that tells connections when it changes.
pub struct AdmissionKeys {
    keys: Mutex<Keys>,
    changed: watch::Sender<AdmissionKey>,
    grace: Duration,
}

fn not_admitted(message: &str) -> WireError {
    WireError::new(ErrorCode::NotAdmitted, message)
}

impl AdmissionKeys {
    /// A fresh key; after [`Self::replace`], the old one is taken for `grace`.
    pub fn new(grace: Duration) -> Self {
        let current = Key::fresh();
        let (changed, _) = watch::channel(current.public);
        AdmissionKeys {
            keys: Mutex::new(Keys {
                current,
                previous: None,
            }),
            changed,
            grace,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current key's public half.
    pub fn current(&self) -> AdmissionKey {
        self.lock().current.public
    }

    /// Completes with the new key each time it is replaced.
    pub fn watch(&self) -> watch::Receiver<AdmissionKey> {
        self.changed.subscribe()
    }

    /// Replaces the key (an account was banned): tokens of the old one are taken for the
    /// grace period only, and no more are issued for it.
    pub fn replace(&self, now: Instant) {
        let fresh = Key::fresh();
        let public = fresh.public;
        {
            let mut keys = self.lock();
            let old = std::mem::replace(&mut keys.current, fresh);
            keys.previous = Some((old, now + self.grace));
        }
        self.changed.send_replace(public);
    }

    /// Evaluates `blinded` (exactly [`ADMISSION_BATCH`] points) under the current key,
    /// which must be `key`, with the batch proof (RFC 9497 section 3.3.2). The caller has
    /// checked the account may have tokens. CPU: one scalar multiplication per token and
    /// about two more per batch for the proof.
    ///
    /// # Errors
    /// `StaleEpoch` when `key` is not the current key; `BadRequest` for a batch of the
    /// wrong size or a point that does not decode.
    pub fn issue(
        &self,
        key: &AdmissionKey,
        blinded: &[BlindedToken],
    ) -> Result<(Vec<EvaluatedToken>, AdmissionProof), WireError> {
        if blinded.len() != ADMISSION_BATCH {
            return Err(WireError::new(
                ErrorCode::BadRequest,
                format!("ask for exactly {ADMISSION_BATCH} admission tokens at a time"),
            ));
        }
        let server = {
            let keys = self.lock();
            if keys.current.public != *key {
                return Err(WireError::new(
                    ErrorCode::StaleEpoch,
                    "the relay's admission key changed: ask for it again",
                ));
            }
            keys.current.server.clone()
        };
        let points = blinded
            .iter()
            .map(|b| BlindedElement::<Ristretto255>::deserialize(&b.0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| WireError::new(ErrorCode::BadRequest, "a blinded token is not a point"))?;
        let result = server
            .batch_blind_evaluate(&mut rand_core::OsRng, &points)
            .map_err(|_| WireError::new(ErrorCode::BadRequest, "the batch does not evaluate"))?;
        let evaluated = result
            .messages
            .iter()
            .map(|m| {
                let mut out = [0u8; 32];
                out.copy_from_slice(&m.serialize());
                EvaluatedToken(out)
            })
            .collect();
        let mut proof = [0u8; 64];
        proof.copy_from_slice(&result.proof.serialize());
        Ok((evaluated, AdmissionProof(proof)))
    }

    /// Checks `token` against `key`, which must be the current key or the previous one
    /// within its grace period (`now` before its end). Constant-time in the output.
    /// Returns the end of the grace period when the key is the previous one: the
    /// connection must be admitted again by then.
    ///
    /// # Errors
    /// `NotAdmitted`, saying whether the key is unknown or the token wrong.
    pub fn admit(
        &self,
        key: &AdmissionKey,
        token: &AdmissionToken,
        now: Instant,
    ) -> Result<Option<Instant>, WireError> {
        let (server, until) = {
            let keys = self.lock();
            if keys.current.public == *key {
                (keys.current.server.clone(), None)
            } else {
                match &keys.previous {
                    Some((old, until)) if old.public == *key && now < *until => {
                        (old.server.clone(), Some(*until))
                    }
                    _ => {
                        return Err(not_admitted(
                            "that admission key is no longer the relay's: ask for its key and new tokens",
                        ))
                    }
                }
            }
        };
        let expected = server
            .evaluate(&token.input)
            .map_err(|_| not_admitted("the admission token does not check out"))?;
        if bool::from(expected.as_slice().ct_eq(&token.output)) {
            Ok(until)
        } else {
            Err(not_admitted("the admission token does not check out"))
        }
    }

    /// Whether a connection admitted under `key` still is at `now`: it is the current
    /// key, or the previous one within its grace period.
    pub fn still_admits(&self, key: &AdmissionKey, now: Instant) -> bool {
        let keys = self.lock();
        keys.current.public == *key
            || keys
                .previous
                .as_ref()
                .is_some_and(|(old, until)| old.public == *key && now < *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voprf::VoprfClient;

    /// What a client does (client-core has its own copy with the proof checked; this one
    /// keeps the relay's unit tests free of it).
    fn issued(keys: &AdmissionKeys) -> (AdmissionKey, Vec<AdmissionToken>) {
        let key = keys.current();
        let inputs: Vec<[u8; 32]> = (0..ADMISSION_BATCH as u8).map(|i| [i; 32]).collect();
        let blinds: Vec<_> = inputs
            .iter()
            .map(|i| VoprfClient::<Ristretto255>::blind(i, &mut rand_core::OsRng).unwrap())
            .collect();
        let blinded: Vec<BlindedToken> = blinds
            .iter()
            .map(|b| {
                let mut out = [0u8; 32];
                out.copy_from_slice(&b.message.serialize());
                BlindedToken(out)
            })
            .collect();
        let (evaluated, proof) = keys.issue(&key, &blinded).unwrap();
        let clients: Vec<_> = blinds.iter().map(|b| b.state.clone()).collect();
        let messages: Vec<_> = evaluated
            .iter()
            .map(|e| voprf::EvaluationElement::<Ristretto255>::deserialize(&e.0).unwrap())
            .collect();
        let proof = voprf::Proof::<Ristretto255>::deserialize(&proof.0).unwrap();
        let pk = Ristretto255::deserialize_elem(&key.0).unwrap();
        let outputs = VoprfClient::batch_finalize(&inputs, &clients, &messages, &proof, pk)
            .unwrap()
            .map(|o| o.unwrap())
            .collect::<Vec<_>>();
        let tokens = inputs
            .iter()
            .zip(outputs)
            .map(|(input, output)| {
                let mut o = [0u8; 64];
                o.copy_from_slice(&output);
                AdmissionToken {
                    input: *input,
                    output: o,
                }
            })
            .collect();
        (key, tokens)
    }

    #[test]
    fn an_issued_token_admits_and_a_forged_one_does_not() {
        let keys = AdmissionKeys::new(Duration::from_secs(30));
        let (key, tokens) = issued(&keys);
        let now = Instant::now();
        assert_eq!(keys.admit(&key, &tokens[0], now).unwrap(), None);
        let mut forged = tokens[1].clone();
        forged.output[0] ^= 1;
        assert_eq!(
            keys.admit(&key, &forged, now).unwrap_err().code,
            ErrorCode::NotAdmitted
        );
        let mut other_input = tokens[2].clone();
        other_input.input[0] ^= 1;
        assert!(keys.admit(&key, &other_input, now).is_err());
    }

    #[test]
    fn a_replaced_key_admits_for_the_grace_period_only_and_issues_no_more() {
        let keys = AdmissionKeys::new(Duration::from_secs(30));
        let (old, tokens) = issued(&keys);
        let mut watch = keys.watch();
        let now = Instant::now();
        keys.replace(now);
        assert!(watch.has_changed().unwrap());
        assert_ne!(*watch.borrow_and_update(), old);
        assert!(keys.still_admits(&old, now));
        assert_eq!(
            keys.admit(&old, &tokens[0], now + Duration::from_secs(29))
                .unwrap(),
            Some(now + Duration::from_secs(30))
        );
        assert!(!keys.still_admits(&old, now + Duration::from_secs(30)));
        assert!(keys
            .admit(&old, &tokens[1], now + Duration::from_secs(30))
            .is_err());
        let blinded = vec![BlindedToken([0; 32]); ADMISSION_BATCH];
        assert_eq!(
            keys.issue(&old, &blinded).unwrap_err().code,
            ErrorCode::StaleEpoch
        );
        // The new key's tokens admit; the old key's tokens do not pass as the new key's.
        let (new, fresh) = issued(&keys);
        keys.admit(&new, &fresh[0], now).unwrap();
        assert!(keys.admit(&new, &tokens[3], now).is_err());
    }

    #[test]
    fn a_batch_of_the_wrong_size_or_with_a_non_point_is_refused() {
        let keys = AdmissionKeys::new(Duration::from_secs(30));
        let key = keys.current();
        let short = vec![BlindedToken([1; 32]); ADMISSION_BATCH - 1];
        assert_eq!(
            keys.issue(&key, &short).unwrap_err().code,
            ErrorCode::BadRequest
        );
        let garbage = vec![BlindedToken([0xff; 32]); ADMISSION_BATCH];
        assert_eq!(
            keys.issue(&key, &garbage).unwrap_err().code,
            ErrorCode::BadRequest
        );
    }
}
