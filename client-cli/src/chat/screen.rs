//! What the chat shows, for either kind of terminal: plain lines for a line-mode chat
//! (and scripts), or [`ChatLine`]s and a [`ChatView`] for the full-screen one, which
//! files lines by room and draws the rooms and members beside them.
//!
//! Everything here is made inert before it leaves: names, topics and texts others chose.

use std::time::UNIX_EPOCH;

use hearth_core::{ClientEvent, HistoryItem, RoomSummary, TrustState};
use hearth_protocol::{Handle, RoomId};

use super::render;
use super::terminal::Terminal;
use crate::agent::wire::{
    ChatLine, ChatView, InvitationEntry, LineKind, MemberEntry, ReactionCount, RoomEntry,
};
use crate::inert::inert;
use crate::output;

/// The chat's screen: the terminal and what was last shown beside the lines.
pub struct Screen {
    /// Typed lines and the printer.
    pub term: Terminal,
    shown_view: Option<ChatView>,
}

impl Screen {
    /// A screen on `term`.
    pub fn new(term: Terminal) -> Screen {
        Screen {
            term,
            shown_view: None,
        }
    }

    /// Says `text` (a notice, an error starting with `!`, a warning with `!!`) in the
    /// room on screen.
    pub fn say(&mut self, text: String) {
        match self.term.full_screen.as_mut() {
            Some(full) => (full.line)(plain_line(None, text)),
            None => (self.term.print)(text),
        }
    }

    /// Shows the start of `room`'s history, `text` being its header.
    pub fn header(&mut self, room: RoomId, text: String) {
        match self.term.full_screen.as_mut() {
            Some(full) => (full.line)(ChatLine {
                room: Some(room.to_hex()),
                kind: LineKind::Header,
                time: None,
                seq: None,
                sender: None,
                text,
                ..ChatLine::default()
            }),
            None => (self.term.print)(text),
        }
    }

    /// Shows a message; `quote`: for a reply, the message it answers (see
    /// [`output::quote`]).
    pub fn message(
        &mut self,
        item: &HistoryItem,
        rooms: &[RoomSummary],
        me: &Handle,
        quote: Option<&str>,
    ) {
        match self.term.full_screen.as_mut() {
            Some(full) => (full.line)(message_line(item, rooms, me, quote)),
            None => (self.term.print)(render::message(item, rooms, me, quote)),
        }
    }

    /// Shows what `event` says, `text` being its line-mode form (see
    /// [`render::event`]); `quote` as for [`Screen::message`]. A changed message
    /// replaces its line in a full-screen chat.
    pub fn event(
        &mut self,
        event: &ClientEvent,
        text: String,
        rooms: &[RoomSummary],
        me: &Handle,
        quote: Option<&str>,
    ) {
        match (self.term.full_screen.as_mut(), event) {
            (Some(full), ClientEvent::Message(item) | ClientEvent::MessageChanged { item, .. }) => {
                (full.line)(message_line(item, rooms, me, quote))
            }
            // Removed from a room: said in the room on screen, since the removed room's
            // lines are no longer listed (it may be the one that was on screen).
            (Some(full), ClientEvent::RemovedFromRoom { .. }) => {
                (full.line)(plain_line(None, text))
            }
            (Some(full), _) => (full.line)(plain_line(event_room(event), text)),
            (None, _) => (self.term.print)(text),
        }
    }

    /// Sends the view if the full-screen chat's differs from what it shows.
    pub fn view(&mut self, view: ChatView) {
        let Some(full) = self.term.full_screen.as_mut() else {
            return;
        };
        if self.shown_view.as_ref() != Some(&view) {
            (full.view)(view.clone());
            self.shown_view = Some(view);
        }
    }

    /// Shows the picture at `path` in a full-screen chat (its terminal draws it, see
    /// [`ChatLine::preview`]) with `text`; says `text` alone in line mode.
    pub fn preview(&mut self, path: &std::path::Path, text: String) {
        match self.term.full_screen.as_mut() {
            Some(full) => (full.line)(ChatLine {
                preview: Some(path.to_string_lossy().into_owned()),
                ..plain_line(None, text)
            }),
            None => (self.term.print)(text),
        }
    }

    /// Whether this is a full-screen chat.
    pub fn is_full_screen(&self) -> bool {
        self.term.full_screen.is_some()
    }
}

/// A line-mode line as a chat line of `room`, its kind read from how it starts.
fn plain_line(room: Option<RoomId>, text: String) -> ChatLine {
    let kind = if text.starts_with("!!") || text.starts_with("\x07!!") {
        LineKind::Warning
    } else if text.starts_with('!') {
        LineKind::Error
    } else {
        LineKind::Notice
    };
    ChatLine {
        room: room.map(|r| r.to_hex()),
        kind,
        time: None,
        seq: None,
        sender: None,
        text: text.replace('\x07', ""),
        ..ChatLine::default()
    }
}

/// A message as a chat line.
pub fn message_line(
    item: &HistoryItem,
    rooms: &[RoomSummary],
    me: &Handle,
    quote: Option<&str>,
) -> ChatLine {
    let direct = rooms.iter().any(|r| r.id == item.room && r.direct);
    let kind = if direct {
        LineKind::Private
    } else if item.own {
        LineKind::Own
    } else if render::mentions(&item.text, me) {
        LineKind::Mention
    } else {
        LineKind::Message
    };
    ChatLine {
        room: Some(item.room.to_hex()),
        kind,
        time: item
            .time
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs()),
        seq: Some(item.seq.0),
        sender: Some(output::sender_label(item)),
        text: crate::inert::inert_lines(&item.text).into_owned(),
        quote: quote
            .map(str::to_owned)
            .or_else(|| item.reply_to.map(|seq| format!("#{seq}"))),
        edited: item.edited,
        deleted: item.deleted,
        reactions: item
            .reactions
            .iter()
            .map(|r| ReactionCount {
                emoji: inert(&r.emoji).into_owned(),
                count: r.by.len(),
                mine: r.by.contains(me),
            })
            .collect(),
        own: item.own,
        preview: None,
    }
}

/// The room an event is about, if one.
fn event_room(event: &ClientEvent) -> Option<RoomId> {
    match event {
        ClientEvent::Message(item) | ClientEvent::MessageChanged { item, .. } => Some(item.room),
        ClientEvent::Unsent { room, .. }
        | ClientEvent::MemberJoined { room, .. }
        | ClientEvent::MemberAccepted { room, .. }
        | ClientEvent::MemberLeft { room, .. }
        | ClientEvent::MemberRemoved { room, .. }
        | ClientEvent::RemovedFromRoom { room, .. }
        | ClientEvent::OwnerChanged { room, .. }
        | ClientEvent::RoleChanged { room, .. }
        | ClientEvent::BanChanged { room, .. }
        | ClientEvent::RoomRebuilt { room, .. }
        | ClientEvent::Presence { room, .. }
        | ClientEvent::TopicChanged { room, .. }
        | ClientEvent::ExpiryChanged { room, .. }
        | ClientEvent::RoomRenamed { room, .. }
        | ClientEvent::CommitReverted { room, .. }
        | ClientEvent::RetentionRestored { room, .. }
        | ClientEvent::RolledBack { room }
        | ClientEvent::Impostor { room, .. }
        | ClientEvent::Consistency { room, .. }
        | ClientEvent::Rejected { room, .. } => Some(*room),
        _ => None,
    }
}

/// What the full-screen chat shows beside the lines, read from the client (its local
/// state only: nothing is asked of the relay).
pub async fn view(client: &hearth_core::Client, current: Option<RoomId>, me: &Handle) -> ChatView {
    let names = render::Rooms::of(client).await;
    let rooms = &names.joined;
    let invitations = client.known_invitations().await.unwrap_or_default();
    let (members, topic) = match current {
        Some(room) => {
            let online = client.online(room).await.unwrap_or_default();
            let members = client
                .members(room)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|m| MemberEntry {
                    name: m.handle.to_string(),
                    role: crate::output::member_role(&m),
                    verified: matches!(m.trust, Some(TrustState::Verified)),
                    changed: matches!(m.trust, Some(TrustState::Changed { .. })),
                    online: m.handle == *me || online.contains(&m.handle),
                    me: m.handle == *me,
                })
                .collect();
            let topic = client
                .policy(room)
                .await
                .ok()
                .map(|p| p.topic)
                .filter(|t| !t.is_empty())
                .map(|t| inert(&t).into_owned());
            (members, topic)
        }
        None => (Vec::new(), None),
    };
    ChatView {
        me: me.to_string(),
        relay: client.profile().relay().host_port(),
        connected: client.is_connected(),
        queued: client.queued().map(|q| q.len()).unwrap_or(0),
        current: current.map(|r| r.to_hex()),
        rooms: rooms
            .iter()
            .map(|r| RoomEntry {
                id: r.id.to_hex(),
                label: names.name(r.id),
                direct: r.direct,
            })
            .collect(),
        invitations: invitations
            .into_iter()
            .map(|i| InvitationEntry {
                id: i.room.to_hex(),
                name: names.name(i.room),
                from: i.from.to_string(),
            })
            .collect(),
        members,
        topic,
    }
}
