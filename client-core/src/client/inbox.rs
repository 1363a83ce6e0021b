//! The inbox: Welcomes (invitations) deposited by other accounts. The members' keys
//! of a room joined this way are pinned or checked (see [`crate::contacts`]).

use hearth_protocol::limits::MAX_INBOX_FETCH;
use hearth_protocol::{Handle, InboxEntry, Request, Response, Seq};
use openmls::prelude::*;

use super::room::{Room, RoomRecord, Status};
use super::{unexpected, Inner};
use crate::content::InboxMessage;
use crate::error::{mls, store as store_err, ClientError};
use crate::events::{ClientEvent, Invitation};
use crate::mls::{handle_of, join_config, parse_message, RoomSettings};
use crate::store::Table;
use crate::transcript::Transcript;

impl Inner {
    /// Fetches, handles and acknowledges every inbox entry.
    pub(crate) async fn fetch_inbox(&self) -> Result<(), ClientError> {
        let _one_at_a_time = self.inbox_lock.lock().await;
        loop {
            let entries = match self
                .call(Request::FetchInbox {
                    after: 0,
                    limit: MAX_INBOX_FETCH,
                })
                .await?
            {
                Response::Inbox(entries) => entries,
                other => return Err(unexpected(&other)),
            };
            if entries.is_empty() {
                return Ok(());
            }
            let full = entries.len() >= MAX_INBOX_FETCH as usize;
            let ids = entries.iter().map(|e| e.id).collect();
            for entry in &entries {
                if let Err(e) = self.handle_inbox_entry(entry) {
                    tracing::warn!("inbox entry {} dropped: {e}", entry.id);
                }
            }
            match self.call(Request::AckInbox { ids }).await? {
                Response::Done => {}
                other => return Err(unexpected(&other)),
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn handle_inbox_entry(&self, entry: &InboxEntry) -> Result<(), ClientError> {
        let message =
            InboxMessage::decode(&entry.payload).map_err(|e| ClientError::Other(e.to_string()))?;
        let InboxMessage::Welcome {
            room: id,
            welcome,
            start_seq,
            transcript_hash,
            from,
        } = message;
        if !self.make_room_for_welcome(id)? {
            return Ok(()); // already joined (a duplicate deposit)
        }
        let welcome = match parse_message(&welcome)?.extract() {
            MlsMessageBodyIn::Welcome(welcome) => welcome,
            _ => return Err(ClientError::Mls("inbox entry is not a Welcome".into())),
        };
        let mut engine = self.engine();
        let staged =
            StagedWelcome::new_from_welcome(&engine.provider, &join_config(), welcome, None)
                .map_err(mls)?;
        if staged.group_context().group_id().as_slice() != id.0 {
            return Err(ClientError::Mls("Welcome is for another room".into()));
        }
        let inviter = staged.welcome_sender().map_err(mls)?;
        if handle_of(inviter.credential()).as_ref() != Some(&from) {
            return Err(ClientError::Mls(format!(
                "Welcome claims to come from {from} but was signed by someone else"
            )));
        }
        let group = staged.into_group(&engine.provider).map_err(mls)?;
        let name = RoomSettings::of(group.extensions())
            .map(|s| s.name)
            .unwrap_or_default();
        let room = Room {
            id,
            rec: RoomRecord {
                version: 1,
                name: name.clone(),
                status: Status::Invited {
                    from: from.clone(),
                    received: entry.time,
                },
                transcript: Transcript::starting_at(
                    Seq(start_seq.0.saturating_sub(1)),
                    transcript_hash,
                ),
                inflight: None,
            },
            group,
            subscribed: None,
            commit_proposals: false,
            removed: false,
        };
        let mut events = Vec::new();
        let seen: Vec<(Handle, [u8; 32])> = room
            .members()
            .into_iter()
            .map(|m| (m.handle, m.account.0))
            .collect();
        let contacts = self.check_contacts(&seen, &mut events);
        engine.persist(self.profile.store(), |batch| {
            room.save(batch)?;
            // A fresh group from a Welcome owes nothing to a restored backup.
            super::restore::clear_mark(batch, id)?;
            for (handle, key) in &contacts {
                batch
                    .put(Table::Contacts, handle.as_str().as_bytes(), key)
                    .map_err(store_err)?;
            }
            Ok(())
        })?;
        drop(engine);
        self.insert_room(room);
        for event in events {
            self.emit(event);
        }
        self.emit(ClientEvent::Invited(Invitation {
            room: id,
            name,
            from,
            received: crate::history::time_of(entry.time),
        }));
        Ok(())
    }
}
