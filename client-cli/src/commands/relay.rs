//! `hearth relay set-address`: follow the household's relay to a new address.

use anyhow::{Context, Result};
use hearth_core::{Client, ClientError};
use hearth_protocol::{Invite, RelayAddress};
use hearth_relay::config::PublicAddress;
use serde_json::json;

use crate::cli::{GlobalArgs, RelayCommand};
use crate::error::UsageError;
use crate::session;

/// Carries out `hearth relay …`.
pub async fn run(global: &GlobalArgs, command: RelayCommand) -> Result<()> {
    match command {
        RelayCommand::SetAddress { address, no_check } => {
            set_address(global, &address, !no_check).await
        }
    }
}

/// Where the user says the relay now is: `HOST`, `HOST:PORT`, or a full `hearth://`
/// address or invite (whose pin must be the profile's).
enum NewAddress {
    /// Host, and the port if given (else the profile's stays).
    Host(PublicAddress),
    /// A full address with its pin.
    Full(RelayAddress),
}

fn parse(text: &str) -> Result<NewAddress> {
    let text = text.trim();
    if text.starts_with("hearth://") {
        let address = match text.parse::<Invite>() {
            Ok(invite) => invite.relay,
            Err(_) => text
                .parse::<RelayAddress>()
                .map_err(|e| UsageError(format!("{e}")))?,
        };
        return Ok(NewAddress::Full(address));
    }
    text.parse::<PublicAddress>()
        .map(NewAddress::Host)
        .map_err(|e| UsageError(e.replace("public address", "address")).into())
}

async fn set_address(global: &GlobalArgs, text: &str, check: bool) -> Result<()> {
    let new = parse(text)?;
    let mut profile = session::open_profile(global)?;
    let old = profile.relay().clone();
    let (host, port) = match new {
        NewAddress::Host(public) => (public.host, public.port.unwrap_or(old.port)),
        NewAddress::Full(address) if address.pin != old.pin => {
            return Err(UsageError(format!(
                "{address} is another relay: its key is not the one this profile pinned \
                 ({}). A profile stays with the relay it joined; to join another, create a \
                 new profile with `hearth init --profile DIR --invite INVITE --name HANDLE`",
                old.pin
            ))
            .into())
        }
        NewAddress::Full(address) => (address.host, address.port),
    };
    let moved = profile
        .move_relay(host, port)
        .context("cannot store the new relay address")?
        .clone();
    if !global.json {
        outln!("Relay address: {moved} (was {})", old.host_port());
        outln!("The relay's key stays pinned: only your relay is accepted at the new address.");
    }
    let reached = if check {
        match Client::connect(profile).await {
            Ok(client) => {
                client.close().await;
                Ok(())
            }
            Err(ClientError::PinMismatch { .. }) => {
                // Another relay answers there: keeping the address would leave a profile
                // that cannot sign in anywhere. Go back to the old one and say so.
                let mut profile = session::open_profile(global)?;
                profile
                    .move_relay(old.host.clone(), old.port)
                    .context("cannot put the previous relay address back")?;
                return Err(UsageError(format!(
                    "{} answered with another relay's key, not the one this profile pinned \
                     ({}): the address stays {}. Check the new address with your relay's \
                     owner (`hearth-relay status` on the relay prints it).",
                    moved.host_port(),
                    old.pin,
                    old.host_port()
                ))
                .into());
            }
            Err(e) => Err(e.to_string()),
        }
    } else {
        drop(profile);
        Err("not checked (--no-check)".to_string())
    };
    if global.json {
        outln!(
            "{}",
            json!({ "relay": moved.to_string(), "previous": old.to_string(), "reached": reached.is_ok(), "error": reached.as_ref().err() })
        );
        return Ok(());
    }
    match reached {
        Ok(()) => outln!("Reached the relay at {} and signed in.", moved.host_port()),
        Err(e) if check => errln!(
            "warning: the relay does not answer at {} yet ({e}). The address is kept; \
             change it again with `hearth relay set-address HOST[:PORT]` if it is wrong.",
            moved.host_port()
        ),
        Err(_) => {}
    }
    Ok(())
}
