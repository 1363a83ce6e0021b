//! Locally stored messages: `Table::History`, key = room id (16) || seq (8, big-endian),
//! value = a postcard [`HistoryRecord`], followed by its postcard [`Marks`] once someone
//! edited, deleted or reacted to the message (a record without them has none; readers
//! from before marks existed ignore the trailing bytes). Written in the same batch as
//! the MLS state change that produced the message, or the change ([`apply`]).
//!
//! Who may change what, checked here for every message whoever sent it ([`apply`]):
//! only the sender of a message edits or deletes it; anyone in the room reacts, once per
//! emoji (the same reaction again changes nothing), with at most [`MAX_REACTIONS`]
//! different emoji on one message; a deleted message takes no more changes and keeps
//! neither its text nor its reactions. A change to a message this device does not hold
//! (from before it joined, expired, or no message at all) is dropped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_protocol::{Handle, RoomId, Seq};
use serde::{Deserialize, Serialize};

use crate::content::{valid_reaction, Body};
use crate::error::{store as store_err, ClientError};
use crate::events::HistoryItem;
use crate::store::{EncryptedStore, Table, WriteBatch};

/// One stored message as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Who sent it.
    pub sender: Handle,
    /// The text.
    pub text: String,
    /// Relay time, seconds since the Unix epoch.
    pub time: u64,
    /// Sent by this device.
    pub own: bool,
    /// The message replied to.
    pub reply_to: Option<Seq>,
}

/// The most different reactions one message keeps; more are ignored.
pub const MAX_REACTIONS: usize = 16;

/// What happened to a message after it was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// Its sender changed its text.
    pub edited: bool,
    /// Its sender withdrew it (its text is gone).
    pub deleted: bool,
    /// Reactions, in the order they first came.
    pub reactions: Vec<Reaction>,
}

/// One reaction to a message and who reacted so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// The emoji (see [`valid_reaction`]).
    pub emoji: String,
    /// Who reacted so, in the order they did.
    pub by: Vec<Handle>,
}

/// A change to a stored message, as sent by someone in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageChange {
    /// Its sender changed its text to this.
    Edited(String),
    /// Its sender withdrew it.
    Deleted,
    /// Someone reacted with this emoji.
    Reacted(String),
}

/// A change and who sent it, to apply to the message at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// The changed message.
    pub target: Seq,
    /// Who sent the change (from its MLS credential).
    pub by: Handle,
    /// The change.
    pub change: MessageChange,
}

impl Annotation {
    /// The change a message body makes to an earlier message, if it is one.
    pub fn of(body: &Body, by: &Handle) -> Option<Annotation> {
        let (target, change) = match body {
            Body::Edit { target, text } => (*target, MessageChange::Edited(text.clone())),
            Body::Delete { target } => (*target, MessageChange::Deleted),
            Body::React { target, emoji } => (*target, MessageChange::Reacted(emoji.clone())),
            _ => return None,
        };
        Some(Annotation {
            target,
            by: by.clone(),
            change,
        })
    }
}

/// Decodes a stored value: the record, and its marks if any were written after it.
pub fn decode(value: &[u8]) -> Option<(HistoryRecord, Marks)> {
    let (record, rest) = postcard::take_from_bytes::<HistoryRecord>(value).ok()?;
    // Marks that do not decode are dropped rather than the message.
    let marks = postcard::from_bytes::<Marks>(rest).unwrap_or_default();
    Some((record, marks))
}

/// Applies a change to the message it targets, in `batch`, if the rules above allow it;
/// returns the message as it is now, or `None` when nothing changed.
pub fn apply(
    batch: &mut WriteBatch<'_>,
    room: RoomId,
    annotation: &Annotation,
) -> Result<Option<HistoryItem>, ClientError> {
    let key = key(room, annotation.target);
    let Some(value) = batch.get(Table::History, &key).map_err(store_err)? else {
        return Ok(None);
    };
    let Some((mut record, mut marks)) = decode(&value) else {
        return Ok(None);
    };
    if !change(&mut record, &mut marks, annotation) {
        return Ok(None);
    }
    let mut bytes = postcard::to_allocvec(&record).map_err(store_err)?;
    bytes.extend(postcard::to_allocvec(&marks).map_err(store_err)?);
    batch.put(Table::History, &key, &bytes).map_err(store_err)?;
    Ok(Some(record.item_marked(room, annotation.target, marks)))
}

/// The rules of [`apply`] on one record; whether it changed.
fn change(record: &mut HistoryRecord, marks: &mut Marks, annotation: &Annotation) -> bool {
    if marks.deleted {
        return false;
    }
    let by_sender = record.sender == annotation.by;
    match &annotation.change {
        MessageChange::Edited(text) => {
            if !by_sender {
                tracing::info!(
                    "{} tried to edit a message of {}: ignored",
                    annotation.by,
                    record.sender
                );
                return false;
            }
            record.text.clone_from(text);
            marks.edited = true;
        }
        MessageChange::Deleted => {
            if !by_sender {
                tracing::info!(
                    "{} tried to delete a message of {}: ignored",
                    annotation.by,
                    record.sender
                );
                return false;
            }
            record.text.clear();
            marks.deleted = true;
            marks.reactions.clear();
        }
        MessageChange::Reacted(emoji) => {
            if !valid_reaction(emoji) {
                tracing::info!("{} sent an invalid reaction: ignored", annotation.by);
                return false;
            }
            let full = marks.reactions.len() >= MAX_REACTIONS;
            match marks.reactions.iter_mut().find(|r| r.emoji == *emoji) {
                Some(reaction) if reaction.by.contains(&annotation.by) => return false,
                Some(reaction) => reaction.by.push(annotation.by.clone()),
                None if full => return false,
                None => marks.reactions.push(Reaction {
                    emoji: emoji.clone(),
                    by: vec![annotation.by.clone()],
                }),
            }
        }
    }
    true
}

/// The store key of a message.
pub fn key(room: RoomId, seq: Seq) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&room.0);
    key[16..].copy_from_slice(&seq.0.to_be_bytes());
    key
}

/// Seconds since the Unix epoch as a `SystemTime`.
pub fn time_of(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A `SystemTime` as seconds since the Unix epoch (0 before it).
pub fn secs_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl HistoryRecord {
    /// The API view of this record (with no marks: a new message).
    pub fn item(&self, room: RoomId, seq: Seq) -> HistoryItem {
        self.item_marked(room, seq, Marks::default())
    }

    /// The API view of this record with its marks.
    pub fn item_marked(&self, room: RoomId, seq: Seq, marks: Marks) -> HistoryItem {
        HistoryItem {
            room,
            seq,
            sender: self.sender.clone(),
            sender_name: None,
            text: self.text.clone(),
            time: time_of(self.time),
            own: self.own,
            reply_to: self.reply_to,
            edited: marks.edited,
            deleted: marks.deleted,
            reactions: marks.reactions,
        }
    }

    /// Adds the record to a batch.
    pub fn put(
        &self,
        batch: &mut WriteBatch<'_>,
        room: RoomId,
        seq: Seq,
    ) -> Result<(), ClientError> {
        let bytes = postcard::to_allocvec(self).map_err(store_err)?;
        batch
            .put(Table::History, &key(room, seq), &bytes)
            .map_err(store_err)
    }
}

/// The last `limit` messages of a room (at or after `since`), oldest first.
pub fn read(
    store: &EncryptedStore,
    room: RoomId,
    limit: usize,
    since: Option<SystemTime>,
) -> Result<Vec<HistoryItem>, ClientError> {
    let rows = store.scan(Table::History, &room.0).map_err(store_err)?;
    let mut items = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        let Some(seq) = key.get(16..24).and_then(|s| <[u8; 8]>::try_from(s).ok()) else {
            continue;
        };
        let Some((record, marks)) = decode(&value) else {
            continue;
        };
        let item = record.item_marked(room, Seq(u64::from_be_bytes(seq)), marks);
        if since.is_none_or(|since| item.time >= since) {
            items.push(item);
        }
    }
    items.sort_by_key(|i| i.seq);
    let skip = items.len().saturating_sub(limit);
    Ok(items.split_off(skip))
}

/// One stored message of a room, if this device holds it.
pub fn get(
    store: &EncryptedStore,
    room: RoomId,
    seq: Seq,
) -> Result<Option<HistoryItem>, ClientError> {
    let value = store
        .get(Table::History, &key(room, seq))
        .map_err(store_err)?;
    Ok(value
        .and_then(|value| decode(&value))
        .map(|(record, marks)| record.item_marked(room, seq, marks)))
}

/// Keeps the attachment of the message at `seq` (its key included) beside its history
/// row, in `batch`.
pub fn put_file(
    batch: &mut WriteBatch<'_>,
    room: RoomId,
    seq: Seq,
    file: &crate::attachment::FileMessage,
) -> Result<(), ClientError> {
    let bytes = zeroize::Zeroizing::new(postcard::to_allocvec(file).map_err(store_err)?);
    batch
        .put(Table::Files, &key(room, seq), &bytes)
        .map_err(store_err)
}

/// The attachments this device holds whose short id
/// ([`crate::attachment::FileMessage::short_id`]) or full blob id in hex is `id`, with
/// their room and seq: in one room only the first message with that id. A blob id is
/// random and known only from its announcement, so a later message repeating it (or its
/// short id) in the same room is a member copying it, to make `save` ambiguous.
pub fn find_files(
    store: &EncryptedStore,
    id: &str,
) -> Result<Vec<(RoomId, Seq, crate::attachment::FileMessage)>, ClientError> {
    let id = id.trim().to_ascii_lowercase();
    let mut found = Vec::new();
    for (key, value) in store.scan(Table::Files, b"").map_err(store_err)? {
        let (Some(room), Some(seq)) = (
            key.get(..16).and_then(|r| <[u8; 16]>::try_from(r).ok()),
            key.get(16..24).and_then(|s| <[u8; 8]>::try_from(s).ok()),
        ) else {
            continue;
        };
        let Ok(file) = postcard::from_bytes::<crate::attachment::FileMessage>(&value) else {
            continue;
        };
        if !id.is_empty() && (file.short_id() == id || file.blob.to_hex() == id) {
            found.push((RoomId(room), Seq(u64::from_be_bytes(seq)), file));
        }
    }
    found.sort_by_key(|(room, seq, _)| (room.0, seq.0));
    found.dedup_by_key(|(room, _, _)| *room);
    Ok(found)
}

/// Whether a message stored by the relay at `time` is past a timer of `expire_secs` at
/// `now`.
pub fn expired(time: SystemTime, expire_secs: u64, now: SystemTime) -> bool {
    time.checked_add(Duration::from_secs(expire_secs))
        .is_some_and(|end| end <= now)
}

/// Deletes the messages of a room that are past `expire_secs` at `now`; returns how
/// many were deleted.
pub fn purge(
    store: &EncryptedStore,
    room: RoomId,
    expire_secs: u64,
    now: SystemTime,
) -> Result<usize, ClientError> {
    let rows = store.scan(Table::History, &room.0).map_err(store_err)?;
    let doomed: Vec<Vec<u8>> = rows
        .into_iter()
        .filter(|(_, value)| {
            // An unreadable record cannot be shown either; leave it to whoever
            // understands it rather than guess its age.
            postcard::from_bytes::<HistoryRecord>(value)
                .is_ok_and(|r| expired(time_of(r.time), expire_secs, now))
        })
        .map(|(key, _)| key)
        .collect();
    if doomed.is_empty() {
        return Ok(0);
    }
    let mut batch = store.begin().map_err(store_err)?;
    for key in &doomed {
        batch.delete(Table::History, key).map_err(store_err)?;
        // Its file's key goes with it (the relay deletes the blob by then too).
        batch.delete(Table::Files, key).map_err(store_err)?;
    }
    batch.commit().map_err(store_err)?;
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str) -> Handle {
        Handle::new(name).unwrap()
    }

    fn record(sender: &str) -> HistoryRecord {
        HistoryRecord {
            sender: h(sender),
            text: "hello".into(),
            time: 0,
            own: false,
            reply_to: None,
        }
    }

    fn by(who: &str, change: MessageChange) -> Annotation {
        Annotation {
            target: Seq(1),
            by: h(who),
            change,
        }
    }

    #[test]
    fn only_the_sender_edits_or_deletes() {
        let (mut r, mut m) = (record("alice"), Marks::default());
        assert!(!change(
            &mut r,
            &mut m,
            &by("bob", MessageChange::Edited("forged".into()))
        ));
        assert!(!change(&mut r, &mut m, &by("bob", MessageChange::Deleted)));
        assert_eq!((r.text.as_str(), &m), ("hello", &Marks::default()));
        assert!(change(
            &mut r,
            &mut m,
            &by("alice", MessageChange::Edited("hi".into()))
        ));
        assert_eq!((r.text.as_str(), m.edited), ("hi", true));
        assert!(change(
            &mut r,
            &mut m,
            &by("bob", MessageChange::Reacted("👍".into()))
        ));
        assert!(change(&mut r, &mut m, &by("alice", MessageChange::Deleted)));
        assert_eq!((r.text.as_str(), m.deleted), ("", true));
        assert!(
            m.reactions.is_empty(),
            "a deleted message keeps no reactions"
        );
        // Nothing changes a deleted message.
        assert!(!change(
            &mut r,
            &mut m,
            &by("alice", MessageChange::Edited("back".into()))
        ));
        assert!(!change(
            &mut r,
            &mut m,
            &by("bob", MessageChange::Reacted("👍".into()))
        ));
        assert_eq!(r.text, "");
    }

    #[test]
    fn reactions_count_once_per_sender_and_are_bounded() {
        let (mut r, mut m) = (record("alice"), Marks::default());
        let react = |who: &str, emoji: &str| by(who, MessageChange::Reacted(emoji.into()));
        assert!(change(&mut r, &mut m, &react("bob", "👍")));
        assert!(
            !change(&mut r, &mut m, &react("bob", "👍")),
            "the same again"
        );
        assert!(change(&mut r, &mut m, &react("carol", "👍")));
        assert!(change(&mut r, &mut m, &react("bob", "❤️")));
        assert!(!change(&mut r, &mut m, &react("bob", "\u{202e}x")));
        assert!(!change(&mut r, &mut m, &react("bob", "\u{1b}[2J")));
        assert_eq!(
            m.reactions,
            [
                Reaction {
                    emoji: "👍".into(),
                    by: vec![h("bob"), h("carol")]
                },
                Reaction {
                    emoji: "❤️".into(),
                    by: vec![h("bob")]
                },
            ]
        );
        for i in 0..40 {
            change(&mut r, &mut m, &react("bob", &format!("e{i}")));
        }
        assert_eq!(m.reactions.len(), MAX_REACTIONS);
    }

    #[test]
    fn marks_follow_the_record_and_old_records_read_as_unmarked() {
        let r = record("alice");
        let old = postcard::to_allocvec(&r).unwrap();
        assert_eq!(decode(&old), Some((r.clone(), Marks::default())));
        let marks = Marks {
            edited: true,
            deleted: false,
            reactions: vec![Reaction {
                emoji: "👍".into(),
                by: vec![h("bob")],
            }],
        };
        let mut new = old.clone();
        new.extend(postcard::to_allocvec(&marks).unwrap());
        assert_eq!(decode(&new), Some((r.clone(), marks)));
        // A reader that knows no marks still reads the record.
        assert_eq!(postcard::from_bytes::<HistoryRecord>(&new).unwrap(), r);
        assert_eq!(decode(&[0xff; 3]), None);
    }

    #[test]
    fn expiry_is_relative_to_the_relay_time() {
        let t = time_of(1_000);
        assert!(!expired(t, 60, time_of(1_059)));
        assert!(expired(t, 60, time_of(1_060)));
        assert!(!expired(t, u64::MAX, time_of(u64::MAX / 4)));
    }
}
