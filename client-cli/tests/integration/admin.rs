//! Room administration through the CLI, from the allowed and the refused side.

use crate::common;

use common::{assert_success, hearth, json_lines, stderr, stdout, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_kick_ban_rename_and_expiry() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    let carol = env.init("carol").await;
    common::room_with(&alice, "family", &[&bob, &carol]).await;

    // A member may not kick: refused before anything is sent.
    let out = hearth(&bob, &["room", "kick", "family", "carol"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not an admin"), "{}", stderr(&out));

    // The owner makes bob an admin; now his kick goes through.
    assert_success(
        &hearth(&alice, &["room", "grant", "family", "bob"]).await,
        "grant",
    );
    let out = hearth(&alice, &["--json", "room", "members", "family"]).await;
    let roles: Vec<(String, String)> = json_lines(&out)
        .iter()
        .map(|v| {
            (
                v["handle"].as_str().unwrap_or("").to_string(),
                v["role"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        roles.contains(&("alice".into(), "owner".into())),
        "{roles:?}"
    );
    assert!(roles.contains(&("bob".into(), "admin".into())), "{roles:?}");
    assert_success(
        &hearth(&bob, &["room", "kick", "family", "carol"]).await,
        "admin kick",
    );
    let out = hearth(&alice, &["--json", "room", "members", "family"]).await;
    assert_eq!(json_lines(&out).len(), 2, "{}", stdout(&out));

    // A banned identity cannot be re-invited until unbanned.
    assert_success(
        &hearth(&alice, &["room", "ban", "family", "carol"]).await,
        "ban",
    );
    let out = hearth(&alice, &["room", "invite", "family", "carol"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("banned"), "{}", stderr(&out));
    assert_success(
        &hearth(&alice, &["room", "unban", "family", "carol"]).await,
        "unban",
    );
    assert_success(
        &hearth(&alice, &["room", "invite", "family", "carol"]).await,
        "re-invite",
    );

    // Only admins rename; everyone sees the new name.
    assert_success(
        &hearth(&carol, &["room", "join", "family"]).await,
        "carol rejoins",
    );
    let out = hearth(&carol, &["room", "rename", "family", "kitchen"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_success(
        &hearth(&alice, &["room", "rename", "family", "kitchen"]).await,
        "rename",
    );
    for who in [&bob, &carol] {
        let out = hearth(who, &["--json", "room", "list"]).await;
        assert!(
            json_lines(&out)
                .iter()
                .any(|v| v["type"] == "room" && v["name"] == "kitchen"),
            "{}",
            stdout(&out)
        );
    }

    // Disappearing messages: admins only, seen in the room's info.
    let out = hearth(&carol, &["room", "expire", "kitchen", "1day"]).await;
    assert_eq!(out.status.code(), Some(1));
    let out = hearth(&alice, &["room", "expire", "kitchen", "soon"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed duration is a usage error"
    );
    assert_success(
        &hearth(&alice, &["room", "expire", "kitchen", "1day"]).await,
        "expire",
    );
    let out = hearth(&bob, &["--json", "room", "info", "kitchen"]).await;
    let info = &json_lines(&out)[0];
    assert_eq!(info["owner"], "alice");
    assert_eq!(info["expire_secs"], 86_400);
    assert_eq!(info["admins"][0], "bob");
}
