//! One module per group of commands; [`run`] dispatches.

mod docs;
mod identity;
mod messages;
mod room;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Carries out the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Init(args) => identity::init(global, &args).await,
        Command::Whoami => identity::whoami(global),
        Command::Fingerprint => identity::fingerprint(global),
        Command::Verify { nick } => identity::verify(global, &nick).await,
        Command::Passphrase => identity::change_passphrase(global),
        Command::Room(command) => room::run(global, command).await,
        Command::Send { room, text } => messages::send(global, &room, &text).await,
        Command::Read {
            room,
            since,
            follow,
        } => messages::read(global, &room, since, follow).await,
        Command::History { room, count } => messages::history(global, &room, count).await,
        Command::Chat { room } => crate::chat::run(global, room.as_deref()).await,
        Command::Demo => crate::demo::run().await,
        Command::Completions { shell } => docs::completions(shell),
        Command::Man => docs::man(),
    }
}
