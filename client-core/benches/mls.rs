//! MLS costs without network or store: encrypt/decrypt a 1 KiB message, a commit adding
//! 24 members, processing its Welcome, and a removal in a 25-member room.
//!
//! Run: `cargo bench -p hearth-core --bench mls`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use hearth_core::mls::{create_config, join_config, Engine, RoomSettings};
use hearth_core::Identity;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;

fn engine(name: &str) -> Engine {
    Engine::new(Identity::generate().mls_signer(), name)
}

fn new_group(owner: &Engine) -> MlsGroup {
    MlsGroup::new_with_group_id(
        &owner.provider,
        &owner.signer,
        &create_config(&RoomSettings::new("bench", owner.account())).unwrap(),
        GroupId::from_slice(&[7; 16]),
        owner.credential.clone(),
    )
    .unwrap()
}

fn key_package(member: &Engine) -> KeyPackage {
    let (packages, _) = member.key_packages(1, false).unwrap();
    KeyPackageIn::tls_deserialize_exact(packages[0].as_slice())
        .unwrap()
        .validate(member.provider.crypto(), ProtocolVersion::Mls10)
        .unwrap()
}

/// A group of `1 + others.len()` members; returns the owner's group and the Welcome.
fn populated(owner: &Engine, others: &[Engine]) -> (MlsGroup, MlsMessageOut) {
    let mut group = new_group(owner);
    let packages: Vec<_> = others.iter().map(key_package).collect();
    let (_, welcome, _) = group
        .add_members(&owner.provider, &owner.signer, &packages)
        .unwrap();
    group.merge_pending_commit(&owner.provider).unwrap();
    (group, welcome)
}

fn join(member: &Engine, welcome: &MlsMessageOut) -> MlsGroup {
    let bytes = welcome.tls_serialize_detached().unwrap();
    let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(bytes.as_slice())
        .unwrap()
        .extract()
    else {
        panic!("not a welcome")
    };
    StagedWelcome::new_from_welcome(&member.provider, &join_config(), welcome, None)
        .unwrap()
        .into_group(&member.provider)
        .unwrap()
}

fn messages(c: &mut Criterion) {
    let alice = engine("alice");
    let bob = engine("bob");
    let (mut sender, _) = populated(&alice, std::slice::from_ref(&bob));
    let body = vec![0x5a; 1024];

    c.bench_function("encrypt 1 KiB", |b| {
        b.iter(|| {
            sender
                .create_message(&alice.provider, &alice.signer, black_box(&body))
                .unwrap()
        })
    });
    // A fresh pair: the encryption bench moved the sender's ratchet far beyond what a
    // receiver accepts (1000 generations ahead).
    let (alice, bob) = (engine("alice"), engine("bob"));
    let (mut sender, welcome) = populated(&alice, std::slice::from_ref(&bob));
    let mut receiver = join(&bob, &welcome);
    c.bench_function("decrypt 1 KiB", |b| {
        b.iter_batched(
            || {
                let out = sender
                    .create_message(&alice.provider, &alice.signer, &body)
                    .unwrap();
                let bytes = out.tls_serialize_detached().unwrap();
                MlsMessageIn::tls_deserialize_exact(bytes.as_slice())
                    .unwrap()
                    .try_into_protocol_message()
                    .unwrap()
            },
            |message| receiver.process_message(&bob.provider, message).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

fn membership(c: &mut Criterion) {
    let mut group = c.benchmark_group("membership");
    group.sample_size(20);
    group.bench_function("commit adding 24 members", |b| {
        b.iter_batched(
            || {
                let owner = engine("owner");
                let others: Vec<_> = (0..24).map(|i| engine(&format!("m{i}"))).collect();
                let packages: Vec<_> = others.iter().map(key_package).collect();
                let group = new_group(&owner);
                (owner, group, packages)
            },
            |(owner, mut group, packages)| {
                group
                    .add_members(&owner.provider, &owner.signer, &packages)
                    .unwrap();
                (owner, group)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("process Welcome into a 25-member room", |b| {
        b.iter_batched(
            || {
                let owner = engine("owner");
                let others: Vec<_> = (0..24).map(|i| engine(&format!("m{i}"))).collect();
                let (_, welcome) = populated(&owner, &others);
                (others, welcome)
            },
            |(others, welcome)| join(&others[23], &welcome),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("remove 1 of 25 members (commit)", |b| {
        b.iter_batched(
            || {
                let owner = engine("owner");
                let others: Vec<_> = (0..24).map(|i| engine(&format!("m{i}"))).collect();
                let (group, _) = populated(&owner, &others);
                (owner, group)
            },
            |(owner, mut group)| {
                group
                    .remove_members(&owner.provider, &owner.signer, &[LeafNodeIndex::new(12)])
                    .unwrap();
                group.merge_pending_commit(&owner.provider).unwrap();
                (owner, group)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, messages, membership);
criterion_main!(benches);
