//! What a member does with an invitation another member deposited in its inbox: hearth's
//! own path (`take_inbox_entry`: the inbox message, the MLS Welcome, openmls joining, the
//! join point the inviter signed into the GroupInfo, the identity checks of everyone in
//! the tree, the room settings, pins), run by bob, a real hearth client (see `household`).
//!
//! The input is either the inbox payload as any account may deposit it (any bytes, or an
//! invitation with any Welcome bytes), or a room that alice (or carol's key under a name
//! the input picks) makes with any settings, group-context extensions, join point and
//! extra member, then invites bob into; optionally tampered with after signing. Every
//! input starts from the same state. Bob must refuse what is wrong and never panic.
#![no_main]

mod household;

use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use hearth_core::content::InboxMessage;
use hearth_core::Identity;
use hearth_core::mls::config::capabilities;
use hearth_core::mls::join_point::{JoinPoint, JOIN_POINT_EXTENSION};
use hearth_core::mls::{Engine, RoomSettings, CIPHERSUITE, ROOM_SETTINGS_EXTENSION};
use hearth_protocol::{InboxEntry, RoomId, Seq};
use household::{copy, handle, key_package_of, Household, Name, Tamper, NOW};
use libfuzzer_sys::fuzz_target;
use openmls::prelude::*;

/// The room of the invitations.
const PORCH: RoomId = RoomId([0x50; 16]);

#[derive(Arbitrary, Debug)]
enum Settings {
    /// A new room's settings by the inviter, edited.
    Typed {
        name: String,
        topic: String,
        owner_is_bob: bool,
        members: Vec<u8>,
        admins: Vec<u8>,
        expire_secs: Option<u64>,
        public_name: Option<String>,
        direct: bool,
    },
    Raw(Vec<u8>),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum Point {
    None,
    Typed { seq: u64, hash: [u8; 32] },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Invitation {
    /// The inviter: alice, or carol's key under this name.
    carol_as: Option<Name>,
    settings: Settings,
    drop_required: bool,
    extra: Option<(u16, Vec<u8>)>,
    point: Point,
    /// Another member added with bob: carol's key under this name.
    also: Option<Name>,
    /// Who the inbox message says invited.
    from: Name,
    /// The inbox message names another room than the Welcome's.
    other_room: bool,
    start_seq: u64,
    transcript_hash: [u8; 32],
    tamper: Option<Tamper>,
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any inbox payload.
    Raw(Vec<u8>),
    /// An invitation with any Welcome bytes.
    RawWelcome {
        welcome: Vec<u8>,
        from: Name,
        start_seq: u64,
    },
    Built(Invitation),
}

/// Carol's key under `name`.
fn carol_as(h: &Household, name: Name) -> Engine {
    Engine::new(copy(&h.carol), name.as_str())
}

/// The invitation as bob's inbox holds it: sealed to bob by `sealer` (who really deposits
/// it, whatever `from` claims).
fn deposit(
    h: &Household,
    sealer: &Identity,
    room: RoomId,
    welcome: Vec<u8>,
    from: Name,
    start_seq: u64,
    hash: [u8; 32],
) -> InboxEntry {
    let message = InboxMessage::Welcome {
        room,
        welcome,
        start_seq: Seq(start_seq),
        transcript_hash: hash,
        from: handle(from.as_str()),
    }
    .encode();
    InboxEntry {
        id: 7,
        time: NOW,
        payload: hearth_core::sealed::seal(sealer, &h.sealers.2, &message).unwrap_or(message),
    }
}

/// The Welcome the invitation describes (`None`: openmls will not make it).
fn invite(h: &Household, invitation: &Invitation) -> Option<Vec<u8>> {
    let carol;
    let inviter = match invitation.carol_as {
        Some(name) => {
            carol = carol_as(h, name);
            &carol
        }
        None => &h.alice,
    };
    let who = |pick: u8| household::who(h, pick);
    let settings = match &invitation.settings {
        Settings::Typed {
            name,
            topic,
            owner_is_bob,
            members,
            admins,
            expire_secs,
            public_name,
            direct,
        } => {
            let mut s = RoomSettings::new(name, inviter.account());
            if *owner_is_bob {
                s.owner = h.bob.account();
            }
            s.topic = topic.clone();
            s.members = members.iter().map(|&p| who(p)).collect();
            s.admins = admins.iter().map(|&p| who(p)).collect();
            s.expire_secs = *expire_secs;
            s.public_name = public_name.clone();
            s.direct = *direct;
            Some(s.encode())
        }
        Settings::Raw(bytes) => Some(bytes.clone()),
        Settings::Missing => None,
    };
    let mut extensions = Vec::new();
    if !invitation.drop_required {
        extensions.push(Extension::RequiredCapabilities(
            RequiredCapabilitiesExtension::new(
                &[ExtensionType::Unknown(ROOM_SETTINGS_EXTENSION)],
                &[],
                &[],
            ),
        ));
    }
    if let Some(bytes) = settings {
        extensions.push(Extension::Unknown(
            ROOM_SETTINGS_EXTENSION,
            UnknownExtension(bytes),
        ));
    }
    if let Some((kind, bytes)) = &invitation.extra {
        extensions.push(Extension::Unknown(*kind, UnknownExtension(bytes.clone())));
    }
    // hearth's room configuration (`create_config`), with these extensions.
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(32, 1000))
        .max_past_epochs(3)
        .capabilities(capabilities())
        .with_group_context_extensions(Extensions::from_vec(extensions).ok()?)
        .build();
    let mut group = MlsGroup::new_with_group_id(
        &inviter.provider,
        &inviter.signer,
        &config,
        GroupId::from_slice(&PORCH.0),
        inviter.credential.clone(),
    )
    .ok()?;
    let mut adds = vec![h.bob_key_package.clone()];
    if let Some(name) = invitation.also {
        adds.push(key_package_of(&carol_as(h, name))?);
    }
    let point = match &invitation.point {
        Point::None => None,
        Point::Typed { seq, hash } => Some(
            JoinPoint {
                seq: *seq,
                hash: *hash,
            }
            .extension(),
        ),
        Point::Raw(bytes) => Some(Extension::Unknown(
            JOIN_POINT_EXTENSION,
            UnknownExtension(bytes.clone()),
        )),
    };
    let mut builder = group
        .commit_builder()
        .propose_adds(adds)
        .load_psks(inviter.provider.storage())
        .ok()?;
    if let Some(point) = point {
        builder = builder.create_group_info_with_extensions([point]).ok()?;
    }
    let bundle = builder
        .build(
            inviter.provider.rand(),
            inviter.provider.crypto(),
            &inviter.signer,
            |_| true,
        )
        .ok()?
        .stage_commit(&inviter.provider)
        .ok()?;
    let (_, welcome, _) = bundle.into_messages();
    let mut bytes = welcome?.to_bytes().ok()?;
    if let Some(tamper) = &invitation.tamper {
        tamper.apply(&mut bytes);
    }
    Some(bytes)
}

fn household() -> &'static Mutex<Household> {
    static HOUSEHOLD: OnceLock<Mutex<Household>> = OnceLock::new();
    HOUSEHOLD.get_or_init(|| Mutex::new(Household::new()))
}

fuzz_target!(|input: Input| {
    let mut guard = household().lock().unwrap_or_else(|p| p.into_inner());
    let h = &mut *guard;
    let saved = h.checkpoint();
    let entry = match &input {
        // Any bytes, sealed by a real account (the seal itself is `sealed_inbox`'s).
        Input::Raw(payload) => Some(InboxEntry {
            id: 7,
            time: NOW,
            payload: hearth_core::sealed::seal(&h.sealers.0, &h.sealers.2, payload)
                .unwrap_or_else(|_| payload.clone()),
        }),
        Input::RawWelcome {
            welcome,
            from,
            start_seq,
        } => Some(deposit(
            h,
            &h.sealers.0,
            PORCH,
            welcome.clone(),
            *from,
            *start_seq,
            [0; 32],
        )),
        Input::Built(invitation) => invite(h, invitation).map(|welcome| {
            let room = if invitation.other_room {
                RoomId([0x51; 16])
            } else {
                PORCH
            };
            let sealer = match invitation.carol_as {
                Some(_) => &h.sealers.1,
                None => &h.sealers.0,
            };
            deposit(
                h,
                sealer,
                room,
                welcome,
                invitation.from,
                invitation.start_seq,
                invitation.transcript_hash,
            )
        }),
    };
    if let Some(entry) = entry {
        let (result, events) = h.bob.take_inbox_entry(&entry);
        if household::verbose() {
            let kind = format!("{:?}", input)
                .split([' ', '{', '('])
                .next()
                .unwrap_or("")
                .to_string();
            household::outcome(&kind, &result, &events);
        }
        for room in [PORCH, RoomId([0x51; 16])] {
            drop(h.bob.take_room(room));
        }
    }
    h.restore(saved);
});
