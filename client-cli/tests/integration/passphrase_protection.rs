//! A profile made with `HEARTH_TEST_FAST_KDF=1` (cheap Argon2id parameters for tests) is
//! never weak in silence: `init` says so while the switch is set, every unlock without it
//! warns (through the agent and without it), and `hearth passphrase` re-wraps the key
//! with production parameters, after which the warning is gone.

use crate::common;

use common::{assert_success, hearth, hearth_with, stderr, Env, PASSPHRASE};

const WEAK: &str = "test-only key derivation parameters";
const NEW_PASSPHRASE: &str = "a properly protected passphrase";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_made_with_test_kdf_parameters_warns_until_its_passphrase_is_changed() {
    let env = Env::start().await;
    let profile = env.profile("ada");
    let invite = env.invite().to_string();
    let out = hearth(&profile, &["init", "--invite", &invite, "--name", "ada"]).await;
    assert_success(&out, "init");
    assert!(
        stderr(&out).contains("HEARTH_TEST_FAST_KDF=1 is set"),
        "init warns while the switch is set: {}",
        stderr(&out)
    );

    // With the switch set, as every test runs, an unlock says nothing about it.
    let out = hearth(&profile, &["whoami"]).await;
    assert_success(&out, "whoami with the switch");
    assert!(!stderr(&out).contains(WEAK), "{}", stderr(&out));
    assert_success(&hearth(&profile, &["lock"]).await, "lock");

    // Without it: the agent that starts reports it to the command that started it...
    let unset = [("HEARTH_TEST_FAST_KDF", "0")];
    let out = hearth_with(
        &profile,
        &["whoami"],
        &[unset[0], ("HEARTH_PASSPHRASE", PASSPHRASE)],
    )
    .await;
    assert_success(&out, "whoami through a new agent");
    assert!(stderr(&out).contains(WEAK), "{}", stderr(&out));
    assert_success(&hearth(&profile, &["lock"]).await, "lock");
    // ...and so does a command that opens the profile itself.
    let out = hearth_with(
        &profile,
        &["whoami"],
        &[
            unset[0],
            ("HEARTH_PASSPHRASE", PASSPHRASE),
            ("HEARTH_NO_AGENT", "1"),
        ],
    )
    .await;
    assert_success(&out, "whoami without an agent");
    assert!(stderr(&out).contains(WEAK), "{}", stderr(&out));

    // Changing the passphrase without the switch protects it with production parameters.
    let out = hearth_with(
        &profile,
        &["passphrase"],
        &[
            unset[0],
            ("HEARTH_PASSPHRASE", PASSPHRASE),
            ("HEARTH_NEW_PASSPHRASE", NEW_PASSPHRASE),
            ("HEARTH_NO_AGENT", "1"),
        ],
    )
    .await;
    assert_success(&out, "passphrase");
    let after_change = stderr(&out)
        .split_once("Passphrase changed.")
        .map(|(_, after)| after.to_string())
        .unwrap_or_else(|| String::from_utf8_lossy(&out.stdout).into_owned());
    assert!(!after_change.contains(WEAK), "{}", stderr(&out));
    for no_agent in ["1", "0"] {
        let out = hearth_with(
            &profile,
            &["whoami"],
            &[
                unset[0],
                ("HEARTH_PASSPHRASE", NEW_PASSPHRASE),
                ("HEARTH_NO_AGENT", no_agent),
            ],
        )
        .await;
        assert_success(&out, "whoami after the change");
        assert!(
            !stderr(&out).contains(WEAK),
            "no warning once the passphrase is changed: {}",
            stderr(&out)
        );
    }
}
