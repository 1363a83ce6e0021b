//! The real relay binary as a child process, for tests that kill and restart it.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hearth_protocol::{Invite, RelayAddress};

/// The relay binary the workspace build put beside this test's executable.
pub fn relay_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows where it runs from");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let binary = dir.join("hearth-relay");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace (cargo nextest run --workspace)",
        binary.display()
    );
    binary
}

/// Starts the relay binary on `listen` with its data in `data`; returns the process, its
/// address and the first invite it printed (if it printed one).
pub fn spawn_relay(data: &Path, listen: &str) -> (Child, RelayAddress, Option<Invite>) {
    let mut child = Command::new(relay_binary())
        .args(["--listen", listen, "--data"])
        .arg(data)
        .env_remove("HEARTH_RELAY_PUBLIC_HOST")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("relay binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let (mut address, mut invite) = (None, None);
    for line in lines.by_ref() {
        let line = line.expect("stdout line");
        if let Some(rest) = line.strip_prefix("relay address: ") {
            address = Some(rest.parse::<RelayAddress>().expect("address parses"));
        }
        if let Some(i) = line.find("hearth://").filter(|_| line.contains("/invite/")) {
            invite = Some(line[i..].parse::<Invite>().expect("invite parses"));
        }
        if line.starts_with("data: ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, address.expect("relay printed its address"), invite)
}
