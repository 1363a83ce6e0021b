//! How messages and lists look, as text for people and as JSON lines for scripts.
//!
//! Text for people carries what others wrote only through [`crate::inert`]; JSON carries
//! it as it was sent (serde escapes it).

use std::time::{SystemTime, UNIX_EPOCH};

use hearth_core::{HistoryItem, RoomRef, RoomSummary};
use hearth_protocol::Handle;
use serde_json::json;

use crate::inert::{inert, inert_lines};

/// Seconds since the Unix epoch (0 for times before it).
pub fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `HH:MM` (UTC) of a time, for the chat stream.
pub fn clock(time: SystemTime) -> String {
    let secs = unix_secs(time) % 86_400;
    format!("{:02}:{:02}", secs / 3600, (secs / 60) % 60)
}

/// RFC 3339 timestamp, for JSON and history.
pub fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// A member's role as shown: `invited` for someone who has not accepted the invitation
/// yet (they are in the room's group but see nothing before they accept), else the role.
pub fn member_role(member: &hearth_core::Member) -> String {
    if member.pending {
        "invited".to_string()
    } else {
        member.role.to_string()
    }
}

/// How far a member's key is trusted, as `/who` and `hearth room members` show it
/// (judged by the key the room holds, not by the handle).
pub fn member_trust(member: &hearth_core::Member, me: &Handle) -> &'static str {
    use hearth_core::TrustState;
    if member.handle == *me {
        return "(you)";
    }
    match member.trust {
        Some(TrustState::Verified) => "verified",
        Some(TrustState::Changed { .. }) => "KEY CHANGED (hearth verify / hearth trust)",
        Some(TrustState::Trusted) | None => "not verified",
    }
}

/// Who sent a message: `Grandma (gran)` when the sender chose a display name other than
/// the handle, else the handle. The handle always shows: names can be spoofed, handles
/// cannot. Made inert.
pub fn sender_label(item: &HistoryItem) -> String {
    match item
        .sender_name
        .as_deref()
        .filter(|name| *name != item.sender.as_str())
    {
        Some(name) => format!("{} ({})", inert(name), item.sender),
        None => item.sender.to_string(),
    }
}

/// What a message line shows besides the message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shown<'a> {
    /// The message's number (`#14`, its place in the room's log), which the chat's
    /// `/reply`, `/edit`, `/delete` and `/react` take.
    pub number: bool,
    /// For a reply: the quote of the message it answers (see [`quote`]), already inert;
    /// without one a reply shows `(re #N)`.
    pub quote: Option<&'a str>,
}

/// One message as a line of text: `[HH:MM] <alice> hello`, or
/// `[HH:MM] <Grandma (gran)> hello` with a display name. Made inert; the lines of a
/// multi-line message after the first are set under [`crate::inert::CONTINUATION`].
/// Edits, deletions and reactions show as [`body`] says.
pub fn message_line(item: &HistoryItem) -> String {
    message_line_as(item, Shown::default())
}

/// [`message_line`], with a number or a quote.
pub fn message_line_as(item: &HistoryItem, shown: Shown<'_>) -> String {
    format!(
        "[{}] {}<{}> {}",
        clock(item.time),
        number(item, shown),
        sender_label(item),
        body(item, shown)
    )
}

/// One message of a private conversation: `[HH:MM] *alice* hello` when received,
/// `[HH:MM] -> bob: hello` when sent to `peer`. Made inert, as [`message_line`].
pub fn private_line_as(item: &HistoryItem, peer: &Handle, shown: Shown<'_>) -> String {
    if item.own {
        format!(
            "[{}] {}-> {peer}: {}",
            clock(item.time),
            number(item, shown),
            body(item, shown)
        )
    } else {
        format!(
            "[{}] {}*{}* {}",
            clock(item.time),
            number(item, shown),
            sender_label(item),
            body(item, shown)
        )
    }
}

/// A message line in the style of its room: private or not.
pub fn line_in_as(
    item: &HistoryItem,
    room: Option<&RoomSummary>,
    me: &Handle,
    shown: Shown<'_>,
) -> String {
    match room.filter(|r| r.direct).and_then(|r| peer(r, me)) {
        Some(peer) => private_line_as(item, peer, shown),
        None => message_line_as(item, shown),
    }
}

fn number(item: &HistoryItem, shown: Shown<'_>) -> String {
    if shown.number {
        format!("#{} ", item.seq)
    } else {
        String::new()
    }
}

/// What a message line shows after the sender: the reply's quote, the text (or
/// `(deleted)`), `(edited)`, and the reactions: `(re alice: who brings…) me! (edited)
/// [👍 2 ❤️ 1]`. Made inert.
pub fn body(item: &HistoryItem, shown: Shown<'_>) -> String {
    let mut out = String::new();
    match (shown.quote, item.reply_to) {
        (Some(quote), _) => out.push_str(&format!("(re {quote}) ")),
        (None, Some(seq)) => out.push_str(&format!("(re #{seq}) ")),
        (None, None) => {}
    }
    if item.deleted {
        out.push_str("(deleted)");
        return out;
    }
    out.push_str(&inert_lines(&item.text));
    if item.edited {
        out.push_str(" (edited)");
    }
    if !item.reactions.is_empty() {
        out.push_str(&format!(" [{}]", reactions(&item.reactions)));
    }
    out
}

/// Reactions as counts: `👍 2 ❤️ 1`. Made inert.
pub fn reactions(reactions: &[hearth_core::Reaction]) -> String {
    reactions
        .iter()
        .map(|r| format!("{} {}", inert(&r.emoji), r.by.len()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The most characters of a message a quote shows.
pub const QUOTE_CHARS: usize = 40;

/// A one-line quote of a message, for the replies to it: `alice: who brings dessert?`,
/// its first line cut at [`QUOTE_CHARS`] characters with `…`. Made inert.
pub fn quote(item: &HistoryItem) -> String {
    if item.deleted {
        return format!("{}: (deleted)", sender_label(item));
    }
    let first = item.text.lines().next().unwrap_or_default();
    let mut cut: String = first.chars().take(QUOTE_CHARS).collect();
    if cut.len() < item.text.trim_end().len() {
        cut.push('…');
    }
    format!("{}: {}", sender_label(item), inert(&cut))
}

/// The other person of a private conversation (`None` once they left).
pub fn peer<'a>(room: &'a RoomSummary, me: &Handle) -> Option<&'a Handle> {
    room.members.iter().find(|h| *h != me)
}

/// How a room is named to the user: its name, or `@NICK` for a private conversation,
/// and ` (old)` after it once an admin rebuilt it. As it was set (for JSON): pass it
/// through [`inert`] to print it. Where the room is one of several known, prefer
/// [`room_name`], which also tells rooms of the same name apart.
pub fn room_label(room: &RoomSummary, me: &Handle) -> String {
    let name = match peer(room, me) {
        Some(peer) if room.direct => format!("@{peer}"),
        _ => room.name.clone(),
    };
    if room.rebuilt_as.is_some() {
        format!("{name} (old)")
    } else {
        name
    }
}

/// How a room is named in every message the user sees: `family`, `@alice`, `family
/// (old)` after a rebuild, `family [01d573c3]` when another room is shown the same way,
/// `room 01d573c3` when its name is not known here (see [`hearth_core::RoomRef`]). Made
/// inert: names are chosen by the rooms' members.
pub fn room_name(room: &RoomRef) -> String {
    inert(&room.to_string()).into_owned()
}

/// A room in JSON: its id and name (`null` when not known here), and whether it is an
/// old room an admin rebuilt, as fields to merge into an object.
pub fn room_fields(room: &RoomRef) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = serde_json::Map::new();
    fields.insert("room".into(), json!(room.id.to_hex()));
    fields.insert("room_name".into(), json!(room.name));
    if room.old {
        fields.insert("room_old".into(), json!(true));
    }
    fields
}

/// `fields` with the room's ([`room_fields`]) added, as one JSON object.
pub fn with_room(room: &RoomRef, fields: serde_json::Value) -> serde_json::Value {
    let mut object = room_fields(room);
    if let serde_json::Value::Object(rest) = fields {
        object.extend(rest);
    }
    serde_json::Value::Object(object)
}

/// One message as a JSON object.
pub fn message_json(item: &HistoryItem, room_name: &str) -> serde_json::Value {
    json!({
        "type": "message",
        "room": item.room.to_hex(),
        "room_name": room_name,
        "seq": item.seq.0,
        "sender": item.sender.as_str(),
        "sender_name": item.sender_name,
        "text": item.text,
        "time": timestamp(item.time),
        "own": item.own,
        "reply_to": item.reply_to.map(|s| s.0),
        "edited": item.edited,
        "deleted": item.deleted,
        "reactions": item.reactions.iter().map(|r| json!({
            "emoji": r.emoji,
            "by": r.by.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clock_shows_hours_and_minutes() {
        let time = UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 13 * 3600 + 7 * 60 + 59);
        assert_eq!(clock(time), "13:07");
        assert_eq!(timestamp(time), "1970-01-04T13:07:59Z");
    }

    #[test]
    fn display_names_show_next_to_the_handle() {
        let mut item = HistoryItem {
            room: hearth_protocol::RoomId([1; 16]),
            seq: hearth_protocol::Seq(1),
            sender: Handle::new("gran").unwrap(),
            sender_name: None,
            text: "hi".into(),
            time: UNIX_EPOCH,
            own: false,
            reply_to: None,
            edited: false,
            deleted: false,
            reactions: Vec::new(),
        };
        assert_eq!(message_line(&item), "[00:00] <gran> hi");
        item.sender_name = Some("gran".into());
        assert_eq!(message_line(&item), "[00:00] <gran> hi");
        item.sender_name = Some("Grandma".into());
        assert_eq!(message_line(&item), "[00:00] <Grandma (gran)> hi");
        assert_eq!(message_json(&item, "Home")["sender_name"], "Grandma");
    }

    #[test]
    fn what_others_wrote_is_shown_inert_but_json_keeps_it() {
        let item = HistoryItem {
            room: hearth_protocol::RoomId([1; 16]),
            seq: hearth_protocol::Seq(1),
            sender: Handle::new("mallory").unwrap(),
            sender_name: Some("\u{202e}ecila".into()),
            text: "hi\x1b[2J\r\n[12:50] <alice> fake\rx".into(),
            time: UNIX_EPOCH,
            own: false,
            reply_to: None,
            edited: false,
            deleted: false,
            reactions: Vec::new(),
        };
        assert_eq!(
            message_line(&item),
            "[00:00] <\\u{202e}ecila (mallory)> hi\\u{1b}[2J\n  | [12:50] <alice> fake\\u{d}x"
        );
        let peer = Handle::new("mallory").unwrap();
        assert!(
            private_line_as(&item, &peer, Shown::default()).contains("\n  | [12:50] <alice> fake")
        );
        assert_eq!(message_json(&item, "Home")["text"], item.text.as_str());
    }

    #[test]
    fn edits_deletions_reactions_and_replies_show_in_the_line() {
        let h = |s: &str| Handle::new(s).unwrap();
        let mut item = HistoryItem {
            room: hearth_protocol::RoomId([1; 16]),
            seq: hearth_protocol::Seq(14),
            sender: h("alice"),
            sender_name: None,
            text: "who brings dessert? The cake needs someone with a big car\nand time".into(),
            time: UNIX_EPOCH,
            own: false,
            reply_to: None,
            edited: true,
            deleted: false,
            reactions: vec![
                hearth_core::Reaction {
                    emoji: "👍".into(),
                    by: vec![h("bob"), h("carol")],
                },
                hearth_core::Reaction {
                    emoji: "\u{202e}x".into(),
                    by: vec![h("bob")],
                },
            ],
        };
        assert_eq!(
            quote(&item),
            "alice: who brings dessert? The cake needs someo…"
        );
        let numbered = Shown {
            number: true,
            quote: None,
        };
        assert_eq!(
            message_line_as(&item, numbered),
            "[00:00] #14 <alice> who brings dessert? The cake needs someone with a big car\n  | and time (edited) [👍 2 \\u{202e}x 1]"
        );
        let mut reply = item.clone();
        reply.seq = hearth_protocol::Seq(15);
        reply.text = "me".into();
        reply.edited = false;
        reply.reactions.clear();
        reply.reply_to = Some(hearth_protocol::Seq(14));
        assert_eq!(message_line(&reply), "[00:00] <alice> (re #14) me");
        let q = quote(&item);
        let shown = Shown {
            number: true,
            quote: Some(&q),
        };
        assert_eq!(
            message_line_as(&reply, shown),
            "[00:00] #15 <alice> (re alice: who brings dessert? The cake needs someo…) me"
        );
        item.deleted = true;
        item.text.clear();
        assert_eq!(message_line(&item), "[00:00] <alice> (deleted)");
        assert_eq!(quote(&item), "alice: (deleted)");
        assert_eq!(message_json(&item, "Home")["deleted"], true);
        item.text = "\u{1b}[2J".into();
        item.deleted = false;
        assert_eq!(quote(&item), "alice: \\u{1b}[2J");
    }
}
