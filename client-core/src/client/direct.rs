//! Private messages (DESIGN 7): a two-person room per pair, marked `direct` in its
//! settings, created on first use. The other person's client joins it from the Welcome
//! without an invitation step when it already shares a room with the sender (see
//! `inbox`), so the first message arrives as a message; from anyone else it waits as an
//! invitation.

use hearth_protocol::{Handle, RoomId};

use super::room::Status;
use super::Inner;
use crate::content::Body;
use crate::error::ClientError;
use crate::mls::RoomSettings;

impl Inner {
    /// The joined direct room whose members are exactly us and `peer` holding the key
    /// accepted for them (the lowest room id if, after a race, there are two). Chosen by
    /// key: a room whose member merely calls itself `peer` never qualifies.
    pub(crate) async fn direct_room_with(&self, peer: &Handle) -> Option<RoomId> {
        let accepted = crate::contacts::load(self.profile.store(), peer)
            .ok()
            .flatten()?
            .key;
        let mut found = Vec::new();
        for room in self.room_handles() {
            let room = room.lock().await;
            if room.removed || room.rec.status != Status::Joined {
                continue;
            }
            if !room.settings().is_ok_and(|s| s.direct) {
                continue;
            }
            let members = room.members();
            if members.len() == 2
                && members
                    .iter()
                    .any(|m| m.handle == *peer && m.account.0 == accepted)
            {
                found.push(room.id);
            }
        }
        found.into_iter().min()
    }

    pub(crate) async fn send_private(
        &self,
        to: &Handle,
        text: &str,
    ) -> Result<RoomId, ClientError> {
        let me = self.profile.handle();
        if to == me {
            return Err(ClientError::Other(
                "a private message needs someone other than yourself".into(),
            ));
        }
        let id = match self.direct_room_with(to).await {
            Some(id) => id,
            None => {
                let mut pair = [me.as_str(), to.as_str()];
                pair.sort_unstable();
                let name = format!("@{}+{}", pair[0], pair[1]);
                let settings = RoomSettings::direct(&name, self.profile.account());
                let id = self.create_room_with(settings).await?;
                if let Err(e) = self.invite(id, to).await {
                    // An empty conversation is of no use to anyone.
                    if let Err(left) = self.leave(id).await {
                        tracing::warn!("dropping the unused private room {id} failed: {left}");
                    }
                    return Err(e);
                }
                id
            }
        };
        self.send_body(
            id,
            Body::Text {
                text: text.to_string(),
                reply_to: None,
            },
        )
        .await?;
        Ok(id)
    }
}
