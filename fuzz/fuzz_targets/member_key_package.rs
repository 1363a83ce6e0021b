//! What an inviter does with the KeyPackage the relay hands out for someone: hearth's
//! own path (`fetch_key_package`: decode, openmls validation, the handle and key it must
//! name; the key against the pins; then the commit that adds it, with the policy check
//! of our own commits), run by bob, a real hearth client, in a room of his own (see
//! `household`). The relay's own check of published packages has its target
//! (`key_package`); this one is the member's side, which trusts the relay for nothing.
//!
//! The input is either the package's bytes, or a package built (and signed) with carol's
//! or alice's key under any credential, capabilities, extensions, lifetime and
//! last-resort mark, optionally tampered with after signing; and whose package bob asked
//! for. The relay answers with the directory's key for that handle. Every input starts
//! from the same state. Bob must refuse what is wrong and never panic.
#![no_main]

mod household;

use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use hearth_core::client::room::{Room, RoomRecord, Status};
use hearth_core::mls::config::capabilities;
use hearth_core::mls::{create_config, Engine, RoomSettings, CIPHERSUITE};
use hearth_core::transcript::Transcript;
use hearth_protocol::{AccountKey, RoomId};
use household::{copy, handle, Household, Name, Tamper};
use libfuzzer_sys::fuzz_target;
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;

/// Bob's own room.
const STUDY: RoomId = RoomId([0x53; 16]);

#[derive(Arbitrary, Debug)]
enum Credential {
    Named(Name),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Spec {
    credential: Credential,
    /// Signed with alice's key instead of carol's.
    alices_key: bool,
    last_resort: bool,
    /// Not before / not after, in days from now (the machine's clock).
    lifetime: Option<(i16, i16)>,
    extensions: Option<Vec<u16>>,
    proposals: Option<Vec<u16>>,
    credentials: Option<Vec<u16>>,
    package_extensions: Vec<(u16, Vec<u8>)>,
    leaf_extensions: Vec<(u16, Vec<u8>)>,
    tamper: Option<Tamper>,
}

#[derive(Arbitrary, Debug)]
enum Package {
    Raw(Vec<u8>),
    Built(Spec),
}

#[derive(Arbitrary, Debug)]
struct Input {
    asked: Name,
    package: Package,
}

/// The package the spec describes (`None`: openmls will not make it).
fn build(h: &Household, spec: &Spec) -> Option<Vec<u8>> {
    let keys = if spec.alices_key {
        copy(&h.alice.signer)
    } else {
        copy(&h.carol)
    };
    let identity = match &spec.credential {
        Credential::Named(name) => name.as_str().as_bytes().to_vec(),
        Credential::Raw(bytes) => bytes.clone(),
    };
    let engine = Engine::new(keys, "carol");
    let credential = CredentialWithKey {
        credential: BasicCredential::new(identity).into(),
        signature_key: engine.signer.public().into(),
    };
    let base = capabilities();
    let list = |types: &Option<Vec<u16>>| -> Option<Vec<ExtensionType>> {
        types
            .as_ref()
            .map(|t| t.iter().map(|&n| ExtensionType::from(n)).collect())
    };
    let extension_types = list(&spec.extensions);
    let proposal_types: Option<Vec<ProposalType>> = spec
        .proposals
        .as_ref()
        .map(|t| t.iter().map(|&n| ProposalType::from(n)).collect());
    let credential_types: Option<Vec<CredentialType>> = spec
        .credentials
        .as_ref()
        .map(|t| t.iter().map(|&n| CredentialType::from(n)).collect());
    let capabilities = Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        Some(extension_types.as_deref().unwrap_or(base.extensions())),
        proposal_types.as_deref(),
        credential_types.as_deref(),
    );
    let unknown = |list: &[(u16, Vec<u8>)]| -> Vec<Extension> {
        list.iter()
            .take(4)
            .map(|(kind, bytes)| Extension::Unknown(*kind, UnknownExtension(bytes.clone())))
            .collect()
    };
    let mut builder = KeyPackage::builder()
        .leaf_node_capabilities(capabilities)
        .key_package_extensions(Extensions::from_vec(unknown(&spec.package_extensions)).ok()?)
        .leaf_node_extensions(Extensions::from_vec(unknown(&spec.leaf_extensions)).ok()?);
    if let Some((from, to)) = spec.lifetime {
        // Relative to the real clock: openmls judges lifetimes by it.
        let now = hearth_core::history::secs_of(std::time::SystemTime::now()) as i64;
        let at = |days: i16| (now + i64::from(days) * 86_400).max(0) as u64;
        builder = builder.key_package_lifetime(Lifetime::init(at(from), at(to)));
    }
    if spec.last_resort {
        builder = builder.mark_as_last_resort();
    }
    let bundle = builder
        .build(CIPHERSUITE, &engine.provider, &engine.signer, credential)
        .ok()?;
    let mut bytes = bundle.key_package().tls_serialize_detached().ok()?;
    if let Some(tamper) = &spec.tamper {
        tamper.apply(&mut bytes);
    }
    Some(bytes)
}

/// The directory's key for `name` (what an honest relay sends with the package).
fn directory_key(h: &Household, name: Name) -> AccountKey {
    match name {
        Name::Alice => h.alice.account(),
        Name::Bob => h.bob.account(),
        Name::Carol => household::who(h, 2),
        Name::Stranger => AccountKey([0x99; 32]),
    }
}

struct State {
    h: Household,
    study: Room,
}

fn state() -> &'static Mutex<State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE.get_or_init(|| {
        let h = Household::new();
        let study = {
            let engine = h.bob.engine();
            let settings = RoomSettings::new("study", h.bob.account());
            MlsGroup::new_with_group_id(
                &engine.provider,
                &engine.signer,
                &create_config(&settings).expect("a room config"),
                GroupId::from_slice(&STUDY.0),
                engine.credential.clone(),
            )
            .expect("bob's group");
            let record = RoomRecord {
                version: 1,
                name: "study".into(),
                status: Status::Joined,
                transcript: Transcript::new(),
                inflight: None,
                extra: Default::default(),
            };
            Room::load(&engine, STUDY, record)
                .expect("bob's room loads")
                .expect("bob's room is there")
        };
        Mutex::new(State { h, study })
    })
}

fuzz_target!(|input: Input| {
    let mut guard = state().lock().unwrap_or_else(|p| p.into_inner());
    let State { h, study } = &mut *guard;
    let bytes = match &input.package {
        Package::Raw(bytes) => Some(bytes.clone()),
        Package::Built(spec) => build(h, spec),
    };
    let Some(bytes) = bytes else {
        return;
    };
    let checkpoint = h.bob.engine().checkpoint();
    let account = directory_key(h, input.asked);
    let result = h
        .bob
        .stage_invite(study, &handle(input.asked.as_str()), account, bytes);
    if household::verbose() {
        let kind = format!("{:?}", input.package)
            .split([' ', '{', '('])
            .next()
            .unwrap_or("")
            .to_string();
        household::outcome(&kind, &result, &[]);
    }
    let mut engine = h.bob.engine();
    engine.restore(checkpoint);
    *study = Room::load(&engine, STUDY, study.rec.clone())
        .expect("bob's room loads")
        .expect("bob's room is kept");
});
