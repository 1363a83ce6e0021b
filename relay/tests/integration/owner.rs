//! The owner's commands on the real `hearth-relay` binary (issue 14): they find the relay
//! that exists (the user's own or the packaged one) and never create another; invites name
//! the public address kept in the config, whether the relay runs or not; a first start
//! that fails leaves nothing behind, and a relay nobody joined yet still gets its invite.

use crate::common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{Client, Identity};
use hearth_protocol::{Invite, RelayAddress};

/// A machine in a temp dir: a home with no relay, and where the packaged relay's config
/// would be (absent unless a test writes it).
struct Machine {
    root: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        Machine {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Where this machine's user keeps data (`$XDG_DATA_HOME`).
    fn user_data(&self) -> PathBuf {
        self.path("home/.local/share")
    }

    fn system_config(&self) -> PathBuf {
        self.path("etc/hearth/relay.toml")
    }

    /// `hearth-relay ARGS` as this machine's user.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hearth-relay"));
        command
            .args(args)
            .env("HOME", self.path("home"))
            .env("XDG_DATA_HOME", self.user_data())
            .env("HEARTH_RELAY_SYSTEM_CONFIG", self.system_config())
            .env_remove("HEARTH_RELAY_DATA")
            .env_remove("HEARTH_RELAY_PUBLIC_HOST")
            .env("RUST_LOG", "warn");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs an owner command that must succeed; returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn invite(&self, args: &[&str]) -> Invite {
        let mut all = vec!["invite"];
        all.extend_from_slice(args);
        self.ok(&all).trim().parse().expect("an invite line")
    }

    /// Starts the relay; returns once it printed its banner.
    fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_with(args, Stdio::null(), "warn")
    }

    /// [`Machine::spawn`] with the log going to `stderr` at level `log`.
    fn spawn_with(&self, args: &[&str], stderr: Stdio, log: &str) -> Running {
        let mut child = self
            .command(args)
            .env("RUST_LOG", log)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let done = line.starts_with("data: ");
            banner.push(line);
            if done {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let address = banner
            .iter()
            .find_map(|l| l.strip_prefix("relay address: "))
            .unwrap_or_else(|| panic!("no address in {banner:?}"))
            .parse()
            .unwrap();
        Running {
            child,
            address,
            banner,
        }
    }
}

struct Running {
    child: Child,
    address: RelayAddress,
    banner: Vec<String>,
}

impl Running {
    fn first_invite(&self) -> Option<Invite> {
        self.banner.iter().find_map(|l| {
            l.strip_prefix("first admin invite (one use, 7 days): ")
                .map(|i| i.parse().unwrap())
        })
    }

    fn says(&self, text: &str) -> bool {
        self.banner.iter().any(|l| l.contains(text))
    }

    fn stop(mut self) {
        // SIGKILL: the store is durable, and nothing here depends on a clean stop.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Everything under `dir`, to show that a refused command created nothing.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            out.push(entry.path());
            if entry.path().is_dir() {
                stack.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

async fn registers_with(invite: &Invite, handle: &str) {
    let mut client = Client::connect(&invite.relay).await;
    client
        .register(&Identity::new(), Some(invite.token.clone()), handle)
        .await
        .expect("the invite registers");
}

#[test]
fn owner_commands_never_create_a_relay() {
    let m = Machine::new();
    let before = tree(m.root.path());
    for command in ["invite", "status", "accounts", "invites", "audit"] {
        let out = m.run(&[command]);
        assert_eq!(out.status.code(), Some(1), "{command}: {out:?}");
        let err = stderr(&out);
        assert!(
            err.contains("no relay found") && err.contains("hearth-relay init"),
            "{command}: {err}"
        );
        assert!(err.contains("--data DIR"), "{command}: {err}");

        let elsewhere = m.path("elsewhere/relay");
        let out = m.run(&[command, "--data", elsewhere.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{command}: {out:?}");
        let err = stderr(&out);
        assert!(
            err.contains("no relay in") && err.contains("never creates"),
            "{command}: {err}"
        );
    }
    let out = m.run(&["set-address", "raspberrypi.local"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        tree(m.root.path()),
        before,
        "the refused commands created nothing"
    );
}

#[tokio::test]
async fn the_packaged_relay_is_found_without_data_and_invites_name_its_address() {
    let m = Machine::new();
    // What the package's postinst does: `hearth-relay init` with the system config.
    let data = m.path("var/lib/hearth/relay");
    let config = m.system_config();
    let init = m.ok(&[
        "init",
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--public-host",
        "127.0.0.1",
    ]);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("public_host = \"127.0.0.1\""), "{text}");
    assert!(text.contains("data_dir = "), "{text}");
    let first: Invite = init
        .lines()
        .find_map(|l| l.strip_prefix("first admin invite (one use, 7 days): "))
        .expect("init prints the first invite")
        .parse()
        .unwrap();

    // The service: `hearth-relay --config /etc/hearth/relay.toml`.
    let relay = m.spawn(&["--config", config.to_str().unwrap()]);
    assert_eq!(
        relay.address.pin, first.relay.pin,
        "init made the relay that runs"
    );
    assert!(
        relay.first_invite().is_none(),
        "init's invite is still open"
    );
    assert!(
        relay.says("nobody has registered yet"),
        "{:?}",
        relay.banner
    );
    // init ran before the port was known (127.0.0.1:0): this relay's first invite names
    // its real port once minted by the running relay.
    let invite = m.invite(&[]);
    assert_eq!(invite.relay, relay.address);
    registers_with(&invite, "alice").await;

    // Owner commands find it with no --data, and so does a plain `hearth-relay`, which
    // refuses to run a second copy.
    let status = m.ok(&["status"]);
    assert!(status.contains("accounts:  1"), "{status}");
    // The registration waited for a disk sync of the running relay, which status times.
    assert!(
        status.contains("disk syncs: ") && !status.contains("disk syncs: none"),
        "{status}"
    );
    let out = m.run(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("systemctl start hearth-relay"),
        "{out:?}"
    );

    // The router forwards another port: set once, every invite names it, running or not.
    m.ok(&["set-address", "home.example.org:17443"]);
    let forwarded = m.invite(&["--uses", "2"]);
    assert_eq!(
        (forwarded.relay.host.as_str(), forwarded.relay.port),
        ("home.example.org", 17443)
    );
    assert_eq!(forwarded.relay.pin, relay.address.pin);
    relay.stop();
    let stopped = m.invite(&[]);
    assert_eq!(stopped.relay, forwarded.relay, "invites made while stopped");
    // Naming the packaged relay by its data dir finds its config too.
    let by_dir = m.invite(&["--data", data.to_str().unwrap()]);
    assert_eq!(by_dir.relay, forwarded.relay);
    // `init` with no place named means the packaged relay, which exists: it says so and
    // how to make a relay of one's own, and creates nothing.
    let out = m.run(&["init"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("packaged relay exists already") && err.contains("--data DIR"),
        "{err}"
    );
    assert!(
        !m.user_data().join("hearth-relay").exists(),
        "no second relay in the user's data dir"
    );
}

#[tokio::test]
async fn a_relay_without_a_public_address_spends_no_invite_on_loopback() {
    let m = Machine::new();
    let data = m.path("relay");
    let data = data.to_str().unwrap();
    // All interfaces and no public host: its address could only name this machine.
    let relay = m.spawn(&["--data", data, "--listen", "0.0.0.0:0"]);
    assert!(relay.first_invite().is_none(), "{:?}", relay.banner);
    assert!(relay.says("hearth-relay set-address"), "{:?}", relay.banner);
    let out = m.run(&["invite", "--data", data]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("set-address"), "{out:?}");

    // Set the address: the running relay's invites name it at once, on its own port.
    m.ok(&["set-address", "--data", data, "127.0.0.1"]);
    let invite = m.invite(&["--data", data]);
    assert_eq!(invite.relay.host, "127.0.0.1");
    assert_eq!(invite.relay.port, relay.address.port);
    registers_with(&invite, "alice").await;
    relay.stop();
}

#[tokio::test]
async fn a_failed_first_start_leaves_nothing_and_the_next_start_prints_the_invite() {
    let m = Machine::new();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let data = m.path("relay");
    let data = data.to_str().unwrap();
    let out = m.run(&["--data", data, "--listen", &port]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("cannot listen on"), "{out:?}");
    assert!(!Path::new(data).exists(), "nothing created");

    let relay = m.spawn(&["--data", data, "--listen", "127.0.0.1:0"]);
    let invite = relay
        .first_invite()
        .expect("the first start prints an invite");
    registers_with(&invite, "alice").await;
    relay.stop();
    let again = m.spawn(&["--data", data, "--listen", "127.0.0.1:0"]);
    assert!(
        again.first_invite().is_none(),
        "someone joined: no new invite"
    );
    again.stop();
}

#[tokio::test]
async fn a_relay_created_without_an_invite_gets_one_and_a_lost_one_is_replaced() {
    let m = Machine::new();
    let data = m.path("relay");
    let data = data.to_str().unwrap();
    // A store but no invite: what a start that failed after creating the store left.
    let init = m.ok(&["init", "--data", data]);
    assert!(init.contains("no invite yet"), "{init}");
    assert!(!init.contains("/invite/"), "{init}");
    let out = m.run(&["init", "--data", data]);
    assert_eq!(out.status.code(), Some(1), "init never replaces a relay");

    let relay = m.spawn(&["--data", data, "--listen", "127.0.0.1:0"]);
    let lost = relay
        .first_invite()
        .expect("nobody joined and no invite is open");
    relay.stop();
    // The first invite was lost: a restart says how to get another, and `invite` does.
    let relay = m.spawn(&["--data", data, "--listen", "127.0.0.1:0"]);
    assert!(relay.first_invite().is_none());
    assert!(
        relay.says("`hearth-relay invite` prints a new invite"),
        "{:?}",
        relay.banner
    );
    let invite = m.invite(&["--data", data, "--public-host", "127.0.0.1"]);
    assert_ne!(invite.token, lost.token);
    assert_eq!(invite.relay, relay.address);
    registers_with(&invite, "alice").await;
    relay.stop();
}

#[tokio::test]
async fn a_client_that_closes_is_not_logged_as_lost_and_the_log_is_plain() {
    let m = Machine::new();
    let data = m.path("relay");
    let mut relay = m.spawn_with(
        &["--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        Stdio::piped(),
        "info",
    );
    let invite = relay.first_invite().unwrap();
    let mut client = Client::connect(&invite.relay).await;
    client
        .register(&Identity::new(), Some(invite.token.clone()), "alice")
        .await
        .unwrap();
    // What the hearth client does when a command ends.
    client.raw.conn.close(0u32.into(), b"bye");
    client.raw.endpoint.wait_idle().await;

    let log = relay.child.stderr.take().unwrap();
    let ended = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(log)
            .lines()
            .map(|l| l.unwrap())
            .inspect(|l| assert!(!l.contains('\u{1b}'), "colour codes in the log: {l:?}"))
            .find(|l| l.contains("connection ended"))
    })
    .await
    .unwrap()
    .expect("the relay logs the end of the connection");
    assert!(!ended.contains("connection lost"), "{ended}");
    assert!(ended.contains("client"), "{ended}");
    relay.stop();
}

#[test]
fn a_data_dir_that_holds_other_files_is_refused_and_left_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let m = Machine::new();
    // `--data /tmp` or `--data ~` by mistake: a shared directory with others' files.
    let shared = m.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("someone-elses-file"), b"x").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let before = tree(&shared);
    let dir = shared.to_str().unwrap();
    for args in [
        vec!["--data", dir, "--listen", "127.0.0.1:0"],
        vec!["init", "--data", dir],
    ] {
        let out = m.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = stderr(&out);
        assert!(
            err.contains("already holds other files")
                && err.contains("someone-elses-file")
                && err.contains("new or empty directory"),
            "{args:?}: {err}"
        );
        let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o1777, "{args:?}: the directory's mode was changed");
        assert_eq!(
            tree(&shared),
            before,
            "{args:?}: no relay file was made there"
        );
    }

    // An empty directory made beforehand (systemd's StateDirectory, `install -d`) is fine,
    // and so is a relay's own directory when it starts again.
    let empty = m.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let args = ["--data", empty.to_str().unwrap(), "--listen", "127.0.0.1:0"];
    let relay = m.spawn(&args);
    assert!(relay.first_invite().is_some(), "{:?}", relay.banner);
    relay.stop();
    m.spawn(&args).stop();
}

#[test]
fn a_listen_address_the_machine_lacks_is_named_as_the_problem() {
    let m = Machine::new();
    let data = m.path("relay");
    // TEST-NET-1: no machine has it.
    let out = m.run(&[
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "192.0.2.1:7443",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("has no address 192.0.2.1") && err.contains("[::]:7443"),
        "{err}"
    );
    assert!(!err.contains("another relay"), "{err}");
    assert!(!data.exists(), "nothing created");
}

#[test]
fn a_public_address_nobody_else_reaches_is_refused_or_noted() {
    let m = Machine::new();
    let data = m.path("relay");
    let data = data.to_str().unwrap();
    m.ok(&["init", "--data", data, "--public-host", "raspberrypi.local"]);
    // "Any address": no one can connect to it, so it is refused (usage error).
    for any in ["0.0.0.0", "[::]:17443"] {
        let out = m.run(&["set-address", "--data", data, any]);
        assert_eq!(out.status.code(), Some(2), "{any}: {out:?}");
        assert!(stderr(&out).contains("any address"), "{any}: {out:?}");
    }
    let config = std::fs::read_to_string(Path::new(data).join("hearth-relay.toml")).unwrap();
    assert!(
        config.contains("public_host = \"raspberrypi.local\""),
        "{config}"
    );
    // Loopback: kept (a relay for this machine alone is legitimate), with a note saying
    // who it leaves out.
    let out = m.run(&["set-address", "--data", data, "localhost"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stderr(&out).contains("only this machine reaches it"),
        "{out:?}"
    );
    let out = m.run(&["set-address", "--data", data, "home.example.org:17443"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!stderr(&out).contains("note:"), "{out:?}");
}

#[test]
fn root_does_not_run_a_relay_that_belongs_to_another_user() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: running a relay of another user is not tried");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let m = Machine::new();
    let data = m.path("relay");
    m.ok(&["init", "--data", data.to_str().unwrap()]);
    // What the package leaves: the data belongs to the service user.
    let owner = 65534; // nobody
    for path in tree(&data).iter().chain([&data]) {
        std::os::unix::fs::lchown(path, Some(owner), Some(owner)).unwrap();
    }
    let out = m.run(&["--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("not root") && err.contains("runuser -u"),
        "{err}"
    );
    assert!(
        tree(&data)
            .iter()
            .all(|p| std::fs::symlink_metadata(p).unwrap().uid() == owner),
        "root made no file there"
    );
}

#[test]
fn with_a_relay_of_ones_own_and_the_packaged_one_commands_say_which_they_mean() {
    let m = Machine::new();
    // Root tried a relay by hand before installing the package.
    m.ok(&["init", "--public-host", "own.example.org"]);
    let system_data = m.path("var/lib/hearth/relay");
    m.ok(&[
        "init",
        "--config",
        m.system_config().to_str().unwrap(),
        "--data",
        system_data.to_str().unwrap(),
        "--public-host",
        "raspberrypi.local",
    ]);
    let out = m.run(&["invite"]);
    assert!(out.status.success(), "{out:?}");
    let invite: Invite = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(invite.relay.host, "own.example.org");
    let err = stderr(&out);
    assert!(
        err.contains("your own relay") && err.contains("not the packaged one"),
        "{err}"
    );
    let packaged = m.invite(&["--data", system_data.to_str().unwrap()]);
    assert_eq!(packaged.relay.host, "raspberrypi.local");
}

#[test]
fn half_an_identity_or_a_planted_link_stops_the_relay_before_it_writes() {
    let m = Machine::new();
    let data = m.path("relay");
    let dir = data.to_str().unwrap();
    m.ok(&["init", "--data", dir, "--public-host", "raspberrypi.local"]);
    let key = std::fs::read(data.join("relay-key.der")).unwrap();

    // The certificate was lost (a partial restore): no new identity is made.
    let cert = data.join("relay-cert.der");
    let saved = data.join("../cert-aside.der");
    std::fs::rename(&cert, &saved).unwrap();
    let out = m.run(&["--data", dir, "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("relay-key.der but not relay-cert.der") && err.contains("Restore"),
        "{err}"
    );
    assert!(!cert.exists());
    assert_eq!(std::fs::read(data.join("relay-key.der")).unwrap(), key);
    std::fs::rename(&saved, &cert).unwrap();

    // Someone with the service user's rights points the store at another file: neither
    // the relay nor an owner command (root's, on a stopped relay) opens it.
    let victim = m.path("victim");
    std::fs::write(&victim, b"not the relay's").unwrap();
    let store = data.join("relay.redb");
    std::fs::rename(&store, m.path("store-aside")).unwrap();
    std::os::unix::fs::symlink(&victim, &store).unwrap();
    for args in [
        vec!["--data", dir, "--listen", "127.0.0.1:0"],
        vec!["invite", "--data", dir],
    ] {
        let out = m.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(stderr(&out).contains("symbolic link"), "{args:?}: {out:?}");
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"not the relay's");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
    assert_ne!(mode, 0o600, "the victim's mode was changed");
}

#[test]
fn drop_files_takes_one_room_with_files_and_says_how_to_find_one() {
    let m = Machine::new();
    let data = m.path("relay");
    let data = data.to_str().unwrap();
    m.ok(&["init", "--data", data]);
    for (room, says) in [
        ("abcd", "no room whose id starts with abcd holds files"),
        ("not-hex", "give a room's id in hex"),
    ] {
        let out = m.run(&["drop-files", room, "--data", data]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = stderr(&out);
        assert!(
            err.contains(says) && err.contains("hearth-relay inspect"),
            "{err}"
        );
    }
}

/// A ban closes the account's connections and, within the grace period, its room
/// connections (decision 0016), but the person can register again with an invite that
/// still has uses: `ban` says so and names the invites to revoke (attack 0016).
#[tokio::test]
async fn a_ban_names_the_invites_that_would_let_the_person_back_in() {
    let m = Machine::new();
    let data = m.path("relay");
    let data = data.to_str().unwrap();
    m.ok(&["init", "--data", data]);
    let relay = m.spawn(&["--data", data, "--listen", "127.0.0.1:0"]);
    let invite = m.invite(&["--data", data, "--public-host", "127.0.0.1", "--uses", "3"]);
    registers_with(&invite, "mallory").await;
    let out = m.ok(&["ban", "mallory", "--data", data]);
    assert!(out.contains("mallory: banned"), "{out}");
    assert!(out.contains("/kick or /ban"), "{out}");
    let listed = m.ok(&["invites", "--data", data]);
    let id = listed
        .lines()
        .find(|l| l.contains("uses left 2/3"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{listed}"))
        .to_string();
    assert!(out.contains("can still register accounts"), "{out}");
    assert!(out.contains(&id), "{out}");
    // Revoked, the invite is no longer named.
    m.ok(&["invites", "--data", data, "--revoke", &id]);
    let again = m.ok(&["ban", "mallory", "--data", data]);
    assert!(!again.contains(&id), "{again}");
    relay.stop();
}
