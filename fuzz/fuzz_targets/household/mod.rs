//! A household for the MLS targets (`room_entry`, `welcome`, `public_join`,
//! `member_key_package`), made once per fuzzing process:
//!
//! - **bob** is a hearth client ([`Member`]): everything he receives goes through
//!   hearth's own code, with a stand-in relay that answers the directory;
//! - **alice** is another member driven with openmls directly, as a modified client
//!   would be: she sends whatever the input describes, with none of hearth's checks;
//! - **carol** has an account (a key in the directory) and KeyPackages anyone can build.
//!
//! Alice created the room `kitchen` and invited bob (commit at seq 1, through bob's
//! Welcome and his processing of that commit), so the room is at epoch 1 and the next
//! entry is seq 2. Each input starts from that state: [`Household::checkpoint`] and
//! [`Household::restore`] put both sides back.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use arbitrary::Arbitrary;
use hearth_core::client::fuzzing::Member;
use hearth_core::client::room::Room;
use hearth_core::content::InboxMessage;
use hearth_core::mls::join_point::JoinPoint;
use hearth_core::mls::{create_config, Checkpoint, Engine, RoomSettings};
use hearth_core::store::{set_test_kdf_params, KdfParams};
use hearth_core::transcript::Transcript;
use hearth_core::{Identity, Profile};
use hearth_protocol::{
    AccountInfo, AccountKey, Entry, EntryKind, Handle, InboxEntry, RelayAddress, RoomId, Seq,
};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;

/// The relay's clock in every entry.
pub const NOW: u64 = 1_750_000_000;
/// The room alice made.
pub const KITCHEN: RoomId = RoomId([0x4b; 16]);

pub struct Household {
    pub bob: Member,
    /// Bob's side of `kitchen`.
    pub room: Room,
    pub alice: Engine,
    /// Alice's side of `kitchen`.
    pub group: MlsGroup,
    /// Alice's transcript of `kitchen` (her marks).
    pub transcript: Transcript,
    /// Carol's identity key.
    pub carol: SignatureKeyPair,
    /// Alice's and carol's identities (what seals their inbox deposits), and bob's
    /// account (what they are sealed to).
    pub sealers: (Identity, Identity, AccountKey),
    /// A KeyPackage of bob's whose private keys bob's engine holds (for Welcomes).
    pub bob_key_package: KeyPackage,
}

/// Where the state of an input's start is kept.
pub struct Saved {
    bob: Checkpoint,
    alice: Checkpoint,
    room: hearth_core::client::room::RoomRecord,
    transcript: Transcript,
}

pub fn handle(name: &str) -> Handle {
    Handle::new(name).expect("a valid handle")
}

fn account(key: &[u8]) -> AccountKey {
    AccountKey(key.try_into().expect("an Ed25519 public key"))
}

/// The same key pair again (to sign as another credential).
pub fn copy(keys: &SignatureKeyPair) -> SignatureKeyPair {
    keys.clone()
}

/// A profile in a directory that is removed at once (the open store lives on), under
/// `/dev/shm` when there is one: the store writes on every entry.
fn profile(name: &str) -> Profile {
    static N: AtomicU32 = AtomicU32::new(0);
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "hearth-fuzz-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let relay: RelayAddress =
        "hearth://relay.example:7443/#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            .parse()
            .expect("a relay address");
    let profile = Profile::create(&dir, "fuzz", handle(name), relay).expect("a profile");
    let _ = std::fs::remove_dir_all(&dir);
    profile
}

/// A KeyPackage of `engine`'s (private keys in its storage), if openmls makes one for
/// its credential.
pub fn key_package_of(engine: &Engine) -> Option<KeyPackage> {
    let (packages, _) = engine.key_packages(1, false).ok()?;
    KeyPackageIn::tls_deserialize_exact(packages.first()?.as_slice())
        .ok()?
        .validate(engine.provider.crypto(), ProtocolVersion::Mls10)
        .ok()
}

impl Household {
    pub fn new() -> Household {
        set_test_kdf_params(Some(KdfParams::TEST_ONLY_FAST));
        let (alice_id, carol_id) = (Identity::generate(), Identity::generate());
        let alice = Engine::new(alice_id.mls_signer(), "alice");
        let carol = carol_id.mls_signer();
        let bob_profile = profile("bob");
        let info = |name: &str, key: AccountKey| AccountInfo {
            handle: handle(name),
            account: key,
            created: NOW,
            rotations: Vec::new(),
        };
        let directory = vec![
            info("alice", alice.account()),
            info("bob", bob_profile.account()),
            info("carol", account(carol.public())),
        ];
        let bob_account = bob_profile.account();
        let mut bob = Member::new(bob_profile, directory).expect("bob's client");

        // Alice makes the room and adds bob.
        let settings = RoomSettings::new("kitchen", alice.account());
        let mut group = MlsGroup::new_with_group_id(
            &alice.provider,
            &alice.signer,
            &create_config(&settings).expect("a room config"),
            GroupId::from_slice(&KITCHEN.0),
            alice.credential.clone(),
        )
        .expect("alice's group");
        let bob_key_package = key_package_of(&bob.engine()).expect("bob's key package");
        let invited = key_package_of(&bob.engine()).expect("bob's key package");
        let mut after = settings.clone();
        after
            .members
            .push(account(invited.leaf_node().signature_key().as_slice()));
        let bundle = group
            .commit_builder()
            .propose_adds([invited])
            .propose_group_context_extensions(after.extensions().expect("extensions"))
            .expect("a settings proposal")
            .load_psks(alice.provider.storage())
            .expect("no PSKs")
            .create_group_info_with_extensions([JoinPoint {
                seq: 0,
                hash: [0; 32],
            }
            .extension()])
            .expect("a join point")
            .build(
                alice.provider.rand(),
                alice.provider.crypto(),
                &alice.signer,
                |_| true,
            )
            .expect("the invitation commit")
            .stage_commit(&alice.provider)
            .expect("staged");
        let (commit, welcome, _) = bundle.into_messages();
        group
            .merge_pending_commit(&alice.provider)
            .expect("alice merges");
        let commit = commit.to_bytes().expect("a commit encodes");
        let welcome = welcome
            .expect("a Welcome")
            .to_bytes()
            .expect("a Welcome encodes");
        let mut transcript = Transcript::new();
        transcript.observe(Seq(1), EntryKind::Commit, &commit);

        // Bob takes the Welcome from his inbox, accepts, and reads the commit.
        let deposit = InboxEntry {
            id: 1,
            time: NOW,
            payload: InboxMessage::Welcome {
                room: KITCHEN,
                welcome,
                start_seq: Seq(2),
                transcript_hash: transcript.hash(),
                from: handle("alice"),
            }
            .encode(),
        };
        let deposit = InboxEntry {
            payload: hearth_core::sealed::seal(&alice_id, &bob_account, &deposit.payload)
                .expect("sealed to bob"),
            ..deposit
        };
        let (taken, _) = bob.take_inbox_entry(&deposit);
        assert_eq!(taken.expect("bob takes the Welcome"), None);
        let mut room = bob.take_room(KITCHEN).expect("bob's room");
        room.rec.status = hearth_core::client::room::Status::Joined;
        let cap = |engine: &Engine, group: &MlsGroup| engine.cap(group).expect("a cap").hash();
        let entry = Entry {
            seq: Seq(1),
            kind: EntryKind::Commit,
            time: NOW,
            payload: commit,
            next_cap_hash: Some(cap(&alice, &group)),
        };
        let (processed, _) = bob.process(&mut room, &entry);
        processed.expect("bob reads the invitation commit");
        assert_eq!(room.rec.transcript, transcript, "bob and alice agree");
        assert_eq!(room.group.epoch(), group.epoch(), "bob and alice agree");
        Household {
            bob,
            room,
            alice,
            group,
            transcript,
            carol,
            sealers: (alice_id, carol_id, bob_account),
            bob_key_package,
        }
    }

    /// The state at the start of an input.
    pub fn checkpoint(&self) -> Saved {
        Saved {
            bob: self.bob.engine().checkpoint(),
            alice: self.alice.checkpoint(),
            room: self.room.rec.clone(),
            transcript: self.transcript.clone(),
        }
    }

    /// Back to `saved`: both engines' storage, both groups, bob's room record. A side
    /// whose storage did not change keeps its group (loading one is the slow part).
    pub fn restore(&mut self, saved: Saved) {
        let bob_changed = self.bob.engine().checkpoint() != saved.bob;
        if bob_changed {
            let mut engine = self.bob.engine();
            engine.restore(saved.bob);
            self.room = Room::load(&engine, KITCHEN, saved.room)
                .expect("bob's room loads")
                .expect("bob's room is kept");
        } else {
            hearth_core::client::fuzzing::reset_room(&mut self.room, saved.room);
        }
        if self.alice.checkpoint() != saved.alice {
            self.alice.restore(saved.alice);
            self.group = self.alice.reload(&self.group).expect("alice's group loads");
        }
        self.group.set_aad(Vec::new());
        self.transcript = saved.transcript;
    }

    /// The capability hash of the epoch alice's pending commit leads to.
    pub fn next_cap_hash(&self) -> Option<hearth_protocol::CapHash> {
        let staged = self.group.pending_commit()?;
        Some(self.alice.next_cap(staged, &KITCHEN.0).ok()?.hash())
    }

    /// An entry of `kitchen` at the next seq.
    pub fn entry(
        &self,
        kind: EntryKind,
        payload: Vec<u8>,
        next_cap_hash: Option<hearth_protocol::CapHash>,
    ) -> Entry {
        Entry {
            seq: Seq(2),
            kind,
            time: NOW,
            payload,
            next_cap_hash,
        }
    }
}

/// Someone a message or a settings field names.
pub fn who(h: &Household, pick: u8) -> AccountKey {
    match pick % 5 {
        0 => h.alice.account(),
        1 => h.bob.account(),
        2 => account(h.carol.public()),
        3 => AccountKey([0; 32]),
        _ => AccountKey([pick; 32]),
    }
}

/// Whether to print what became of each input (`HEARTH_FUZZ_VERBOSE=1`), to see how deep
/// the inputs of a corpus reach: `cargo +nightly fuzz run <target> corpus/<target> --
/// -runs=0` with it set replays the corpus once.
pub fn verbose() -> bool {
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("HEARTH_FUZZ_VERBOSE").is_some_and(|v| v == "1"))
}

/// One line about an outcome: the error or `ok`, and the kinds of events.
pub fn outcome<T: std::fmt::Debug>(
    what: &str,
    result: &Result<T, hearth_core::ClientError>,
    events: &[hearth_core::ClientEvent],
) {
    let result = match result {
        Ok(value) => format!("ok {value:?}"),
        Err(e) => format!("error: {e}"),
    };
    let events: Vec<String> = events
        .iter()
        .map(|e| match e {
            hearth_core::ClientEvent::Rejected { reason, .. } => format!("Rejected: {reason}"),
            other => {
                let text = format!("{other:?}");
                text.split([' ', '(', '{']).next().unwrap_or("").to_string()
            }
        })
        .collect();
    eprintln!("{what}: {result} [{}]", events.join(", "));
}

/// Bytes changed after the sender signed: at `at` (modulo the length), `bytes` overwrite
/// what is there; or the message is cut there.
#[derive(Arbitrary, Debug)]
pub struct Tamper {
    at: u16,
    bytes: Vec<u8>,
    cut: bool,
}

impl Tamper {
    pub fn apply(&self, payload: &mut Vec<u8>) {
        if payload.is_empty() {
            return;
        }
        let at = usize::from(self.at) % payload.len();
        if self.cut {
            payload.truncate(at);
            return;
        }
        for (i, b) in self.bytes.iter().enumerate().take(payload.len() - at) {
            payload[at + i] = *b;
        }
    }
}

/// A handle an input picks (for a credential, a claimed sender, whose package is asked
/// for).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Name {
    Alice,
    Bob,
    Carol,
    Stranger,
}

impl Name {
    pub fn as_str(self) -> &'static str {
        match self {
            Name::Alice => "alice",
            Name::Bob => "bob",
            Name::Carol => "carol",
            Name::Stranger => "stranger",
        }
    }
}
