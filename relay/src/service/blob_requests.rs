//! The blob requests ([`Request::PutBlob`], [`Request::BlobStatus`],
//! [`Request::GetBlob`]): the room capability decides, the [`crate::blobs::BlobStore`]
//! does the file work on tokio's blocking pool (decision 0014).

use hearth_protocol::{ErrorCode, Request, Response, WireError};

use super::writer::internal;
use super::{unix_now, Shared};
use crate::store::{forbidden, unknown_room, Access, Store};

/// Who may do what with a capability: the room's record and the access it grants.
fn access(
    store: &dyn Store,
    room: &hearth_protocol::RoomId,
    cap: &hearth_protocol::Cap,
) -> Result<(u64, Access), WireError> {
    match store.access(room, &cap.hash()) {
        Ok(Some((record, access))) => Ok((record.head, access?)),
        Ok(None) => Err(unknown_room()),
        Err(e) => {
            tracing::error!(error = %e, "store read failed");
            Err(internal())
        }
    }
}

/// The refusal of a piece whose file would not fit on the relay's disk above its floor.
fn file_too_big_for_disk(rest: u64) -> WireError {
    WireError::new(
        ErrorCode::StorageFull,
        format!(
            "the relay's disk has no room for the rest of this file ({} MiB) above the space it keeps free: try again once its owner freed space (messages still go)",
            rest.div_ceil(1024 * 1024)
        ),
    )
}

/// Answers one blob request (any other request is a bad request here).
pub(crate) async fn handle(
    shared: &std::sync::Arc<Shared>,
    request: Request,
) -> Result<Response, WireError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || answer(&shared, request))
        .await
        .unwrap_or_else(|_| Err(internal()))
}

fn answer(shared: &Shared, request: Request) -> Result<Response, WireError> {
    let store = &*shared.store;
    match request {
        Request::PutBlob {
            room,
            cap,
            blob,
            total,
            offset,
            data,
        } => {
            let (head, access) = access(store, &room, &cap)?;
            access.require_current()?;
            // The rest of the file must fit above the floor, so that files never take
            // the space messages need.
            let rest = total.saturating_sub(offset);
            if !shared.floor.room_for(rest) {
                return Err(file_too_big_for_disk(rest));
            }
            let received = shared
                .blobs
                .put(room, blob, total, offset, &data, head, unix_now())?;
            Ok(Response::BlobStored { received, total })
        }
        Request::BlobStatus { room, cap, blob } => {
            let (_, access) = access(store, &room, &cap)?;
            access.require_current()?;
            let (received, total) = shared.blobs.status(&room, &blob);
            Ok(Response::BlobStored { received, total })
        }
        Request::GetBlob {
            room,
            cap,
            blob,
            offset,
            len,
        } => {
            let (_, access) = access(store, &room, &cap)?;
            if let Access::Ended { end } = access {
                // An ended epoch reads only what was begun before it ended: a removed
                // member gets nothing sent after the removal.
                let meta = shared.blobs.meta(&room, &blob);
                if meta.is_some_and(|m| m.start_seq >= end.0) {
                    return Err(forbidden());
                }
            }
            let (total, data) = shared.blobs.get(&room, &blob, offset, len)?;
            Ok(Response::Blob { total, data })
        }
        _ => Err(WireError::new(ErrorCode::BadRequest, "not a blob request")),
    }
}
