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
//! they were issued to. A batch is kept in memory until the key changes; the tokens a
//! client has not spent when it closes wait in its store for its next run
//! ([`STASH_KEY`]).

use std::collections::HashMap;
use std::sync::Arc;

use hearth_protocol::{
    AdmissionKey, AdmissionToken, BlindedToken, ErrorCode, Request, Response, RoomId, WireError,
    ADMISSION_BATCH,
};
use rand_core::RngCore;
use voprf::{EvaluationElement, Group, Proof, Ristretto255, VoprfClient};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{unexpected, Inner};
use crate::error::{store as store_err, ClientError};
use crate::store::Table;
use crate::transport::Link;

/// Unspent tokens of one admission key, and the token each room's connection was
/// admitted with under it.
#[derive(Default)]
pub(crate) struct TokenPool {
    key: Option<AdmissionKey>,
    tokens: Vec<AdmissionToken>,
    /// A room's connection opened again under the same key is admitted with the same
    /// token. A fresh one each time would empty the pool at the pace the relay closes
    /// that connection, and the batch that follows on the signed-in connection would
    /// name its account: a relay that keeps closing one room connection would learn
    /// whose it is. The same token says only that the new connection is the same
    /// person's in the same room, which its room id, address and timing say already.
    by_room: HashMap<RoomId, AdmissionToken>,
}

/// Where a closing client leaves its unspent tokens for its next run
/// ([`Table::Settings`]). A person who runs `hearth --no-agent` in a script starts a client
/// per command, and each took a batch of its own: the relay gives an account 64 at once,
/// then one per 4 s, so the 65th command in a few minutes could not open its room.
/// Spent or handed to a room they are not kept: a room's token is this run's, and
/// never in a backup (see [`crate::backup`]): two devices spending one token in two rooms
/// would tell the relay that those rooms are one person's.
pub(crate) const STASH_KEY: &[u8] = b"admission-token-stash";

/// Tokens kept in the stash at the most: four batches, about 1.5 KiB.
const MAX_STASHED: usize = 4 * ADMISSION_BATCH;

/// How long stashed tokens are kept: an hour. A profile directory put back from an
/// older copy (a disk image, a file-level backup) brings back tokens spent since; one
/// spent again in another room would tie the two rooms together at the relay. Scripts
/// that run a command every few minutes still find the stash; the relay's key changes on
/// each of its restarts anyway.
const STASH_KEPT_SECS: u64 = 3600;

/// The stash's record: unspent tokens of one admission key.
#[derive(Serialize, Deserialize)]
struct Stash {
    key: AdmissionKey,
    tokens: Vec<AdmissionToken>,
    /// When they were stashed (Unix seconds, this device's clock).
    at: u64,
}

impl Stash {
    /// Whether its tokens may be spent at `now` (Unix seconds): of `key`, and stashed
    /// less than [`STASH_KEPT_SECS`] ago (and not in the future: a clock set back).
    fn usable(&self, key: &AdmissionKey, now: u64) -> bool {
        self.key == *key && self.at <= now && now - self.at < STASH_KEPT_SECS
    }
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

fn encode_err(e: postcard::Error) -> ClientError {
    ClientError::Other(format!("encoding the admission token stash: {e}"))
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
    /// Admits `link`, a new connection of `room`: asks the relay's key on it and spends
    /// a token of that key there.
    pub(crate) async fn admit(
        &self,
        room: RoomId,
        link: &Arc<dyn Link>,
    ) -> Result<(), ClientError> {
        let key = Self::admission_key_on(link).await?;
        self.admit_under(room, link, key).await
    }

    /// Admits `link`, `room`'s connection, with a token of `key`, the key `link` was
    /// told (its answer to [`Request::AdmissionKey`], or
    /// [`hearth_protocol::Event::Readmit`]).
    pub(crate) async fn admit_under(
        &self,
        room: RoomId,
        link: &Arc<dyn Link>,
        key: AdmissionKey,
    ) -> Result<(), ClientError> {
        let (key, token) = self.admission_token(room, link, key).await?;
        match Self::call_on(link.clone(), Request::Admit { key, token }).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn admission_key_on(link: &Arc<dyn Link>) -> Result<AdmissionKey, ClientError> {
        match Self::call_on(link.clone(), Request::AdmissionKey).await? {
            Response::AdmissionKey(key) => Ok(key),
            other => Err(unexpected(&other)),
        }
    }

    /// A token for `room`'s connection `link`, which was told `told`, and the key it is
    /// of: the one the room's connection had under that key (see [`TokenPool`]), else
    /// one from the pool, or from a new batch taken on the signed-in connection.
    async fn admission_token(
        &self,
        room: RoomId,
        link: &Arc<dyn Link>,
        told: AdmissionKey,
    ) -> Result<(AdmissionKey, AdmissionToken), ClientError> {
        let mut pool = self.admission.lock().await;
        if pool.key == Some(told) {
            if let Some(token) = pool.by_room.get(&room) {
                return Ok((told, token.clone()));
            }
            if let Some(token) = pool.tokens.pop() {
                pool.by_room.insert(room, token.clone());
                return Ok((told, token));
            }
        }
        let account = self.account_link()?;
        let key = Self::consistent_key(link, &account, told).await?;
        if pool.key != Some(key) {
            pool.tokens.clear();
            pool.by_room.clear();
            pool.key = Some(key);
        }
        if let Some(token) = pool.by_room.get(&room) {
            return Ok((key, token.clone()));
        }
        if let Some(token) = pool.tokens.pop() {
            pool.by_room.insert(room, token.clone());
            return Ok((key, token));
        }
        match self.take_stashed(&key) {
            Ok(Some(token)) => {
                pool.by_room.insert(room, token.clone());
                return Ok((key, token));
            }
            Ok(None) => {}
            // A batch from the relay serves as well.
            Err(e) => tracing::warn!("taking an admission token from the stash failed: {e}"),
        }
        let BlindBatch {
            inputs,
            states,
            blinded,
        } = blind_batch()?;
        let answer = Self::call_on(account, Request::IssueAdmission { key, blinded }).await?;
        let Response::AdmissionIssued { evaluated, proof } = answer else {
            return Err(unexpected(&answer));
        };
        pool.tokens = finalize_batch(&key, &inputs, &states, &evaluated, &proof)?;
        let token = pool
            .tokens
            .pop()
            .ok_or_else(|| relay_lied("an empty batch"))?;
        pool.by_room.insert(room, token.clone());
        Ok((key, token))
    }

    /// One token of `key` from the stash a previous run left ([`STASH_KEY`]), taken out
    /// of the store before it is used: a run killed afterwards loses it rather than
    /// spending it twice. A stash of another key is thrown away.
    fn take_stashed(&self, key: &AdmissionKey) -> Result<Option<AdmissionToken>, ClientError> {
        let store = self.profile.store();
        let Some(bytes) = store.get(Table::Settings, STASH_KEY).map_err(store_err)? else {
            return Ok(None);
        };
        let mut batch = store.begin().map_err(store_err)?;
        let now = crate::history::secs_of(std::time::SystemTime::now());
        let token = match postcard::from_bytes::<Stash>(&bytes) {
            Ok(mut stash) if stash.usable(key, now) => {
                let token = stash.tokens.pop();
                if stash.tokens.is_empty() {
                    batch
                        .delete(Table::Settings, STASH_KEY)
                        .map_err(store_err)?;
                } else {
                    let bytes = Zeroizing::new(postcard::to_allocvec(&stash).map_err(encode_err)?);
                    batch
                        .put(Table::Settings, STASH_KEY, &bytes)
                        .map_err(store_err)?;
                }
                token
            }
            _ => {
                batch
                    .delete(Table::Settings, STASH_KEY)
                    .map_err(store_err)?;
                None
            }
        };
        batch.commit().map_err(store_err)?;
        Ok(token)
    }

    /// Leaves the tokens of this run's batches that no room took in the stash, beside
    /// those already there of the same key, [`MAX_STASHED`] at the most (on close).
    pub(crate) async fn stash_unspent_tokens(&self) -> Result<(), ClientError> {
        let mut pool = self.admission.lock().await;
        let Some(key) = pool.key else {
            return Ok(());
        };
        if pool.tokens.is_empty() {
            return Ok(());
        }
        let store = self.profile.store();
        let now = crate::history::secs_of(std::time::SystemTime::now());
        // This run's tokens are the freshest: older ones go first.
        let mut tokens = match store.get(Table::Settings, STASH_KEY).map_err(store_err)? {
            Some(bytes) => match postcard::from_bytes::<Stash>(&bytes) {
                Ok(stash) if stash.usable(&key, now) => stash.tokens,
                _ => Vec::new(),
            },
            None => Vec::new(),
        };
        tokens.append(&mut pool.tokens);
        let excess = tokens.len().saturating_sub(MAX_STASHED);
        tokens.drain(..excess);
        let stash = Stash {
            key,
            tokens,
            at: now,
        };
        let bytes = Zeroizing::new(postcard::to_allocvec(&stash).map_err(encode_err)?);
        let mut batch = store.begin().map_err(store_err)?;
        batch
            .put(Table::Settings, STASH_KEY, &bytes)
            .map_err(store_err)?;
        batch.commit().map_err(store_err)
    }

    /// The key a batch is asked for: the one the room connection `room` was told
    /// (`told`), which the signed-in connection `account` must be told too.
    ///
    /// `IssueAdmission` names its key, so a batch asked for a key the relay gave one
    /// room connection alone would tell the relay whose connection that is: one key per
    /// room connection, and every account's next batch names its connections. A relay
    /// that gives each account a key of its own instead must guess whose a room
    /// connection is before it answers there, and a wrong guess is refused here. A ban
    /// landing between the two questions is asked through once more.
    ///
    /// # Errors
    /// [`ClientError::Relay`] when the two connections are told different keys twice.
    async fn consistent_key(
        room: &Arc<dyn Link>,
        account: &Arc<dyn Link>,
        told: AdmissionKey,
    ) -> Result<AdmissionKey, ClientError> {
        let signed_in = Self::admission_key_on(account).await?;
        if signed_in == told {
            return Ok(told);
        }
        let told = Self::admission_key_on(room).await?;
        let signed_in = Self::admission_key_on(account).await?;
        if signed_in == told {
            return Ok(told);
        }
        tracing::warn!("the relay tells a room connection another admission key than the signed-in connection: it could be telling whose room connection it is");
        Err(relay_lied(
            "it tells a room's connection another key than your signed-in connection, which could tie the room to you; the room is not opened (tell the relay's owner)",
        ))
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

    const ROOM: RoomId = RoomId([1; 16]);
    const OTHER_ROOM: RoomId = RoomId([2; 16]);

    /// A relay that answers what it is asked with its own key on the signed-in
    /// connection and with `room_key` on every room connection, recording each key a
    /// batch is asked for.
    struct FakeRelay {
        key: AdmissionKey,
        server: VoprfServer<Ristretto255>,
        room_key: AdmissionKey,
        batches_for: std::sync::Mutex<Vec<AdmissionKey>>,
        /// The tokens room connections were admitted with.
        admitted_with: std::sync::Mutex<Vec<AdmissionToken>>,
        /// What a batch is refused with, if it is.
        refuse_batches: Option<ErrorCode>,
        /// The event feeds of the room connections, kept open: a connection ends only
        /// when the test closes it.
        feeds: std::sync::Mutex<Vec<tokio::sync::mpsc::UnboundedSender<hearth_protocol::Event>>>,
    }

    impl FakeRelay {
        /// A relay with `server`'s key (`key` its public half) on the signed-in
        /// connection and `room_key` on room connections, refusing batches with
        /// `refuse_batches` if given.
        fn new(
            (key, server): (AdmissionKey, VoprfServer<Ristretto255>),
            room_key: AdmissionKey,
            refuse_batches: Option<ErrorCode>,
        ) -> Arc<FakeRelay> {
            Arc::new(FakeRelay {
                key,
                server,
                room_key,
                batches_for: Default::default(),
                admitted_with: Default::default(),
                refuse_batches,
                feeds: Default::default(),
            })
        }
    }

    struct AccountSide(Arc<FakeRelay>);
    /// A room connection to the fake relay, closed or not.
    struct RoomSide(Arc<FakeRelay>, std::sync::atomic::AtomicBool);

    impl RoomSide {
        fn to(relay: &Arc<FakeRelay>) -> Arc<dyn Link> {
            Arc::new(RoomSide(relay.clone(), Default::default()))
        }
    }

    impl Link for AccountSide {
        fn call(
            &self,
            request: Request,
        ) -> crate::transport::BoxFuture<
            '_,
            Result<Result<Response, WireError>, crate::transport::TransportError>,
        > {
            let relay = &self.0;
            let answer = match request {
                Request::AdmissionKey => Ok(Response::AdmissionKey(relay.key)),
                Request::IssueAdmission { key, blinded } => {
                    relay.batches_for.lock().unwrap().push(key);
                    if let Some(code) = relay.refuse_batches {
                        let refused = Err(WireError::new(code, "refused"));
                        return Box::pin(async move { Ok(refused) });
                    }
                    let (evaluated, proof) = evaluate(&relay.server, &blinded);
                    Ok(Response::AdmissionIssued { evaluated, proof })
                }
                _ => Err(WireError::new(ErrorCode::Internal, "not in this test")),
            };
            Box::pin(async move { Ok(answer) })
        }

        fn close(&self) {}
    }

    impl Link for RoomSide {
        fn call(
            &self,
            request: Request,
        ) -> crate::transport::BoxFuture<
            '_,
            Result<Result<Response, WireError>, crate::transport::TransportError>,
        > {
            let answer = match request {
                Request::AdmissionKey => Ok(Response::AdmissionKey(self.0.room_key)),
                Request::Admit { token, .. } => {
                    self.0.admitted_with.lock().unwrap().push(token);
                    Ok(Response::Done)
                }
                _ => Err(WireError::new(ErrorCode::Internal, "not in this test")),
            };
            Box::pin(async move { Ok(answer) })
        }

        fn close(&self) {
            self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        }

        fn is_closed(&self) -> bool {
            self.1.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// Opens room connections to the relay (never the signed-in one again).
    struct RoomConnector(Arc<FakeRelay>);

    impl crate::transport::Connector for RoomConnector {
        fn connect(
            &self,
        ) -> crate::transport::BoxFuture<
            '_,
            Result<crate::transport::Connection, crate::transport::TransportError>,
        > {
            let link = RoomSide::to(&self.0);
            let (feed, events) = tokio::sync::mpsc::unbounded_channel();
            self.0.feeds.lock().unwrap().push(feed);
            Box::pin(async move {
                Ok(crate::transport::Connection {
                    link,
                    events,
                    challenge: [0; 32],
                    exporter: [0; 32],
                })
            })
        }

        fn address(&self) -> String {
            "nowhere".into()
        }
    }

    /// A client signed in to `relay` (its signed-in connection is [`AccountSide`]).
    fn client_of(
        relay: &Arc<FakeRelay>,
        dir: &std::path::Path,
    ) -> (
        super::super::Client,
        tokio::sync::mpsc::UnboundedSender<hearth_protocol::Event>,
    ) {
        crate::store::set_test_kdf_params(Some(crate::store::KdfParams::TEST_ONLY_FAST));
        let profile = if crate::profile::Profile::exists(&dir.join("p")) {
            crate::profile::Profile::open(&dir.join("p"), "pass phrase").unwrap()
        } else {
            crate::profile::Profile::create(
                &dir.join("p"),
                "pass phrase",
                hearth_protocol::Handle::new("bob").unwrap(),
                "hearth://relay.example:7443/#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                    .parse()
                    .unwrap(),
            )
            .unwrap()
        };
        let (pushed, events) = tokio::sync::mpsc::unbounded_channel();
        let conn = crate::transport::Connection {
            link: Arc::new(AccountSide(relay.clone())),
            events,
            challenge: [0; 32],
            exporter: [0; 32],
        };
        let client = super::super::Client::start(
            profile,
            Arc::new(RoomConnector(relay.clone())),
            Some((conn, 0)),
        )
        .unwrap();
        (client, pushed)
    }

    /// A relay that tells one room connection a key of its own would learn whose it is
    /// from the batch the client then asks for that key on its signed-in connection. The
    /// client refuses to ask: the key a room connection is told must be the one the
    /// signed-in connection is told.
    #[tokio::test]
    async fn a_key_told_to_one_room_connection_alone_is_never_asked_for_on_the_signed_in_connection(
    ) {
        let (marked, _) = relay();
        let hostile = FakeRelay::new(relay(), marked, None);
        let dir = tempfile::tempdir().unwrap();
        let (client, _pushed) = client_of(&hostile, dir.path());
        let room = RoomSide::to(&hostile);

        let refused = client.inner.admit(ROOM, &room).await;
        assert!(matches!(refused, Err(ClientError::Relay(_))), "{refused:?}");
        // Through a Readmit event with the marked key too.
        let refused = client.inner.admit_under(ROOM, &room, marked).await;
        assert!(matches!(refused, Err(ClientError::Relay(_))), "{refused:?}");
        assert!(
            hostile.batches_for.lock().unwrap().is_empty(),
            "no batch is asked for a key only a room connection was told"
        );

        // The same key on both: admitted, with a batch of that key.
        let honest = FakeRelay::new((hostile.key, hostile.server.clone()), hostile.key, None);
        let dir = tempfile::tempdir().unwrap();
        let (client, _pushed) = client_of(&honest, dir.path());
        let room = RoomSide::to(&honest);
        client.inner.admit(ROOM, &room).await.unwrap();
        client.inner.admit(OTHER_ROOM, &room).await.unwrap();
        assert_eq!(
            *honest.batches_for.lock().unwrap(),
            vec![honest.key],
            "one batch serves several connections"
        );
    }

    /// A room connection refused admission for a reason that passes (the key changed
    /// between the questions, the account's batches used up for now) is reported as not
    /// connected, which the room's follower tries again with its back-off, not as a
    /// failure that leaves the room unfollowed.
    #[tokio::test]
    async fn a_room_connection_refused_for_now_is_tried_again_later() {
        super::super::room_links::set_room_jitter(std::time::Duration::ZERO);
        for code in [ErrorCode::RateLimited, ErrorCode::StaleEpoch] {
            let (key, server) = relay();
            let fake = FakeRelay::new((key, server), key, Some(code));
            let dir = tempfile::tempdir().unwrap();
            let (client, _pushed) = client_of(&fake, dir.path());
            let opened = client
                .inner
                .room_link(hearth_protocol::RoomId([1; 16]))
                .await;
            assert!(
                matches!(opened, Err(ClientError::NotConnected)),
                "{code:?}: {:?}",
                opened.err()
            );
        }
    }

    /// A relay that keeps closing one room's connection, or keeps telling it to be
    /// admitted again under the key it has, would empty the pool through it and see
    /// which account then asks for a batch. The room's connection is admitted with the
    /// token it had under that key, so no batch follows; another room gets a token of
    /// its own.
    #[tokio::test]
    async fn a_room_connection_opened_again_and_again_never_makes_its_account_ask_for_tokens() {
        let (key, server) = relay();
        let fake = FakeRelay::new((key, server), key, None);
        let dir = tempfile::tempdir().unwrap();
        let (client, _pushed) = client_of(&fake, dir.path());
        let room = RoomSide::to(&fake);
        for _ in 0..ADMISSION_BATCH * 2 {
            client.inner.admit(ROOM, &room).await.unwrap();
            client.inner.admit_under(ROOM, &room, key).await.unwrap();
        }
        assert_eq!(fake.batches_for.lock().unwrap().len(), 1, "one batch only");
        client.inner.admit(OTHER_ROOM, &room).await.unwrap();
        let admitted = fake.admitted_with.lock().unwrap();
        let (other, same) = admitted.split_last().unwrap();
        assert!(same.iter().all(|t| t == &same[0]));
        assert_ne!(other, &same[0], "each room its own token");
    }

    /// A room connection that has ended is not handed out again, even while its follower
    /// still holds it: the follower may be waiting for the room's lock (to hand on an
    /// event it was pushed) that an operation holds while it needs the relay. The stress
    /// kill-loop saw that operation wait for itself for 20 s after each relay restart.
    #[tokio::test]
    async fn an_ended_room_connection_is_replaced_before_its_follower_lets_go() {
        super::super::room_links::set_room_jitter(std::time::Duration::ZERO);
        let (key, server) = relay();
        let fake = FakeRelay::new((key, server), key, None);
        let dir = tempfile::tempdir().unwrap();
        let (client, _pushed) = client_of(&fake, dir.path());
        let first = client.inner.room_link(ROOM).await.unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &client.inner.room_link(ROOM).await.unwrap()
        ));
        first.close();
        let second = client.inner.room_link(ROOM).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &second), "the ended one again");
        assert!(!second.is_closed());
        assert_eq!(fake.feeds.lock().unwrap().len(), 2, "a second connection");
    }

    /// A client per command (`hearth --no-agent`) took a batch per run, and the relay
    /// gives an account 64 at once: the tokens a run did not spend wait for the next
    /// one, which takes them before it asks for a batch, never one a room of the last
    /// run had (that would tie the two rooms together at the relay).
    #[tokio::test]
    async fn the_tokens_a_run_did_not_spend_serve_the_next_run() {
        let (key, server) = relay();
        let fake = FakeRelay::new((key, server), key, None);
        let dir = tempfile::tempdir().unwrap();
        let (client, _pushed) = client_of(&fake, dir.path());
        let room = RoomSide::to(&fake);
        client.inner.admit(ROOM, &room).await.unwrap();
        client.close().await;

        let (client, _pushed) = client_of(&fake, dir.path());
        for i in 0..ADMISSION_BATCH - 1 {
            let mut id = [9u8; 16];
            id[0] = i as u8;
            client
                .inner
                .admit(hearth_protocol::RoomId(id), &room)
                .await
                .unwrap();
        }
        assert_eq!(
            fake.batches_for.lock().unwrap().len(),
            1,
            "the second run's rooms took the first run's unspent tokens"
        );
        client.inner.admit(OTHER_ROOM, &room).await.unwrap();
        assert_eq!(fake.batches_for.lock().unwrap().len(), 2, "then a batch");
        let admitted = fake.admitted_with.lock().unwrap();
        let distinct: std::collections::HashSet<_> = admitted.iter().map(|t| t.input).collect();
        assert_eq!(distinct.len(), admitted.len(), "no token spent twice");
    }

    /// Stashed tokens are spent only under the key they were issued for, and only for an
    /// hour: a profile put back from an older copy must not spend again, in another room,
    /// a token spent since. A stash dated ahead of the clock (set back) is not used.
    #[test]
    fn a_stash_is_usable_under_its_key_for_an_hour() {
        let (key, _) = relay();
        let (other, _) = relay();
        let stash = Stash {
            key,
            tokens: Vec::new(),
            at: 1_000_000,
        };
        assert!(stash.usable(&key, 1_000_000));
        assert!(stash.usable(&key, 1_000_000 + STASH_KEPT_SECS - 1));
        assert!(!stash.usable(&key, 1_000_000 + STASH_KEPT_SECS));
        assert!(!stash.usable(&key, 999_999), "stashed in the future");
        assert!(!stash.usable(&other, 1_000_000), "another key");
    }
}
