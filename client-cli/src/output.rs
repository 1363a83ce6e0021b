//! How messages and lists look, as text for people and as JSON lines for scripts.

use std::time::{SystemTime, UNIX_EPOCH};

use hearth_core::{HistoryItem, RoomSummary};
use hearth_protocol::Handle;
use serde_json::json;

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

/// One message as a line of text: `[HH:MM] <alice> hello`.
pub fn message_line(item: &HistoryItem) -> String {
    let reply = item
        .reply_to
        .map(|seq| format!(" (re #{seq})"))
        .unwrap_or_default();
    format!(
        "[{}] <{}>{} {}",
        clock(item.time),
        item.sender,
        reply,
        item.text
    )
}

/// One message of a private conversation: `[HH:MM] *alice* hello` when received,
/// `[HH:MM] -> bob: hello` when sent to `peer`.
pub fn private_line(item: &HistoryItem, peer: &Handle) -> String {
    if item.own {
        format!("[{}] -> {peer}: {}", clock(item.time), item.text)
    } else {
        format!("[{}] *{}* {}", clock(item.time), item.sender, item.text)
    }
}

/// A message line in the style of its room: private or not.
pub fn line_in(item: &HistoryItem, room: Option<&RoomSummary>, me: &Handle) -> String {
    match room.filter(|r| r.direct).and_then(|r| peer(r, me)) {
        Some(peer) => private_line(item, peer),
        None => message_line(item),
    }
}

/// The other person of a private conversation (`None` once they left).
pub fn peer<'a>(room: &'a RoomSummary, me: &Handle) -> Option<&'a Handle> {
    room.members.iter().find(|h| *h != me)
}

/// How a room is named to the user: its name, or `@NICK` for a private conversation.
pub fn room_label(room: &RoomSummary, me: &Handle) -> String {
    match peer(room, me) {
        Some(peer) if room.direct => format!("@{peer}"),
        _ => room.name.clone(),
    }
}

/// One message as a JSON object.
pub fn message_json(item: &HistoryItem, room_name: &str) -> serde_json::Value {
    json!({
        "type": "message",
        "room": item.room.to_hex(),
        "room_name": room_name,
        "seq": item.seq.0,
        "sender": item.sender.as_str(),
        "text": item.text,
        "time": timestamp(item.time),
        "own": item.own,
        "reply_to": item.reply_to.map(|s| s.0),
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
}
