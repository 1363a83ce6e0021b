//! Invitations as separate `hearth` processes see them: each command is a fresh client
//! that resumes from its store, on a new connection, so what the relay remembers from one
//! connection to the next matters. The real binary against a real relay, with the agent
//! and without it (`HEARTH_NO_AGENT=1`: every command in its own process).

use crate::common;

use std::path::Path;
use std::process::Output;

use common::{assert_success, hearth_with, json_lines, stdout, Env, PASSPHRASE};

/// Runs `hearth`, in its own process when `no_agent`.
async fn hearth(no_agent: bool, profile: &Path, args: &[&str]) -> Output {
    let no_agent = if no_agent { "1" } else { "0" };
    hearth_with(
        profile,
        args,
        &[
            ("HEARTH_PASSPHRASE", PASSPHRASE),
            ("HEARTH_NO_AGENT", no_agent),
        ],
    )
    .await
}

/// The names of the rooms `profile` holds an invitation to.
async fn invitations(no_agent: bool, profile: &Path) -> Vec<String> {
    let out = hearth(no_agent, profile, &["--json", "room", "list"]).await;
    assert_success(&out, "room list");
    json_lines(&out)
        .into_iter()
        .filter(|v| v["type"] == "invitation")
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect()
}

/// Whether `handle` is a full (not pending) member of `room`, as `profile` sees it.
async fn full_member(no_agent: bool, profile: &Path, room: &str, handle: &str) -> bool {
    let out = hearth(no_agent, profile, &["--json", "room", "members", room]).await;
    assert_success(&out, "room members");
    let line = json_lines(&out)
        .into_iter()
        .find(|v| v["handle"] == handle)
        .unwrap_or_else(|| panic!("{handle} is listed: {}", stdout(&out)));
    line["pending"] == false
}

/// An admin who invites the same person twice (the first invitation seen but not yet
/// accepted) leaves them holding the second one, which they accept. `client-kill-loop`
/// found the invitee instead believing themselves removed, with no invitation left: the
/// relay had handed the admin's second run the package the first Welcome had used.
async fn invited_twice(no_agent: bool) {
    let env = Env::start().await;
    let admin = env.init("admin").await;
    let guest = env.init("guest").await;
    let run = |profile: &Path, args: &'static [&'static str]| {
        let profile = profile.to_path_buf();
        async move {
            let out = hearth(no_agent, &profile, args).await;
            assert_success(&out, &args.join(" "));
        }
    };
    run(&admin, &["room", "create", "home"]).await;
    run(&admin, &["room", "invite", "home", "guest"]).await;
    assert_eq!(invitations(no_agent, &guest).await, ["home"]);

    run(&admin, &["room", "invite", "home", "guest"]).await;
    assert_eq!(
        invitations(no_agent, &guest).await,
        ["home"],
        "the second invitation is held"
    );
    run(&guest, &["room", "join", "home"]).await;
    assert!(full_member(no_agent, &admin, "home", "guest").await);

    // Invitations to two rooms, each from its own run of the admin's client.
    run(&admin, &["room", "create", "garden"]).await;
    run(&admin, &["room", "invite", "garden", "guest"]).await;
    run(&guest, &["room", "list"]).await;
    run(&admin, &["room", "create", "attic"]).await;
    run(&admin, &["room", "invite", "attic", "guest"]).await;
    let mut held = invitations(no_agent, &guest).await;
    held.sort();
    assert_eq!(held, ["attic", "garden"], "both invitations are held");
    run(&guest, &["room", "join", "attic"]).await;
    run(&guest, &["room", "join", "garden"]).await;
    assert!(full_member(no_agent, &admin, "attic", "guest").await);
    assert!(full_member(no_agent, &admin, "garden", "guest").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitee_invited_twice_holds_the_second_invitation_and_joins() {
    invited_twice(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitee_invited_twice_holds_the_second_invitation_and_joins_without_agents() {
    invited_twice(true).await;
}
