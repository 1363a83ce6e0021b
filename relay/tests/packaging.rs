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
    let assets: Vec<(String, String)> = deb["assets"]
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
        .collect();
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
    assert!(script.contains("packaging/generated"));
    assert!(script.contains("man --out-dir"));
}

/// `systemd-analyze`, or `None` (with a note) on a machine without systemd.
fn systemd_analyze() -> Option<Command> {
    let found = Command::new("systemd-analyze").arg("--version").output();
    if found.is_ok_and(|o| o.status.success()) {
        Some(Command::new("systemd-analyze"))
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
