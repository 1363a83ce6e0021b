//! One module per group of commands; [`run`] dispatches.

mod backup;
mod config;
mod docs;
pub mod files;
mod identity;
mod messages;
mod relay;
mod room;
mod trust;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Carries out the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Init(args) => identity::init(global, &args).await,
        Command::Whoami => identity::whoami(global),
        Command::Fingerprint => identity::fingerprint(global),
        Command::Verify { nick, yes, no } => {
            let answer = match (yes, no) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            trust::verify(global, &nick, answer).await
        }
        Command::Contacts => trust::contacts(global),
        Command::Trust { nick } => trust::trust(global, &nick).await,
        Command::ExportBackup { file, files } => backup::export(global, &file, files),
        Command::ImportBackup { file } => backup::import(global, &file).await,
        Command::Passphrase => identity::change_passphrase(global),
        Command::RotateKey { yes } => identity::rotate_key(global, yes).await,
        Command::Room(command) => room::run(global, command).await,
        Command::Send { room, text } => messages::send(global, &room, &text).await,
        Command::SendFile {
            room,
            path,
            caption,
        } => files::send_file(global, &room, &path, caption).await,
        Command::Save { id, dir, room } => {
            files::save(global, &id, dir.as_deref(), room.as_deref()).await
        }
        Command::Open { id, with, room } => {
            files::open(global, &id, with.as_deref(), room.as_deref()).await
        }
        Command::Nick { name } => messages::nick(global, &name).await,
        Command::Read {
            room,
            all,
            since,
            follow,
        } => messages::read(global, &room, all, since, follow).await,
        Command::History { room, count } => messages::history(global, &room, count).await,
        Command::Chat { room, arrivals, .. } => {
            crate::chat::run(global, room.as_deref(), arrivals).await
        }
        Command::Demo => crate::demo::run().await,
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { out_dir } => docs::man(out_dir.as_deref()),
        Command::Relay(command) => relay::run(global, command).await,
        Command::Config { setting, value } => config::run(global, setting, value),
        // Run by `main` itself: the agent runs commands, so it cannot be one of them.
        Command::Agent(_) | Command::Lock => {
            anyhow::bail!("`hearth agent` and `hearth lock` do not run inside the agent")
        }
    }
}

/// `hearth agent run|status|stop`.
pub async fn agent(
    global: &crate::cli::GlobalArgs,
    command: crate::cli::AgentCommand,
) -> Result<()> {
    use crate::cli::AgentCommand;
    let dir = crate::session::profile_dir(global);
    match command {
        AgentCommand::Run {
            timeout,
            from_caller,
        } => crate::agent::server::run(global, timeout, from_caller).await,
        AgentCommand::Status => {
            let status = crate::agent::caller::status(&dir).await?;
            if global.json {
                outln!(
                    "{}",
                    serde_json::json!({ "running": status.is_some(), "agent": status.as_ref().map(|s| serde_json::json!({"pid": s.pid, "unlocked_secs": s.unlocked_secs, "forgets_in_secs": s.forgets_in_secs, "connected": s.connected, "callers": s.callers})) })
                );
                return Ok(());
            }
            match status {
                None => outln!("No agent runs for {}: the next command asks for the passphrase and starts one.", dir.display()),
                Some(s) => {
                    outln!("agent:     running (pid {})", s.pid);
                    outln!("unlocked:  {} ago", humantime::format_duration(std::time::Duration::from_secs(s.unlocked_secs)));
                    match s.forgets_in_secs {
                        Some(left) => outln!("forgets:   in {}", humantime::format_duration(std::time::Duration::from_secs(left))),
                        None => outln!("forgets:   on `hearth lock`"),
                    }
                    outln!("relay:     {}", if s.connected { "connected" } else { "not connected (retrying)" });
                    outln!("commands:  {} running", s.callers);
                }
            }
            Ok(())
        }
        AgentCommand::Stop => lock(global).await,
    }
}

/// `hearth lock`: stops the agent.
pub async fn lock(global: &crate::cli::GlobalArgs) -> Result<()> {
    let dir = crate::session::profile_dir(global);
    if crate::agent::caller::lock(&dir).await? {
        outln!("Locked: the agent stopped; the next command asks for the passphrase.");
    } else {
        outln!("No agent was running for {}.", dir.display());
    }
    Ok(())
}

/// Parses `/expire` and `room expire` settings: a duration such as `1d` or `90min`, or `off`.
pub fn parse_expiry(text: &str) -> Result<Option<std::time::Duration>> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let after = humantime::parse_duration(text).map_err(|err| {
        crate::error::UsageError(format!(
            "cannot read {text:?} as a duration ({err}): use e.g. 30min, 12h, 7days, or off"
        ))
    })?;
    if after.as_secs() < 60 {
        return Err(crate::error::UsageError(
            "messages must be kept at least a minute: use e.g. 30min, 12h, 7days, or off".into(),
        )
        .into());
    }
    Ok(Some(after))
}
