//! `hearth room …`: create, list, invite, join, leave, kick, members.

use anyhow::{bail, Result};
use hearth_core::{Client, RoomRef};
use hearth_protocol::{Handle, RoomId};
use serde_json::json;

use crate::cli::{GlobalArgs, RoomCommand};
use crate::inert::inert;
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
    // What the user typed is printed back too; it may hold anything a paste brought in.
    let typed = |text: &str| inert(text).into_owned();
    match command {
        RoomCommand::Create { name } => {
            let name = name.trim();
            if name.is_empty() {
                bail!(crate::error::UsageError("a room needs a name".into()));
            }
            let id = client.create_room(name).await?;
            let room = client.room_ref(id).await;
            if global.json {
                outln!("{}", output::with_room(&room, json!({"name": name})));
            } else {
                // By id in the hint when the name is someone else's too.
                let hint = if room.ambiguous {
                    room.short_id()
                } else {
                    typed(name)
                };
                outln!(
                    "Created room {} ({}). Invite people with `hearth room invite {hint} NICK`.",
                    output::room_name(&room),
                    room.short_id()
                );
            }
        }
        RoomCommand::List => list(global, client).await?,
        RoomCommand::Invite { room, nick } => {
            let handle = session::parse_handle(&nick)?;
            let id = session::resolve_room(client, &room).await?;
            client.invite(id, &handle).await?;
            let room = client.room_ref(id).await;
            if global.json {
                outln!(
                    "{}",
                    output::with_room(&room, json!({"invited": handle.as_str()}))
                );
            } else {
                outln!("Invited {handle} to {}. They see it in `hearth room list` and join with `hearth room join`.", output::room_name(&room));
            }
        }
        RoomCommand::Join { room } => {
            let (id, name, how) = session::join(client, &room).await?;
            let room = client.room_ref(id).await;
            if global.json {
                outln!(
                    "{}",
                    output::with_room(&room, json!({"name": name, "joined": true}))
                );
            } else {
                let name = match &room.name {
                    Some(_) => output::room_name(&room),
                    None => inert(&name).into_owned(),
                };
                match how {
                    session::Joined::Invitation { from } => {
                        outln!("Joined {name} (invited by {from}).")
                    }
                    session::Joined::Public => outln!("Joined the public room {name}."),
                    session::Joined::AlreadyMember => outln!("You are already in {name}."),
                }
            }
        }
        RoomCommand::Publish { room, public_name } => {
            let id = session::resolve_room(client, &room).await?;
            client.publish_room(id, &public_name).await?;
            let room = client.room_ref(id).await;
            if global.json {
                outln!(
                    "{}",
                    output::with_room(&room, json!({"public_name": public_name}))
                );
            } else {
                outln!(
                    "{} is now public as \"{}\": anyone registered on the relay can join it.",
                    output::room_name(&room),
                    inert(&public_name)
                );
                outln!("The public name and the members' handles and keys are now visible to the relay and every account.");
            }
        }
        RoomCommand::Unpublish { room } => {
            let id = session::resolve_room(client, &room).await?;
            client.unpublish_room(id).await?;
            let room = client.room_ref(id).await;
            if global.json {
                outln!("{}", output::with_room(&room, json!({"public": false})));
            } else {
                outln!(
                    "{} is private again: only invited people can join.",
                    output::room_name(&room)
                );
            }
        }
        RoomCommand::Leave { room } => {
            let id = session::resolve_room(client, &room).await?;
            let room = client.room_ref(id).await;
            client.leave(id).await?;
            if global.json {
                outln!("{}", output::with_room(&room, json!({"left": true})));
            } else {
                outln!("You left {}.", output::room_name(&room));
            }
        }
        RoomCommand::Kick { room, nick } => {
            let (id, handle) = room_and_handle(client, &room, &nick).await?;
            client.kick(id, &handle).await?;
            let room = client.room_ref(id).await;
            report(
                global,
                &room,
                "kicked",
                &handle,
                &format!(
                    "Removed {handle} from {}; the room has new keys they do not have.",
                    output::room_name(&room)
                ),
            );
        }
        RoomCommand::Ban { room, nick } => {
            let (id, handle) = room_and_handle(client, &room, &nick).await?;
            client.ban(id, &handle).await?;
            let room = client.room_ref(id).await;
            report(global, &room, "banned", &handle, &format!("Banned {handle} from {}: removed, and no admin can re-add them until unbanned.", output::room_name(&room)));
        }
        RoomCommand::Unban { room, nick } => {
            let (id, handle) = room_and_handle(client, &room, &nick).await?;
            client.unban(id, &handle).await?;
            let room = client.room_ref(id).await;
            report(
                global,
                &room,
                "unbanned",
                &handle,
                &format!(
                    "{handle} may be invited to {} again.",
                    output::room_name(&room)
                ),
            );
        }
        RoomCommand::Grant { room, nick } => {
            let (id, handle) = room_and_handle(client, &room, &nick).await?;
            client.grant_admin(id, &handle).await?;
            let room = client.room_ref(id).await;
            report(
                global,
                &room,
                "granted",
                &handle,
                &format!("{handle} is now an admin of {}.", output::room_name(&room)),
            );
        }
        RoomCommand::Revoke { room, nick } => {
            let (id, handle) = room_and_handle(client, &room, &nick).await?;
            client.revoke_admin(id, &handle).await?;
            let room = client.room_ref(id).await;
            report(
                global,
                &room,
                "revoked",
                &handle,
                &format!(
                    "{handle} is no longer an admin of {}.",
                    output::room_name(&room)
                ),
            );
        }
        RoomCommand::Rename { room, name } => {
            let id = session::resolve_room(client, &room).await?;
            let before = client.room_ref(id).await;
            client.rename(id, &name).await?;
            let room = client.room_ref(id).await;
            if global.json {
                outln!("{}", output::with_room(&room, json!({"name": name})));
            } else {
                outln!(
                    "Renamed {} to {}.",
                    output::room_name(&before),
                    output::room_name(&room)
                );
            }
        }
        RoomCommand::Topic { room, topic } => {
            let id = session::resolve_room(client, &room).await?;
            client.set_topic(id, &topic).await?;
            let room = client.room_ref(id).await;
            if global.json {
                outln!("{}", output::with_room(&room, json!({"topic": topic})));
            } else {
                outln!("Topic of {} set.", output::room_name(&room));
            }
        }
        RoomCommand::Expire { room, after } => {
            let id = session::resolve_room(client, &room).await?;
            let expire = super::parse_expiry(&after)?;
            client.set_expiry(id, expire).await?;
            let room = client.room_ref(id).await;
            if global.json {
                outln!(
                    "{}",
                    output::with_room(&room, json!({"expire_secs": expire.map(|d| d.as_secs())}))
                );
            } else {
                let room = output::room_name(&room);
                match expire {
                    Some(d) => outln!("Messages in {room} now disappear after {}, on every member's device and on the relay.", humantime::format_duration(d)),
                    None => outln!("Messages in {room} no longer disappear."),
                }
            }
        }
        RoomCommand::Rebuild { room } => {
            let id = session::resolve_room(client, &room).await?;
            let new = client.rebuild(id).await?;
            let (old, new) = (client.room_ref(id).await, client.room_ref(new).await);
            if global.json {
                let rebuilt_as = output::room_fields(&new);
                outln!(
                    "{}",
                    output::with_room(
                        &old,
                        json!({"rebuilt_as": rebuilt_as["room"], "rebuilt_as_name": rebuilt_as["room_name"]})
                    )
                );
            } else {
                outln!(
                    "Rebuilt {} as a new room ({}). Its members were invited there; the old room points to it and is listed as {} now.",
                    output::room_name(&new),
                    new.short_id(),
                    output::room_name(&old)
                );
            }
        }
        RoomCommand::Info { room } => {
            let id = session::resolve_room(client, &room).await?;
            let policy = client.policy(id).await?;
            let names = |hs: &[hearth_protocol::Handle]| {
                hs.iter()
                    .map(|h| h.as_str().to_string())
                    .collect::<Vec<_>>()
            };
            if global.json {
                let room = client.room_ref(id).await;
                outln!(
                    "{}",
                    output::with_room(
                        &room,
                        json!({"name": policy.name, "topic": policy.topic, "owner": policy.owner.as_str(),
                           "admins": names(&policy.admins), "banned": names(&policy.banned),
                           "expire_secs": policy.expire.map(|d| d.as_secs())})
                    )
                );
            } else {
                outln!("name:    {}", inert(&policy.name));
                outln!(
                    "topic:   {}",
                    if policy.topic.is_empty() {
                        "-".into()
                    } else {
                        inert(&policy.topic)
                    }
                );
                outln!("owner:   {}", policy.owner);
                outln!("admins:  {}", names(&policy.admins).join(", "));
                outln!("banned:  {}", names(&policy.banned).join(", "));
                outln!(
                    "expiry:  {}",
                    policy
                        .expire
                        .map(|d| humantime::format_duration(d).to_string())
                        .unwrap_or_else(|| "off".into())
                );
            }
        }
        RoomCommand::Verify { room } => {
            let id = session::resolve_room(client, &room).await?;
            let code = client.room_code(id).await?;
            let fork = client.fork(id).await?;
            let named = client.room_ref(id).await;
            if global.json {
                outln!(
                    "{}",
                    output::with_room(
                        &named,
                        json!({"epoch": code.epoch, "code": code.to_string(),
                           "fork_at": fork.map(|s| s.0)})
                    )
                );
            } else {
                outln!("room code at epoch {}: {code}", code.epoch);
                outln!(
                    "Compare it with another member in person: the same epoch shows the same code."
                );
                if let Some(seq) = fork {
                    outln!("!! the history differs between members at message {seq}; once you have compared, `hearth room ack {}` lets you send again", typed(&room));
                }
            }
        }
        RoomCommand::Ack { room } => {
            let id = session::resolve_room(client, &room).await?;
            client.acknowledge_fork(id).await?;
            if !global.json {
                let room = client.room_ref(id).await;
                outln!(
                    "Acknowledged: you can send to {} again.",
                    output::room_name(&room)
                );
            }
        }
        RoomCommand::Members { room } => {
            let id = session::resolve_room(client, &room).await?;
            let members = client.members(id).await?;
            let me = client.profile().handle().clone();
            for member in members {
                let fp = hearth_core::fingerprint::fingerprint(&member.account);
                let trust = crate::output::member_trust(&member, &me);
                if global.json {
                    outln!(
                        "{}",
                        json!({"handle": member.handle.as_str(), "role": member.role.to_string(), "pending": member.pending, "fingerprint": fp.to_string(), "trust": trust})
                    );
                } else {
                    outln!(
                        "{:<16} {:<7} {fp} {trust}",
                        member.handle.as_str(),
                        crate::output::member_role(&member)
                    );
                }
            }
        }
    }
    Ok(())
}

/// Resolves a room and a handle typed by the user.
async fn room_and_handle(client: &Client, room: &str, nick: &str) -> Result<(RoomId, Handle)> {
    let handle = session::parse_handle(nick)?;
    let id = session::resolve_room(client, room).await?;
    Ok((id, handle))
}

/// Prints the outcome of an action on a member.
fn report(global: &GlobalArgs, room: &RoomRef, action: &str, handle: &Handle, text: &str) {
    if global.json {
        outln!(
            "{}",
            output::with_room(room, json!({"action": action, "handle": handle.as_str()}))
        );
    } else {
        outln!("{text}");
    }
}

/// Rooms, then pending invitations.
async fn list(global: &GlobalArgs, client: &Client) -> Result<()> {
    let rooms = client.rooms().await?;
    let invitations = client.invitations().await?;
    let past = client.past_rooms().await?;
    let public: Vec<_> = match client.public_rooms().await {
        Ok(public) => public.into_iter().filter(|p| !p.joined).collect(),
        Err(hearth_core::ClientError::NotConnected) => {
            errln!("(public rooms not shown: the relay cannot be reached now)");
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    if global.json {
        for listed in &public {
            outln!(
                "{}",
                json!({"type": "public", "room": listed.room.to_hex(), "name": listed.public_name})
            );
        }
        for room in &rooms {
            let members: Vec<&str> = room.members.iter().map(|h| h.as_str()).collect();
            if room.direct {
                let with = output::peer(room, client.profile().handle());
                outln!(
                    "{}",
                    json!({"type": "direct", "room": room.id.to_hex(), "with": with.map(|h| h.as_str().to_string()), "members": members})
                );
            } else {
                outln!(
                    "{}",
                    json!({"type": "room", "room": room.id.to_hex(), "name": room.name, "members": members,
                           "rebuilt_as": room.rebuilt_as.map(|id| id.to_hex())})
                );
            }
        }
        for inv in &invitations {
            outln!(
                "{}",
                json!({"type": "invitation", "room": inv.room.to_hex(), "name": inv.name, "from": inv.from.as_str(), "received": output::timestamp(inv.received)})
            );
        }
        for past in &past {
            outln!(
                "{}",
                json!({"type": "past", "room": past.id.to_hex(), "name": past.name, "left": output::timestamp(past.left_at)})
            );
        }
        return Ok(());
    }
    for listed in &public {
        // By id in the hint, as for invitations: the public name is someone else's text.
        let name = inert(&listed.public_name);
        let hex = listed.room.to_hex();
        let id = short(&hex);
        outln!("{name:<20} {id}  public room (join: hearth room join {id})");
    }
    if rooms.is_empty() && invitations.is_empty() && public.is_empty() {
        outln!("No rooms yet. Create one with `hearth room create NAME`.");
    }
    for room in rooms.iter().filter(|r| !r.direct) {
        let members: Vec<&str> = room.members.iter().map(|h| h.as_str()).collect();
        let moved = match room.rebuilt_as {
            Some(new) => format!("  (rebuilt as {})", short(&new.to_hex())),
            None => String::new(),
        };
        outln!(
            "{:<20} {}  {}{moved}",
            inert(&output::room_label(room, client.profile().handle())),
            short(&room.id.to_hex()),
            members.join(", ")
        );
    }
    for room in rooms.iter().filter(|r| r.direct) {
        let label = output::room_label(room, client.profile().handle());
        outln!(
            "{:<20} {}  private conversation (hearth send {label} TEXT)",
            label,
            short(&room.id.to_hex()),
        );
    }
    for inv in &invitations {
        let name = inert(&inv.name);
        // The hint names the room by id: a name is someone else's text, and a shell would
        // run whatever it holds (`pics; rm -rf ~`).
        let hex = inv.room.to_hex();
        let id = short(&hex);
        outln!(
            "{name:<20} {id}  pending invitation from {} (accept: hearth room join {id})",
            inv.from,
        );
    }
    for past in &past {
        let name = inert(&past.name);
        let hex = past.id.to_hex();
        let id = short(&hex);
        outln!("{name:<20} {id}  you are no longer in it (its history: hearth history {id})");
    }
    Ok(())
}

/// The first 8 hex digits of a room id.
pub fn short(hex: &str) -> &str {
    &hex[..hex.len().min(8)]
}
