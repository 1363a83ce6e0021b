//! How events look in the chat stream.

use hearth_core::{ClientEvent, ConnectionState, ConsistencyWarning, Invitation};
use hearth_protocol::{Handle, RoomId};

use crate::output;

/// The name of a room, or its short id when unknown.
pub fn room_name(names: &[(RoomId, String)], room: RoomId) -> String {
    names
        .iter()
        .find(|(id, _)| *id == room)
        .map(|(_, name)| name.clone())
        .unwrap_or_else(|| room.to_hex()[..8].to_string())
}

/// A pending invitation.
pub fn invitation(inv: &Invitation) -> String {
    format!(
        "* {} invited you to {} (accept with /join {})",
        inv.from, inv.name, inv.name
    )
}

/// The line for an event, if it deserves one.
pub fn event(
    event: &ClientEvent,
    current: Option<RoomId>,
    me: &Handle,
    names: &[(RoomId, String)],
) -> Option<String> {
    let prefix = |room: RoomId| {
        if Some(room) == current {
            String::new()
        } else {
            format!("[{}] ", room_name(names, room))
        }
    };
    Some(match event {
        ClientEvent::Message(item) => {
            // Own messages are shown too, once the relay has stored them: that is the
            // delivery confirmation.
            let mention = !item.own && mentions(&item.text, me);
            let line = format!("{}{}", prefix(item.room), output::message_line(item));
            if mention {
                format!("\x07{line}  <-- you")
            } else {
                line
            }
        }
        ClientEvent::Invited(inv) => invitation(inv),
        ClientEvent::MemberJoined { room, handle } => format!("* {}{handle} joined", prefix(*room)),
        ClientEvent::MemberLeft { room, handle } => format!("* {}{handle} left", prefix(*room)),
        ClientEvent::MemberRemoved { room, handle, by } => {
            format!("* {}{handle} was removed by {by}", prefix(*room))
        }
        ClientEvent::RemovedFromRoom { room, by, banned } => format!(
            "* you were {} {} by {by}; you can no longer read it",
            if *banned { "banned from" } else { "kicked from" },
            room_name(names, *room)
        ),
        ClientEvent::OwnerChanged { room, owner } => {
            format!("* {}{owner} is now the owner", prefix(*room))
        }
        ClientEvent::RoleChanged { room, handle, admin } => format!(
            "* {}{handle} {}",
            prefix(*room),
            if *admin { "is now an admin" } else { "is no longer an admin" }
        ),
        ClientEvent::BanChanged { room, handle, banned, by } => format!(
            "* {}{handle} was {} by {by}",
            prefix(*room),
            if *banned { "banned" } else { "unbanned" }
        ),
        ClientEvent::RoomRebuilt { room, new, by } => format!(
            "* {by} rebuilt {} as a new room ({new}): accept the invitation to continue there",
            room_name(names, *room)
        ),
        ClientEvent::TopicChanged { room, topic } => {
            format!("* {}topic: {topic}", prefix(*room))
        }
        ClientEvent::ExpiryChanged { room, expire } => match expire {
            Some(d) => format!(
                "* {}messages now disappear after {}s",
                prefix(*room),
                d.as_secs()
            ),
            None => format!("* {}messages no longer disappear", prefix(*room)),
        },
        ClientEvent::RoomRenamed { room, name } => format!("* {}room renamed to {name}", prefix(*room)),
        ClientEvent::KeyChanged { handle } => format!(
            "!! the identity key of {handle} CHANGED. If they did not reinstall, someone may be impersonating them. Compare safety numbers: hearth verify {handle}"
        ),
        ClientEvent::Consistency { room, warning } => format!(
            "!! {}{}",
            prefix(*room),
            consistency(warning)
        ),
        ClientEvent::Rejected { room, seq, reason } => {
            format!("!! {}rejected message #{seq}: {reason}", prefix(*room))
        }
        ClientEvent::Connection(state) => connection(state),
        ClientEvent::AccountRegistered { handle } => {
            format!("* {handle} registered on the relay (compare fingerprints before trusting them)")
        }
    })
}

fn consistency(warning: &ConsistencyWarning) -> String {
    warning.to_string()
}

fn connection(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Connected => "* connected to the relay".to_string(),
        ConnectionState::Reconnecting { reason, retry_in } => format!(
            "* connection lost ({reason}); retrying in {}s",
            retry_in.as_secs().max(1)
        ),
        ConnectionState::Closed => "* disconnected".to_string(),
    }
}

/// Whether `text` mentions `me` (`@me` or the bare handle as a word).
pub fn mentions(text: &str, me: &Handle) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '@'))
        .any(|word| {
            word.trim_start_matches('@')
                .eq_ignore_ascii_case(me.as_str())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_match_whole_words() {
        let me = Handle::new("bob").unwrap();
        assert!(mentions("hi @bob!", &me));
        assert!(mentions("Bob, dinner", &me));
        assert!(!mentions("bobby tables", &me));
    }
}
