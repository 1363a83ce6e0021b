//! The README's main job, `hearth demo`, runs end to end: a real relay, three people,
//! a removal, and a search of the relay's files that finds no plaintext.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_end_to_end_and_the_relay_holds_no_plaintext() {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("demo")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the demo finishes within two minutes")
    .expect("hearth runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "carol  says: Count me in.",
        "her history ends before the surprise message",
        "you were removed from Home sweet home",
        "none found. The relay holds only ciphertext",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
}
