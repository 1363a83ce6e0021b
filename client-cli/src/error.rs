//! Turning failures into one line that says what went wrong and what to do.

use std::fmt;

/// Exit code for a failure.
pub const EXIT_ERROR: u8 = 1;
/// Exit code for wrong usage (unknown command, missing or malformed argument).
pub const EXIT_USAGE: u8 = 2;

/// A mistake in how a command was called that clap cannot see (e.g. a malformed handle).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `err` as one line, `what failed: why`, never a backtrace. Made inert: the causes may
/// carry the relay's words or names others chose.
pub fn render(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    crate::inert::inert(&line.replace('\n', " ")).into_owned()
}

/// Prints an error line made by [`render`] on standard error: `error: …`, or under
/// `--json` an object `{"error": "…", "exit_code": N}`.
pub fn print(json: bool, line: &str, code: u8) {
    print_about(json, line, code, None);
}

/// [`print`] for an error about a room: under `--json` the object also carries the
/// room's id and name (see [`room`]).
pub fn print_about(json: bool, line: &str, code: u8, room: Option<&serde_json::Value>) {
    let text = if json {
        let mut object = serde_json::json!({"error": line, "exit_code": code});
        if let (Some(serde_json::Value::Object(fields)), serde_json::Value::Object(object)) =
            (room, &mut object)
        {
            object.extend(fields.clone());
        }
        object.to_string()
    } else {
        format!("error: {line}")
    };
    crate::console::write_line(&mut std::io::stderr().lock(), &text);
}

/// The room `err` is about, if hearth-core says it is about one: `{"room": ID,
/// "room_name": NAME}` (the name as its members set it, or `null` when not known).
pub fn room(err: &anyhow::Error) -> Option<serde_json::Value> {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<hearth_core::ClientError>())
        .find_map(hearth_core::ClientError::room)
        .map(|room| serde_json::Value::Object(crate::output::room_fields(room)))
}

/// The process exit code for `err`.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<UsageError>().is_some() {
        EXIT_USAGE
    } else {
        EXIT_ERROR
    }
}
