//! Replies, edits, deletions and reactions: what the user says about an earlier message.
//!
//! Each is a [`Body`] sent like a text message, through the queue when the relay cannot be
//! reached ([`Delivery`]), and applied to the stored history by every member as it
//! arrives, under the rules of [`crate::history`] (only a message's sender edits or
//! deletes it, one reaction per person and emoji). The checks here only spare the user
//! a message the others would ignore; the rules are enforced on receipt.

use hearth_protocol::{RoomId, Seq};

use super::queue::Delivery;
use super::Client;
use crate::content::{valid_reaction, Body, MAX_REACTION_LEN};
use crate::error::ClientError;
use crate::events::HistoryItem;

impl Client {
    /// The relay's time now, as far as this client knows its clock (what message times
    /// are stamped in).
    pub fn relay_now(&self) -> std::time::SystemTime {
        self.inner.clock.now()
    }

    /// One stored message of `room`, if this device holds it (and it has not expired).
    pub async fn message(
        &self,
        room: RoomId,
        seq: Seq,
    ) -> Result<Option<HistoryItem>, ClientError> {
        let Some(mut item) = crate::history::get(self.inner.profile.store(), room, seq)? else {
            return Ok(None);
        };
        if let Ok(handle) = self.inner.room(room) {
            let expire = handle
                .lock()
                .await
                .settings()
                .ok()
                .and_then(|s| s.expire_secs);
            if expire.is_some_and(|e| crate::history::expired(item.time, e, self.inner.clock.now()))
            {
                return Ok(None);
            }
        }
        item.sender_name = self.inner.display_name(&item.sender);
        Ok(Some(item))
    }

    /// Sends `text` as a reply to message `to` of `room` (now, or queued while the relay
    /// cannot be reached).
    pub async fn send_reply_or_queue(
        &self,
        room: RoomId,
        to: Seq,
        text: &str,
    ) -> Result<Delivery, ClientError> {
        let target = self.target(room, to).await?;
        if target.deleted {
            return Err(said_error(format!(
                "message #{to} was deleted: reply without it"
            )));
        }
        let body = Body::Text {
            text: text.to_string(),
            reply_to: Some(to),
        };
        self.inner.send_or_queue(room, body).await
    }

    /// Replaces the text of our own message `target` of `room`.
    pub async fn send_edit(
        &self,
        room: RoomId,
        target: Seq,
        text: &str,
    ) -> Result<Delivery, ClientError> {
        self.own_target(room, target, "edit").await?;
        if text.trim().is_empty() {
            return Err(said_error(format!(
                "an edit needs the new text; to withdraw message #{target}, delete it"
            )));
        }
        let body = Body::Edit {
            target,
            text: text.to_string(),
        };
        self.inner.send_or_queue(room, body).await
    }

    /// Withdraws our own message `target` of `room`: every member drops its text.
    pub async fn send_delete(&self, room: RoomId, target: Seq) -> Result<Delivery, ClientError> {
        self.own_target(room, target, "delete").await?;
        self.inner
            .send_or_queue(room, Body::Delete { target })
            .await
    }

    /// Reacts to message `target` of `room` with `emoji` (see
    /// [`crate::content::valid_reaction`]). Reacting the same way twice changes nothing.
    pub async fn send_reaction(
        &self,
        room: RoomId,
        target: Seq,
        emoji: &str,
    ) -> Result<Delivery, ClientError> {
        let emoji = emoji.trim();
        if !valid_reaction(emoji) {
            return Err(said_error(format!(
                "a reaction is one emoji or a short word (at most {MAX_REACTION_LEN} bytes, no spaces or invisible characters)"
            )));
        }
        let item = self.target(room, target).await?;
        if item.deleted {
            return Err(said_error(format!("message #{target} was deleted")));
        }
        let me = self.inner.profile.handle();
        if item
            .reactions
            .iter()
            .any(|r| r.emoji == emoji && r.by.contains(me))
        {
            return Err(said_error(format!(
                "you already reacted {emoji} to message #{target}"
            )));
        }
        let body = Body::React {
            target,
            emoji: emoji.to_string(),
        };
        self.inner.send_or_queue(room, body).await
    }

    /// Message `seq` of `room`, or an error saying there is none.
    async fn target(&self, room: RoomId, seq: Seq) -> Result<HistoryItem, ClientError> {
        self.message(room, seq).await?.ok_or_else(|| {
            said_error(format!(
                "no message #{seq} in this room (the number is the one shown beside the message)"
            ))
        })
    }

    /// Our own message `seq` of `room`, not deleted; `what` names the action for errors.
    async fn own_target(&self, room: RoomId, seq: Seq, what: &str) -> Result<(), ClientError> {
        let item = self.target(room, seq).await?;
        if item.sender != *self.inner.profile.handle() {
            return Err(said_error(format!(
                "message #{seq} is {}'s: you can only {what} your own messages",
                item.sender
            )));
        }
        if item.deleted {
            return Err(said_error(format!("message #{seq} is already deleted")));
        }
        Ok(())
    }
}

fn said_error(message: String) -> ClientError {
    ClientError::Other(message)
}
