//! Display names: each user picks one ([`Client::set_display_name`]) and shares it
//! end-to-end encrypted with the rooms they are in, as a `Body::Profile` message sent to
//! every joined room (like presence, never stored in history). The handle stays the
//! identity: names can be spoofed, handles cannot, so names are shown next to handles.
//!
//! Names live in [`Table::Settings`] under `name/HANDLE` (UTF-8), ours included, written
//! in the batch of the log entry that carried them.

use hearth_protocol::Handle;

use super::{Client, Inner};
use crate::content::Body;
use crate::error::{store as store_err, ClientError};
use crate::store::{Table, WriteBatch};

/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 32;

/// Prefix of the display-name keys in `Table::Settings`.
const NAME_PREFIX: &[u8] = b"name/";

fn name_key(handle: &Handle) -> Vec<u8> {
    let mut key = NAME_PREFIX.to_vec();
    key.extend_from_slice(handle.as_str().as_bytes());
    key
}

/// Checks a display name (after trimming it): 1 to 32 characters, no control characters.
/// Returns the trimmed name, or why it is refused.
pub fn validate_display_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("a display name cannot be empty".into());
    }
    let len = name.chars().count();
    if len > MAX_DISPLAY_NAME {
        return Err(format!(
            "a display name has at most {MAX_DISPLAY_NAME} characters ({len} given)"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a display name cannot contain control characters".into());
    }
    Ok(name.to_string())
}

impl Inner {
    /// The stored display name of `handle` (ours included).
    pub(crate) fn display_name(&self, handle: &Handle) -> Option<String> {
        let bytes = self
            .profile
            .store()
            .get(Table::Settings, &name_key(handle))
            .ok()??;
        String::from_utf8(bytes.to_vec()).ok()
    }

    /// A display name heard in a room, checked: the name to store if it is valid and
    /// differs from the one stored for `handle`.
    pub(crate) fn new_display_name(&self, handle: &Handle, name: &str) -> Option<String> {
        let Ok(name) = validate_display_name(name) else {
            tracing::info!("ignoring an invalid display name from {handle}");
            return None;
        };
        (self.display_name(handle).as_deref() != Some(name.as_str())).then_some(name)
    }

    /// Stores `name` as the display name of `handle` in `batch`.
    pub(crate) fn put_display_name(
        batch: &mut WriteBatch<'_>,
        handle: &Handle,
        name: &str,
    ) -> Result<(), ClientError> {
        batch
            .put(Table::Settings, &name_key(handle), name.as_bytes())
            .map_err(store_err)
    }

    /// Sends our display name (if we have one) to every joined room; failures are logged.
    pub(crate) async fn announce_name(&self) {
        let Some(name) = self.display_name(self.profile.handle()) else {
            return;
        };
        self.broadcast(Body::Profile { display_name: name }, "display name")
            .await;
    }
}

impl Client {
    /// Sets the name others see next to our handle (trimmed; 1 to 32 characters, no
    /// control characters): stored in this profile and sent, end-to-end encrypted, to
    /// every room we are in (and again by [`Client::announce_presence`]).
    pub async fn set_display_name(&self, name: &str) -> Result<(), ClientError> {
        let name = validate_display_name(name).map_err(ClientError::Other)?;
        let store = self.inner.profile.store();
        let mut batch = store.begin().map_err(store_err)?;
        Inner::put_display_name(&mut batch, self.inner.profile.handle(), &name)?;
        batch.commit().map_err(store_err)?;
        self.inner.announce_name().await;
        Ok(())
    }

    /// The display name `handle` chose (as last heard in a shared room), or ours.
    pub fn display_name(&self, handle: &Handle) -> Option<String> {
        self.inner.display_name(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(validate_display_name("  Grandma "), Ok("Grandma".into()));
        assert_eq!(validate_display_name("Uncle Bob"), Ok("Uncle Bob".into()));
        assert!(validate_display_name("   ").is_err());
        assert!(validate_display_name("a\u{7}b").is_err());
        assert!(validate_display_name("a\nb").is_err());
        assert!(validate_display_name(&"é".repeat(32)).is_ok());
        assert!(validate_display_name(&"é".repeat(33)).is_err());
    }
}
