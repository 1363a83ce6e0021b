//! `hearth relay set-address` (issue 14): the household's relay moves to a new port (or
//! host); each member follows it with one command, keeping the pinned key, and chats on.

use crate::common;

use common::{assert_success, hearth, room_with, stderr, stdout, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_follow_the_relay_to_a_new_port_with_the_same_pin() {
    let mut env = Env::start().await;
    let alice = env.init("alice").await;
    let bob = env.init("bob").await;
    room_with(&alice, "family", &[&bob]).await;
    assert_success(
        &hearth(&alice, &["send", "family", "before the move"]).await,
        "send",
    );
    let old = env.stop().await;
    // The same relay (same store and key) comes back on another port.
    env.restart("127.0.0.1:0".parse().unwrap()).await;
    let new = env.relay().local_addr();
    assert_ne!(new.port(), old.port());
    let pin = env.relay().address().pin;

    for person in [&alice, &bob] {
        let out = hearth(person, &["relay", "set-address", &new.to_string()]).await;
        assert_success(&out, "relay set-address");
        let text = stdout(&out);
        assert!(text.contains(&format!("hearth://{new}/#{pin}")), "{text}");
        assert!(text.contains("Reached the relay"), "{text}");
    }
    let whoami = stdout(&hearth(&alice, &["whoami"]).await);
    assert!(whoami.contains(&new.to_string()), "{whoami}");

    assert_success(
        &hearth(&alice, &["send", "family", "after the move"]).await,
        "send after the move",
    );
    let read = hearth(&bob, &["read", "family", "--all"]).await;
    assert_success(&read, "read");
    let text = stdout(&read);
    assert!(
        text.contains("before the move") && text.contains("after the move"),
        "{text}"
    );

    // Another relay's address (another key) is refused, and nothing changes.
    let other = format!("hearth://{new}/#{}", hearth_protocol::Pin([9; 32]));
    let out = hearth(&alice, &["relay", "set-address", &other]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("another relay"), "{}", stderr(&out));
    let whoami = stdout(&hearth(&alice, &["whoami"]).await);
    assert!(whoami.contains(&new.to_string()), "{whoami}");
}

/// A host and port where another relay (another key) answers: the move is undone, the
/// command fails and says so, and the profile still signs in at the old address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_where_another_relay_answers_is_not_kept() {
    let env = Env::start().await;
    let alice = env.init("alice").await;
    let here = env.relay().local_addr();
    let other = Env::start().await;
    let there = other.relay().local_addr();
    assert_ne!(other.relay().address().pin, env.relay().address().pin);

    let out = hearth(&alice, &["relay", "set-address", &there.to_string()]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let text = stderr(&out);
    assert!(text.contains("another relay's key"), "{text}");
    assert!(text.contains(&format!("stays {here}")), "{text}");

    let whoami = hearth(&alice, &["whoami"]).await;
    assert_success(&whoami, "whoami after the refused move");
    assert!(
        stdout(&whoami).contains(&here.to_string()),
        "{}",
        stdout(&whoami)
    );
}
