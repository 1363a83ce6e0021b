//! `hearth agent run`: the agent itself. See [`super`].

use std::collections::VecDeque;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use hearth_core::{Client, ClientEvent, ConnectionState, Profile};
use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc, watch, Mutex, Notify};
use zeroize::Zeroizing;

use super::wire::{self, AgentStatus, ToAgent, ToCaller};
use super::{route, Route};
use crate::cli::{Cli, GlobalArgs};
use crate::console::{self, Caller};
use crate::session::Shared;

/// How often the agent checks that its socket file is still its own.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// Events kept for a command that falls behind (a chat window busy redrawing).
const EVENT_BACKLOG: usize = 4096;
/// Security notices kept for the next `hearth read` (the oldest go first).
const NOTICES_KEPT: usize = 256;

/// Runs the agent of the profile in `global.profile` until it is told to stop.
/// `from_caller`: the passphrase comes on standard input and readiness (or the error that
/// stopped the start) is reported on standard output, for the command that started it.
pub async fn run(global: &GlobalArgs, timeout: Option<Duration>, from_caller: bool) -> Result<()> {
    let started = start(global, from_caller).await;
    if from_caller {
        let mut lines = Vec::new();
        match &started {
            Ok((.., warning)) => {
                // Before "ready": the command that started us shows it to its user.
                lines.extend(warning.clone());
                lines.push("ready".to_string());
            }
            Err(err) => lines.push(format!("error: {}", crate::error::render(err))),
        }
        let mut stdout = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
        }
    }
    let (shared, listener, socket, _) = started?;
    tracing::info!("agent of {} ready", socket.display());
    let inode = listener_inode(&socket);
    let mut callers = tokio::task::JoinSet::new();
    let result = serve(
        shared.clone(),
        listener,
        &socket,
        &inode,
        timeout,
        &mut callers,
    )
    .await;
    // Commands still running (an open chat) end with the agent.
    callers.shutdown().await;
    // Says we went offline, disconnects, and lets go of the profile.
    shared.client.shut_down().await;
    drop(shared);
    // Last, so a caller waiting for the socket to go finds the profile free. Only our
    // own socket file is removed: a newer agent may have replaced it.
    if same_file(&socket, &inode) {
        let _ = std::fs::remove_file(&socket);
    }
    result
}

/// Unlocks the profile, connects (or starts offline), binds the socket. Started by a
/// caller, also the warning about a weakly protected passphrase for it to show (otherwise
/// it was printed here).
async fn start(
    global: &GlobalArgs,
    from_caller: bool,
) -> Result<(Shared, UnixListener, PathBuf, Option<String>)> {
    let dir = crate::session::profile_dir(global);
    let mut warning = None;
    let profile = if from_caller {
        let passphrase = tokio::task::spawn_blocking(|| {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await??;
        let passphrase = Zeroizing::new(passphrase.trim_end_matches(['\r', '\n']).to_string());
        let profile = Profile::open(&dir, &passphrase)
            .with_context(|| format!("cannot open the profile in {}", dir.display()))?;
        warning = crate::session::weak_passphrase_protection(&profile);
        profile
    } else {
        crate::session::open_profile(global)?
    };
    let relay = profile.relay().to_string();
    let client = Client::open(profile)
        .await
        .with_context(|| format!("cannot connect to the relay {relay}"))?;
    let socket = super::socket_path(&dir);
    // We hold the profile's lock, so a socket file left here belongs to a dead agent.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", socket.display()))?;
    let (events, _) = broadcast::channel(EVENT_BACKLOG);
    let notices = Arc::new(std::sync::Mutex::new(VecDeque::new()));
    let client = Arc::new(client);
    let mut from_client = client.events();
    let to_commands = events.clone();
    let kept = notices.clone();
    tokio::spawn(async move {
        while let Some(event) = from_client.recv().await {
            if crate::chat::render::is_security(&event) {
                let mut kept = kept
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if kept.len() == NOTICES_KEPT {
                    kept.pop_front();
                }
                kept.push_back(event.clone());
            }
            let _ = to_commands.send(event);
        }
    });
    client.announce_presence().await;
    tokio::spawn(heartbeat(Arc::downgrade(&client), events.subscribe()));
    let shared = Shared {
        client,
        events,
        notices,
    };
    Ok((shared, listener, socket, warning))
}

/// Says we are online again every [`hearth_core::PRESENCE_HEARTBEAT`] while connected,
/// and at once after a reconnect (the others may have counted us gone meanwhile), so
/// an agent that dies without a goodbye shows offline soon (see `hearth_core` presence).
/// A room where someone just accepted an invitation is told at once too: the newcomer
/// did not see our earlier announcement.
async fn heartbeat(client: std::sync::Weak<Client>, mut events: broadcast::Receiver<ClientEvent>) {
    /// Whom to tell.
    enum Beat {
        Every,
        Room(hearth_protocol::RoomId),
    }
    let mut every = tokio::time::interval(hearth_core::PRESENCE_HEARTBEAT);
    every.tick().await;
    let mut was_lost = false;
    loop {
        let beat = tokio::select! {
            _ = every.tick() => Some(Beat::Every),
            event = events.recv() => match event {
                Ok(ClientEvent::Connection(ConnectionState::Connected)) => {
                    std::mem::take(&mut was_lost).then_some(Beat::Every)
                }
                Ok(ClientEvent::Connection(ConnectionState::Reconnecting { .. })) => {
                    was_lost = true;
                    None
                }
                Ok(ClientEvent::MemberAccepted { room, .. }) => Some(Beat::Room(room)),
                Ok(ClientEvent::Connection(ConnectionState::Closed))
                | Err(broadcast::error::RecvError::Closed) => return,
                _ => None,
            },
        };
        let Some(beat) = beat else {
            continue;
        };
        let Some(client) = client.upgrade() else {
            return;
        };
        if client.is_connected() {
            match beat {
                Beat::Every => client.heartbeat().await,
                Beat::Room(room) => client.greet(room).await,
            }
        }
    }
}

/// What callers may ask of the agent as a whole.
struct Control {
    stop: Notify,
    /// This agent's [`wire::build`].
    build: String,
    unlocked: Instant,
    timeout: Option<Duration>,
    callers: AtomicUsize,
    connected: watch::Receiver<bool>,
    /// Which chat windows have the focus (for desktop notifications).
    focus: Arc<super::notify::Focus>,
}

async fn serve(
    shared: Shared,
    listener: UnixListener,
    socket: &Path,
    inode: &Option<(u64, u64)>,
    timeout: Option<Duration>,
    callers: &mut tokio::task::JoinSet<()>,
) -> Result<()> {
    let control = Arc::new(Control {
        stop: Notify::new(),
        build: wire::build(),
        unlocked: Instant::now(),
        timeout,
        callers: AtomicUsize::new(0),
        connected: track_connection(shared.events.subscribe()),
        focus: Arc::default(),
    });
    tokio::spawn(super::notify::run(
        Arc::downgrade(&shared.client),
        shared.events.subscribe(),
        control.focus.clone(),
    ));
    let forget_at = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    // A closed terminal must not stop the agent: it serves the whole login session.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut watch_every = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                let control = control.clone();
                callers.spawn(async move {
                    control.callers.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = connection(stream, shared, &control).await {
                        tracing::info!("a caller's connection ended: {e}");
                    }
                    control.callers.fetch_sub(1, Ordering::SeqCst);
                });
            }
            () = control.stop.notified() => {
                tracing::info!("locked by a caller");
                return Ok(());
            }
            () = sleep_until(forget_at) => {
                tracing::info!("timeout reached: forgetting the key");
                return Ok(());
            }
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
            _ = hangup.recv() => {}
            // Reaps finished callers, so the set stays small.
            Some(_) = callers.join_next(), if !callers.is_empty() => {}
            _ = watch_every.tick() => {
                if !same_file(socket, inode) {
                    tracing::info!("the socket file was removed or replaced: stopping");
                    return Ok(());
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether the client is connected now, from its events.
fn track_connection(mut events: broadcast::Receiver<ClientEvent>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(true);
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ClientEvent::Connection(state)) => {
                    let _ = tx.send(matches!(state, ConnectionState::Connected));
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    rx
}

/// The socket file's identity (device, inode), to notice it being replaced.
fn listener_inode(socket: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(socket).ok().map(|m| (m.dev(), m.ino()))
}

fn same_file(socket: &Path, inode: &Option<(u64, u64)>) -> bool {
    inode.is_some() && listener_inode(socket) == *inode
}

/// Serves one caller: a command run, a status or a lock.
async fn connection(stream: UnixStream, shared: Shared, control: &Control) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let Some(first) = wire::read::<_, ToAgent>(&mut read).await? else {
        return Ok(());
    };
    let (args, terminal, full_screen) = match first {
        ToAgent::Run {
            args,
            terminal,
            build,
            full_screen,
        } => {
            if build != control.build {
                tracing::info!("a caller of another build of hearth: stopping for it");
                wire::write(&mut write, &ToCaller::Outdated).await?;
                control.stop.notify_one();
                return Ok(());
            }
            (args, terminal, full_screen)
        }
        ToAgent::Status => {
            let status = AgentStatus {
                pid: std::process::id(),
                unlocked_secs: control.unlocked.elapsed().as_secs(),
                forgets_in_secs: control
                    .timeout
                    .map(|t| t.saturating_sub(control.unlocked.elapsed()).as_secs()),
                connected: *control.connected.borrow(),
                callers: control.callers.load(Ordering::SeqCst).saturating_sub(1),
            };
            wire::write(&mut write, &ToCaller::Status(status)).await?;
            return Ok(());
        }
        ToAgent::Lock => {
            control.stop.notify_one();
            wire::write(
                &mut write,
                &ToCaller::Done {
                    code: 0,
                    error: None,
                    room: None,
                },
            )
            .await?;
            return Ok(());
        }
        ToAgent::Line(_) | ToAgent::EndOfInput | ToAgent::Focus(_) => {
            anyhow::bail!("a line before any command")
        }
    };
    let (to_caller, mut outgoing) = super::outbox::channel();
    let (lines_tx, lines) = mpsc::unbounded_channel();
    let (gone_tx, gone) = watch::channel(false);
    let gone_tx = Arc::new(gone_tx);
    let writer_gone = gone_tx.clone();
    let caller = Arc::new(Caller {
        to_caller: to_caller.clone(),
        lines: Mutex::new(lines),
        terminal,
        full_screen,
        gone,
        session: shared.clone(),
    });
    // The caller's lines; its end of the socket closing means it is gone.
    let mut window = super::notify::WindowFocus::new(control.focus.clone());
    tokio::spawn(async move {
        let mut lines_tx = Some(lines_tx);
        loop {
            match wire::read::<_, ToAgent>(&mut read).await {
                Ok(Some(ToAgent::Line(line))) => {
                    if let Some(tx) = &lines_tx {
                        let _ = tx.send(line);
                    }
                }
                Ok(Some(ToAgent::Focus(focused))) => window.set(focused),
                Ok(Some(ToAgent::EndOfInput)) => lines_tx = None,
                Ok(Some(_)) | Ok(None) | Err(_) => break,
            }
        }
        let _ = gone_tx.send(true);
    });
    let writer = tokio::spawn(async move {
        while let Some(next) = outgoing.recv().await {
            let line = match next {
                super::outbox::Next::Write(line) => line,
                super::outbox::Next::FellBehind => {
                    // Cut off: its command stops as if it had gone, and it is told why
                    // (if it ever reads again).
                    let _ = writer_gone.send(true);
                    let _ = wire::write(
                        &mut write,
                        &ToCaller::Done {
                            code: 1,
                            error: Some(super::outbox::FELL_BEHIND.into()),
                            room: None,
                        },
                    )
                    .await;
                    while outgoing.recv().await.is_some() {}
                    break;
                }
            };
            if wire::write_encoded(&mut write, &line).await.is_err() {
                // The caller went away; the command finishes without it.
                while outgoing.recv().await.is_some() {}
                break;
            }
        }
    });
    let result = console::serve(caller, run_command(args, shared)).await;
    let done = match result {
        Ok(()) => ToCaller::Done {
            code: 0,
            error: None,
            room: None,
        },
        Err(err) => ToCaller::Done {
            code: crate::error::exit_code(&err),
            error: Some(crate::error::render(&err)),
            room: crate::error::room(&err),
        },
    };
    // Not queued for a caller cut off for falling behind: it was told why instead.
    to_caller.send(done);
    drop(to_caller);
    let _ = writer.await;
    Ok(())
}

/// Parses and runs one command line inside the agent, on the agent's profile.
async fn run_command(args: Vec<String>, shared: Shared) -> Result<()> {
    let cli = Cli::try_parse_from(std::iter::once("hearth".to_string()).chain(args))
        .map_err(|e| crate::error::UsageError(e.to_string().trim().to_string()))?;
    if route(&cli.command) != Route::Agent {
        anyhow::bail!("this command does not run inside the agent: run it with --no-agent");
    }
    let mut cli = cli;
    cli.global.profile = Some(shared.client.profile().dir().to_path_buf());
    crate::commands::run(cli).await
}
