//! What a member does with the GroupInfo a public room's listing holds (published by any
//! member of the room, so by anyone registered) when joining it: hearth's own path
//! (`try_join_public`: the MLS message, the room it names, the join point signed into it,
//! the external commit openmls builds from it, the identity check of everyone in its
//! tree, bans and the room's policy), run by bob, a real hearth client (see `household`).
//! The stand-in relay then refuses the join, so every input ends there.
//!
//! The input is either the GroupInfo bytes, or a room that alice (or carol's key under a
//! name the input picks) makes with any settings, group-context extensions and extra
//! member, then publishes with any join point; optionally tampered with after signing.
//! Every input starts from the same state. Bob must refuse what is wrong and never panic.
#![no_main]

mod household;

use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use hearth_core::mls::config::capabilities;
use hearth_core::mls::join_point::{JoinPoint, JOIN_POINT_EXTENSION};
use hearth_core::mls::{
    BannedIdentity, Engine, RoomSettings, CIPHERSUITE, ROOM_SETTINGS_EXTENSION,
};
use hearth_protocol::RoomId;
use household::{copy, handle, key_package_of, Household, Name, Tamper};
use libfuzzer_sys::fuzz_target;
use openmls::prelude::*;

/// The public room.
const SQUARE: RoomId = RoomId([0x71; 16]);

#[derive(Arbitrary, Debug)]
enum Settings {
    /// A public room's settings by the publisher, edited.
    Typed {
        name: String,
        public_name: Option<String>,
        topic: String,
        members: Vec<u8>,
        admins: Vec<u8>,
        bob_banned: bool,
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
struct Listing {
    /// The publisher: alice, or carol's key under this name.
    carol_as: Option<Name>,
    settings: Settings,
    drop_required: bool,
    extra: Option<(u16, Vec<u8>)>,
    /// A member added before publishing: carol's key under this name.
    also: Option<Name>,
    point: Point,
    /// The listing is under another room id than the GroupInfo's group.
    other_room: bool,
    epoch: u64,
    tamper: Option<Tamper>,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Raw { group_info: Vec<u8>, epoch: u64 },
    Built(Listing),
}

/// The GroupInfo the listing describes (`None`: openmls will not make it).
fn publish(h: &Household, listing: &Listing) -> Option<Vec<u8>> {
    let carol;
    let publisher = match listing.carol_as {
        Some(name) => {
            carol = Engine::new(copy(&h.carol), name.as_str());
            &carol
        }
        None => &h.alice,
    };
    let who = |pick: u8| household::who(h, pick);
    let settings = match &listing.settings {
        Settings::Typed {
            name,
            public_name,
            topic,
            members,
            admins,
            bob_banned,
            direct,
        } => {
            let mut s = RoomSettings::new(name, publisher.account());
            s.public_name = public_name.clone();
            s.topic = topic.clone();
            s.members.extend(members.iter().map(|&p| who(p)));
            s.admins = admins.iter().map(|&p| who(p)).collect();
            if *bob_banned {
                s.banned.push(BannedIdentity {
                    account: h.bob.account(),
                    handle: handle("bob"),
                });
            }
            s.direct = *direct;
            Some(s.encode())
        }
        Settings::Raw(bytes) => Some(bytes.clone()),
        Settings::Missing => None,
    };
    let mut extensions = Vec::new();
    if !listing.drop_required {
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
    if let Some((kind, bytes)) = &listing.extra {
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
        &publisher.provider,
        &publisher.signer,
        &config,
        GroupId::from_slice(&SQUARE.0),
        publisher.credential.clone(),
    )
    .ok()?;
    if let Some(name) = listing.also {
        let package = key_package_of(&Engine::new(copy(&h.carol), name.as_str()))?;
        group
            .commit_builder()
            .propose_adds([package])
            .load_psks(publisher.provider.storage())
            .ok()?
            .build(
                publisher.provider.rand(),
                publisher.provider.crypto(),
                &publisher.signer,
                |_| true,
            )
            .ok()?
            .stage_commit(&publisher.provider)
            .ok()?;
        group.merge_pending_commit(&publisher.provider).ok()?;
    }
    let point = match &listing.point {
        Point::None => Vec::new(),
        Point::Typed { seq, hash } => vec![JoinPoint {
            seq: *seq,
            hash: *hash,
        }
        .extension()],
        Point::Raw(bytes) => vec![Extension::Unknown(
            JOIN_POINT_EXTENSION,
            UnknownExtension(bytes.clone()),
        )],
    };
    let mut bytes = group
        .export_group_info_with_additional_extensions(
            publisher.provider.crypto(),
            &publisher.signer,
            true,
            point,
        )
        .ok()?
        .to_bytes()
        .ok()?;
    if let Some(tamper) = &listing.tamper {
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
    let listed = match &input {
        Input::Raw { group_info, epoch } => Some((SQUARE, group_info.clone(), *epoch)),
        Input::Built(listing) => publish(h, listing).map(|group_info| {
            let room = if listing.other_room {
                RoomId([0x72; 16])
            } else {
                SQUARE
            };
            (room, group_info, listing.epoch)
        }),
    };
    if let Some((room, group_info, epoch)) = listed {
        let (result, events) = h.bob.join_public(room, group_info, epoch);
        if household::verbose() {
            let kind = format!("{:?}", input)
                .split([' ', '{', '('])
                .next()
                .unwrap_or("")
                .to_string();
            household::outcome(&kind, &result, &events);
        }
    }
    h.restore(saved);
});
