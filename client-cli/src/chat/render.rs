//! How events look in the chat stream. Whatever others wrote (names, topics, messages,
//! the relay's reasons) goes through [`crate::inert`].

use hearth_core::{
    Client, ClientEvent, ConnectionState, ConsistencyWarning, Invitation, MessageChange, RoomRef,
    RoomSummary,
};
use hearth_protocol::{Handle, RoomId};

use crate::inert::inert;
use crate::output;

/// What the chat knows of the rooms when it shows a line: the rooms we are in (for the
/// style of their messages; the slice it derefs to) and how every known room is named,
/// invitations and past rooms included (see [`hearth_core::RoomRef`]).
#[derive(Debug, Clone, Default)]
pub struct Rooms {
    /// The rooms we are in.
    pub joined: Vec<RoomSummary>,
    /// Every room known, named.
    pub refs: Vec<RoomRef>,
}

impl Rooms {
    /// Reads both from the client's local state.
    pub async fn of(client: &Client) -> Rooms {
        Rooms {
            joined: client.rooms().await.unwrap_or_default(),
            refs: client.room_refs().await,
        }
    }

    /// How `room` is named to the user, made inert (see [`output::room_name`]).
    pub fn name(&self, room: RoomId) -> String {
        match self.refs.iter().find(|r| r.id == room) {
            Some(named) => output::room_name(named),
            None => output::room_name(&RoomRef::from(room)),
        }
    }

    /// `room` as the `[family] ` that starts a line about a room not on screen. Its
    /// members chose the name, and the line-mode chat puts it before the time and sender
    /// of a message, so it must not be able to end the tag and show a time and sender of
    /// its own (`family] [12:50] <alice> …`): brackets (`[]<>`) in it are shown escaped, as
    /// [`inert`] shows controls, and a name longer than [`TAG_CHARS`] is cut, so that it
    /// cannot push the real sender out of sight either.
    pub fn tag(&self, room: RoomId) -> String {
        let named = self
            .refs
            .iter()
            .find(|r| r.id == room)
            .cloned()
            .unwrap_or_else(|| RoomRef::from(room));
        let Some(label) = named.label() else {
            return format!("[{}] ", output::room_name(&named));
        };
        let mut cut: String = label.chars().take(TAG_CHARS).collect();
        if cut.len() < label.len() {
            cut.push('…');
        }
        let mut shown = String::with_capacity(cut.len());
        for c in inert(&cut).chars() {
            match c {
                '[' | ']' | '<' | '>' => shown.extend(c.escape_unicode()),
                c => shown.push(c),
            }
        }
        if named.ambiguous {
            format!("[{shown} [{}]] ", named.short_id())
        } else {
            format!("[{shown}] ")
        }
    }
}

/// The most characters of a room's name that [`Rooms::tag`] shows.
pub const TAG_CHARS: usize = 32;

impl std::ops::Deref for Rooms {
    type Target = [RoomSummary];

    fn deref(&self) -> &[RoomSummary] {
        &self.joined
    }
}

impl Rooms {
    /// The rooms we are in, named as they are listed (no invitations or past rooms, no
    /// ambiguity): for tests.
    #[cfg(test)]
    pub fn listed(joined: Vec<RoomSummary>, me: &Handle) -> Rooms {
        let refs = joined
            .iter()
            .map(|r| RoomRef {
                id: r.id,
                name: Some(output::room_label(
                    &RoomSummary {
                        rebuilt_as: None,
                        ..r.clone()
                    },
                    me,
                )),
                old: r.rebuilt_as.is_some(),
                ambiguous: false,
            })
            .collect();
        Rooms { joined, refs }
    }
}

/// A message line in the style of its room, with its number (what `/reply N` and the
/// like take) and, for a reply, `quote` (see [`output::quote`]).
pub fn message(
    item: &hearth_core::HistoryItem,
    rooms: &[RoomSummary],
    me: &Handle,
    quote: Option<&str>,
) -> String {
    let shown = output::Shown {
        number: true,
        quote,
    };
    output::line_in_as(item, rooms.iter().find(|r| r.id == item.room), me, shown)
}

/// The line for a message that just arrived in `item.room`, `current` being the room on
/// screen: [`message`], named by its room when another, and with a bell and `<-- you`
/// when it mentions us (a bell alone when private).
pub fn arrived(
    item: &hearth_core::HistoryItem,
    current: Option<RoomId>,
    me: &Handle,
    names: &Rooms,
    quote: Option<&str>,
) -> String {
    let direct = names.iter().any(|r| r.id == item.room && r.direct);
    let line = message(item, names, me, quote);
    if direct {
        // Private messages stand out by their form wherever they arrive.
        return if item.own {
            line
        } else {
            format!("\x07{line}")
        };
    }
    let prefix = if Some(item.room) == current {
        String::new()
    } else {
        names.tag(item.room)
    };
    // Own messages are shown too, once the relay has stored them: that is the delivery
    // confirmation.
    if !item.own && mentions(&item.text, me) {
        format!("\x07{prefix}{line}  <-- you")
    } else {
        format!("{prefix}{line}")
    }
}

/// A pending invitation.
pub fn invitation(inv: &Invitation) -> String {
    let name = inert(&inv.name);
    format!(
        "* {} invited you to {name} (accept with /join {name})",
        inv.from
    )
}

/// The line for an event, if it deserves one.
pub fn event(
    event: &ClientEvent,
    current: Option<RoomId>,
    me: &Handle,
    names: &Rooms,
) -> Option<String> {
    let room_name = |room: RoomId| names.name(room);
    let prefix = |room: RoomId| {
        if Some(room) == current {
            String::new()
        } else {
            names.tag(room)
        }
    };
    Some(match event {
        ClientEvent::Message(item) => arrived(item, current, me, names, None),
        ClientEvent::MessageChanged { item, by, change } => {
            let what = match change {
                MessageChange::Edited(_) => format!(
                    "edited #{}: {}",
                    item.seq,
                    output::body(item, output::Shown::default())
                ),
                MessageChange::Deleted => format!("deleted #{}", item.seq),
                MessageChange::Reacted(emoji) => format!(
                    "reacted {} to #{} ({}) [{}]",
                    inert(emoji),
                    item.seq,
                    output::quote(item),
                    output::reactions(&item.reactions)
                ),
            };
            format!("* {}{by} {what}", prefix(item.room))
        }
        ClientEvent::Invited(inv) => invitation(inv),
        ClientEvent::MemberJoined { room, handle } => {
            format!("* {}{handle} was invited", prefix(*room))
        }
        ClientEvent::MemberAccepted { room, handle } => {
            format!("* {}{handle} joined", prefix(*room))
        }
        ClientEvent::MemberLeft { room, handle } => format!("* {}{handle} left", prefix(*room)),
        ClientEvent::MemberRemoved { room, handle, by } => {
            format!("* {}{handle} was removed by {by}", prefix(*room))
        }
        ClientEvent::RemovedFromRoom { room, by, banned } => format!(
            "* you were {} {} by {by}; you can no longer read it",
            if *banned { "banned from" } else { "kicked from" },
            room_name(*room)
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
            "* {by} rebuilt {} as a new room: accept the invitation to {} to continue there",
            room_name(*room),
            room_name(*new)
        ),
        // Presence only of the room in view, and not our own.
        ClientEvent::Presence { room, handle, online } => {
            if Some(*room) != current || handle == me {
                return None;
            }
            if *online {
                format!("* {handle} is online")
            } else {
                format!("* {handle} went offline")
            }
        }
        ClientEvent::TopicChanged { room, topic } => {
            format!("* {}topic: {}", prefix(*room), inert(topic))
        }
        ClientEvent::ExpiryChanged { room, expire } => match expire {
            Some(d) => format!(
                "* {}messages now disappear after {}s",
                prefix(*room),
                d.as_secs()
            ),
            None => format!("* {}messages no longer disappear", prefix(*room)),
        },
        ClientEvent::RoomRenamed { room, name } => {
            format!("* {}room renamed to {}", prefix(*room), inert(name))
        }
        ClientEvent::DisplayNameChanged { handle, name } => {
            format!("* {handle} is now known as {}", inert(name))
        }
        ClientEvent::KeyChanged { handle } => format!(
            "!! the identity key of {handle} CHANGED. If they did not reinstall, someone may be impersonating them. Compare safety numbers: hearth verify {handle}"
        ),
        ClientEvent::CommitReverted { room, seq, by } => {
            let by = by.as_ref().map_or("someone", |h| h.as_str());
            format!(
                "!! {}the commit by {by} (#{}) was refused by the room's members and undone at the relay; {by} can no longer commit here",
                prefix(*room),
                seq.0
            )
        }
        ClientEvent::KeyRotated {
            handle,
            was_verified,
            ..
        } => {
            if *was_verified {
                format!("!! {handle} moved to a new identity key (signed by the old one). You had verified the old one: sending to {handle} waits until you compare again (hearth verify {handle}) or accept it (hearth trust {handle})")
            } else {
                format!("* {handle} moved to a new identity key (signed by the old one)")
            }
        }
        ClientEvent::RetentionRestored { room, found } => format!(
            "!! {}someone changed how long the relay keeps this room's messages (to {}); set back to the room's timer",
            prefix(*room),
            found
                .map(|d| humantime::format_duration(d).to_string())
                .unwrap_or_else(|| "the relay's default".into())
        ),
        ClientEvent::RolledBack { room } => format!(
            "!! {}this profile was put back from an older copy (it found its own messages it does not remember): it makes fresh keys before sending; stop using the other copy",
            prefix(*room)
        ),
        ClientEvent::ClockSkewed { secs } => format!(
            "!! this computer's clock is {} {} the relay's: hearth goes by the relay's, but set the clock right (or turn on network time)",
            humantime::format_duration(std::time::Duration::from_secs(secs.unsigned_abs())),
            if *secs > 0 { "behind" } else { "ahead of" }
        ),
        ClientEvent::Impostor { room, impostor } => {
            format!("!! {}{}", prefix(*room), inert(&impostor.to_string()))
        }
        ClientEvent::Consistency { room, warning } => format!(
            "!! {}{}",
            prefix(*room),
            consistency(warning)
        ),
        ClientEvent::Rejected { room, seq, reason } => {
            format!(
                "!! {}rejected message #{seq}: {}",
                prefix(*room),
                inert(reason)
            )
        }
        ClientEvent::Unsent { room, text, reason } => format!(
            "! {}not sent after all: \"{}\" ({})",
            prefix(*room),
            inert(text),
            inert(reason)
        ),
        ClientEvent::Connection(state) => connection(state),
        ClientEvent::AccountRegistered { handle } => {
            format!("* {handle} registered on the relay (compare fingerprints before trusting them)")
        }
    })
}

/// Whether `event` is something the user must know even outside the chat (a key
/// rotation, an impostor, an undone commit, a fork, a rollback, clock skew, a removal):
/// `read` prints these on standard error, and the agent keeps them for the next `read`.
pub fn is_security(event: &ClientEvent) -> bool {
    matches!(
        event,
        ClientEvent::KeyRotated { .. }
            | ClientEvent::KeyChanged { .. }
            | ClientEvent::Impostor { .. }
            | ClientEvent::CommitReverted { .. }
            | ClientEvent::Consistency { .. }
            | ClientEvent::RolledBack { .. }
            | ClientEvent::ClockSkewed { .. }
            | ClientEvent::RetentionRestored { .. }
            | ClientEvent::RemovedFromRoom { .. }
            | ClientEvent::Unsent { .. }
    )
}

fn consistency(warning: &ConsistencyWarning) -> String {
    inert(&warning.to_string()).into_owned()
}

fn connection(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Connected => "* connected to the relay".to_string(),
        ConnectionState::Reconnecting { reason, retry_in } => format!(
            "* not connected to the relay ({}); retrying in {}s",
            inert(reason),
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

    fn direct_room(id: RoomId) -> RoomSummary {
        RoomSummary {
            id,
            name: "@alice+bob".into(),
            members: vec![Handle::new("alice").unwrap(), Handle::new("bob").unwrap()],
            epoch: 1,
            last_seq: hearth_protocol::Seq(3),
            direct: true,
            rebuilt_as: None,
        }
    }

    #[test]
    fn private_messages_and_presence_have_their_own_form() {
        let me = Handle::new("bob").unwrap();
        let room = RoomId([7; 16]);
        let rooms = Rooms::listed(vec![direct_room(room)], &me);
        let mut item = hearth_core::HistoryItem {
            room,
            seq: hearth_protocol::Seq(3),
            sender: Handle::new("alice").unwrap(),
            sender_name: None,
            text: "psst".into(),
            time: std::time::UNIX_EPOCH,
            own: false,
            reply_to: None,
            edited: false,
            deleted: false,
            reactions: Vec::new(),
        };
        let line = event(&ClientEvent::Message(item.clone()), None, &me, &rooms).unwrap();
        assert_eq!(line, "\x07[00:00] #3 *alice* psst");
        item.sender = me.clone();
        item.own = true;
        let line = event(&ClientEvent::Message(item), None, &me, &rooms).unwrap();
        assert_eq!(line, "[00:00] #3 -> alice: psst");
        assert_eq!(rooms.name(room), "@alice");

        let online = |handle: &str, online| ClientEvent::Presence {
            room,
            handle: Handle::new(handle).unwrap(),
            online,
        };
        assert_eq!(
            event(&online("alice", true), Some(room), &me, &rooms).as_deref(),
            Some("* alice is online")
        );
        assert_eq!(
            event(&online("alice", false), Some(room), &me, &rooms).as_deref(),
            Some("* alice went offline")
        );
        assert_eq!(event(&online("alice", true), None, &me, &rooms), None);
        assert_eq!(event(&online("bob", true), Some(room), &me, &rooms), None);

        let renamed = ClientEvent::DisplayNameChanged {
            handle: Handle::new("gran").unwrap(),
            name: "Grandma".into(),
        };
        assert_eq!(
            event(&renamed, None, &me, &rooms).as_deref(),
            Some("* gran is now known as Grandma")
        );
    }

    #[test]
    fn events_carrying_what_others_wrote_are_inert() {
        let me = Handle::new("bob").unwrap();
        let room = RoomId([7; 16]);
        let mut family = direct_room(room);
        family.direct = false;
        family.name = "fam\x1b[31mily".into();
        let rooms = Rooms::listed(vec![family], &me);
        let other = RoomId([8; 16]);
        let alice = Handle::new("alice").unwrap();
        let events = [
            ClientEvent::TopicChanged {
                room: other,
                topic: "\x1b]0;pwned\x07".into(),
            },
            ClientEvent::RoomRenamed {
                room,
                name: "a\nb\u{202e}".into(),
            },
            ClientEvent::DisplayNameChanged {
                handle: alice.clone(),
                name: "\u{2066}x\u{200b}".into(),
            },
            ClientEvent::Rejected {
                room,
                seq: hearth_protocol::Seq(4),
                reason: "bad\r\x1b[2K".into(),
            },
            ClientEvent::Connection(ConnectionState::Reconnecting {
                reason: "relay says \x1b[2J".into(),
                retry_in: std::time::Duration::from_secs(1),
            }),
            ClientEvent::Invited(Invitation {
                room: other,
                name: "\x1b[5mparty".into(),
                from: alice.clone(),
                received: std::time::UNIX_EPOCH,
            }),
            ClientEvent::Message(hearth_core::HistoryItem {
                room,
                seq: hearth_protocol::Seq(5),
                sender: alice,
                sender_name: None,
                text: "\x1b[2J\n[12:50] <carol> fake".into(),
                time: std::time::UNIX_EPOCH,
                own: false,
                reply_to: None,
                edited: false,
                deleted: false,
                reactions: Vec::new(),
            }),
        ];
        let ClientEvent::Message(forged) = events[events.len() - 1].clone() else {
            unreachable!()
        };
        let mut reacted = forged.clone();
        reacted.reactions = vec![hearth_core::Reaction {
            emoji: "\u{202e}\u{1b}]0;x\u{7}".into(),
            by: vec![forged.sender.clone()],
        }];
        let mut events = events.to_vec();
        events.push(ClientEvent::MessageChanged {
            item: forged.clone(),
            by: forged.sender.clone(),
            change: MessageChange::Edited(forged.text.clone()),
        });
        events.push(ClientEvent::MessageChanged {
            item: reacted,
            by: forged.sender.clone(),
            change: MessageChange::Reacted("\u{202e}\u{1b}]0;x\u{7}".into()),
        });
        for event in &events {
            let line = super::event(event, None, &me, &rooms).unwrap();
            assert!(
                !line.chars().any(|c| c != '\n' && crate::inert::escaped(c)),
                "{line:?}"
            );
            for continued in line.split('\n').skip(1) {
                assert!(
                    continued.starts_with(crate::inert::CONTINUATION),
                    "{line:?}"
                );
            }
        }
        assert_eq!(
            rooms.name(room),
            "fam\\u{1b}[31mily",
            "the room name in every prefix"
        );
    }

    #[test]
    fn notices_name_rooms_and_tell_rooms_of_one_name_apart() {
        let me = Handle::new("bob").unwrap();
        let (family, decoy, old, unknown) = (
            RoomId([1; 16]),
            RoomId([2; 16]),
            RoomId([3; 16]),
            RoomId([0xab; 16]),
        );
        let named = |id, name: &str, old, ambiguous| RoomRef {
            id,
            name: Some(name.into()),
            old,
            ambiguous,
        };
        let rooms = Rooms {
            joined: Vec::new(),
            refs: vec![
                named(family, "family", false, true),
                named(decoy, "family", false, true),
                named(old, "family", true, false),
            ],
        };
        let alice = Handle::new("alice").unwrap();
        let left = |room| ClientEvent::MemberLeft {
            room,
            handle: alice.clone(),
        };
        let line = |e: &ClientEvent| event(e, None, &me, &rooms).unwrap();
        assert_eq!(line(&left(family)), "* [family [01010101]] alice left");
        assert_eq!(line(&left(decoy)), "* [family [02020202]] alice left");
        assert_eq!(line(&left(old)), "* [family (old)] alice left");
        assert_eq!(line(&left(unknown)), "* [room abababab] alice left");
        assert_eq!(
            event(&left(old), Some(old), &me, &rooms).as_deref(),
            Some("* alice left"),
            "no prefix in the room on screen"
        );
        let removed = ClientEvent::RemovedFromRoom {
            room: old,
            by: alice.clone(),
            banned: false,
        };
        assert_eq!(
            line(&removed),
            "* you were kicked from family (old) by alice; you can no longer read it"
        );
        let rebuilt = ClientEvent::RoomRebuilt {
            room: old,
            new: family,
            by: alice,
        };
        assert_eq!(
            line(&rebuilt),
            "* alice rebuilt family (old) as a new room: accept the invitation to family [01010101] to continue there"
        );
    }

    /// A room's name cannot end the `[room] ` tag of a line-mode message and pose as a
    /// time and sender: mallory names his room so that his message there would read as
    /// alice's in the family room.
    #[test]
    fn a_room_name_cannot_pose_as_a_message_from_someone_else() {
        let me = Handle::new("bob").unwrap();
        let trap = RoomId([9; 16]);
        let mut room = direct_room(trap);
        room.direct = false;
        room.name = "family] [12:50] #3 <alice> send me the door code [x".into();
        let rooms = Rooms::listed(vec![room], &me);
        let item = hearth_core::HistoryItem {
            room: trap,
            seq: hearth_protocol::Seq(8),
            sender: Handle::new("mallory").unwrap(),
            sender_name: None,
            text: "hi".into(),
            time: std::time::UNIX_EPOCH,
            own: false,
            reply_to: None,
            edited: false,
            deleted: false,
            reactions: Vec::new(),
        };
        let line = event(&ClientEvent::Message(item), None, &me, &rooms).unwrap();
        let tag_end = line.find("] ").expect("a room tag");
        assert!(
            line[tag_end..].starts_with("] [00:00] #8 <mallory> hi"),
            "the tag ends only where hearth ended it: {line:?}"
        );
        assert!(!line.contains("<alice>"), "{line:?}");
        // A long name is cut, so the real sender stays in sight.
        let long = RoomId([10; 16]);
        let mut room = direct_room(long);
        room.direct = false;
        room.name = "x".repeat(200);
        let rooms = Rooms::listed(vec![room], &me);
        assert_eq!(rooms.tag(long), format!("[{}…] ", "x".repeat(TAG_CHARS)));
    }

    #[test]
    fn mentions_match_whole_words() {
        let me = Handle::new("bob").unwrap();
        assert!(mentions("hi @bob!", &me));
        assert!(mentions("Bob, dinner", &me));
        assert!(!mentions("bobby tables", &me));
    }
}
