//! Entry points for the fuzz targets in `fuzz/` (`room_entry`, `welcome`,
//! `member_key_package`, `public_join`); not an API: hidden, and free to change with the
//! code it reaches.
//!
//! A [`Member`] is a client with no relay behind it, driven one input at a time through
//! the very code that handles what the relay delivers: room entries (`process_entry`,
//! directory look-ups included), inbox entries (Welcomes), the KeyPackages an inviter
//! fetches and the GroupInfo a public room's listing holds. A stand-in relay answers the
//! directory (`ListAccounts`), `FetchKeyPackage` and `FetchGroupInfo` with what the fuzz
//! target put there and refuses `JoinPublic`; every other request finds the connection
//! closed.
//! Background tasks only run while a call blocks on the member's single-threaded runtime.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use hearth_protocol::{
    AccountInfo, AccountKey, Entry, ErrorCode, Event, Handle, InboxEntry, Request, Response,
    RoomId, WireError,
};
use openmls::prelude::{KeyPackage, OpenMlsProvider as _};
use tokio::sync::mpsc;

use super::room::{Room, RoomRecord};
use super::{lock, Client};
use crate::error::ClientError;
use crate::events::ClientEvent;
use crate::mls::join_point::JoinPoint;
use crate::mls::Engine;
use crate::profile::Profile;
use crate::transport::{BoxFuture, Connection, Connector, Link, TransportError};

/// What the stand-in relay answers.
#[derive(Default)]
struct Answers {
    /// To `ListAccounts`.
    accounts: Vec<AccountInfo>,
    /// To `FetchKeyPackage` (whoever is asked for); `None`: `NoKeyPackage`.
    key_package: Option<(AccountKey, Vec<u8>)>,
    /// To `FetchGroupInfo` (whichever room): the GroupInfo and its epoch index; `None`:
    /// `UnknownRoom`.
    group_info: Option<(Vec<u8>, u64)>,
}

struct StandInLink(Arc<Mutex<Answers>>);

impl Link for StandInLink {
    fn call(
        &self,
        request: Request,
    ) -> BoxFuture<'_, Result<Result<Response, WireError>, TransportError>> {
        let answers = lock(&self.0);
        let answer = match request {
            Request::ListAccounts => Ok(Ok(Response::Accounts(answers.accounts.clone()))),
            Request::FetchKeyPackage { .. } => Ok(match &answers.key_package {
                Some((account, package)) => Ok(Response::KeyPackage {
                    account: *account,
                    package: package.clone(),
                }),
                None => Err(WireError::new(ErrorCode::NoKeyPackage, "no key package")),
            }),
            Request::FetchGroupInfo { .. } => Ok(match &answers.group_info {
                Some((group_info, epoch)) => Ok(Response::GroupInfo {
                    group_info: group_info.clone(),
                    epoch: *epoch,
                }),
                None => Err(WireError::new(ErrorCode::UnknownRoom, "not listed")),
            }),
            Request::JoinPublic { .. } => Ok(Err(WireError::new(
                ErrorCode::Forbidden,
                "the stand-in relay takes no joins",
            ))),
            _ => Err(TransportError::Closed),
        };
        Box::pin(async move { answer })
    }

    fn close(&self) {}
}

/// Reconnecting never works: there is no relay.
struct Nowhere;

impl Connector for Nowhere {
    fn connect(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async {
            Err(TransportError::Unreachable {
                address: "nowhere".into(),
                reason: "a fuzzing stand-in has no relay".into(),
            })
        })
    }

    fn address(&self) -> String {
        "nowhere".into()
    }
}

/// A client with a stand-in relay (see the module documentation).
pub struct Member {
    client: Client,
    answers: Arc<Mutex<Answers>>,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    /// Held so the connection's pushed events never end (which would make the driver
    /// reconnect).
    _pushed: mpsc::UnboundedSender<Event>,
    // Last: the client's tasks live on it.
    runtime: tokio::runtime::Runtime,
}

impl Member {
    /// A member running `profile`, whose relay's directory lists `directory`.
    pub fn new(profile: Profile, directory: Vec<AccountInfo>) -> Result<Member, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Other(format!("a runtime for fuzzing: {e}")))?;
        let answers = Arc::new(Mutex::new(Answers {
            accounts: directory,
            ..Answers::default()
        }));
        let (pushed, events) = mpsc::unbounded_channel();
        let conn = Connection {
            link: Arc::new(StandInLink(answers.clone())),
            events,
            challenge: [0; 32],
            exporter: [0; 32],
        };
        let now = crate::history::secs_of(std::time::SystemTime::now());
        let client = {
            let _context = runtime.enter();
            Client::start(profile, Arc::new(Nowhere), Some((conn, now)))?
        };
        let events = client.events();
        Ok(Member {
            client,
            answers,
            events,
            _pushed: pushed,
            runtime,
        })
    }

    /// The member's MLS engine (to make KeyPackages, to checkpoint and restore its state
    /// around each input). Do not hold it across the other calls.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        self.client.inner.engine()
    }

    /// Processes one room entry as if the relay had pushed it, and returns the result
    /// with the events it reported. `room` is the caller's: it is not in the client's
    /// list of rooms, so nothing else touches it.
    pub fn process(
        &mut self,
        room: &mut Room,
        entry: &Entry,
    ) -> (Result<(), ClientError>, Vec<ClientEvent>) {
        let inner = &self.client.inner;
        let result = self.runtime.block_on(inner.process_entry(room, entry));
        (result, self.take_events())
    }

    /// Takes one inbox entry as if it had been fetched (a Welcome from another member:
    /// decoded, joined, checked), and returns what came of it with the events. A room it
    /// made is in the client's list: [`Member::take_room`] takes it out.
    pub fn take_inbox_entry(
        &mut self,
        entry: &InboxEntry,
    ) -> (Result<Option<RoomId>, ClientError>, Vec<ClientEvent>) {
        let inner = &self.client.inner;
        let shared = HashSet::new();
        let taken =
            self.runtime
                .block_on(inner.take_inbox_entry(entry, &shared, &mut HashSet::new()));
        let result = match taken {
            Ok(Ok(super::inbox::Took::Taken(direct))) => Ok(direct),
            Ok(Ok(super::inbox::Took::Later)) => Ok(None),
            Ok(Err(e)) | Err(e) => Err(e),
        };
        (result, self.take_events())
    }

    /// Takes a room out of the client's list (its record stays in the store), so the
    /// caller holds it and the next Welcome for it makes it anew.
    pub fn take_room(&mut self, id: RoomId) -> Option<Room> {
        let room = lock(&self.client.inner.rooms).remove(&id)?;
        Arc::try_unwrap(room)
            .ok()
            .map(tokio::sync::Mutex::into_inner)
    }

    /// This member's account key.
    pub fn account(&self) -> AccountKey {
        self.client.inner.profile.account()
    }

    /// What an inviter does with the KeyPackage the relay hands out for `handle` before
    /// anything is sent: decodes and validates it, checks it names `handle` with
    /// `account`'s key, checks the key against the pins, and stages a commit adding it
    /// to `room`'s group (with the policy check of our own commits), which is then
    /// cleared: the group is left as it was.
    pub fn stage_invite(
        &mut self,
        room: &mut Room,
        handle: &Handle,
        account: AccountKey,
        package: Vec<u8>,
    ) -> Result<(), ClientError> {
        lock(&self.answers).key_package = Some((account, package));
        let inner = &self.client.inner;
        let fetched = self.runtime.block_on(inner.fetch_key_package(handle));
        lock(&self.answers).key_package = None;
        let (account, key_package): (AccountKey, KeyPackage) = fetched?;
        inner.check_invitee(handle, account.0)?;
        let engine = inner.engine();
        let (seq, hash) = room.rec.transcript.mark();
        let staged = super::admin::build_commit(
            room.id,
            &mut room.group,
            &engine,
            &[],
            std::slice::from_ref(&key_package),
            Some(JoinPoint { seq: seq.0, hash }),
            |_| {},
        );
        if room.group.pending_commit().is_some() {
            room.group
                .clear_pending_commit(engine.provider.storage())
                .map_err(crate::error::mls)?;
        }
        staged.map(|_| ())
    }

    /// What joining the public room `room` does with the GroupInfo its listing holds
    /// (published by any member): checks it is the room's, reads the join point signed
    /// into it, builds the external commit from it, checks every identity in its tree
    /// and the room's policy. The stand-in relay then refuses the join, so nothing of it
    /// is kept (and the join point is not used: that needs the relay's answer).
    pub fn join_public(
        &mut self,
        room: RoomId,
        group_info: Vec<u8>,
        epoch: u64,
    ) -> (Result<(), ClientError>, Vec<ClientEvent>) {
        lock(&self.answers).group_info = Some((group_info, epoch));
        let inner = &self.client.inner;
        let result = self.runtime.block_on(inner.try_join_public(room));
        lock(&self.answers).group_info = None;
        (result, self.take_events())
    }

    fn take_events(&mut self) -> Vec<ClientEvent> {
        let mut events = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            events.push(event);
        }
        events
    }
}

/// Puts `room` back as [`Room::load`] makes it from `rec`, keeping its group: for a
/// caller whose input changed nothing in the group's storage (loading a group is the slow
/// part of starting each input afresh).
pub fn reset_room(room: &mut Room, rec: RoomRecord) {
    // Every field by name, so that a new one is reset here too (or this stops compiling).
    let Room {
        id: _,
        rec: record,
        group,
        subscribed,
        commit_proposals,
        removed,
        orphaned_epoch,
        expected_end,
        landed_own,
        relay_admins,
        revert_landed,
    } = room;
    *record = rec;
    *removed = !group.is_active();
    *subscribed = None;
    *commit_proposals = false;
    *orphaned_epoch = None;
    *expected_end = None;
    *landed_own = None;
    *relay_admins = None;
    *revert_landed = None;
}

/// The client's check of a batch of admission tokens as the relay answered it (decision
/// 0016): fresh blinded inputs, then `key`, `evaluated` and `proof` from the fuzzer.
/// Returns whether the batch was taken (only a relay holding the key's secret can make
/// one that is).
pub fn admission_batch(key: [u8; 32], evaluated: &[[u8; 32]], proof: [u8; 64]) -> bool {
    let Ok(batch) = super::admission::blind_batch() else {
        return false;
    };
    let evaluated: Vec<_> = evaluated
        .iter()
        .map(|e| hearth_protocol::EvaluatedToken(*e))
        .collect();
    super::admission::finalize_batch(
        &hearth_protocol::AdmissionKey(key),
        &batch.inputs,
        &batch.states,
        &evaluated,
        &hearth_protocol::AdmissionProof(proof),
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use hearth_protocol::{EntryKind, RelayAddress, Seq};
    use openmls::prelude::tls_codec::Deserialize as _;
    use openmls::prelude::{
        GroupId, KeyPackageIn, MlsGroup, OpenMlsProvider as _, ProtocolVersion,
    };

    use super::*;
    use crate::client::inbox::Took;
    use crate::content::InboxMessage;
    use crate::mls::{create_config, RoomSettings};
    use crate::store::{set_test_kdf_params, KdfParams};
    use crate::transcript::Transcript;
    use crate::Identity;

    const PORCH: RoomId = RoomId([0x50; 16]);

    fn info(name: &str, account: AccountKey) -> AccountInfo {
        AccountInfo {
            handle: Handle::new(name).unwrap(),
            account,
            created: 1,
            rotations: Vec::new(),
        }
    }

    /// Bob, and alice's invitation of him into [`PORCH`] as it lies in his inbox.
    fn bob_invited_by_alice(dir: &std::path::Path) -> (Member, InboxEntry) {
        set_test_kdf_params(Some(KdfParams::TEST_ONLY_FAST));
        let relay: RelayAddress =
            "hearth://relay.example:7443/#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                .parse()
                .unwrap();
        let profile = Profile::create(dir, "test", Handle::new("bob").unwrap(), relay).unwrap();
        let bob_account = profile.account();
        let alice_id = Identity::generate();
        let alice = Engine::new(alice_id.mls_signer(), "alice");
        let directory = vec![info("alice", alice.account()), info("bob", bob_account)];
        let bob = Member::new(profile, directory).unwrap();
        let (packages, _) = bob.engine().key_packages(1, false).unwrap();
        let invited = KeyPackageIn::tls_deserialize_exact(packages[0].as_slice())
            .unwrap()
            .validate(alice.provider.crypto(), ProtocolVersion::Mls10)
            .unwrap();
        let settings = RoomSettings::new("porch", alice.account());
        let mut after = settings.clone();
        after.members.push(bob_account);
        let mut group = MlsGroup::new_with_group_id(
            &alice.provider,
            &alice.signer,
            &create_config(&settings).unwrap(),
            GroupId::from_slice(&PORCH.0),
            alice.credential.clone(),
        )
        .unwrap();
        let (commit, welcome, _) = group
            .commit_builder()
            .propose_adds([invited])
            .propose_group_context_extensions(after.extensions().unwrap())
            .unwrap()
            .load_psks(alice.provider.storage())
            .unwrap()
            .create_group_info_with_extensions([JoinPoint {
                seq: 0,
                hash: [0; 32],
            }
            .extension()])
            .unwrap()
            .build(
                alice.provider.rand(),
                alice.provider.crypto(),
                &alice.signer,
                |_| true,
            )
            .unwrap()
            .stage_commit(&alice.provider)
            .unwrap()
            .into_messages();
        let mut transcript = Transcript::new();
        transcript.observe(Seq(1), EntryKind::Commit, &commit.to_bytes().unwrap());
        let message = InboxMessage::Welcome {
            room: PORCH,
            welcome: welcome.unwrap().to_bytes().unwrap(),
            start_seq: Seq(2),
            transcript_hash: transcript.hash(),
            from: Handle::new("alice").unwrap(),
        };
        let entry = InboxEntry {
            id: 1,
            time: 1,
            payload: crate::sealed::seal(&alice_id, &bob_account, &message.encode()).unwrap(),
        };
        (bob, entry)
    }

    /// A Welcome into a room another task holds is left in the inbox, not acknowledged,
    /// and fetched again once the room is let go (once taken for a duplicate deposit and
    /// acknowledged: a second invitation after a kick was lost whenever a sync held the
    /// room at that moment). The race needs no timing here: the test holds the room.
    #[test]
    fn a_welcome_into_a_room_another_task_holds_is_left_in_the_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let (mut bob, entry) = bob_invited_by_alice(dir.path());
        let (first, _) = bob.take_inbox_entry(&entry);
        assert_eq!(first.unwrap(), None, "bob holds the invitation");

        let inner = bob.client.inner.clone();
        let take = |bob: &Member, waited: &mut HashSet<RoomId>| {
            let shared = HashSet::new();
            bob.runtime
                .block_on(inner.take_inbox_entry(&entry, &shared, waited))
        };
        let room = inner.room(PORCH).unwrap();
        let held = room.clone().try_lock_owned().unwrap();
        // Waits for the room once (2 s), finds it still held, and leaves the entry.
        let mut waited = HashSet::new();
        assert!(matches!(take(&bob, &mut waited), Ok(Ok(Took::Later))));
        assert!(lock(&inner.refetch).contains(&PORCH), "fetched again later");
        // Another entry for the same room in the same fetch is not waited for again
        // (a fetch of many entries would otherwise stall 2 s for each).
        let started = std::time::Instant::now();
        assert!(matches!(take(&bob, &mut waited), Ok(Ok(Took::Later))));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "waited again"
        );
        drop(held);
        // Let go: the same deposit is looked at, found no newer than the invitation
        // held, and taken (to be acknowledged).
        assert!(matches!(
            take(&bob, &mut HashSet::new()),
            Ok(Ok(Took::Taken(None)))
        ));
        let invitations = bob
            .runtime
            .block_on(bob.client.known_invitations())
            .unwrap();
        assert_eq!(invitations.len(), 1, "{invitations:?}");
    }
}
