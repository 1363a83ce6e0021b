//! The relay's Debian package and its service (issue 14): the unit, the maintainer
//! scripts, the cargo-deb metadata and the relay's built-in paths agree; the unit passes
//! `systemd-analyze verify` and stays hardened (exposure 2.0 or lower); the man pages name
//! only pages that exist.

use std::path::{Path, PathBuf};
use std::process::Command;

use hearth_relay::location::{SYSTEM_CONFIG, SYSTEM_DATA_DIR};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the relay crate is in the workspace")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `Key=value` lines of the unit (all values of a key, in order).
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

const UNIT: &str = "packaging/relay/debian/hearth-relay.service";

#[test]
fn unit_scripts_metadata_and_built_in_paths_agree() {
    let unit = read(UNIT);
    assert_eq!(
        unit_values(&unit, "ExecStart"),
        [format!("/usr/bin/hearth-relay --config {SYSTEM_CONFIG}")],
        "the service reads the config owner commands find"
    );
    let state = unit_values(&unit, "StateDirectory");
    assert_eq!(
        state
            .iter()
            .map(|d| format!("/var/lib/{d}"))
            .collect::<Vec<_>>(),
        [SYSTEM_DATA_DIR],
        "systemd creates the data dir owner commands look in"
    );
    assert_eq!(unit_values(&unit, "User"), ["hearth"]);
    assert_eq!(unit_values(&unit, "StateDirectoryMode"), ["0700"]);
    assert_eq!(unit_values(&unit, "UMask"), ["0077"]);
    assert!(unit_values(&unit, "DynamicUser").is_empty());
    assert!(
        !unit.contains("HEARTH_RELAY_PUBLIC_HOST"),
        "the address lives in the config, where stopped-relay invites find it"
    );

    let postinst = read("packaging/relay/debian/postinst");
    for needed in [
        "#DEBHELPER#",
        "adduser --system",
        "--shell /usr/sbin/nologin",
        "hearth-relay init",
        "chown -R hearth:hearth",
    ] {
        assert!(postinst.contains(needed), "postinst lacks {needed:?}");
    }
    assert!(postinst.contains(&format!("CONFIG={SYSTEM_CONFIG}\n")));
    assert!(postinst.contains(&format!("DATA={SYSTEM_DATA_DIR}\n")));
    assert!(read("packaging/relay/debian/postrm").contains("#DEBHELPER#"));

    let manifest: toml::Value = toml::from_str(&read("relay/Cargo.toml")).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    assert_eq!(deb["name"].as_str(), Some("hearth-relay"));
    assert_eq!(
        deb["maintainer-scripts"].as_str(),
        Some("../packaging/relay/debian/")
    );
    assert_eq!(
        deb["systemd-units"]["unit-name"].as_str(),
        Some("hearth-relay")
    );
    let assets = deb_assets(deb);
    assert!(assets.contains(&("target/release/hearth-relay".into(), "usr/bin/".into())));
    assert!(assets.iter().any(|(_, to)| to == "usr/share/man/man1/"));
    for (from, _) in &assets {
        if !from.starts_with("target/") && !from.contains("packaging/generated/") {
            assert!(
                repo().join("relay").join(from).exists(),
                "asset {from} is missing"
            );
        }
    }
    let script = read("packaging/build-debs.sh");
    assert!(script.contains("lib.sh"));
    assert!(script.contains("write_docs"));
    let lib = read("packaging/lib.sh");
    assert!(lib.contains("generated=$root/packaging/generated"));
    assert!(lib.contains("man --out-dir"));
}

/// The `[package.metadata.deb]` assets of a crate, as (from, to) pairs.
fn deb_assets(deb: &toml::Value) -> Vec<(String, String)> {
    deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            (
                a[0].as_str().unwrap().to_string(),
                a[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_client_package_and_the_static_builds_are_described() {
    let manifest: toml::Value = toml::from_str(&read("client-cli/Cargo.toml")).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    assert_eq!(deb["name"].as_str(), Some("hearth"));
    let table = deb.as_table().unwrap();
    assert!(
        !table.contains_key("systemd-units") && !table.contains_key("maintainer-scripts"),
        "the client package runs no service and no scripts"
    );
    let assets = deb_assets(deb);
    assert!(assets.contains(&("target/release/hearth".into(), "usr/bin/".into())));
    // lib.sh writes the client's man pages and completions to packaging/generated/hearth
    // (`${bin#hearth-}`), the relay's to packaging/generated/relay.
    for (from, to) in [
        (
            "../packaging/generated/hearth/man/*.1.gz",
            "usr/share/man/man1/",
        ),
        (
            "../packaging/generated/hearth/completions/hearth.bash",
            "usr/share/bash-completion/completions/hearth",
        ),
        (
            "../packaging/generated/hearth/completions/_hearth",
            "usr/share/zsh/vendor-completions/",
        ),
    ] {
        assert!(
            assets.contains(&(from.into(), to.into())),
            "the client package lacks {from} -> {to}"
        );
    }
    for (from, _) in &assets {
        if !from.starts_with("target/") && !from.contains("packaging/generated/") {
            assert!(
                repo().join("client-cli").join(from).exists(),
                "asset {from} is missing"
            );
        }
    }

    let script = read("packaging/build-static.sh");
    for needed in [
        "x86_64-unknown-linux-musl",
        "aarch64-unknown-linux-musl",
        "-p hearth-relay -p hearth-cli",
        "CARGO_PROFILE_RELEASE_STRIP=symbols",
        "CC_x86_64_unknown_linux_musl=musl-gcc",
        "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc",
        "program interpreter",
        "(NEEDED)",
        "write_docs",
    ] {
        assert!(script.contains(needed), "build-static.sh lacks {needed:?}");
    }
}

/// A directory of links to every program on PATH but `hidden`: PATH for a fresh machine.
fn path_without(dir: &Path, hidden: &[&str]) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for entry in std::env::split_paths(&path)
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        let link = bin.join(&name);
        if hidden.iter().any(|h| name == **h) || link.symlink_metadata().is_ok() {
            continue;
        }
        std::os::unix::fs::symlink(entry.path(), link).unwrap();
    }
    bin
}

#[test]
fn the_build_scripts_list_what_is_missing_and_build_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hidden = [
        "cargo",
        "cargo-deb",
        "rustup",
        "rustc",
        "aarch64-linux-gnu-gcc",
        "musl-gcc",
    ];
    let bin = path_without(dir.path(), &hidden);
    let target = dir.path().join("target");
    let cases: [(&str, &[&str], &[&str]); 2] = [
        (
            "packaging/build-debs.sh",
            &["amd64", "arm64"],
            &[
                "sh.rustup.rs",
                "rustup target add aarch64-unknown-linux-gnu",
                "apt-get install -y gcc-aarch64-linux-gnu",
                "cargo install cargo-deb",
            ],
        ),
        (
            "packaging/build-static.sh",
            &["x86_64", "aarch64"],
            &[
                "sh.rustup.rs",
                "rustup target add x86_64-unknown-linux-musl",
                "rustup target add aarch64-unknown-linux-musl",
                "apt-get install -y musl-tools",
                "apt-get install -y gcc-aarch64-linux-gnu",
            ],
        ),
    ];
    for (script, args, expected) in cases {
        let out = Command::new(bin.join("bash"))
            .arg(repo().join(script))
            .args(args)
            .env("PATH", &bin)
            .env("HOME", dir.path())
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("INSTALL_MISSING")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{script}: {out:?}");
        for needed in expected.iter().chain(&["--install-missing"]) {
            assert!(
                stderr.contains(needed),
                "{script} does not say {needed:?}:\n{stderr}"
            );
        }
        assert!(!target.exists(), "{script} started building");
    }
}

/// `systemd-analyze`, or `None` (with a note) on a machine without systemd; a panic when
/// `HEARTH_REQUIRE_SYSTEMD_ANALYZE` is set (CI) and it is missing.
fn systemd_analyze() -> Option<Command> {
    let found = Command::new("systemd-analyze").arg("--version").output();
    if found.is_ok_and(|o| o.status.success()) {
        Some(Command::new("systemd-analyze"))
    } else if std::env::var_os("HEARTH_REQUIRE_SYSTEMD_ANALYZE").is_some() {
        // .ci/run installs it: there the check must run, not pass by being skipped.
        panic!("systemd-analyze is required (HEARTH_REQUIRE_SYSTEMD_ANALYZE) but not installed");
    } else {
        eprintln!("systemd-analyze is not installed: the unit was not analysed");
        None
    }
}

#[test]
fn the_unit_verifies_and_is_hardened() {
    let Some(_) = systemd_analyze() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The unit as installed, with this build's binary (verify checks it is executable).
    let unit = read(UNIT).replace(
        "ExecStart=/usr/bin/hearth-relay",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_hearth-relay")),
    );
    let path = dir.path().join("hearth-relay.service");
    std::fs::write(&path, unit).unwrap();

    let out = systemd_analyze()
        .unwrap()
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "systemd-analyze verify: {out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = systemd_analyze()
        .unwrap()
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for hearth-relay.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    assert!(score <= 2.0, "exposure {score} is over 2.0:\n{text}");
}

#[test]
fn the_man_pages_name_only_pages_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth-relay"))
        .args(["man", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for needed in [
        "hearth-relay.1",
        "hearth-relay-invite.1",
        "hearth-relay-set-address.1",
    ] {
        assert!(
            pages.iter().any(|p| p == needed),
            "{needed} not in {pages:?}"
        );
    }
    let mut named = 0;
    for page in &pages {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        let plain = text
            .replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fI", "")
            .replace("\\fR", "")
            .replace("\\fP", "");
        for (i, _) in plain.match_indices("(1)") {
            let name: String = plain[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if name.starts_with("hearth-relay") {
                named += 1;
                assert!(
                    pages.contains(&format!("{name}.1")),
                    "{page} names {name}(1), which was not written"
                );
            }
        }
    }
    assert!(
        named >= pages.len() - 1,
        "the main page names each command's page"
    );
}

/// Runs a maintainer script of the package with its paths moved under `root` and the
/// system commands it calls (`adduser`, `getent`, `install`, `chown`, `hostname`) replaced
/// by stubs that log their arguments to `root/calls`; `hearth-relay` is this build's.
fn run_script(root: &Path, script: &str, args: &[&str]) -> std::process::Output {
    let text = read(&format!("packaging/relay/debian/{script}"))
        .replace("/etc/hearth", &format!("{}/etc/hearth", root.display()))
        .replace(
            "/var/lib/hearth",
            &format!("{}/var/lib/hearth", root.display()),
        );
    let path = root.join(script);
    std::fs::write(&path, text).unwrap();
    let bin = root.join("bin");
    if !bin.exists() {
        std::fs::create_dir(&bin).unwrap();
        let calls = root.join("calls");
        // `install -d [-m MODE] [-o USER] [-g GROUP] DIR...` makes the directories (as root
        // would, without the owner).
        let install = "while [ $# -gt 0 ]; do case $1 in -d) ;; -m|-o|-g) shift ;; \
                       *) mkdir -p \"$1\" ;; esac; shift; done\n";
        for (name, output, then) in [
            ("adduser", "", ""),
            (
                "getent",
                "hearth:x:999:999::/nonexistent:/usr/sbin/nologin",
                "",
            ),
            ("install", "", install),
            ("chown", "", ""),
            ("hostname", "pi", ""),
        ] {
            let stub = bin.join(name);
            std::fs::write(
                &stub,
                format!(
                    "#!/bin/sh\necho \"{name} $*\" >>'{}'\n[ -z '{output}' ] || echo '{output}'\n{then}",
                    calls.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_hearth-relay"), bin.join("hearth-relay"))
            .unwrap();
    }
    let path_var = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("sh")
        .arg(&path)
        .args(args)
        .env("PATH", path_var)
        .env_remove("HEARTH_RELAY_PUBLIC_HOST")
        .env_remove("HEARTH_RELAY_DATA")
        .env(
            "HEARTH_RELAY_SYSTEM_CONFIG",
            root.join("etc/hearth/relay.toml"),
        )
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn a_purge_keeps_the_relay_and_a_reinstall_finds_it_and_names_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let config = root.join("etc/hearth/relay.toml");
    let data = root.join("var/lib/hearth/relay");

    // The first install: creates the relay, prints its address and first invite.
    let out = run_script(root, "postinst", &["configure"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("relay address: hearth://pi.local:7443/#"),
        "{stdout}"
    );
    assert!(stdout.contains("first admin invite"), "{stdout}");
    let pin = stdout
        .lines()
        .find_map(|l| l.strip_prefix("relay address: "))
        .and_then(|a| a.split('#').nth(1))
        .unwrap()
        .to_string();
    // The owner moved it to a dynamic DNS name and a forwarded port.
    let set = Command::new(env!("CARGO_BIN_EXE_hearth-relay"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "set-address",
            "home.example.org:17443",
        ])
        .output()
        .unwrap();
    assert!(set.status.success(), "{set:?}");

    // A purge: the config goes (saying which address it held), the relay stays.
    let out = run_script(root, "postrm", &["purge"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("its public address was \"home.example.org:17443\""),
        "{stdout}"
    );
    assert!(stdout.contains("data is kept"), "{stdout}");
    assert!(!config.exists());
    assert!(data.join("relay.redb").exists());

    // A reinstall: the kept relay gets a config again, its files are the service user's
    // again (the user may have a new uid), and it says which address invites now name.
    std::fs::remove_file(root.join("calls")).unwrap();
    let out = run_script(root, "postinst", &["configure"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("found the relay kept"), "{stdout}");
    assert!(
        stdout.contains("Its public address is now \"pi.local\""),
        "{stdout}"
    );
    assert!(stdout.contains("set-address"), "{stdout}");
    assert!(
        !stdout.contains("first admin invite"),
        "no new relay: {stdout}"
    );
    let calls = std::fs::read_to_string(root.join("calls")).unwrap();
    assert!(
        calls.contains(&format!("chown -R hearth:hearth {}", data.display())),
        "{calls}"
    );
    let invite = Command::new(env!("CARGO_BIN_EXE_hearth-relay"))
        .args(["--config", config.to_str().unwrap(), "invite"])
        .env("HEARTH_RELAY_SYSTEM_CONFIG", &config)
        .output()
        .unwrap();
    assert!(invite.status.success(), "{invite:?}");
    let line = String::from_utf8_lossy(&invite.stdout);
    assert!(line.starts_with("hearth://pi.local:7443/invite/"), "{line}");
    assert!(
        line.trim_end().ends_with(&format!("#{pin}")),
        "the same relay: {line}"
    );
}
