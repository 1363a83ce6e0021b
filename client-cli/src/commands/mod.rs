//! One module per group of commands; [`run`] dispatches.

mod backup;
mod docs;
mod identity;
mod messages;
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
        Command::ExportBackup { file } => backup::export(global, &file),
        Command::ImportBackup { file } => backup::import(global, &file).await,
        Command::Passphrase => identity::change_passphrase(global),
        Command::RotateKey { yes } => identity::rotate_key(global, yes).await,
        Command::Room(command) => room::run(global, command).await,
        Command::Send { room, text } => messages::send(global, &room, &text).await,
        Command::Nick { name } => messages::nick(global, &name).await,
        Command::Read {
            room,
            since,
            follow,
        } => messages::read(global, &room, since, follow).await,
        Command::History { room, count } => messages::history(global, &room, count).await,
        Command::Chat { room, arrivals } => {
            crate::chat::run(global, room.as_deref(), arrivals).await
        }
        Command::Demo => crate::demo::run().await,
        Command::Completions { shell } => docs::completions(shell),
        Command::Man => docs::man(),
    }
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
