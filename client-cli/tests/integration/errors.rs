//! Bad input: each case is a one-line error on stderr and the right exit code.

use crate::common;

use common::{hearth, hearth_with, stderr, Env, PASSPHRASE};
use hearth_protocol::{Invite, Pin, RelayAddress};

fn error_lines(out: &std::process::Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_string)
        .collect()
}

fn assert_failure(out: &std::process::Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {err}");
    assert!(
        err.contains(needle),
        "stderr should mention {needle:?}: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "no panic: {err}"
    );
}

#[tokio::test]
async fn usage_errors_exit_with_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let profile = dir.path().join("p");
    assert_failure(
        &hearth(&profile, &["frobnicate"]).await,
        2,
        "unrecognized subcommand",
    );
    assert_failure(&hearth(&profile, &["send", "family"]).await, 2, "required");
    assert_failure(
        &hearth(&profile, &["init", "--name", "x"]).await,
        2,
        "--invite",
    );
    let out = hearth(
        &profile,
        &["init", "--invite", "not-an-invite", "--name", "alice"],
    )
    .await;
    assert_failure(&out, 2, "hearth://");
    assert_eq!(error_lines(&out).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_room_nick_and_missing_profile() {
    let env = Env::start().await;
    let missing = env.profile("nobody");
    let out = hearth(&missing, &["whoami"]).await;
    assert_failure(&out, 1, "hearth init");

    let alice = env.init("alice").await;
    let out = hearth(&alice, &["send", "nowhere", "hi"]).await;
    assert_failure(&out, 1, "no room called \"nowhere\"");
    assert_eq!(error_lines(&out).len(), 1, "{}", stderr(&out));

    assert!(hearth(&alice, &["room", "create", "family"])
        .await
        .status
        .success());
    let out = hearth(&alice, &["room", "invite", "family", "zed"]).await;
    assert_failure(&out, 1, "zed");
    let out = hearth(&alice, &["room", "invite", "family", "Not A Handle"]).await;
    assert_failure(&out, 2, "invalid handle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_is_refused() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let out = hearth_with(
        &alice,
        &["whoami"],
        &[("HEARTH_PASSPHRASE", "not the passphrase")],
    )
    .await;
    assert_failure(&out, 1, "wrong passphrase");
    // The right one still works: nothing was damaged.
    let out = hearth_with(&alice, &["whoami"], &[("HEARTH_PASSPHRASE", PASSPHRASE)]).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_relay_and_wrong_pin() {
    let env = Env::start().await;
    let real = env.invite();

    // Nothing listens on this port.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let closed_port = socket.local_addr().expect("addr").port();
    drop(socket);
    let unreachable = Invite {
        relay: RelayAddress {
            host: "127.0.0.1".into(),
            port: closed_port,
            pin: real.relay.pin,
        },
        token: real.token.clone(),
    };
    let profile = env.profile("u");
    let out = hearth(
        &profile,
        &[
            "init",
            "--invite",
            &unreachable.to_string(),
            "--name",
            "alice",
        ],
    )
    .await;
    assert_failure(&out, 1, "127.0.0.1");
    assert!(!profile.exists(), "a failed init leaves no profile behind");

    // The real relay, but a different pin: someone in the middle, or a reinstalled relay.
    let wrong_pin = Invite {
        relay: RelayAddress {
            pin: Pin([7; 32]),
            ..real.relay.clone()
        },
        token: real.token.clone(),
    };
    let profile = env.profile("w");
    let out = hearth(
        &profile,
        &[
            "init",
            "--invite",
            &wrong_pin.to_string(),
            "--name",
            "alice",
        ],
    )
    .await;
    assert_failure(&out, 1, "identity changed");
    assert_eq!(error_lines(&out).len(), 1, "{}", stderr(&out));
}
