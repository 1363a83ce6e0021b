//! Snapshot tests of help output: `--help` must stay helpful, and changes are deliberate.
//!
//! Set `UPDATE_SNAPSHOTS=1` to rewrite the files in tests/snapshots after a deliberate change.

use std::path::PathBuf;
use std::process::Command;

fn check(name: &str, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .env("COLUMNS", "100")
        .output()
        .expect("hearth runs");
    assert!(out.status.success(), "{args:?} exits 0");
    let actual =
        String::from_utf8_lossy(&out.stdout).replace(env!("CARGO_PKG_VERSION"), "[VERSION]");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &actual).expect("snapshot written");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}: run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert_eq!(
        actual, expected,
        "help output of {args:?} changed; UPDATE_SNAPSHOTS=1 if deliberate"
    );
}

#[test]
fn top_level_help() {
    check("help", &["--help"]);
}

#[test]
fn room_help() {
    check("room-help", &["room", "--help"]);
}

#[test]
fn init_help() {
    check("init-help", &["init", "--help"]);
}

#[test]
fn version() {
    check("version", &["--version"]);
}

#[test]
fn usage_error_output() {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["send"])
        .output()
        .expect("hearth runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: the following required arguments were not provided:"),
        "{err}"
    );
    assert!(err.contains("Usage: hearth send"), "{err}");
}
