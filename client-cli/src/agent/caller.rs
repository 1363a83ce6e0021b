//! The caller's side: find the profile's agent (starting it if needed), have it run the
//! command, and be its terminal meanwhile. See [`super`].

use std::io::IsTerminal;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::wire::{self, AgentStatus, ToAgent, ToCaller};
use crate::cli::GlobalArgs;
use crate::console;
use crate::passphrase::{self, Purpose};

/// How long a starting agent may take to unlock the profile and reach the relay.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for another command's agent that is starting at the same time.
const RACE_WAIT: Duration = Duration::from_secs(3);
/// How often starting is tried again while a stopping agent still holds the profile
/// (it notices a removed socket within 2 s).
const START_RETRIES: u32 = 4;

/// Runs the command line `args` (without the program name) in the agent of the profile
/// in `global`, starting the agent first if none runs; returns the exit code.
pub async fn run(global: &GlobalArgs, args: Vec<String>, full_screen: bool) -> Result<u8> {
    let dir = crate::session::profile_dir(global);
    let terminal = std::io::stdin().is_terminal();
    let build = wire::build();
    for _ in 0..2 {
        let stream = match connect(&dir).await {
            Some(stream) => stream,
            None => {
                start(global, &dir).await?;
                connect(&dir)
                    .await
                    .context("the agent started but does not answer on its socket")?
            }
        };
        let run = ToAgent::Run {
            args: args.clone(),
            terminal,
            full_screen,
            build: build.clone(),
        };
        match converse(stream, run, global.json).await? {
            Some(code) => return Ok(code),
            // An agent of an older hearth: it stops; wait for it, then start ours.
            None => wait_for_stop(&dir).await,
        }
    }
    bail!("the profile's agent keeps running another build of hearth: stop it with `hearth lock`")
}

/// Connects to the agent's socket, if an agent listens there.
async fn connect(dir: &Path) -> Option<UnixStream> {
    UnixStream::connect(super::socket_path(dir)).await.ok()
}

/// Stops the agent of the profile, if one runs; whether one did.
pub async fn lock(dir: &Path) -> Result<bool> {
    let Some(stream) = connect(dir).await else {
        return Ok(false);
    };
    let (read, mut write) = stream.into_split();
    wire::write(&mut write, &ToAgent::Lock).await?;
    let mut read = BufReader::new(read);
    let _ = wire::read::<_, ToCaller>(&mut read).await;
    wait_for_stop(dir).await;
    Ok(true)
}

/// Waits until a stopping agent let go of the profile: its socket file goes last (after
/// it said goodbye in each room, at most a few seconds).
async fn wait_for_stop(dir: &Path) {
    let socket = super::socket_path(dir);
    for _ in 0..300 {
        if !socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The agent's status, if one runs.
pub async fn status(dir: &Path) -> Result<Option<AgentStatus>> {
    let Some(stream) = connect(dir).await else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    wire::write(&mut write, &ToAgent::Status).await?;
    let mut read = BufReader::new(read);
    match wire::read::<_, ToCaller>(&mut read).await? {
        Some(ToCaller::Status(status)) => Ok(Some(status)),
        other => bail!("the agent answered {other:?} to a status request"),
    }
}

/// Asks for the passphrase here and starts the agent in the background with it; returns
/// once it listens on its socket. An agent that is stopping (its socket file was removed)
/// still holds the profile for a moment: then starting is tried again, a few times.
async fn start(global: &GlobalArgs, dir: &Path) -> Result<()> {
    let passphrase = passphrase::read(
        global.passphrase_file.as_deref(),
        passphrase::PASSPHRASE_ENV,
        Purpose::Unlock,
    )?;
    let mut attempt = 0;
    loop {
        match start_once(global, dir, &passphrase).await {
            Err(e)
                if e.to_string().contains("another hearth process") && attempt < START_RETRIES =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                if connect(dir).await.is_some() {
                    return Ok(());
                }
            }
            other => return other,
        }
    }
}

/// Starts the agent once.
async fn start_once(global: &GlobalArgs, dir: &Path, passphrase: &str) -> Result<()> {
    let log_path = dir.join(super::LOG);
    let log = log_file(&log_path)?;
    let exe =
        std::env::current_exe().context("cannot find the hearth program to start its agent")?;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("--profile")
        .arg(dir)
        .args(["agent", "run", "--from-caller"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        // Its own process group: Ctrl-C in this terminal is not for the agent.
        .process_group(0);
    if global.verbose > 0 {
        command.arg(format!("-{}", "v".repeat(global.verbose.into())));
    }
    let mut child = command.spawn().context("cannot start the agent")?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child
            .stdin
            .take()
            .context("the agent has no standard input")?;
        let mut line = zeroize::Zeroizing::new(passphrase.as_bytes().to_vec());
        line.push(b'\n');
        stdin.write_all(&line).await?;
        // Dropped: the agent reads one line and must see nothing more.
    }
    let stdout = child
        .stdout
        .take()
        .context("the agent has no standard output")?;
    let answer = tokio::time::timeout(START_TIMEOUT, async move {
        use tokio::io::AsyncBufReadExt;
        let mut stdout = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            stdout.read_line(&mut line).await?;
            // A warning for the user comes before "ready".
            match line.strip_prefix("warning: ") {
                Some(_) => errln!("{}", line.trim_end()),
                None => return Ok::<_, std::io::Error>(line),
            }
        }
    })
    .await;
    let line = match answer {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => bail!("cannot hear from the starting agent: {e}"),
        Err(_) => bail!(
            "the agent did not start within {} s: see {}",
            START_TIMEOUT.as_secs(),
            log_path.display()
        ),
    };
    // Not waited for: it runs on after this command.
    drop(child);
    match line.trim_end() {
        "ready" => Ok(()),
        error => {
            // Two commands may have started agents at once; the other one won the lock.
            if error.contains("another hearth process") && wait_for_socket(dir, RACE_WAIT).await {
                return Ok(());
            }
            match error.strip_prefix("error: ") {
                Some(error) => bail!("{error}"),
                None => bail!(
                    "the agent stopped while starting: see {}",
                    log_path.display()
                ),
            }
        }
    }
}

/// Waits for an agent started by someone else to listen; whether one did.
async fn wait_for_socket(dir: &Path, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if connect(dir).await.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The agent's log, only the user can read it: appended to, so the previous agent's last
/// lines stay; started again once it passes [`LOG_MAX`].
fn log_file(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let too_big = std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_MAX);
    std::fs::OpenOptions::new()
        .create(true)
        .append(!too_big)
        .write(true)
        .truncate(too_big)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// The agent's log is started again past this size, in bytes.
const LOG_MAX: u64 = 1 << 20;

/// Sends `first`, then prints what the agent says and answers its questions until the
/// command is done; returns its exit code, or `None` when the agent is of another build.
/// SIGINT, SIGTERM and SIGHUP end the wait (the terminal is restored) with the shell's
/// code for the signal.
async fn converse(stream: UnixStream, first: ToAgent, json: bool) -> Result<Option<u8>> {
    let full_screen = matches!(
        first,
        ToAgent::Run {
            full_screen: true,
            ..
        }
    );
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    wire::write(&mut write, &first).await?;
    let (to_agent, mut outgoing) = mpsc::unbounded_channel::<ToAgent>();
    tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if wire::write(&mut write, &message).await.is_err() {
                break;
            }
        }
    });
    let mut chat: Option<ChatScreen> = None;
    // The user ended the chat's input: nothing more to read from the editor.
    let mut input_done = false;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        let typed = async {
            match chat.as_mut() {
                Some(screen) if !input_done => screen.next_input().await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            message = wire::read::<_, ToCaller>(&mut read) => {
                let message = message.context("the agent's answer is unreadable")?;
                let Some(message) = message else {
                    bail!("the agent stopped before the command finished (hearth was upgraded, `hearth lock` was run, or it failed): run the command again; if it stops again, see agent.log in the profile directory");
                };
                match message {
                    ToCaller::Out(line) => match chat.as_mut() {
                        Some(screen) => screen.print(line),
                        None => {
                            let width = crate::fit::terminal_width(std::io::stdout().is_terminal());
                            console::write_line(&mut std::io::stdout().lock(), &crate::fit::fit(&line, width))
                        }
                    },
                    ToCaller::Err(line) => match chat.as_mut() {
                        Some(screen) => screen.print(line),
                        None => {
                            let width = crate::fit::terminal_width(std::io::stderr().is_terminal());
                            console::write_line(&mut std::io::stderr().lock(), &crate::fit::fit(&line, width))
                        }
                    },
                    ToCaller::Ask(question) => {
                        // On its own thread, so a signal still ends the wait.
                        let to_agent = to_agent.clone();
                        tokio::task::spawn_blocking(move || {
                            let answer = console::read_answer(&question).unwrap_or_default();
                            let _ = to_agent.send(ToAgent::Line(answer));
                        });
                    }
                    ToCaller::Chat { prompt } => {
                        chat = Some(ChatScreen::start(prompt, full_screen)?);
                        if full_screen {
                            // A window just opened is in front, until its terminal says
                            // otherwise (one that never reports focus stays "in front").
                            let _ = to_agent.send(ToAgent::Focus(true));
                        }
                    }
                    ToCaller::Line(line) => {
                        if let Some(screen) = chat.as_mut() {
                            screen.line(line);
                        }
                    }
                    ToCaller::View(view) => {
                        if let Some(screen) = chat.as_mut() {
                            screen.view(view);
                        }
                    }
                    ToCaller::Status(_) => {}
                    ToCaller::Done { code, error, room } => {
                        drop(chat);
                        if let Some(error) = error {
                            crate::error::print_about(json, &error, code, room.as_ref());
                        }
                        return Ok(Some(code));
                    }
                    ToCaller::Outdated => return Ok(None),
                }
            }
            line = typed => {
                match line {
                    Some(crate::tui::Typed::Line(line)) => { let _ = to_agent.send(ToAgent::Line(line)); }
                    Some(crate::tui::Typed::Focus(focused)) => { let _ = to_agent.send(ToAgent::Focus(focused)); }
                    None => {
                        // Keep showing what the agent says until it is done.
                        input_done = true;
                        let _ = to_agent.send(ToAgent::EndOfInput);
                    }
                }
            }
            _ = interrupt.recv() => { drop(chat); return Ok(Some(130)); }
            _ = terminate.recv() => { drop(chat); return Ok(Some(143)); }
            _ = hangup.recv() => { drop(chat); return Ok(Some(129)); }
        }
    }
}

/// The chat's screen in this terminal: the line editor, or the full-screen UI.
enum ChatScreen {
    Lines(crate::chat::terminal::Terminal),
    Full(Box<crate::tui::Tui>),
}

impl ChatScreen {
    fn start(prompt: String, full_screen: bool) -> Result<ChatScreen> {
        Ok(if full_screen {
            ChatScreen::Full(Box::new(crate::tui::Tui::start()?))
        } else {
            ChatScreen::Lines(crate::chat::terminal::start(prompt)?)
        })
    }

    /// A plain line (an answer, an error) from the agent.
    fn print(&mut self, text: String) {
        match self {
            ChatScreen::Lines(term) => (term.print)(text),
            ChatScreen::Full(tui) => {
                let kind = if text.starts_with("!!") {
                    wire::LineKind::Warning
                } else if text.starts_with('!') || text.starts_with("error") {
                    wire::LineKind::Error
                } else {
                    wire::LineKind::Notice
                };
                tui.line(wire::ChatLine {
                    room: None,
                    kind,
                    time: None,
                    seq: None,
                    sender: None,
                    text,
                    ..wire::ChatLine::default()
                });
            }
        }
    }

    fn line(&mut self, line: wire::ChatLine) {
        match self {
            ChatScreen::Lines(term) => (term.print)(line.text),
            ChatScreen::Full(tui) => tui.line(line),
        }
    }

    fn view(&mut self, view: wire::ChatView) {
        if let ChatScreen::Full(tui) = self {
            tui.view(view);
        }
    }

    async fn next_input(&mut self) -> Option<crate::tui::Typed> {
        match self {
            ChatScreen::Lines(term) => term.lines.recv().await.map(crate::tui::Typed::Line),
            ChatScreen::Full(tui) => tui.next_input().await,
        }
    }
}
