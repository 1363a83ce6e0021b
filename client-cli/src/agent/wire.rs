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
        /// The caller's [`build`]: an agent of another build stops instead of running it.
        build: String,
    },
    /// A line the user typed: an answer, or a chat line.
    Line(String),
    /// The user ended the chat's input (Ctrl-D).
    EndOfInput,
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
    },
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
    let mut line = serde_json::to_vec(message)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    line.push(b'\n');
    to.write_all(&line).await?;
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
