//! `hearth chat`: an IRC-style interactive session.
//!
//! Lines without a slash go to the current room; slash commands ([`slash`]) manage rooms
//! and people. Everything hearth-core reports (messages, joins, removals, warnings about
//! the relay, connection state) is printed above the input line as it happens.

mod render;
pub mod slash;
mod terminal;

use anyhow::Result;
use hearth_core::{Client, ClientEvent};
use hearth_protocol::RoomId;

use crate::cli::GlobalArgs;
use crate::session;
use slash::{Command, Input};

/// Runs the interactive chat until `/bye` or end of input.
pub async fn run(global: &GlobalArgs, room: Option<&str>) -> Result<()> {
    let client = session::connect(global).await?;
    let mut events = client.events();
    let mut state = ChatState {
        current: None,
        me: client.profile().handle().clone(),
    };
    match room {
        Some(name) => state.current = Some(session::resolve_room(&client, name).await?),
        None => state.current = client.rooms().await?.first().map(|r| r.id),
    }
    let mut term = terminal::start("> ".to_string())?;
    (term.print)(format!(
        "hearth: you are {} on {}. Type /help for commands, /bye to quit.",
        state.me,
        client.profile().relay()
    ));
    if let Some(id) = state.current {
        show_room(&client, &mut term.print, id).await;
    } else {
        (term.print)(
            "No rooms yet: /list shows invitations; `hearth room create NAME` makes a room.".into(),
        );
    }
    for invitation in client.invitations().await.unwrap_or_default() {
        (term.print)(render::invitation(&invitation));
    }
    loop {
        tokio::select! {
            line = term.lines.recv() => {
                let Some(line) = line else { break };
                match slash::parse(&line) {
                    Ok(Input::Empty) => {}
                    Ok(Input::Message(text)) => send(&client, &state, &mut term.print, &text).await,
                    Ok(Input::Command(Command::Bye)) => break,
                    Ok(Input::Command(command)) => {
                        if let Err(err) = execute(&client, &mut state, &mut term.print, command).await {
                            (term.print)(format!("! {err:#}"));
                        }
                    }
                    Err(usage) => (term.print)(format!("! {usage}")),
                }
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                let names = room_names(&client).await;
                if let ClientEvent::RemovedFromRoom { room, .. } = &event {
                    if state.current == Some(*room) {
                        state.current = None;
                    }
                }
                if let Some(line) = render::event(&event, state.current, &state.me, &names) {
                    (term.print)(line);
                }
            }
        }
    }
    (term.print)("Bye.".into());
    client.close().await;
    Ok(())
}

/// What the chat remembers between lines.
struct ChatState {
    current: Option<RoomId>,
    me: hearth_protocol::Handle,
}

async fn send(client: &Client, state: &ChatState, print: &mut terminal::Printer, text: &str) {
    let Some(room) = state.current else {
        print("! no current room: /list shows your rooms, /join ROOM picks one".into());
        return;
    };
    if let Err(err) = client.send_text(room, text).await {
        print(format!("! not sent: {err}"));
    }
}

async fn execute(
    client: &Client,
    state: &mut ChatState,
    print: &mut terminal::Printer,
    command: Command,
) -> Result<()> {
    let current = || {
        state.current.ok_or_else(|| {
            anyhow::anyhow!("no current room: /list shows your rooms, /join ROOM picks one")
        })
    };
    match command {
        Command::Help(topic) => {
            for line in slash::help(topic.as_deref()).lines() {
                print(line.to_string());
            }
        }
        Command::List => {
            let rooms = client.rooms().await?;
            if rooms.is_empty() {
                print("You are in no room yet.".into());
            }
            for room in rooms {
                let mark = if Some(room.id) == state.current {
                    "*"
                } else {
                    " "
                };
                let members: Vec<&str> = room.members.iter().map(|h| h.as_str()).collect();
                print(format!("{mark} {:<20} {}", room.name, members.join(", ")));
            }
            for invitation in client.invitations().await? {
                print(render::invitation(&invitation));
            }
        }
        Command::Join(name) => {
            let wanted = name.to_lowercase();
            let invitation = client.invitations().await?.into_iter().find(|inv| {
                inv.name.to_lowercase() == wanted || inv.room.to_hex().starts_with(&wanted)
            });
            let room = match invitation {
                Some(inv) => {
                    client.accept_invitation(inv.room).await?;
                    print(format!("* you joined {}", inv.name));
                    inv.room
                }
                None => session::resolve_room(client, &name).await?,
            };
            state.current = Some(room);
            show_room(client, print, room).await;
        }
        Command::Leave => {
            let room = current()?;
            client.leave(room).await?;
            state.current = client
                .rooms()
                .await?
                .into_iter()
                .map(|r| r.id)
                .find(|id| *id != room);
            print("* you left the room".into());
        }
        Command::Current(None) => {
            let names = room_names(client).await;
            match state.current {
                Some(room) => print(format!(
                    "* current room: {}",
                    render::room_name(&names, room)
                )),
                None => print("* no current room".into()),
            }
        }
        Command::Current(Some(name)) => {
            let room = session::resolve_room(client, &name).await?;
            state.current = Some(room);
            show_room(client, print, room).await;
        }
        Command::Who => {
            let room = current()?;
            for member in client.members(room).await? {
                let me = if member.handle == state.me {
                    " (you)"
                } else {
                    ""
                };
                let fp = hearth_core::fingerprint::fingerprint(&member.account);
                print(format!("  {:<16} {}{me}", member.handle.as_str(), fp));
            }
        }
        Command::Invite(nick) => {
            let room = current()?;
            let handle = session::parse_handle(&nick)?;
            client.invite(room, &handle).await?;
            print(format!("* invited {handle}"));
        }
        Command::Kick(nick) => {
            let room = current()?;
            let handle = session::parse_handle(&nick)?;
            client.remove_member(room, &handle).await?;
            print(format!("* removed {handle}"));
        }
        Command::Msg { .. }
        | Command::Nick(_)
        | Command::Ban(_)
        | Command::Unban(_)
        | Command::Grant(_)
        | Command::Revoke(_)
        | Command::Rename(_)
        | Command::Expire(_) => {
            print("! this command is not available in this version of hearth yet".into());
        }
        Command::Bye => {}
    }
    Ok(())
}

/// Prints the room's header and recent history.
async fn show_room(client: &Client, print: &mut terminal::Printer, room: RoomId) {
    let names = room_names(client).await;
    print(format!("-- {} --", render::room_name(&names, room)));
    match client.history(room, 20, None).await {
        Ok(items) => {
            for item in items {
                print(crate::output::message_line(&item));
            }
        }
        Err(err) => print(format!("! cannot read history: {err}")),
    }
}

async fn room_names(client: &Client) -> Vec<(RoomId, String)> {
    client
        .rooms()
        .await
        .map(|rooms| rooms.into_iter().map(|r| (r.id, r.name)).collect())
        .unwrap_or_default()
}
