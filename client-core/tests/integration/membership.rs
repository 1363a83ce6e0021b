//! Issue 13: no membership change leaves a ghost (someone the room lists who never got in).

use crate::common;

use common::{h, room_with, Relay};
use hearth_core::events::ConnectionState;
use hearth_core::ClientEvent;

/// Invite, kick, invite again, all before the invitee accepted: the invitee holds two
/// Welcomes, and the older one leads only to the kick. The later one replaces it, so
/// accepting joins the room as it is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_invitation_after_a_kick_replaces_the_pending_one() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = alice.c().create_room("Home").await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    bob.c().sync().await.unwrap();
    alice.c().kick(room, &h("bob")).await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    bob.c().sync().await.unwrap();

    let invitations = bob.c().invitations().await.unwrap();
    assert_eq!(invitations.len(), 1, "{invitations:?}");
    bob.c().accept_invitation(room).await.unwrap();
    alice
        .c()
        .send_text(room, "welcome, for real")
        .await
        .unwrap();
    bob.wait_text("welcome, for real").await;
    bob.c().send_text(room, "glad to be here").await.unwrap();
    let members: Vec<_> = alice
        .c()
        .members(room)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.handle)
        .collect();
    assert_eq!(members, [h("alice"), h("bob")]);
    let rooms = bob.c().rooms().await.unwrap();
    assert!(rooms.iter().any(|r| r.id == room), "{rooms:?}");
    let _ = bob
        .wait_for(
            "nothing removed bob",
            |e| matches!(e, ClientEvent::Message(m) if m.text == "glad to be here"),
        )
        .await;
}

/// Anyone may name a room anything, so two rooms can share a name: a name that fits more
/// than one is refused (never a guess that sends to the wrong people); the id works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_name_two_rooms_share_is_refused_and_the_id_works() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let bob = relay.user("bob").await;
    let family = common::room_with(&alice, &[&bob], "family").await;
    let decoy = common::room_with(&bob, &[&alice], "Family").await;
    alice.c().sync().await.unwrap();
    match alice.c().find_room("family").await {
        Err(err @ hearth_core::ClientError::AmbiguousRoom { .. }) => {
            let hearth_core::ClientError::AmbiguousRoom { rooms, .. } = &err else {
                unreachable!()
            };
            let ids: Vec<_> = rooms.iter().map(|r| r.id).collect();
            assert!(ids.contains(&family) && ids.contains(&decoy), "{ids:?}");
            // Named, and told apart by their ids (the names differ only in case).
            assert!(rooms.iter().all(|r| r.ambiguous), "{rooms:?}");
            let shown: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
            let family_shown = format!("family [{}]", &family.to_hex()[..8]);
            let decoy_shown = format!("Family [{}]", &decoy.to_hex()[..8]);
            assert!(
                shown.contains(&family_shown) && shown.contains(&decoy_shown),
                "{shown:?}"
            );
            assert!(err.to_string().contains(&family.to_hex()[..8]), "{err}");
        }
        other => panic!("expected an ambiguous name, got {other:?}"),
    }
    let id = family.to_hex();
    assert_eq!(alice.c().find_room(&id[..8]).await.unwrap(), Some(family));
}

/// A relay connection that loses every `Deposit` (as when the inviter's connection drops,
/// or it is killed, between the commit and the Welcome).
struct NoDeposits(hearth_core::transport::quic::QuicConnector);

struct NoDepositsLink(std::sync::Arc<dyn hearth_core::transport::Link>);

impl hearth_core::transport::Link for NoDepositsLink {
    fn call(
        &self,
        request: hearth_protocol::Request,
    ) -> hearth_core::transport::BoxFuture<
        '_,
        Result<
            Result<hearth_protocol::Response, hearth_protocol::WireError>,
            hearth_core::transport::TransportError,
        >,
    > {
        Box::pin(async move {
            if matches!(request, hearth_protocol::Request::Deposit { .. }) {
                return Err(hearth_core::transport::TransportError::Closed);
            }
            self.0.call(request).await
        })
    }

    fn close(&self) {
        self.0.close();
    }
}

impl hearth_core::transport::Connector for NoDeposits {
    fn connect(
        &self,
    ) -> hearth_core::transport::BoxFuture<
        '_,
        Result<hearth_core::transport::Connection, hearth_core::transport::TransportError>,
    > {
        Box::pin(async move {
            let mut conn = self.0.connect().await?;
            conn.link = std::sync::Arc::new(NoDepositsLink(conn.link));
            Ok(conn)
        })
    }

    fn address(&self) -> String {
        self.0.address()
    }
}

/// The invitation's commit landed but its Welcome never reached the relay: the Welcome
/// is owed, and delivered when the inviter next connects, so the invitee is not left a
/// member who cannot get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_lost_after_its_commit_is_delivered_at_the_next_connection() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = alice.c().create_room("Home").await.unwrap();
    alice.client.take().unwrap().close().await;
    let profile = hearth_core::Profile::open(&alice.dir, common::PASS).unwrap();
    let connector = std::sync::Arc::new(NoDeposits(
        hearth_core::transport::quic::QuicConnector::new(profile.relay().clone()),
    ));
    let lossy = hearth_core::Client::connect_with(profile, connector)
        .await
        .unwrap();
    // The invitation happened (the commit is in the log), whatever became of the Welcome.
    lossy.invite(room, &h("bob")).await.unwrap();
    lossy.close().await;
    bob.c().sync().await.unwrap();
    assert!(bob.c().invitations().await.unwrap().is_empty());

    alice.restart().await;
    bob.wait_for("the invitation", |e| matches!(e, ClientEvent::Invited(_)))
        .await;
    bob.c().accept_invitation(room).await.unwrap();
    alice.c().send_text(room, "you made it").await.unwrap();
    bob.wait_text("you made it").await;
}

/// Once armed, performs the next request of one kind (`Commit`, `Append`) but reports the
/// connection lost instead of its answer, as when the relay stored it and died before
/// replying.
struct LoseFirstAnswer(
    hearth_core::transport::quic::QuicConnector,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    fn(&hearth_protocol::Request) -> bool,
);

struct LoseFirstAnswerLink(
    std::sync::Arc<dyn hearth_core::transport::Link>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    fn(&hearth_protocol::Request) -> bool,
);

fn is_commit(request: &hearth_protocol::Request) -> bool {
    matches!(request, hearth_protocol::Request::Commit { .. })
}

fn is_append(request: &hearth_protocol::Request) -> bool {
    matches!(request, hearth_protocol::Request::Append { .. })
}

impl hearth_core::transport::Link for LoseFirstAnswerLink {
    fn call(
        &self,
        request: hearth_protocol::Request,
    ) -> hearth_core::transport::BoxFuture<
        '_,
        Result<
            Result<hearth_protocol::Response, hearth_protocol::WireError>,
            hearth_core::transport::TransportError,
        >,
    > {
        Box::pin(async move {
            let chosen = (self.2)(&request);
            let answer = self.0.call(request).await;
            if chosen && self.1.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Err(hearth_core::transport::TransportError::Closed);
            }
            answer
        })
    }

    fn close(&self) {
        self.0.close();
    }
}

impl hearth_core::transport::Connector for LoseFirstAnswer {
    fn connect(
        &self,
    ) -> hearth_core::transport::BoxFuture<
        '_,
        Result<hearth_core::transport::Connection, hearth_core::transport::TransportError>,
    > {
        Box::pin(async move {
            let mut conn = self.0.connect().await?;
            conn.link = std::sync::Arc::new(LoseFirstAnswerLink(conn.link, self.1.clone(), self.2));
            Ok(conn)
        })
    }

    fn address(&self) -> String {
        self.0.address()
    }
}

/// Closes `user`'s client and connects its profile again through [`LoseFirstAnswer`],
/// armed once connected: the next request that `kind` picks is performed, and its
/// answer lost.
async fn reconnect_losing_next(
    user: &mut common::User,
    kind: fn(&hearth_protocol::Request) -> bool,
) -> (
    hearth_core::Client,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    user.client.take().unwrap().close().await;
    let profile = hearth_core::Profile::open(&user.dir, common::PASS).unwrap();
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let connector = std::sync::Arc::new(LoseFirstAnswer(
        hearth_core::transport::quic::QuicConnector::new(profile.relay().clone()),
        lost.clone(),
        kind,
    ));
    let lossy = hearth_core::Client::connect_with(profile, connector)
        .await
        .unwrap();
    lost.store(true, std::sync::atomic::Ordering::SeqCst);
    (lossy, lost)
}

/// Issue 13: a kick whose answer was lost happened; it is reported done (the log says
/// so), not failed, and nobody retries it into an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_whose_answer_was_lost_is_reported_done_from_the_log() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "Home").await;
    let (lossy, lost) = reconnect_losing_next(&mut alice, is_commit).await;
    lossy
        .kick(room, &h("bob"))
        .await
        .expect("the kick happened");
    assert!(
        !lost.load(std::sync::atomic::Ordering::SeqCst),
        "the kick's answer was lost"
    );
    let members: Vec<_> = lossy
        .members(room)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.handle)
        .collect();
    assert_eq!(members, vec![h("alice")]);
    bob.wait_for("bob's removal", |e| {
        matches!(e, ClientEvent::RemovedFromRoom { .. })
    })
    .await;
    lossy.close().await;
}

/// Issue 12: a kicked member keeps the room's history on its machine, readable before
/// and after a restart, and the room is listed as one it is no longer in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_member_keeps_the_rooms_history() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "Home").await;
    alice.c().send_text(room, "before the kick").await.unwrap();
    bob.wait_text("before the kick").await;
    alice.c().kick(room, &h("bob")).await.unwrap();
    bob.wait_for("bob's removal", |e| {
        matches!(e, ClientEvent::RemovedFromRoom { .. })
    })
    .await;
    for when in ["after the kick", "after a restart"] {
        let past = bob.c().past_rooms().await.unwrap();
        assert_eq!(past.len(), 1, "{when}: {past:?}");
        assert_eq!(
            (past[0].id, past[0].name.as_str()),
            (room, "Home"),
            "{when}"
        );
        assert_eq!(
            bob.c().find_past_room("home").await.unwrap(),
            Some(room),
            "{when}"
        );
        let texts: Vec<String> = bob
            .c()
            .history(room, 10, None)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.text)
            .collect();
        assert_eq!(texts, ["before the kick"], "{when}");
        bob.restart().await;
    }
}

/// Issue 13: a message whose answer was lost with the connection was stored; `send_text`
/// reports it sent (the log says so), and it is in the room once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_answer_was_lost_is_reported_sent_once() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "Home").await;
    let (lossy, lost) = reconnect_losing_next(&mut alice, is_append).await;
    let seq = lossy
        .send_text(room, "said once")
        .await
        .expect("the message was stored");
    assert!(
        !lost.load(std::sync::atomic::Ordering::SeqCst),
        "the append's answer was lost"
    );
    lossy.send_text(room, "and then this").await.unwrap();
    bob.wait_text("and then this").await;
    let texts = |items: Vec<hearth_core::HistoryItem>| -> Vec<(hearth_protocol::Seq, String)> {
        items.into_iter().map(|i| (i.seq, i.text)).collect()
    };
    let seen = texts(bob.c().history(room, 50, None).await.unwrap());
    let once: Vec<_> = seen.iter().filter(|(_, t)| t == "said once").collect();
    assert_eq!(once, [&(seq, "said once".to_string())], "{seen:?}");
    let own = texts(lossy.history(room, 50, None).await.unwrap());
    assert_eq!(
        own.iter().filter(|(_, t)| t == "said once").count(),
        1,
        "{own:?}"
    );
    lossy.close().await;
}

/// A send that fails before its message goes out (the relay is away) reports the
/// failure, not the seq of our previous message of the room. The stress kill-loop found
/// writers told "stored at 62" twice in a row, for a message the relay never had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_fails_before_going_out_is_not_reported_as_the_previous_one() {
    let mut relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = room_with(&alice, &[&bob], "Home").await;
    let first = alice.c().send_text(room, "first").await.unwrap();
    let addr = relay.stop().await;
    match alice.c().send_text(room, "while away").await {
        Err(
            hearth_core::ClientError::NotConnected | hearth_core::ClientError::Unreachable { .. },
        ) => {}
        other => panic!("sent while the relay was away (the first is at {first:?}): {other:?}"),
    }
    alice
        .wait_for("the drop", |e| {
            matches!(
                e,
                ClientEvent::Connection(ConnectionState::Reconnecting { .. })
            )
        })
        .await;
    relay.start_on(addr).await;
    alice
        .wait_for("the reconnection", |e| {
            matches!(e, ClientEvent::Connection(ConnectionState::Connected))
        })
        .await;
    let third = alice.c().send_text(room, "after").await.unwrap();
    assert!(third > first, "{third:?} after {first:?}");
    bob.wait_text("after").await;
    let seen: Vec<(hearth_protocol::Seq, String)> = bob
        .c()
        .history(room, 50, None)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.seq, i.text))
        .collect();
    assert_eq!(
        seen,
        [(first, "first".to_string()), (third, "after".to_string())]
    );
}

/// Issue 12 and 13: someone invited who has not accepted is shown as invited, can be
/// invited again (the same commit replaces their pending leaf), and once they accept
/// they are a member like any other, whom inviting again is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_invitee_is_shown_invited_and_can_be_invited_again() {
    let relay = Relay::start().await;
    let mut alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let room = alice.c().create_room("Home").await.unwrap();
    alice.c().invite(room, &h("bob")).await.unwrap();
    let pending = |members: Vec<hearth_core::Member>| -> Vec<(String, bool)> {
        members
            .into_iter()
            .map(|m| (m.handle.to_string(), m.pending))
            .collect()
    };
    assert_eq!(
        pending(alice.c().members(room).await.unwrap()),
        [("alice".to_string(), false), ("bob".to_string(), true)]
    );
    // The invitation was lost, or bob uses another device: invited again, not refused.
    alice
        .c()
        .invite(room, &h("bob"))
        .await
        .expect("a pending invitee can be invited again");
    assert_eq!(
        pending(alice.c().members(room).await.unwrap()),
        [("alice".to_string(), false), ("bob".to_string(), true)]
    );

    bob.c().sync().await.unwrap();
    assert_eq!(bob.c().invitations().await.unwrap().len(), 1);
    bob.c().accept_invitation(room).await.unwrap();
    bob.c().send_text(room, "I said yes").await.unwrap();
    alice.wait_text("I said yes").await;
    assert_eq!(
        pending(alice.c().members(room).await.unwrap()),
        [("alice".to_string(), false), ("bob".to_string(), false)]
    );
    assert_eq!(
        pending(bob.c().members(room).await.unwrap()),
        [("alice".to_string(), false), ("bob".to_string(), false)]
    );
    match alice.c().invite(room, &h("bob")).await {
        Err(hearth_core::ClientError::AlreadyMember { .. }) => {}
        other => panic!("inviting a member who accepted: {other:?}"),
    }
    alice.c().send_text(room, "still one bob").await.unwrap();
    bob.wait_text("still one bob").await;
}

/// Issue 12: what was said between the invitation and the acceptance is not shown to
/// the invitee, nor kept in its history; what is said after is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitee_is_not_shown_what_was_said_before_it_accepted() {
    let relay = Relay::start().await;
    let alice = relay.user("alice").await;
    let mut bob = relay.user("bob").await;
    let carol = relay.user("carol").await;
    let room = room_with(&alice, &[&carol], "Home").await;
    alice.c().invite(room, &h("bob")).await.unwrap();
    alice
        .c()
        .send_text(room, "about bob's birthday present")
        .await
        .unwrap();
    carol.c().send_text(room, "a bike!").await.unwrap();
    bob.c().sync().await.unwrap();
    bob.c().accept_invitation(room).await.unwrap();
    alice.c().send_text(room, "hi bob").await.unwrap();
    let said = bob
        .wait_for("a message", |e| matches!(e, ClientEvent::Message(_)))
        .await;
    match said {
        ClientEvent::Message(m) => assert_eq!(m.text, "hi bob"),
        other => panic!("{other:?}"),
    }
    let history: Vec<String> = bob
        .c()
        .history(room, 50, None)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.text)
        .collect();
    assert_eq!(history, ["hi bob"]);
}

/// Issue 13: the first invitation reaches the invitee's client before the admin invites
/// again (replacing the pending leaf), with the client online throughout, or closed and
/// started again after the second invitation (as two CLI processes do it). Either way the
/// invitee holds the second invitation, and accepting it joins the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitee_invited_twice_after_taking_in_the_first_holds_the_second_and_joins() {
    for restarts in [false, true] {
        let relay = Relay::start().await;
        let alice = relay.user("alice").await;
        let mut bob = relay.user("bob").await;
        let room = alice.c().create_room("Home").await.unwrap();
        alice.c().invite(room, &h("bob")).await.unwrap();
        bob.wait_for("the first invitation", |e| {
            matches!(e, ClientEvent::Invited(_))
        })
        .await;
        if restarts {
            bob.client.take().unwrap().close().await;
        }
        alice.c().invite(room, &h("bob")).await.unwrap();
        if restarts {
            bob.restart().await;
        }
        let invitations = bob.c().invitations().await.unwrap();
        assert!(
            invitations.iter().any(|i| i.room == room),
            "restarts {restarts}: {invitations:?}"
        );
        bob.c().accept_invitation(room).await.unwrap();
        alice.c().send_text(room, "in at last").await.unwrap();
        bob.wait_text("in at last").await;
    }
}
