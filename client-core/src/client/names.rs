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

/// Checks a display name (after trimming it): 1 to 32 characters, no brackets (`<>[]()`,
/// which could fake a speaker in a chat line), no control characters and no invisible ones (bidi embeddings, overrides, isolates and marks, zero-width
/// characters, other format characters), which could make one name pass for another or
/// reorder the text around it. Returns the trimmed name, or why it is refused.
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
    // The chat shows `[HH:MM] <name (handle)> text`: brackets in a name could make it look
    // like the end of one speaker and the start of another.
    if let Some(c) = name.chars().find(|c| "<>[]()".contains(*c)) {
        return Err(format!("a display name cannot contain {c:?}"));
    }
    if let Some(c) = name.chars().find(|c| invisible(*c)) {
        return Err(format!(
            "a display name cannot contain invisible or text-direction characters (U+{:04X} given)",
            u32::from(c)
        ));
    }
    Ok(name.to_string())
}

/// Characters that show nothing themselves but change how text around them is shown:
/// Unicode's format characters (category Cf) such as the bidi controls U+202A..U+202E,
/// U+2066..U+2069, U+200E, U+200F, U+061C and the zero-width U+200B..U+200D, U+2060,
/// U+FEFF; the line and paragraph separators; and the fillers that render as nothing.
/// (The zero-width joiner of emoji sequences is refused too: a name has no need of it.)
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{890}'..='\u{891}'
            | '\u{8e2}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e007f}'
    )
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
        self.broadcast(
            Body::Profile { display_name: name },
            "display name",
            super::room_jitter(),
        )
        .await;
    }
}

impl Client {
    /// Sets the name others see next to our handle (trimmed; 1 to 32 characters, no
    /// control or invisible characters, see [`validate_display_name`]): stored in this
    /// profile and sent, end-to-end encrypted, to every room we are in (and again by
    /// [`Client::announce_presence`]).
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
        for faking in ["alice> ok [18:23] <carol", "(bob)", "x]"] {
            assert!(validate_display_name(faking).is_err(), "{faking}");
        }
        assert!(validate_display_name("   ").is_err());
        assert!(validate_display_name("a\u{7}b").is_err());
        assert!(validate_display_name("a\nb").is_err());
        assert!(validate_display_name(&"é".repeat(32)).is_ok());
        assert!(validate_display_name(&"é".repeat(33)).is_err());
    }

    #[test]
    fn names_with_invisible_or_bidi_characters_are_refused() {
        for bad in [
            "evil\u{202e}gnp.exe",
            "\u{202a}x",
            "\u{2066}alice\u{2069}",
            "al\u{200b}ice",
            "al\u{200c}ice",
            "al\u{200d}ice",
            "a\u{200e}",
            "a\u{200f}",
            "a\u{61c}",
            "a\u{2060}",
            "\u{feff}alice",
            "a\u{ad}b",
            "a\u{2028}b",
            "\u{3164}",
            "a\u{e0041}",
            "a\u{1b}[2Jb",
            "a\u{9b}b",
        ] {
            assert!(validate_display_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["Grandma 👵", "Ζωή", "Zoë", "محمد", "山田", "O'Brien-Smith"] {
            assert_eq!(validate_display_name(good), Ok(good.to_string()));
        }
    }
}
