//! `hearth room …`: create, list, invite, join, leave, kick, members.

use anyhow::{bail, Result};
use hearth_core::Client;
use serde_json::json;

use crate::cli::{GlobalArgs, RoomCommand};
use crate::output;
use crate::session;

/// Carries out one room command.
pub async fn run(global: &GlobalArgs, command: RoomCommand) -> Result<()> {
    let client = session::connect(global).await?;
    let result = run_connected(global, &client, command).await;
    client.close().await;
    result
}

async fn run_connected(global: &GlobalArgs, client: &Client, command: RoomCommand) -> Result<()> {
    match command {
        RoomCommand::Create { name } => {
            let name = name.trim();
            if name.is_empty() {
                bail!(crate::error::UsageError("a room needs a name".into()));
            }
            let room = client.create_room(name).await?;
            if global.json {
                println!("{}", json!({"room": room.to_hex(), "name": name}));
            } else {
                println!("Created room {name} ({}). Invite people with `hearth room invite {name} NICK`.", short(&room.to_hex()));
            }
        }
        RoomCommand::List => list(global, client).await?,
        RoomCommand::Invite { room, nick } => {
            let handle = session::parse_handle(&nick)?;
            let id = session::resolve_room(client, &room).await?;
            client.invite(id, &handle).await?;
            if global.json {
                println!(
                    "{}",
                    json!({"room": id.to_hex(), "invited": handle.as_str()})
                );
            } else {
                println!("Invited {handle} to {room}. They see it in `hearth room list` and join with `hearth room join`.");
            }
        }
        RoomCommand::Join { room } => {
            let invitations = client.invitations().await?;
            let wanted = room.to_lowercase();
            let Some(invitation) = invitations.iter().find(|inv| {
                inv.name.to_lowercase() == wanted || inv.room.to_hex().starts_with(&wanted)
            }) else {
                bail!(
                    "no pending invitation to {room:?}: `hearth room list` shows your invitations"
                );
            };
            client.accept_invitation(invitation.room).await?;
            if global.json {
                println!(
                    "{}",
                    json!({"room": invitation.room.to_hex(), "name": invitation.name, "joined": true})
                );
            } else {
                println!(
                    "Joined {} (invited by {}).",
                    invitation.name, invitation.from
                );
            }
        }
        RoomCommand::Leave { room } => {
            let id = session::resolve_room(client, &room).await?;
            client.leave(id).await?;
            if global.json {
                println!("{}", json!({"room": id.to_hex(), "left": true}));
            } else {
                println!("You left {room}.");
            }
        }
        RoomCommand::Kick { room, nick } => {
            let handle = session::parse_handle(&nick)?;
            let id = session::resolve_room(client, &room).await?;
            client.remove_member(id, &handle).await?;
            if global.json {
                println!(
                    "{}",
                    json!({"room": id.to_hex(), "removed": handle.as_str()})
                );
            } else {
                println!("Removed {handle} from {room}; the room has new keys they do not have.");
            }
        }
        RoomCommand::Members { room } => {
            let id = session::resolve_room(client, &room).await?;
            let members = client.members(id).await?;
            for member in members {
                let fp = hearth_core::fingerprint::fingerprint(&member.account);
                if global.json {
                    println!(
                        "{}",
                        json!({"handle": member.handle.as_str(), "fingerprint": fp.to_string()})
                    );
                } else {
                    println!("{:<16} {fp}", member.handle.as_str());
                }
            }
        }
    }
    Ok(())
}

/// Rooms, then pending invitations.
async fn list(global: &GlobalArgs, client: &Client) -> Result<()> {
    let rooms = client.rooms().await?;
    let invitations = client.invitations().await?;
    if global.json {
        for room in &rooms {
            let members: Vec<&str> = room.members.iter().map(|h| h.as_str()).collect();
            println!(
                "{}",
                json!({"type": "room", "room": room.id.to_hex(), "name": room.name, "members": members})
            );
        }
        for inv in &invitations {
            println!(
                "{}",
                json!({"type": "invitation", "room": inv.room.to_hex(), "name": inv.name, "from": inv.from.as_str(), "received": output::timestamp(inv.received)})
            );
        }
        return Ok(());
    }
    if rooms.is_empty() && invitations.is_empty() {
        println!("No rooms yet. Create one with `hearth room create NAME`.");
    }
    for room in &rooms {
        let members: Vec<&str> = room.members.iter().map(|h| h.as_str()).collect();
        println!(
            "{:<20} {}  {}",
            room.name,
            short(&room.id.to_hex()),
            members.join(", ")
        );
    }
    for inv in &invitations {
        println!(
            "{:<20} {}  pending invitation from {} (accept: hearth room join {})",
            inv.name,
            short(&inv.room.to_hex()),
            inv.from,
            inv.name
        );
    }
    Ok(())
}

/// The first 8 hex digits of a room id.
pub fn short(hex: &str) -> &str {
    &hex[..hex.len().min(8)]
}
