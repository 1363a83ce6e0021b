//! Processing one room log entry: the sans-network heart of the client.
//!
//! Entries are processed strictly in seq order. Each one is checked against the
//! transcript, recognised as our own (by comparing with the in-flight payload: MLS cannot
//! decrypt a member's own messages) or decrypted and verified by openmls, and its effects
//! (group state, room record, history) are persisted in one batch before any event is
//! reported.

use hearth_protocol::{AccountKey, Entry, EntryKind, Handle, RoomId, Seq};
use openmls::prelude::*;

use super::authentication::{added_identities, identity_of, Impostor, Rotated, Unverified};
use super::room::{account_of, Inflight, Refused, Room};
use super::Inner;
use crate::content::{Body, Content, RoomEvent};
use crate::error::ClientError;
use crate::events::ClientEvent;
use crate::history::{Annotation, HistoryRecord};
use crate::mls::{handle_of, parse_message, Engine, RoomSettings};
use crate::policy::{self, Changes, PolicyViolation, Removal};
use crate::store::{Table, WriteBatch};

/// What processing an entry produced besides events.
#[derive(Default)]
pub(crate) struct Effects {
    pub events: Vec<ClientEvent>,
    pub history: Option<HistoryRecord>,
    /// The attachment of the message kept in history (see [`crate::history::put_file`]).
    pub file: Option<crate::attachment::FileMessage>,
    /// An edit, deletion or reaction of an earlier message (see [`crate::history::apply`]).
    pub annotation: Option<Annotation>,
    /// Contacts seen in added leaves: (handle, key).
    pub contacts: Vec<(Handle, [u8; 32])>,
    /// A presence message: who, and online or not (kept in memory, never in history).
    pub presence: Option<(Handle, bool)>,
    /// A display name announcement: who, and the name (kept in Settings, not history).
    pub profile: Option<(Handle, String)>,
    /// An entry of ours we do not remember: this profile was put back from an older copy.
    pub rolled_back: bool,
    /// A member moved to a new key with a signed rotation (their pin follows).
    pub rotated: Option<Rotated>,
    /// The directory was fetched for this entry already (a second pass).
    pub looked_up: bool,
    /// A commit we refused, which the relay took as the room's next epoch.
    pub refused: Option<Refused>,
    /// Our commit that adds people landed: their Welcome goes to the outbox.
    pub welcome: Option<super::outbox::OwedWelcome>,
}

/// What one pass over an entry came to.
pub(crate) enum Step {
    /// Processed (or refused) and persisted.
    Done,
    /// Nothing was kept: ask the relay's directory about these handles, then process the
    /// entry again (see [`super::authentication`]).
    Lookup(Vec<Handle>),
}

/// The most entries processed in one store transaction: bounds how long one page holds
/// the engine lock and the store's writer (about a millisecond of CPU per entry on a Pi).
const MAX_PAGE: usize = 256;

/// Tables whose rows written by one entry no later entry of the same page reads from the
/// committed store (only through the batch, or not at all while processing). An entry
/// that writes any other table (contacts, settings: pins and names, read from the
/// committed store) ends the page, so the next entry sees what it wrote.
const PAGE_TABLES: [Table; 4] = [Table::Mls, Table::Rooms, Table::History, Table::Files];

/// How far one page went.
enum Page {
    /// This many entries were processed and committed (all, or up to a point where the
    /// page had to end).
    Done(usize),
    /// This many were processed and committed; the next one needs these handles looked
    /// up in the relay's directory first.
    Lookup(usize, Vec<Handle>),
}

/// The room's state in memory at the start of a page, to put back if the page does not
/// commit.
struct RoomBefore {
    rec: super::room::RoomRecord,
    subscribed: Option<u64>,
    commit_proposals: bool,
    removed: bool,
    landed_own: Option<super::room::LandedOwn>,
    expected_end: Option<Seq>,
}

impl RoomBefore {
    fn of(room: &Room) -> Self {
        RoomBefore {
            rec: room.rec.clone(),
            subscribed: room.subscribed,
            commit_proposals: room.commit_proposals,
            removed: room.removed,
            landed_own: room.landed_own,
            expected_end: room.expected_end,
        }
    }

    fn put_back(self, room: &mut Room) {
        room.rec = self.rec;
        room.subscribed = self.subscribed;
        room.commit_proposals = self.commit_proposals;
        room.removed = self.removed;
        room.landed_own = self.landed_own;
        room.expected_end = self.expected_end;
    }
}

impl Inner {
    /// Processes one entry (skipped if already processed) and persists the result,
    /// asking the relay's directory first about identities the entry brings in that no
    /// pin vouches for.
    pub(crate) async fn process_entry(
        &self,
        room: &mut Room,
        entry: &Entry,
    ) -> Result<(), ClientError> {
        self.process_entries(room, std::slice::from_ref(entry))
            .await
    }

    /// Processes entries in seq order (those already processed are skipped) and persists
    /// the results a page at a time: the effects of a page's entries (group state, the
    /// room record with its transcript, history) go into one store transaction, and its
    /// events are reported once it has committed. A crash or a failed commit leaves the
    /// state before the page, on disk and in memory, and the page is read and processed
    /// again: no entry is lost or taken twice, and the MLS state and the stored transcript
    /// always move together. Stops early when we are removed from the room.
    pub(crate) async fn process_entries(
        &self,
        room: &mut Room,
        entries: &[Entry],
    ) -> Result<(), ClientError> {
        let mut next = 0;
        // Whether the directory was fetched for `entries[next]` already.
        let mut looked_up = false;
        while next < entries.len() && !room.removed {
            let end = entries.len().min(next + MAX_PAGE);
            match self.process_page(room, &entries[next..end], looked_up)? {
                Page::Done(done) => {
                    next += done;
                    looked_up = false;
                }
                Page::Lookup(done, handles) => {
                    if done == 0 && looked_up {
                        // Every handle asked about has an answer now, so a second pass
                        // never asks again.
                        return Err(ClientError::Other(
                            "the relay's directory did not answer for a new member; try again"
                                .into(),
                        ));
                    }
                    next += done;
                    self.look_up_identities(&handles).await?;
                    looked_up = true;
                }
            }
        }
        Ok(())
    }

    /// Processes a page of entries in one store transaction (see
    /// [`Inner::process_entries`]), under the engine lock throughout. `looked_up`: the
    /// directory was fetched for the first entry already.
    fn process_page(
        &self,
        room: &mut Room,
        entries: &[Entry],
        looked_up: bool,
    ) -> Result<Page, ClientError> {
        let mut engine = self.engine();
        let start = engine.checkpoint();
        let before = RoomBefore::of(room);
        let mut batch = self.profile.store().begin().map_err(crate::error::store)?;
        let mut events = Vec::new();
        let mut done = 0;
        let mut lookup = None;
        let mut outcome = Ok(());
        for entry in entries {
            if room.removed {
                break;
            }
            let first = done == 0 && looked_up;
            match self.process_entry_once(&mut engine, &mut batch, room, entry, first, &mut events)
            {
                Ok(Step::Done) => done += 1,
                Ok(Step::Lookup(handles)) => {
                    lookup = Some(handles);
                    break;
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
            if batch.touched_beyond(&PAGE_TABLES) {
                break;
            }
        }
        let outcome = outcome.and_then(|()| {
            let staged = engine.stage(&mut batch)?;
            room.save(&mut batch)?;
            batch.commit().map_err(crate::error::store)?;
            engine.staged_committed(staged);
            Ok(())
        });
        if let Err(e) = outcome {
            // Nothing of the page is stored: nothing of it stays in memory either (the
            // group included), and none of its events were reported.
            engine.restore(start);
            before.put_back(room);
            room.group = engine.reload(&room.group)?;
            return Err(e);
        }
        drop(engine);
        for event in events {
            self.emit_processed(event);
        }
        Ok(match lookup {
            Some(handles) => Page::Lookup(done, handles),
            None => Page::Done(done),
        })
    }

    /// Reports an event of a processed entry (after its page committed), with the
    /// sender's display name as stored now.
    fn emit_processed(&self, mut event: ClientEvent) {
        if let ClientEvent::Message(item) | ClientEvent::MessageChanged { item, .. } = &mut event {
            item.sender_name = self.display_name(&item.sender);
        }
        self.emit(event);
    }

    /// Processes one entry into `batch` (the page's), its events into `events`; the
    /// room record and the MLS storage are written by the page when it commits.
    fn process_entry_once(
        &self,
        engine: &mut Engine,
        batch: &mut WriteBatch<'_>,
        room: &mut Room,
        entry: &Entry,
        looked_up: bool,
        events: &mut Vec<ClientEvent>,
    ) -> Result<Step, ClientError> {
        if entry.seq <= room.rec.transcript.last() || room.removed {
            return Ok(Step::Done);
        }
        if room.rec.extra.before_join {
            if of_an_earlier_epoch(room, entry) {
                before_join(room, entry, events);
                return Ok(Step::Done);
            }
            // The first entry of our epoch: from here on, processed as usual.
            room.rec.extra.before_join = false;
        }
        let before = room.rec.clone();
        let checkpoint = engine.checkpoint();
        let mut fx = Effects {
            looked_up,
            ..Effects::default()
        };
        if let Some(Some(warning)) =
            room.rec
                .transcript
                .observe(entry.seq, entry.kind, &entry.payload)
        {
            fx.events.push(ClientEvent::Consistency {
                room: room.id,
                warning,
            });
        }
        let own_entry = room
            .rec
            .inflight
            .as_ref()
            .is_some_and(|inflight| inflight.payload() == entry.payload);
        let own = if own_entry {
            room.landed_own = Some(super::room::LandedOwn::new(entry.seq, &entry.payload));
            room.revert_landed = None;
            room.rec.inflight.take()
        } else {
            None
        };
        let result = match own {
            Some(Inflight::Message { body, .. }) => {
                own_message(room, entry, body, &mut fx);
                Ok(Step::Done)
            }
            Some(Inflight::Commit { .. }) => {
                own_commit(engine, room, entry.seq, &mut fx).map(|()| Step::Done)
            }
            Some(Inflight::CommitWithWelcome { welcome, to, .. }) => {
                // Our commit is in the log at this seq: its Welcome is owed now.
                let hash = room.rec.transcript.hash_at(entry.seq).unwrap_or([0; 32]);
                fx.welcome = Some(super::outbox::OwedWelcome {
                    room: room.id,
                    seq: entry.seq,
                    transcript_hash: hash,
                    welcome,
                    to,
                });
                own_commit(engine, room, entry.seq, &mut fx).map(|()| Step::Done)
            }
            None => {
                let undone = room.revert_landed.is_some_and(|ours| entry.seq < ours);
                if entry.kind == EntryKind::Commit
                    && room.group.pending_commit().is_some()
                    && !undone
                {
                    // Another commit won this epoch: ours is void.
                    room.group
                        .clear_pending_commit(engine.provider.storage())
                        .map_err(crate::error::mls)?;
                    room.rec.inflight = None;
                }
                self.foreign(engine, room, entry, &mut fx)
            }
        };
        let result = match result {
            Ok(Step::Lookup(handles)) => {
                // Undo the pass: storage, the record, the group in memory.
                engine.restore(checkpoint);
                room.rec = before;
                room.group = engine.reload(&room.group)?;
                return Ok(Step::Lookup(handles));
            }
            Ok(Step::Done) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // Any commit of our epoch we could not take moved the relay's capability where
            // we cannot follow (garbage bytes included): undone like a refused one.
            if fx.refused.is_none()
                && entry.kind == EntryKind::Commit
                && !own_entry
                && of_our_epoch_or_unreadable(room, entry)
            {
                fx.refused = Some(Refused {
                    seq: entry.seq,
                    by: None,
                    committer: None,
                });
            }
            if let Some(refused) = fx.refused.take() {
                tracing::warn!("room {}: {e}", room.id);
                room.rec.extra.refused = Some(refused);
            }
            if let ClientError::Impostor(impostor) = &e {
                tracing::warn!("room {}: {impostor}", room.id);
                fx.events.push(ClientEvent::Impostor {
                    room: room.id,
                    impostor: impostor.clone(),
                });
            }
            fx.events.push(ClientEvent::Rejected {
                room: room.id,
                seq: entry.seq,
                reason: e.to_string(),
            });
        }
        if let Some(settings) = RoomSettings::of(room.group.extensions()) {
            room.rec.name = settings.name;
        }
        if !own_entry && (entry.kind == EntryKind::Commit || fx.history.is_some()) {
            self.saw_news(room.id, entry.seq);
        }
        // A fork holds the room's messages back until the user has looked at it; except
        // where we missed entries (a gap: expired, or dropped and already reported), after
        // which our hashes cannot match anyone's any more.
        for event in &fx.events {
            match event {
                ClientEvent::Consistency {
                    warning: crate::ConsistencyWarning::Gap { expected, .. },
                    ..
                } => {
                    room.rec.extra.gap_from = room.rec.extra.gap_from.or(Some(*expected));
                }
                ClientEvent::Consistency {
                    warning: crate::ConsistencyWarning::Fork { seq },
                    ..
                } => {
                    let after_gap = room.rec.extra.gap_from.is_some_and(|gap| *seq >= gap);
                    if room.rec.extra.fork.is_none() && !after_gap {
                        room.rec.extra.fork = Some(*seq);
                    }
                }
                // Its name now means the new room (see `labels`).
                ClientEvent::RoomRebuilt { new, .. } => room.rec.extra.rebuilt_as = Some(*new),
                _ => {}
            }
        }
        let contacts = self.check_contacts(&fx.contacts, &mut fx.events);
        let history = fx.history.take();
        let file = fx.file.take();
        let annotation = fx.annotation.take();
        let mut changed = None;
        let rolled_back = fx.rolled_back;
        if let Some((handle, online)) = fx.presence.take() {
            // An old notice replayed while catching up is history, not news.
            let live = super::presence::is_live(entry.time, self.clock.now());
            // A heartbeat, or a reconnect's "online" while still shown online, is no news.
            let changed = self.shown_online(room.id, &handle) != online;
            if live && changed && room.own_handle().as_ref() != Some(&handle) {
                fx.events.push(ClientEvent::Presence {
                    room: room.id,
                    handle: handle.clone(),
                    online,
                });
            }
            self.saw_presence(room.id, handle, online, entry.time);
        }
        let seq = entry.seq;
        let renamed = fx.profile.take().and_then(|(handle, name)| {
            Some((handle.clone(), self.new_display_name(&handle, &name)?))
        });
        let rotated = fx.rotated.take();
        let owed = fx.welcome.take();
        let mut rotation_event = None;
        {
            if room.removed {
                // Its history stays readable (see `past`).
                super::past::put(batch, room)?;
            }
            if let Some(owed) = &owed {
                owed.put(batch)?;
            }
            if let Some(Rotated { handle, from, to }) = &rotated {
                rotation_event = self.follow_rotation(handle, from, to, batch)?;
            }
            if let Some((handle, name)) = &renamed {
                Inner::put_display_name(batch, handle, name)?;
            }
            if let Some(record) = &history {
                record.put(batch, room.id, seq)?;
                if let Some(file) = &file {
                    crate::history::put_file(batch, room.id, seq, file)?;
                }
            }
            if let Some(annotation) = &annotation {
                changed = crate::history::apply(batch, room.id, annotation)?;
            }
            contacts.save(batch)?;
            if rolled_back {
                super::restore::mark_restored(batch, room.id).map_err(crate::error::store)?;
            }
        }
        fx.events.extend(rotation_event);
        if let (Some(item), Some(annotation)) = (changed, annotation) {
            fx.events.push(ClientEvent::MessageChanged {
                item,
                by: annotation.by,
                change: annotation.change,
            });
        }
        if let Some((handle, name)) = renamed {
            fx.events
                .push(ClientEvent::DisplayNameChanged { handle, name });
        }
        events.append(&mut fx.events);
        Ok(Step::Done)
    }
}

/// An entry between the join point our inviter signed and the commit that added us (see
/// [`crate::mls::join_point`]): part of our history, but of an epoch before ours, so it
/// is hashed, not processed (the page stores the room record).
fn before_join(room: &mut Room, entry: &Entry, events: &mut Vec<ClientEvent>) {
    let warning = room
        .rec
        .transcript
        .observe(entry.seq, entry.kind, &entry.payload)
        .flatten();
    if let Some(warning) = warning {
        events.push(ClientEvent::Consistency {
            room: room.id,
            warning,
        });
    }
}

/// Whether an entry is a message of the group's current epoch, or no readable MLS message
/// at all (as opposed to one of an earlier epoch, or of a later one we have not reached).
fn of_our_epoch_or_unreadable(room: &Room, entry: &Entry) -> bool {
    match parse_message(&entry.payload)
        .and_then(|m| m.try_into_protocol_message().map_err(crate::error::mls))
    {
        Ok(message) => message.epoch() == room.group.epoch(),
        Err(_) => true,
    }
}

/// Whether an entry belongs to an epoch before the group's current one, judged by the
/// MLS framing (its epoch travels in the clear), not by the relay's word on its kind.
/// Bytes that are no MLS message count as earlier: hashed and passed over.
fn of_an_earlier_epoch(room: &Room, entry: &Entry) -> bool {
    match parse_message(&entry.payload)
        .and_then(|m| m.try_into_protocol_message().map_err(crate::error::mls))
    {
        Ok(message) => message.epoch() < room.group.epoch(),
        Err(_) => true,
    }
}

fn own_message(room: &mut Room, entry: &Entry, body: Body, fx: &mut Effects) {
    if let Some(me) = room.own_handle() {
        fx.annotation = Annotation::of(&body, &me);
    }
    if let Body::Presence { online } = body {
        fx.presence = room.own_handle().map(|me| (me, online));
        return;
    }
    if let Body::Profile { display_name } = body {
        fx.profile = room.own_handle().map(|me| (me, display_name));
        return;
    }
    let (body, file) = file_as_text(body);
    fx.file = file;
    if let Body::Text { text, reply_to } = body {
        let Some(sender) = room.own_handle() else {
            return;
        };
        let record = HistoryRecord {
            sender,
            text,
            time: entry.time,
            own: true,
            reply_to,
        };
        fx.events
            .push(ClientEvent::Message(record.item(room.id, entry.seq)));
        fx.history = Some(record);
    }
}

/// A file message as the text it is kept as in history (see
/// [`crate::attachment::FileMessage::describe`]), and the file; a file message that fails
/// its checks is kept as a text saying so, without the file.
fn file_as_text(body: Body) -> (Body, Option<crate::attachment::FileMessage>) {
    let Body::File(file) = body else {
        return (body, None);
    };
    match file.check() {
        Ok(()) => (
            Body::Text {
                text: file.describe(),
                reply_to: None,
            },
            Some(file),
        ),
        Err(e) => (
            Body::Text {
                text: format!("[a file that cannot be opened: {e}]"),
                reply_to: None,
            },
            None,
        ),
    }
}

fn own_commit(
    engine: &Engine,
    room: &mut Room,
    seq: Seq,
    fx: &mut Effects,
) -> Result<(), ClientError> {
    let me = room.own_handle();
    if let (Some(staged), Some(me)) = (room.group.pending_commit(), me) {
        commit_effects(room, staged, &me, fx);
    }
    room.group
        .merge_pending_commit(&engine.provider)
        .map_err(crate::error::mls)?;
    epoch_moved_at(room, seq);
    Ok(())
}

/// After merging the commit at `seq`: the subscription of the epoch it ended, if we had
/// one, is over. The relay tells so with `next` = `seq + 1` once it has pushed the
/// commit, which may be after we subscribed in the new epoch: that end is expected, and
/// is not the new subscription's (taking it for the new one's would leave the room
/// unsubscribed, read again after every push).
fn epoch_moved_at(room: &mut Room, seq: Seq) {
    if room.subscribed.take().is_some() {
        room.expected_end = Some(seq.next());
    }
}

impl Inner {
    /// Processes another member's entry (or a joiner's external commit).
    fn foreign(
        &self,
        engine: &Engine,
        room: &mut Room,
        entry: &Entry,
        fx: &mut Effects,
    ) -> Result<Step, ClientError> {
        let message = parse_message(&entry.payload)?
            .try_into_protocol_message()
            .map_err(crate::error::mls)?;
        let processed = room
            .group
            .process_message(&engine.provider, message)
            .map_err(crate::error::mls)?;
        let sender = room
            .sender_handle(processed.sender())
            .or_else(|| handle_of(processed.credential()))
            .ok_or_else(|| ClientError::Mls("message from an unknown sender".into()))?;
        let sender_leaf = match processed.sender() {
            Sender::Member(leaf) => Some(*leaf),
            _ => None,
        };
        let external = matches!(processed.sender(), Sender::NewMemberCommit);
        // A member's commit carries its transcript mark in the authenticated data.
        let commit_mark = crate::transcript::decode_mark(processed.aad());
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                if entry.kind != EntryKind::Message {
                    return Err(ClientError::Mls(
                        "application message logged as a commit".into(),
                    ));
                }
                let content = Content::decode(&app.into_bytes())
                    .map_err(|e| ClientError::Other(e.to_string()))?;
                if let Some(warning) = room.rec.transcript.check_mark(content.transcript()) {
                    fx.events.push(ClientEvent::Consistency {
                        room: room.id,
                        warning,
                    });
                }
                if let Body::RoomEvent(RoomEvent::Rebuilt { room: new }) = content.body() {
                    // A pointer to another room is an admin's word, like a rebuild itself.
                    let admin = sender_leaf
                        .and_then(|leaf| room.group.member_at(leaf))
                        .and_then(|m| account_of(&m.signature_key))
                        .is_some_and(|a| room.settings().is_ok_and(|s| s.is_admin(&a)));
                    if !admin {
                        return Err(ClientError::Other(format!(
                        "{sender} is not an admin: their notice that the room moved elsewhere is ignored"
                    )));
                    }
                    fx.events.push(ClientEvent::RoomRebuilt {
                        room: room.id,
                        new: *new,
                        by: sender.clone(),
                    });
                }
                if let Body::Presence { online } = *content.body() {
                    // Told as an event only if still live (see `presence`).
                    fx.presence = Some((sender.clone(), online));
                }
                if let Body::Profile { display_name } = content.body() {
                    fx.profile = Some((sender.clone(), display_name.clone()));
                }
                // Before we accept an invitation, nothing said is shown or kept (see
                // `Inner::accept_invitation`).
                let accepted = room.rec.status == super::room::Status::Joined;
                if accepted {
                    fx.annotation = Annotation::of(content.body(), &sender);
                }
                let (body, file) = file_as_text(content.body().clone());
                if let (true, Body::Text { text, reply_to }) = (accepted, body) {
                    fx.file = file;
                    let record = HistoryRecord {
                        sender,
                        text,
                        time: entry.time,
                        own: false,
                        reply_to,
                    };
                    fx.events
                        .push(ClientEvent::Message(record.item(room.id, entry.seq)));
                    fx.history = Some(record);
                }
                Ok(Step::Done)
            }
            ProcessedMessageContent::ProposalMessage(proposal) => {
                // Policy: the only standalone proposal accepted is a member removing itself.
                let self_remove = match (proposal.proposal(), proposal.sender()) {
                    (Proposal::Remove(remove), Sender::Member(leaf)) => remove.removed() == *leaf,
                    _ => false,
                };
                if !self_remove {
                    return Err(ClientError::Other(
                        "proposal refused: only leaving is allowed as a proposal".into(),
                    ));
                }
                room.group
                    .store_pending_proposal(engine.provider.storage(), *proposal)
                    .map_err(crate::error::mls)?;
                room.commit_proposals = designated_committer(room);
                Ok(Step::Done)
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                if entry.kind != EntryKind::Commit {
                    return Err(ClientError::Mls("commit logged as a message".into()));
                }
                let committer_key = match sender_leaf {
                    Some(leaf) => room
                        .group
                        .member_at(leaf)
                        .and_then(|m| account_of(&m.signature_key)),
                    None => staged
                        .update_path_leaf_node()
                        .and_then(|leaf| account_of(leaf.signature_key().as_slice())),
                };
                let refused = Refused {
                    seq: entry.seq,
                    by: Some(sender.clone()),
                    committer: committer_key,
                };
                let room_id = room.id;
                let refuse = |fx: &mut Effects, reason: String| {
                    fx.refused = Some(refused.clone());
                    ClientError::CommitRefused {
                        room: room_id.into(),
                        by: refused.by.clone(),
                        reason,
                    }
                };
                // The relay moved the room's capability to what the committer announced:
                // one we cannot derive would lock us all out (decision 0009). Whatever
                // else is wrong with the commit, that makes it one to undo.
                // (A member the commit removes has no part in the next epoch to check.)
                let lying = !staged.self_removed()
                    && match entry.next_cap_hash {
                        Some(announced) => {
                            announced != engine.next_cap(&staged, &room.id.0)?.hash()
                        }
                        None => false,
                    };
                if lying {
                    fx.refused = Some(refused.clone());
                }
                let cap_lie = "it announced a relay capability that is not the room's";
                if external {
                    // Someone joining by themselves: only a public room allows it, and only
                    // under their own identity.
                    let leaf = staged.update_path_leaf_node().ok_or_else(|| {
                        ClientError::Mls("an external commit without a leaf".into())
                    })?;
                    let joiner = identity_of(leaf)?;
                    if let Err(unverified) = self.verify_identities(&[joiner], None) {
                        return unverified_step(unverified);
                    }
                    if lying {
                        return Err(refuse(fx, cap_lie.into()));
                    }
                    return match super::public::merge_external_commit(
                        engine, room, *staged, &sender, fx,
                    ) {
                        Ok(()) => Ok(Step::Done),
                        Err(ClientError::CommitRefused { reason, .. }) => Err(refuse(fx, reason)),
                        Err(e) => Err(e),
                    };
                }
                let committer = sender_leaf
                    .ok_or_else(|| ClientError::Mls("commit from a non-member".into()))?;
                if let Some(warning) = commit_mark.and_then(|m| room.rec.transcript.check_mark(m)) {
                    fx.events.push(ClientEvent::Consistency {
                        room: room.id,
                        warning,
                    });
                }
                match self.check_identity_kept(&room.group, &staged, committer, fx.looked_up) {
                    Ok(rotated) => fx.rotated = rotated,
                    Err(unverified) => return unverified_step(unverified),
                }
                if let Err(violation) = check_staged(&room.group, &staged, committer) {
                    // Not merged: honest members all refuse it alike, and an admin reverts
                    // it at the relay (decision 0009).
                    return Err(refuse(
                        fx,
                        format!("it breaks the room's policy: {violation}"),
                    ));
                }
                // Only an admin's adds get this far (the policy), so a member cannot make
                // everyone fetch the directory at will.
                let verdict = match added_identities(&staged) {
                    Ok(added) => self.verify_identities(&added, Some(&sender)),
                    // Unreadable identities: refused like an impostor's, naming the committer.
                    Err(_) => Err(Unverified::Impostor(Impostor {
                        claimed: sender.clone(),
                        key: room
                            .group
                            .member_at(committer)
                            .and_then(|m| account_of(&m.signature_key))
                            .unwrap_or(AccountKey([0; 32])),
                        by: Some(sender.clone()),
                    })),
                };
                if let Err(unverified) = verdict {
                    return unverified_step(unverified);
                }
                if lying {
                    return Err(refuse(fx, cap_lie.into()));
                }
                commit_effects(room, &staged, &sender, fx);
                if room.is_pending(committer) && staged.update_path_leaf_node().is_some() {
                    fx.events.push(ClientEvent::MemberAccepted {
                        room: room.id,
                        handle: sender.clone(),
                    });
                }
                let removed = staged.self_removed();
                let banned = RoomSettings::of(staged.group_context().extensions())
                    .is_some_and(|s| s.is_banned(&engine.account()));
                room.group
                    .merge_staged_commit(&engine.provider, *staged)
                    .map_err(crate::error::mls)?;
                epoch_moved_at(room, entry.seq);
                room.commit_proposals = false;
                if removed {
                    room.removed = true;
                    fx.events.push(ClientEvent::RemovedFromRoom {
                        room: room.id,
                        by: sender,
                        banned,
                    });
                }
                Ok(Step::Done)
            }
            ProcessedMessageContent::ExternalJoinProposalMessage(_) => Err(ClientError::Other(
                "external join proposals are not accepted".into(),
            )),
            // We wrote it, but nothing of ours was waiting for it: this profile's state is
            // older than what it has sent (put back from a file-level copy, an old disk
            // image). It would send at ratchet positions already used, so it commits fresh
            // keys first (the restore path, `restore`).
            ProcessedMessageContent::OwnPrivateMessage => {
                fx.rolled_back = true;
                fx.events.push(ClientEvent::RolledBack { room: room.id });
                Ok(Step::Done)
            }
            _ => Err(ClientError::Mls("unexpected message type".into())),
        }
    }
}

/// An identity check that did not pass, as the outcome of processing: ask the directory,
/// or refuse the entry as an impostor's.
fn unverified_step(unverified: Unverified) -> Result<Step, ClientError> {
    match unverified {
        Unverified::Lookup(handles) => Ok(Step::Lookup(handles)),
        Unverified::Impostor(impostor) => Err(ClientError::Impostor(impostor)),
    }
}

/// Whether we are the member who commits pending leave proposals: the one with the
/// lowest leaf index among those not leaving.
fn designated_committer(room: &Room) -> bool {
    let leaving: Vec<LeafNodeIndex> = room
        .group
        .pending_proposals()
        .filter_map(|p| match p.proposal() {
            Proposal::Remove(r) => Some(r.removed()),
            _ => None,
        })
        .collect();
    room.group
        .members()
        .map(|m| m.index)
        .filter(|i| !leaving.contains(i))
        .min()
        == Some(room.group.own_leaf_index())
}

/// Events (and contacts) for the adds, removes and settings changes of a commit, computed
/// before it is merged (removed leaves are still in the tree).
fn commit_effects(room: &Room, staged: &StagedCommit, by: &Handle, fx: &mut Effects) {
    let id: RoomId = room.id;
    for add in staged.add_proposals() {
        let leaf = add.add_proposal().key_package().leaf_node();
        if let Some(handle) = handle_of(leaf.credential()) {
            if let Ok(key) = <[u8; 32]>::try_from(leaf.signature_key().as_slice()) {
                fx.contacts.push((handle.clone(), key));
            }
            fx.events
                .push(ClientEvent::MemberJoined { room: id, handle });
        }
    }
    for remove in staged.remove_proposals() {
        let removed = remove.remove_proposal().removed();
        if removed == room.group.own_leaf_index() {
            continue; // reported as RemovedFromRoom
        }
        let Some(handle) = room.handle_at(removed) else {
            continue;
        };
        let self_remove = matches!(remove.sender(), Sender::Member(leaf) if *leaf == removed);
        fx.events.push(if self_remove {
            ClientEvent::MemberLeft { room: id, handle }
        } else {
            ClientEvent::MemberRemoved {
                room: id,
                handle,
                by: by.clone(),
            }
        });
    }
    let (Some(before), Some(after)) = (
        RoomSettings::of(room.group.extensions()),
        RoomSettings::of(staged.group_context().extensions()),
    ) else {
        return;
    };
    let name_of = |account: &AccountKey| -> Option<Handle> {
        room.handle_of_account(account).or_else(|| {
            staged.add_proposals().find_map(|add| {
                let leaf = add.add_proposal().key_package().leaf_node();
                (leaf.signature_key().as_slice() == account.0.as_slice())
                    .then(|| handle_of(leaf.credential()))
                    .flatten()
            })
        })
    };
    if before.name != after.name {
        fx.events.push(ClientEvent::RoomRenamed {
            room: id,
            name: after.name.clone(),
        });
    }
    if before.topic != after.topic {
        fx.events.push(ClientEvent::TopicChanged {
            room: id,
            topic: after.topic.clone(),
        });
    }
    if before.expire_secs != after.expire_secs {
        fx.events.push(ClientEvent::ExpiryChanged {
            room: id,
            expire: after.expire_secs.map(std::time::Duration::from_secs),
        });
    }
    if before.owner != after.owner {
        if let Some(owner) = name_of(&after.owner) {
            fx.events
                .push(ClientEvent::OwnerChanged { room: id, owner });
        }
    }
    // Role changes of people still in the room (not the new owner, not the departed).
    for account in after.admins.iter().filter(|a| !before.admins.contains(a)) {
        if before.owner != *account {
            if let Some(handle) = name_of(account) {
                fx.events.push(ClientEvent::RoleChanged {
                    room: id,
                    handle,
                    admin: true,
                });
            }
        }
    }
    for account in before
        .admins
        .iter()
        .filter(|a| !after.admins.contains(a) && after.members.contains(a) && after.owner != **a)
    {
        if let Some(handle) = name_of(account) {
            fx.events.push(ClientEvent::RoleChanged {
                room: id,
                handle,
                admin: false,
            });
        }
    }
    for entry in after.banned.iter().filter(|b| !before.banned.contains(b)) {
        fx.events.push(ClientEvent::BanChanged {
            room: id,
            handle: entry.handle.clone(),
            banned: true,
            by: by.clone(),
        });
    }
    for entry in before.banned.iter().filter(|b| !after.banned.contains(b)) {
        fx.events.push(ClientEvent::BanChanged {
            room: id,
            handle: entry.handle.clone(),
            banned: false,
            by: by.clone(),
        });
    }
}

/// What a staged commit does to membership, in policy terms. `committer` is the sender's
/// leaf; `group` is the group before the commit (removed leaves are still in it).
pub(crate) fn changes_of(
    group: &MlsGroup,
    staged: &StagedCommit,
    committer: LeafNodeIndex,
) -> Result<Changes, PolicyViolation> {
    let account_at = |leaf: LeafNodeIndex| {
        group
            .member_at(leaf)
            .and_then(|m| account_of(&m.signature_key))
            .ok_or(PolicyViolation::NotAMember)
    };
    let mut changes = Changes {
        committer: account_at(committer)?,
        removed: Vec::new(),
        added: Vec::new(),
    };
    for queued in staged.queued_proposals() {
        match queued.proposal() {
            Proposal::Add(add) => {
                let key = add.key_package().leaf_node().signature_key().as_slice();
                changes
                    .added
                    .push(account_of(key).ok_or(PolicyViolation::Membership)?);
            }
            Proposal::Remove(remove) => {
                let removed = remove.removed();
                changes.removed.push(Removal {
                    account: account_at(removed)?,
                    by_self: matches!(queued.sender(), Sender::Member(leaf) if *leaf == removed),
                });
            }
            Proposal::GroupContextExtensions(_) => {}
            other => {
                return Err(PolicyViolation::Unsupported(format!(
                    "{:?} proposals are not allowed in a room",
                    other.proposal_type()
                )))
            }
        }
    }
    Ok(changes)
}

/// Checks a staged commit (ours before sending, or another member's before merging)
/// against the policy of the group's current epoch.
pub(crate) fn check_staged(
    group: &MlsGroup,
    staged: &StagedCommit,
    committer: LeafNodeIndex,
) -> Result<(), PolicyViolation> {
    let unreadable = |e: crate::mls::SettingsError| PolicyViolation::Unsupported(e.to_string());
    let mut before = RoomSettings::read(group.extensions()).map_err(unreadable)?;
    let after = RoomSettings::read(staged.group_context().extensions()).map_err(unreadable)?;
    let mut changes = changes_of(group, staged, committer)?;
    // A key rotation (the identity check let only a signed one through): the committer
    // is judged as the same person under the new key.
    if let Some(new_key) = staged
        .update_path_leaf_node()
        .and_then(|leaf| account_of(leaf.signature_key().as_slice()))
        .filter(|key| *key != changes.committer)
    {
        before = before.with_key_replaced(&changes.committer, &new_key);
        changes.committer = new_key;
    }
    // The settings follow the rules above; any other extension is an admin's to change.
    if other_extensions(group.extensions()) != other_extensions(staged.group_context().extensions())
        && !before.is_admin(&changes.committer)
    {
        return Err(PolicyViolation::NotAdmin(policy::Action::ChangeExtensions));
    }
    if let Some(verdict) = super::public::check_join_record(group, &before, &changes, &after) {
        return verdict;
    }
    policy::check_commit(&before, &changes, &after)
}

/// The group-context extensions other than the room settings.
pub(crate) fn other_extensions(extensions: &Extensions<GroupContext>) -> Vec<&Extension> {
    extensions
        .iter()
        .filter(|e| {
            e.extension_type() != ExtensionType::Unknown(crate::mls::ROOM_SETTINGS_EXTENSION)
        })
        .collect()
}
