//! How long unlocking a profile takes with the production Argon2id parameters
//! (`KdfParams::PRODUCTION`): this is the delay a person waits after typing the
//! passphrase. Run with `cargo bench -p hearth-core --bench unlock`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hearth_core::store::{set_test_kdf_params, KdfParams};
use hearth_core::Profile;
use hearth_protocol::Handle;

fn unlock(c: &mut Criterion) {
    // Production parameters even if the environment asks for fast test ones.
    set_test_kdf_params(Some(KdfParams::PRODUCTION));
    let tmp = tempfile::tempdir().expect("temp dir");
    let relay = "hearth://127.0.0.1:7443/#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        .parse()
        .expect("valid relay address");
    let handle = Handle::new("bench").expect("valid handle");
    drop(Profile::create(tmp.path(), "a passphrase", handle, relay).expect("create profile"));

    let mut group = c.benchmark_group("unlock");
    group.sample_size(10);
    group.bench_function("profile_open_production_kdf", |b| {
        b.iter(|| black_box(Profile::open(tmp.path(), "a passphrase").expect("open")))
    });
    group.finish();
}

criterion_group!(benches, unlock);
criterion_main!(benches);
