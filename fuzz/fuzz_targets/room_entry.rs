//! What a member does with a room log entry another member wrote: hearth's own parse and
//! process path (`process_entry`: transcript, MLS framing, openmls decryption and
//! verification, content decoding, marks, identity checks, the policy check of commits,
//! merging), run by bob, a real hearth client, in a room alice made (see `household`).
//!
//! The input is either the payload as the relay pushes it (any bytes), or a message
//! alice builds with openmls as a modified client could: an application message with any
//! plaintext, typed content, a standalone proposal, or a commit with any settings,
//! extensions, adds, removes and authenticated data, optionally tampered with after
//! signing. Every input starts from the same state. Bob must refuse what is wrong and
//! never panic; a refused commit must leave his group where it was.
#![no_main]

mod household;

use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use hearth_core::content::{Body, Content, RoomEvent};
use hearth_core::mls::BannedIdentity;
use hearth_core::mls::{Engine, RoomSettings, ROOM_SETTINGS_EXTENSION};
use hearth_core::ClientEvent;
use hearth_protocol::{CapHash, EntryKind, RoomId, Seq};
use household::{copy, handle, key_package_of, who, Household, Tamper};
use libfuzzer_sys::fuzz_target;
use openmls::prelude::*;

/// The transcript mark a content or a commit carries.
#[derive(Arbitrary, Debug)]
enum Mark {
    /// Alice's real one.
    Ours,
    /// Any.
    Any(u64, [u8; 32]),
}

/// What alice says, typed.
#[derive(Arbitrary, Debug)]
enum Said {
    Text { text: String, reply_to: Option<u64> },
    Edit { target: u64, text: String },
    Delete { target: u64 },
    Receipt { up_to: u64 },
    Presence { online: bool },
    Leaving,
    Rebuilt { room: [u8; 16] },
    Profile { display_name: String },
    Head,
    React { target: u64, emoji: String },
}

/// A settings field as alice edits it.
#[derive(Arbitrary, Debug)]
struct SettingsEdit {
    name: Option<String>,
    topic: Option<String>,
    owner: Option<u8>,
    admins: Option<Vec<u8>>,
    members: Option<Vec<u8>>,
    banned: Option<Vec<(u8, bool)>>,
    expire_secs: Option<Option<u64>>,
    public_name: Option<Option<String>>,
    direct: Option<bool>,
}

/// The room settings in the group context after alice's change.
#[derive(Arbitrary, Debug)]
enum Settings {
    Edited(SettingsEdit),
    Raw(Vec<u8>),
    Missing,
}

/// Whose KeyPackage alice adds: carol's key under a handle.
#[derive(Arbitrary, Debug)]
enum Added {
    Carol,
    /// Carol's key under bob's handle (an impostor).
    AsBob,
    /// Carol's key under alice's handle.
    AsAlice,
    /// Carol's key under a handle nobody registered.
    Stranger,
    /// Carol's key under a credential that is no handle.
    Garbage(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Proposal {
    Leave,
    RemoveBob,
    Add(Added),
    Settings(Settings),
    SelfUpdate,
}

#[derive(Arbitrary, Debug)]
enum Cap {
    /// What the commit exports (an honest committer).
    Exported,
    None,
    Other([u8; 32]),
}

#[derive(Arbitrary, Debug)]
struct Commit {
    settings: Option<Settings>,
    /// Drop the RequiredCapabilities extension (with a settings change).
    drop_required: bool,
    /// One more group-context extension (with a settings change).
    extra: Option<(u16, Vec<u8>)>,
    remove_bob: bool,
    add: Option<Added>,
    force_path: bool,
    aad: Option<Mark>,
    raw_aad: Option<Vec<u8>>,
    cap: Cap,
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any bytes, logged as a commit or a message.
    Raw {
        commit: bool,
        payload: Vec<u8>,
        next_cap_hash: Option<[u8; 32]>,
    },
    /// An application message with any plaintext and authenticated data.
    Application {
        plaintext: Vec<u8>,
        aad: Vec<u8>,
        as_commit: bool,
        tamper: Option<Tamper>,
    },
    /// An application message with typed content.
    Content {
        said: Said,
        mark: Mark,
        as_commit: bool,
    },
    Proposal {
        proposal: Proposal,
        as_commit: bool,
        tamper: Option<Tamper>,
    },
    Commit {
        commit: Commit,
        as_message: bool,
        tamper: Option<Tamper>,
    },
}

fn mark(h: &Household, mark: &Mark) -> (Seq, [u8; 32]) {
    match mark {
        Mark::Ours => h.transcript.mark(),
        Mark::Any(seq, hash) => (Seq(*seq), *hash),
    }
}

fn body(said: &Said) -> Body {
    match said {
        Said::Text { text, reply_to } => Body::Text {
            text: text.clone(),
            reply_to: reply_to.map(Seq),
        },
        Said::Edit { target, text } => Body::Edit {
            target: Seq(*target),
            text: text.clone(),
        },
        Said::Delete { target } => Body::Delete {
            target: Seq(*target),
        },
        Said::Receipt { up_to } => Body::Receipt { up_to: Seq(*up_to) },
        Said::Presence { online } => Body::Presence { online: *online },
        Said::Leaving => Body::RoomEvent(RoomEvent::Leaving),
        Said::Rebuilt { room } => Body::RoomEvent(RoomEvent::Rebuilt {
            room: RoomId(*room),
        }),
        Said::Profile { display_name } => Body::Profile {
            display_name: display_name.clone(),
        },
        Said::Head => Body::Head,
        Said::React { target, emoji } => Body::React {
            target: Seq(*target),
            emoji: emoji.clone(),
        },
    }
}

/// The group-context extensions of a settings change (`None`: alice cannot express it).
fn extensions(
    h: &Household,
    settings: &Settings,
    drop_required: bool,
    extra: &Option<(u16, Vec<u8>)>,
) -> Option<Extensions<GroupContext>> {
    let before = RoomSettings::read(h.group.extensions()).ok()?;
    let bytes = match settings {
        Settings::Edited(edit) => {
            let mut after = before.clone();
            if let Some(name) = &edit.name {
                after.name = name.clone();
            }
            if let Some(topic) = &edit.topic {
                after.topic = topic.clone();
            }
            if let Some(owner) = edit.owner {
                after.owner = who(h, owner);
            }
            if let Some(admins) = &edit.admins {
                after.admins = admins.iter().map(|&p| who(h, p)).collect();
            }
            if let Some(members) = &edit.members {
                after.members = members.iter().map(|&p| who(h, p)).collect();
            }
            if let Some(banned) = &edit.banned {
                after.banned = banned
                    .iter()
                    .map(|&(p, bob)| BannedIdentity {
                        account: who(h, p),
                        handle: handle(if bob { "bob" } else { "carol" }),
                    })
                    .collect();
            }
            if let Some(expire) = edit.expire_secs {
                after.expire_secs = expire;
            }
            if let Some(public) = &edit.public_name {
                after.public_name = public.clone();
            }
            if let Some(direct) = edit.direct {
                after.direct = direct;
            }
            Some(after.encode())
        }
        Settings::Raw(bytes) => Some(bytes.clone()),
        Settings::Missing => None,
    };
    let mut list = Vec::new();
    if !drop_required {
        list.push(Extension::RequiredCapabilities(
            RequiredCapabilitiesExtension::new(
                &[ExtensionType::Unknown(ROOM_SETTINGS_EXTENSION)],
                &[],
                &[],
            ),
        ));
    }
    if let Some(bytes) = bytes {
        list.push(Extension::Unknown(
            ROOM_SETTINGS_EXTENSION,
            UnknownExtension(bytes),
        ));
    }
    if let Some((kind, bytes)) = extra {
        list.push(Extension::Unknown(*kind, UnknownExtension(bytes.clone())));
    }
    Extensions::from_vec(list).ok()
}

/// A KeyPackage with carol's key under the credential `added` names.
fn added_key_package(h: &Household, added: &Added) -> Option<KeyPackage> {
    let identity: Vec<u8> = match added {
        Added::Carol => b"carol".to_vec(),
        Added::AsBob => b"bob".to_vec(),
        Added::AsAlice => b"alice".to_vec(),
        Added::Stranger => b"stranger".to_vec(),
        Added::Garbage(bytes) => bytes.clone(),
    };
    let mut engine = Engine::new(copy(&h.carol), "carol");
    engine.credential.credential = BasicCredential::new(identity).into();
    key_package_of(&engine)
}

/// Builds what the input says alice sends; `None` when openmls will not build it.
fn build(h: &mut Household, input: &Input) -> Option<hearth_protocol::Entry> {
    let alice = &h.alice;
    let (kind, mut payload, next_cap_hash, tamper) = match input {
        Input::Raw {
            commit,
            payload,
            next_cap_hash,
        } => {
            let kind = if *commit {
                EntryKind::Commit
            } else {
                EntryKind::Message
            };
            return Some(h.entry(kind, payload.clone(), next_cap_hash.map(CapHash)));
        }
        Input::Application {
            plaintext,
            aad,
            as_commit,
            tamper,
        } => {
            h.group.set_aad(aad.clone());
            let message = h
                .group
                .create_message(&alice.provider, &alice.signer, plaintext)
                .ok()?;
            let kind = if *as_commit {
                EntryKind::Commit
            } else {
                EntryKind::Message
            };
            (kind, message.to_bytes().ok()?, None, tamper.as_ref())
        }
        Input::Content {
            said,
            mark: m,
            as_commit,
        } => {
            let content = Content::v1(body(said), mark(h, m));
            let message = h
                .group
                .create_message(&alice.provider, &alice.signer, &content.encode())
                .ok()?;
            let kind = if *as_commit {
                EntryKind::Commit
            } else {
                EntryKind::Message
            };
            (kind, message.to_bytes().ok()?, None, None)
        }
        Input::Proposal {
            proposal,
            as_commit,
            tamper,
        } => {
            let message = match proposal {
                Proposal::Leave => h.group.leave_group(&alice.provider, &alice.signer).ok()?,
                Proposal::RemoveBob => {
                    h.group
                        .propose_remove_member(
                            &alice.provider,
                            &alice.signer,
                            LeafNodeIndex::new(1),
                        )
                        .ok()?
                        .0
                }
                Proposal::Add(added) => {
                    let package = added_key_package(h, added)?;
                    h.group
                        .propose_add_member(&h.alice.provider, &h.alice.signer, &package)
                        .ok()?
                        .0
                }
                Proposal::Settings(settings) => {
                    let extensions = extensions(h, settings, false, &None)?;
                    h.group
                        .propose_group_context_extensions(
                            &h.alice.provider,
                            extensions,
                            &h.alice.signer,
                        )
                        .ok()?
                        .0
                }
                Proposal::SelfUpdate => {
                    h.group
                        .propose_self_update(
                            &alice.provider,
                            &alice.signer,
                            LeafNodeParameters::default(),
                        )
                        .ok()?
                        .0
                }
            };
            let kind = if *as_commit {
                EntryKind::Commit
            } else {
                EntryKind::Message
            };
            (kind, message.to_bytes().ok()?, None, tamper.as_ref())
        }
        Input::Commit {
            commit,
            as_message,
            tamper,
        } => {
            let aad = match (&commit.aad, &commit.raw_aad) {
                (_, Some(raw)) => raw.clone(),
                (Some(m), None) => hearth_core::transcript::encode_mark(mark(h, m)),
                (None, None) => Vec::new(),
            };
            let extensions = match &commit.settings {
                Some(settings) => Some(extensions(
                    h,
                    settings,
                    commit.drop_required,
                    &commit.extra,
                )?),
                None => None,
            };
            let added = match &commit.add {
                Some(added) => Some(added_key_package(h, added)?),
                None => None,
            };
            h.group.set_aad(aad);
            let alice = &h.alice;
            let mut builder = h
                .group
                .commit_builder()
                .consume_proposal_store(false)
                .force_self_update(commit.force_path)
                .propose_adds(added)
                .propose_removals(commit.remove_bob.then(|| LeafNodeIndex::new(1)));
            if let Some(extensions) = extensions {
                builder = builder.propose_group_context_extensions(extensions).ok()?;
            }
            let bundle = builder
                .load_psks(alice.provider.storage())
                .ok()?
                .build(
                    alice.provider.rand(),
                    alice.provider.crypto(),
                    &alice.signer,
                    |_| true,
                )
                .ok()?
                .stage_commit(&alice.provider)
                .ok()?;
            let (message, _, _) = bundle.into_messages();
            let next_cap_hash = match &commit.cap {
                Cap::Exported => h.next_cap_hash(),
                Cap::None => None,
                Cap::Other(bytes) => Some(CapHash(*bytes)),
            };
            let kind = if *as_message {
                EntryKind::Message
            } else {
                EntryKind::Commit
            };
            (
                kind,
                message.to_bytes().ok()?,
                next_cap_hash,
                tamper.as_ref(),
            )
        }
    };
    if let Some(tamper) = tamper {
        tamper.apply(&mut payload);
    }
    Some(h.entry(kind, payload, next_cap_hash))
}

fn household() -> &'static Mutex<Household> {
    static HOUSEHOLD: OnceLock<Mutex<Household>> = OnceLock::new();
    HOUSEHOLD.get_or_init(|| Mutex::new(Household::new()))
}

fuzz_target!(|input: Input| {
    let mut guard = household().lock().unwrap_or_else(|p| p.into_inner());
    let h = &mut *guard;
    let saved = h.checkpoint();
    if let Some(entry) = build(h, &input) {
        let epoch = h.room.group.epoch();
        let (result, events) = h.bob.process(&mut h.room, &entry);
        if household::verbose() {
            let kind = format!("{:?}", input)
                .split([' ', '{', '('])
                .next()
                .unwrap_or("")
                .to_string();
            household::outcome(&kind, &result, &events);
        }
        let rejected = result.is_err()
            || events
                .iter()
                .any(|e| matches!(e, ClientEvent::Rejected { .. }));
        if rejected {
            assert_eq!(
                h.room.group.epoch(),
                epoch,
                "a rejected entry moved bob's group on"
            );
        }
    }
    h.restore(saved);
});
