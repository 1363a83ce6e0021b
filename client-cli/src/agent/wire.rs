//! The agent's socket protocol: one JSON object per line, each way.
//!
//! A caller opens the socket, sends one [`ToAgent::Run`] (or [`ToAgent::Lock`] or
//! [`ToAgent::Status`]), then answers what the agent sends: [`ToCaller::Ask`] with one
//! [`ToAgent::Line`], and after [`ToCaller::Chat`] every typed line as a
//! [`ToAgent::Line`] until the caller closes its half. The agent ends a command with
//! [`ToCaller::Done`]. Only the profile's owner can open the socket (mode 0600 in the
//! profile directory, which is 0700), so both ends trust each other; lines are still
//! bounded in length ([`MAX_LINE`]) and a malformed one ends the connection.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest line either side accepts, in bytes (a chat message is far shorter).
pub const MAX_LINE: usize = 1 << 20;

/// From a `hearth` command to the agent.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToAgent {
    /// Run this command line (argv without the program name).
    Run {
        /// The arguments, as typed.
        args: Vec<String>,
        /// Whether the caller's standard input is a terminal (questions can be asked).
        terminal: bool,
        /// A chat for a full-screen terminal UI: send [`ToCaller::Line`] and
        /// [`ToCaller::View`] instead of plain output.
        #[serde(default)]
        full_screen: bool,
        /// The caller's [`build`]: an agent of another build stops instead of running it.
        build: String,
    },
    /// A line the user typed: an answer, or a chat line.
    Line(String),
    /// The user ended the chat's input (Ctrl-D).
    EndOfInput,
    /// A full-screen chat's terminal window gained (`true`) or lost the focus: the agent
    /// sends desktop notifications only while no chat window has it.
    Focus(bool),
    /// Forget the profile's key and stop.
    Lock,
    /// Say how the agent is doing.
    Status,
}

/// From the agent to a `hearth` command.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToCaller {
    /// A line for standard output.
    Out(String),
    /// A line for standard error.
    Err(String),
    /// Ask this question on the terminal and send the answer as a [`ToAgent::Line`].
    Ask(String),
    /// Start a line editor with this prompt; send typed lines, close on end of input.
    Chat {
        /// The prompt.
        prompt: String,
    },
    /// A chat line, for a full-screen chat (see [`ChatLine`]); a line-mode chat gets
    /// [`ToCaller::Out`] instead.
    Line(ChatLine),
    /// What a full-screen chat shows beside the lines, sent whenever it changes.
    View(ChatView),
    /// The agent runs another build of hearth than the caller (hearth was upgraded): it
    /// stops, and the caller starts a new one.
    Outdated,
    /// The agent's state, for [`ToAgent::Status`].
    Status(AgentStatus),
    /// The command ended: the process exit code and, on failure, the error line.
    Done {
        /// Exit code for the caller's process.
        code: u8,
        /// The error, already made inert, without the `error: ` prefix.
        error: Option<String>,
        /// The room the error is about, for `--json` (see [`crate::error::room`]).
        #[serde(default)]
        room: Option<serde_json::Value>,
    },
}

/// One line of a chat, with what a full-screen UI needs to file and style it. Every
/// string is already inert (see [`crate::inert`]): safe to draw as it is.
///
/// A message line with the seq of one already held in its room is that message as it is
/// now (edited, deleted or reacted to): it takes the old line's place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLine {
    /// The room it belongs to (hex id), or `None` for the answer to a command, shown in
    /// whatever room is on screen.
    pub room: Option<String>,
    /// What kind of line.
    pub kind: LineKind,
    /// When it was written (Unix seconds, the relay's stamp), for messages.
    pub time: Option<u64>,
    /// The message's place in the room's log, for messages: a line with a seq already
    /// shown in that room is a repeat and is not shown again.
    pub seq: Option<u64>,
    /// Who wrote it, as shown (display name and handle), for messages.
    pub sender: Option<String>,
    /// The text; a message of several lines keeps its line breaks, each continuation
    /// line already set under `  | `.
    pub text: String,
    /// For a reply: a one-line quote of the message it answers (`alice: who brings…`).
    #[serde(default)]
    pub quote: Option<String>,
    /// Its sender edited it since.
    #[serde(default)]
    pub edited: bool,
    /// Its sender deleted it: `text` is empty.
    #[serde(default)]
    pub deleted: bool,
    /// The reactions to it, in the order they first came.
    #[serde(default)]
    pub reactions: Vec<ReactionCount>,
    /// We wrote it: we may edit or delete it.
    #[serde(default)]
    pub own: bool,
    /// A picture to show over the chat until the next key (`/preview`): the path of a
    /// checked copy the agent saved in the profile.
    #[serde(default)]
    pub preview: Option<String>,
}

/// One reaction under a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionCount {
    /// The emoji (inert).
    pub emoji: String,
    /// How many reacted so.
    pub count: usize,
    /// We are one of them.
    pub mine: bool,
}

/// How a chat line is shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LineKind {
    /// A message someone else wrote.
    Message,
    /// A message someone else wrote that names us (shown highlighted, counted as a
    /// mention in the rooms list).
    Mention,
    /// Our own message, confirmed by the relay.
    Own,
    /// A private message (to or from us).
    Private,
    /// The start of a room's history as the chat shows it on entering the room: a UI
    /// that keeps lines per room drops what it had for that room before.
    Header,
    /// Something that happened (`* bob joined`), or the answer to a command.
    #[default]
    Notice,
    /// A failure or refusal (`! not sent: …`).
    Error,
    /// Something the user must know for their safety (`!! …`: a changed key, an impostor,
    /// a fork).
    Warning,
}

/// What a full-screen chat shows around the lines. Every string is already inert.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatView {
    /// Our handle.
    pub me: String,
    /// The relay's address, as shown.
    pub relay: String,
    /// Whether the agent is connected to the relay now.
    pub connected: bool,
    /// Messages waiting for the relay (see `hearth_core::Delivery::Queued`).
    pub queued: usize,
    /// The current room (hex id), where typed lines go.
    pub current: Option<String>,
    /// Our rooms, in the order to list them.
    pub rooms: Vec<RoomEntry>,
    /// Invitations waiting for an answer (`/accept ID`, `/decline ID`).
    pub invitations: Vec<InvitationEntry>,
    /// The members of the current room.
    pub members: Vec<MemberEntry>,
    /// The current room's topic, if it has one.
    pub topic: Option<String>,
}

/// A room in the rooms list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEntry {
    /// Hex id (what `/current ID` takes).
    pub id: String,
    /// The name as shown (`@nick` for a private conversation).
    pub label: String,
    /// A private conversation.
    pub direct: bool,
}

/// An invitation in the rooms list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationEntry {
    /// Hex id (what `/accept ID` and `/decline ID` take).
    pub id: String,
    /// The room's name.
    pub name: String,
    /// Who invited us.
    pub from: String,
}

/// A member in the members pane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    /// Display name and handle, as shown.
    pub name: String,
    /// owner, admin or member.
    pub role: String,
    /// Whether we verified their key in person (`hearth verify`).
    pub verified: bool,
    /// Their key changed since we accepted it: sending is blocked until we decide.
    pub changed: bool,
    /// Online now, as far as we know.
    pub online: bool,
    /// It is us.
    pub me: bool,
}

/// What `hearth agent status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent's process id.
    pub pid: u32,
    /// Seconds since it unlocked the profile.
    pub unlocked_secs: u64,
    /// Seconds until it forgets the key by itself, if a timeout is set.
    pub forgets_in_secs: Option<u64>,
    /// Whether it is connected to the relay now.
    pub connected: bool,
    /// Commands being served now.
    pub callers: usize,
}

/// This program's build: its version and its file's size and modification time, so an
/// agent left running by an older binary is noticed after an upgrade.
pub fn build() -> String {
    let file = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{}-{modified}", m.len())
        })
        .unwrap_or_default();
    format!("{}-{file}", env!("CARGO_PKG_VERSION"))
}

/// Reads one message; `None` at end of stream. A line longer than [`MAX_LINE`] or one
/// that is not a message is an error.
pub async fn read<R, T>(from: &mut R) -> std::io::Result<Option<T>>
where
    R: AsyncBufRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut line = Vec::new();
    let read = (&mut *from)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if line.len() > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "agent message too long",
        ));
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Writes one message and flushes.
pub async fn write<W, T>(to: &mut W, message: &T) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    write_encoded(to, &encode(message)?).await
}

/// One message as it goes on the socket: JSON and a newline.
pub fn encode<T: Serialize>(message: &T) -> std::io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(message)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    line.push(b'\n');
    Ok(line)
}

/// Writes a message [`encode`]d before.
pub async fn write_encoded<W: AsyncWrite + Unpin>(to: &mut W, line: &[u8]) -> std::io::Result<()> {
    to.write_all(line).await?;
    to.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_survive_the_round_trip_and_garbage_is_refused() {
        let mut buffer = Vec::new();
        write(&mut buffer, &ToAgent::Line("hi\n\u{1b}[2J".into()))
            .await
            .unwrap();
        let mut reader = tokio::io::BufReader::new(&buffer[..]);
        match read::<_, ToAgent>(&mut reader).await.unwrap() {
            Some(ToAgent::Line(line)) => assert_eq!(line, "hi\n\u{1b}[2J"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(read::<_, ToAgent>(&mut reader).await.unwrap().is_none());
        let mut garbage = tokio::io::BufReader::new(&b"{\"Run\": 7}\n"[..]);
        assert!(read::<_, ToAgent>(&mut garbage).await.is_err());
        let long = vec![b'x'; MAX_LINE + 10];
        let mut long = tokio::io::BufReader::new(&long[..]);
        assert!(read::<_, ToAgent>(&mut long).await.is_err());
    }
}
