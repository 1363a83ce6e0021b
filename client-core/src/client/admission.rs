//! Admitting a room's connection with an anonymous token (decision 0016, RFC 9497 VOPRF,
//! `ristretto255-SHA512`).
//!
//! A room connection never signs in, so the relay cannot tell whose it is; it still
//! wants to know the person is not banned. Each new room connection asks the relay for
//! its admission key (the same for every connection, asked where the relay cannot tell
//! who asks), spends one token of that key, and from then on sends the room's requests.
//! Tokens come in batches of [`ADMISSION_BATCH`] from the signed-in connection, blinded:
//! the relay evaluates them without seeing them and proves it used the key the room
//! connection was told, so the tokens it checks later cannot be matched to the account
//! they were issued to. A batch is kept in memory only, until the key changes.

use std::sync::Arc;

use hearth_protocol::{
    AdmissionKey, AdmissionToken, BlindedToken, ErrorCode, Request, Response, WireError,
    ADMISSION_BATCH,
};
use rand_core::RngCore;
use voprf::{EvaluationElement, Group, Proof, Ristretto255, VoprfClient};

use super::{unexpected, Inner};
use crate::error::ClientError;
use crate::transport::Link;

/// Unspent tokens of one admission key.
#[derive(Default)]
pub(crate) struct TokenPool {
    key: Option<AdmissionKey>,
    tokens: Vec<AdmissionToken>,
}

fn relay_lied(what: &str) -> ClientError {
    ClientError::Relay(WireError::new(
        ErrorCode::BadRequest,
        format!("the relay's admission tokens do not check out: {what}"),
    ))
}

/// A batch being asked for: the random inputs, their blinding states (secret: the
/// blinds), and the blinded points sent to the relay.
pub(crate) struct BlindBatch {
    pub(crate) inputs: Vec<[u8; 32]>,
    pub(crate) states: Vec<VoprfClient<Ristretto255>>,
    pub(crate) blinded: Vec<BlindedToken>,
}

/// Blinds [`ADMISSION_BATCH`] fresh random inputs.
pub(crate) fn blind_batch() -> Result<BlindBatch, ClientError> {
    let mut inputs = Vec::with_capacity(ADMISSION_BATCH);
    let mut states = Vec::with_capacity(ADMISSION_BATCH);
    let mut blinded = Vec::with_capacity(ADMISSION_BATCH);
    for _ in 0..ADMISSION_BATCH {
        let mut input = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut input);
        let result = VoprfClient::<Ristretto255>::blind(&input, &mut rand_core::OsRng)
            .map_err(|e| ClientError::Other(format!("blinding an admission token: {e}")))?;
        let mut point = [0u8; 32];
        point.copy_from_slice(&result.message.serialize());
        inputs.push(input);
        states.push(result.state);
        blinded.push(BlindedToken(point));
    }
    Ok(BlindBatch {
        inputs,
        states,
        blinded,
    })
}

/// Checks the relay's batch proof against `key` and unblinds the tokens.
///
/// # Errors
/// [`ClientError::Relay`] when the answer has the wrong shape, a point does not decode
/// or the proof does not verify (the relay evaluated with another key than `key`).
pub(crate) fn finalize_batch(
    key: &AdmissionKey,
    inputs: &[[u8; 32]],
    states: &[VoprfClient<Ristretto255>],
    evaluated: &[hearth_protocol::EvaluatedToken],
    proof: &hearth_protocol::AdmissionProof,
) -> Result<Vec<AdmissionToken>, ClientError> {
    if evaluated.len() != inputs.len() {
        return Err(relay_lied("a batch of the wrong size"));
    }
    let messages = evaluated
        .iter()
        .map(|e| EvaluationElement::<Ristretto255>::deserialize(&e.0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| relay_lied("an evaluation that is not a point"))?;
    let proof = Proof::<Ristretto255>::deserialize(&proof.0)
        .map_err(|_| relay_lied("a proof that does not decode"))?;
    let public = Ristretto255::deserialize_elem(&key.0)
        .map_err(|_| relay_lied("a key that is not a point"))?;
    let (inputs, states) = (inputs.to_vec(), states.to_vec());
    let outputs = VoprfClient::batch_finalize(&inputs, &states, &messages, &proof, public)
        .map_err(|_| relay_lied("the proof is not of the key every connection is told"))?;
    inputs
        .iter()
        .zip(outputs)
        .map(|(input, output)| {
            let output = output.map_err(|_| relay_lied("a token does not finalize"))?;
            let mut out = [0u8; 64];
            out.copy_from_slice(&output);
            Ok(AdmissionToken {
                input: *input,
                output: out,
            })
        })
        .collect()
}

impl Inner {
    /// Admits `link`, a new connection of a room: asks the relay's key on it and spends a
    /// token of that key there.
    pub(crate) async fn admit(&self, link: &Arc<dyn Link>) -> Result<(), ClientError> {
        let key = match Self::call_on(link.clone(), Request::AdmissionKey).await? {
            Response::AdmissionKey(key) => key,
            other => return Err(unexpected(&other)),
        };
        self.admit_under(link, key).await
    }

    /// Admits `link` with a token of `key` (after [`hearth_protocol::Event::Readmit`]
    /// told it the relay's new key).
    pub(crate) async fn admit_under(
        &self,
        link: &Arc<dyn Link>,
        key: AdmissionKey,
    ) -> Result<(), ClientError> {
        let token = self.admission_token(key).await?;
        match Self::call_on(link.clone(), Request::Admit { key, token }).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// One unspent token of `key`, from the pool or a new batch taken on the signed-in
    /// connection.
    async fn admission_token(&self, key: AdmissionKey) -> Result<AdmissionToken, ClientError> {
        let mut pool = self.admission.lock().await;
        if pool.key != Some(key) {
            pool.tokens.clear();
            pool.key = Some(key);
        }
        if let Some(token) = pool.tokens.pop() {
            return Ok(token);
        }
        let BlindBatch {
            inputs,
            states,
            blinded,
        } = blind_batch()?;
        let answer = Self::call_on(
            self.account_link()?,
            Request::IssueAdmission { key, blinded },
        )
        .await?;
        let Response::AdmissionIssued { evaluated, proof } = answer else {
            return Err(unexpected(&answer));
        };
        pool.tokens = finalize_batch(&key, &inputs, &states, &evaluated, &proof)?;
        pool.tokens
            .pop()
            .ok_or_else(|| relay_lied("an empty batch"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voprf::VoprfServer;

    fn relay() -> (AdmissionKey, VoprfServer<Ristretto255>) {
        let server = VoprfServer::<Ristretto255>::new(&mut rand_core::OsRng).unwrap();
        let mut key = [0u8; 32];
        key.copy_from_slice(&Ristretto255::serialize_elem(server.get_public_key()));
        (AdmissionKey(key), server)
    }

    fn evaluate(
        server: &VoprfServer<Ristretto255>,
        blinded: &[BlindedToken],
    ) -> (
        Vec<hearth_protocol::EvaluatedToken>,
        hearth_protocol::AdmissionProof,
    ) {
        let points: Vec<_> = blinded
            .iter()
            .map(|b| voprf::BlindedElement::<Ristretto255>::deserialize(&b.0).unwrap())
            .collect();
        let result = server
            .batch_blind_evaluate(&mut rand_core::OsRng, &points)
            .unwrap();
        let evaluated = result
            .messages
            .iter()
            .map(|m| {
                let mut out = [0u8; 32];
                out.copy_from_slice(&m.serialize());
                hearth_protocol::EvaluatedToken(out)
            })
            .collect();
        let mut proof = [0u8; 64];
        proof.copy_from_slice(&result.proof.serialize());
        (evaluated, hearth_protocol::AdmissionProof(proof))
    }

    #[test]
    fn tokens_of_the_relays_key_finalize_to_what_the_relay_computes() {
        let (key, server) = relay();
        let BlindBatch {
            inputs,
            states,
            blinded,
        } = blind_batch().unwrap();
        let (evaluated, proof) = evaluate(&server, &blinded);
        let tokens = finalize_batch(&key, &inputs, &states, &evaluated, &proof).unwrap();
        assert_eq!(tokens.len(), ADMISSION_BATCH);
        for token in &tokens {
            assert_eq!(
                server.evaluate(&token.input).unwrap().as_slice(),
                token.output.as_slice()
            );
        }
    }

    /// A relay that evaluates one account's batch with a key of its own, to recognise
    /// that account's tokens later, is caught: the proof is not of the key the room
    /// connection was told.
    #[test]
    fn a_batch_evaluated_with_another_key_than_the_one_announced_is_refused() {
        let (announced, _) = relay();
        let (_, marking) = relay();
        let BlindBatch {
            inputs,
            states,
            blinded,
        } = blind_batch().unwrap();
        let (evaluated, proof) = evaluate(&marking, &blinded);
        let refused = finalize_batch(&announced, &inputs, &states, &evaluated, &proof);
        assert!(matches!(refused, Err(ClientError::Relay(_))), "{refused:?}");
        // And a truncated batch.
        let (key, server) = relay();
        let (evaluated, proof) = evaluate(&server, &blinded);
        assert!(finalize_batch(&key, &inputs, &states, &evaluated[1..], &proof).is_err());
    }
}
