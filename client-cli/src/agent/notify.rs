//! Desktop notifications, sent by the agent (it hears every event) for a mention or a
//! private message while no full-screen chat window has the focus. Off by default:
//! `hearth config notifications on`.
//!
//! Full-screen chats report their window's focus ([`super::wire::ToAgent::Focus`], from
//! the terminal's focus reports): focused when it opens, until the terminal reports
//! otherwise (a terminal that never reports focus keeps it "focused"); a line-mode chat
//! cannot tell, so it counts as not focused. Only live messages notify (not those caught up after a while offline), at
//! most one per room every [`QUIET`], and never our own.
//!
//! What others wrote goes into a notification inert ([`crate::inert`]), cut short, and
//! with `&`, `<` and `>` escaped: notification services may read the body as markup
//! (links, images). The notification goes to the freedesktop notification service over
//! the session D-Bus (notify-rust, pure-Rust zbus); when there is none, that is logged
//! once and the agent carries on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use hearth_core::{Client, ClientEvent, HistoryItem, RoomSummary, Table};
use hearth_protocol::{Handle, RoomId};
use tokio::sync::broadcast;

use crate::inert::inert;

/// Where the setting is kept: in the profile's store, `Settings` table.
pub const SETTING: &[u8] = b"cli/notifications";
/// A message older than this when it arrives was caught up, not live: no notification.
pub const LIVE: Duration = Duration::from_secs(120);
/// At most one notification per room this often.
pub const QUIET: Duration = Duration::from_secs(10);
/// The longest text of a message a notification shows, in characters.
const BODY_CHARS: usize = 120;
/// The longest room or sender name a notification shows, in characters.
const NAME_CHARS: usize = 40;
/// How long a notification service may take to answer.
const SEND_WAIT: Duration = Duration::from_secs(5);

/// Whether notifications are on for the profile of `store` (off unless set).
pub fn enabled(store: &hearth_core::EncryptedStore) -> bool {
    matches!(store.get(Table::Settings, SETTING), Ok(Some(v)) if v.as_slice() == b"on")
}

/// Turns notifications on or off for the profile of `store`.
pub fn set_enabled(store: &hearth_core::EncryptedStore, on: bool) -> anyhow::Result<()> {
    let mut batch = store.begin()?;
    batch.put(
        Table::Settings,
        SETTING,
        if on { b"on".as_slice() } else { b"off" },
    )?;
    batch.commit()?;
    Ok(())
}

/// How many chat windows have the focus now.
#[derive(Debug, Default)]
pub struct Focus(AtomicUsize);

impl Focus {
    /// Whether any chat window has the focus.
    pub fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

/// One chat window's part in [`Focus`]; dropping it (the window closed) lets go.
pub struct WindowFocus {
    all: Arc<Focus>,
    focused: bool,
}

impl WindowFocus {
    /// A window, not focused yet.
    pub fn new(all: Arc<Focus>) -> WindowFocus {
        WindowFocus {
            all,
            focused: false,
        }
    }

    /// The window gained or lost the focus.
    pub fn set(&mut self, focused: bool) {
        if focused != self.focused {
            self.focused = focused;
            if focused {
                self.all.0.fetch_add(1, Ordering::SeqCst);
            } else {
                self.all.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

impl Drop for WindowFocus {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// A notification to show. Both strings are inert and short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The title: who, and where.
    pub summary: String,
    /// The message's first line, with markup characters escaped.
    pub body: String,
}

/// Decides which events notify (see the module's rules); remembers when each room last
/// did.
#[derive(Debug, Default)]
pub struct Decider {
    last: HashMap<RoomId, SystemTime>,
}

/// What [`Decider::decide`] needs to know besides the event.
pub struct Context<'a> {
    /// Our handle.
    pub me: &'a Handle,
    /// Our rooms (for names, and which are private conversations).
    pub rooms: &'a [RoomSummary],
    /// The setting is on.
    pub enabled: bool,
    /// A chat window has the focus.
    pub focused: bool,
    /// The relay's time now.
    pub now: SystemTime,
}

impl Decider {
    /// The notification `event` deserves, if any.
    pub fn decide(&mut self, event: &ClientEvent, cx: &Context<'_>) -> Option<Note> {
        let ClientEvent::Message(item) = event else {
            return None;
        };
        if !cx.enabled || cx.focused || item.own || item.deleted {
            return None;
        }
        let room = cx.rooms.iter().find(|r| r.id == item.room);
        let direct = room.is_some_and(|r| r.direct);
        if !direct && !crate::chat::render::mentions(&item.text, cx.me) {
            return None;
        }
        let age = cx.now.duration_since(item.time).unwrap_or_default();
        if age > LIVE {
            return None;
        }
        if let Some(last) = self.last.get(&item.room) {
            if cx.now.duration_since(*last).unwrap_or_default() < QUIET {
                return None;
            }
        }
        self.last.insert(item.room, cx.now);
        Some(note(item, room.filter(|_| !direct), cx.me))
    }
}

/// The notification for a message: private (`room` is `None`), or naming us in `room`.
fn note(item: &HistoryItem, room: Option<&RoomSummary>, me: &Handle) -> Note {
    let sender = cut(&crate::output::sender_label(item), NAME_CHARS);
    let summary = match room {
        None => format!("{sender} (private message)"),
        Some(room) => format!(
            "{sender} in {}",
            cut(&inert(&crate::output::room_label(room, me)), NAME_CHARS)
        ),
    };
    let first = item.text.lines().next().unwrap_or_default();
    let body = cut(&inert(first), BODY_CHARS)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    Note { summary, body }
}

/// `text` (already inert) cut to `chars` characters, with `…` when cut.
fn cut(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Runs until the client's events end: shows the notifications they deserve.
pub async fn run(
    client: Weak<Client>,
    mut events: broadcast::Receiver<ClientEvent>,
    focus: Arc<Focus>,
) {
    let mut decider = Decider::default();
    let mut warned = false;
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !matches!(event, ClientEvent::Message(_)) {
            continue;
        }
        let Some(client) = client.upgrade() else {
            return;
        };
        // The cheap answers first: most messages stop here.
        let on = enabled(client.profile().store());
        if !on || focus.any() {
            continue;
        }
        let rooms = client.rooms().await.unwrap_or_default();
        let cx = Context {
            me: client.profile().handle(),
            rooms: &rooms,
            enabled: on,
            focused: focus.any(),
            now: client.relay_now(),
        };
        let Some(note) = decider.decide(&event, &cx) else {
            continue;
        };
        drop(client);
        if let Err(err) = show(&note).await {
            if !warned {
                warned = true;
                tracing::warn!(
                    "desktop notifications cannot be shown ({err}); is a notification service running on the session D-Bus? Carrying on without them"
                );
            }
        }
    }
}

/// Shows a notification through the session D-Bus.
async fn show(note: &Note) -> anyhow::Result<()> {
    let mut notification = notify_rust::Notification::new();
    notification
        .appname("hearth")
        .summary(&note.summary)
        .body(&note.body);
    tokio::time::timeout(SEND_WAIT, notification.show_async())
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {} s", SEND_WAIT.as_secs()))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_protocol::Seq;

    fn h(name: &str) -> Handle {
        Handle::new(name).unwrap()
    }

    const NOW: u64 = 1_772_355_600;

    fn at(secs: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn room(id: u8, name: &str, direct: bool) -> RoomSummary {
        RoomSummary {
            id: RoomId([id; 16]),
            name: name.into(),
            members: vec![h("gran"), h("alice")],
            epoch: 1,
            last_seq: Seq(1),
            direct,
            rebuilt_as: None,
        }
    }

    fn message(room: u8, text: &str, time: u64) -> ClientEvent {
        ClientEvent::Message(HistoryItem {
            room: RoomId([room; 16]),
            seq: Seq(2),
            sender: h("alice"),
            sender_name: None,
            text: text.into(),
            time: at(time),
            own: false,
            reply_to: None,
            edited: false,
            deleted: false,
            reactions: Vec::new(),
        })
    }

    #[test]
    fn only_live_mentions_and_private_messages_notify_when_no_window_is_focused() {
        let me = h("gran");
        let rooms = [room(1, "family", false), room(2, "@gran+alice", true)];
        let cx = |enabled, focused, now| Context {
            me: &me,
            rooms: &rooms,
            enabled,
            focused,
            now: at(now),
        };
        let mut d = Decider::default();
        let mention = message(1, "gran, lunch?", NOW);
        // Off (the default), or a window has the focus: nothing.
        assert_eq!(d.decide(&mention, &cx(false, false, NOW)), None);
        assert_eq!(d.decide(&mention, &cx(true, true, NOW)), None);
        // Not naming us: nothing.
        assert_eq!(
            d.decide(&message(1, "lunch?", NOW), &cx(true, false, NOW)),
            None
        );
        // Caught up long after: nothing.
        assert_eq!(
            d.decide(&message(1, "gran?", NOW - 600), &cx(true, false, NOW)),
            None
        );
        assert_eq!(
            d.decide(&mention, &cx(true, false, NOW + 1)),
            Some(Note {
                summary: "alice in family".into(),
                body: "gran, lunch?".into()
            })
        );
        // The same room again soon: quiet; later: again.
        assert_eq!(d.decide(&mention, &cx(true, false, NOW + 2)), None);
        assert!(d.decide(&mention, &cx(true, false, NOW + 20)).is_some());
        let private = message(2, "psst", NOW);
        assert_eq!(
            d.decide(&private, &cx(true, false, NOW + 1)),
            Some(Note {
                summary: "alice (private message)".into(),
                body: "psst".into()
            })
        );
        // Our own, and other events: nothing.
        let ClientEvent::Message(mut own) = message(2, "gran", NOW) else {
            unreachable!()
        };
        own.own = true;
        let mut d = Decider::default();
        assert_eq!(
            d.decide(&ClientEvent::Message(own), &cx(true, false, NOW)),
            None
        );
        let joined = ClientEvent::MemberJoined {
            room: RoomId([1; 16]),
            handle: h("gran"),
        };
        assert_eq!(d.decide(&joined, &cx(true, false, NOW)), None);
    }

    #[test]
    fn notification_text_is_inert_short_and_not_markup() {
        let me = h("gran");
        let rooms = [room(1, "fam\u{1b}]0;x\u{7}ily\u{202e}", false)];
        let cx = Context {
            me: &me,
            rooms: &rooms,
            enabled: true,
            focused: false,
            now: at(NOW),
        };
        let hostile = format!(
            "gran <a href=\"http://evil\">click</a> & <img src=\"file:///etc/passwd\"/>\u{1b}[2J\u{202e}{}\nsecond line",
            "x".repeat(300)
        );
        let ClientEvent::Message(mut item) = message(1, &hostile, NOW) else {
            unreachable!()
        };
        item.sender_name = Some("\u{202e}Mallory\u{200b}".into());
        let note = Decider::default()
            .decide(&ClientEvent::Message(item), &cx)
            .unwrap();
        for text in [&note.summary, &note.body] {
            assert!(
                !text.chars().any(crate::inert::escaped),
                "control or invisible characters in {text:?}"
            );
            assert!(!text.contains('<') && !text.contains('>'), "{text:?}");
            // Cut before `<`, `>` and `&` become entities.
            assert!(text.chars().count() <= 4 * BODY_CHARS, "{text:?}");
        }
        assert!(note
            .body
            .starts_with("gran &lt;a href=\"http://evil\"&gt;click&lt;/a&gt; &amp; "));
        assert!(note.body.ends_with('…') && !note.body.contains("second line"));
        assert!(
            note.summary
                .contains("\\u{202e}Mallory\\u{200b} (alice) in fam\\u{1b}]0;x\\u{7}ily"),
            "{}",
            note.summary
        );
    }

    #[test]
    fn focus_counts_windows_and_a_closed_window_lets_go() {
        let focus = Arc::new(Focus::default());
        let mut a = WindowFocus::new(focus.clone());
        let mut b = WindowFocus::new(focus.clone());
        assert!(!focus.any());
        a.set(true);
        a.set(true);
        b.set(true);
        a.set(false);
        assert!(focus.any());
        drop(b);
        assert!(!focus.any());
        a.set(true);
        drop(a);
        assert!(!focus.any());
    }
}
