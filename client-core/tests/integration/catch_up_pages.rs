//! Issue 15: catching up processes a page of entries in one store transaction. A commit
//! that fails (as a crash before it would) must leave the state before the page, on
//! disk and in memory: reading the page again takes every entry exactly once, and the
//! MLS state and the stored transcript stay together (a group state stored ahead of the
//! transcript would fail to decrypt the page the second time; one behind it would lose
//! messages).

use crate::common;

use common::*;
use hearth_core::store::Table;
use hearth_core::{ClientEvent, Profile};

/// Messages bob misses while away: a page of them (fewer than a page's limit).
const MISSED: usize = 40;

fn drain(user: &mut User) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    while let Ok(event) = user.events.try_recv() {
        events.push(event);
    }
    events
}

fn texts_of(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

fn trouble(events: &[ClientEvent]) -> Vec<&ClientEvent> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ClientEvent::Rejected { .. } | ClientEvent::Consistency { .. }
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_commit_fails_is_taken_again_exactly_once() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "pages").await;
    alice.c().send_text(room, "before").await.unwrap();
    bob.wait_text("before").await;
    bob.client.take().unwrap().close().await;

    let missed: Vec<String> = (0..MISSED).map(|i| format!("missed {i}")).collect();
    for text in &missed {
        alice.c().send_text(room, text).await.unwrap();
    }

    // Bob comes back; the commit of the page he reads fails (the first to write
    // history).
    let profile = Profile::open(&bob.dir, PASS).unwrap();
    profile.store().fail_commits_touching(&[Table::History], 1);
    let client = hearth_core::Client::connect(profile).await.unwrap();
    bob.events = client.events();
    bob.client = Some(client);
    // Nothing of the page was kept or reported.
    assert_eq!(bob.texts(room).await, ["before"]);
    let events = drain(&mut bob);
    assert!(texts_of(&events).is_empty(), "{events:?}");

    // Reading it again takes every entry once, in order.
    bob.c().sync().await.unwrap();
    let mut expected = vec!["before".to_string()];
    expected.extend(missed.iter().cloned());
    assert_eq!(bob.texts(room).await, expected);
    let events = drain(&mut bob);
    assert_eq!(texts_of(&events), missed);
    assert!(trouble(&events).is_empty(), "{:?}", trouble(&events));

    // The group state went with the transcript: live messages still decrypt, before
    // and after a restart from what is on disk.
    alice.c().send_text(room, "live").await.unwrap();
    bob.wait_text("live").await;
    bob.restart().await;
    alice.c().send_text(room, "after restart").await.unwrap();
    bob.wait_text("after restart").await;
    expected.extend(["live".to_string(), "after restart".to_string()]);
    assert_eq!(bob.texts(room).await, expected);
    let events = drain(&mut bob);
    assert!(trouble(&events).is_empty(), "{:?}", trouble(&events));
    // And alice sees bob's answer (his own sending state is whole too).
    bob.c().send_text(room, "got them").await.unwrap();
    alice.wait_text("got them").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_page_commits_loses_and_repeats_nothing() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "crash").await;
    bob.client.take().unwrap().close().await;
    let missed: Vec<String> = (0..MISSED).map(|i| format!("missed {i}")).collect();
    for text in &missed {
        alice.c().send_text(room, text).await.unwrap();
    }

    // The page is processed and its commit never happens, nor any later one: the
    // process might as well have died there.
    let profile = Profile::open(&bob.dir, PASS).unwrap();
    profile.store().fail_commits(u32::MAX);
    let client = hearth_core::Client::connect(profile).await.unwrap();
    assert!(client.history(room, 1000, None).await.unwrap().is_empty());
    client.close().await;

    // Opened again from disk: the state before the page, and the page read once.
    let profile = Profile::open(&bob.dir, PASS).unwrap();
    let client = hearth_core::Client::connect(profile).await.unwrap();
    bob.events = client.events();
    bob.client = Some(client);
    bob.c().sync().await.unwrap();
    assert_eq!(bob.texts(room).await, missed);
    let events = drain(&mut bob);
    assert!(trouble(&events).is_empty(), "{:?}", trouble(&events));
}
