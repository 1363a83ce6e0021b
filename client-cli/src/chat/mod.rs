//! `hearth chat`: an IRC-style interactive session.
//!
//! Lines without a slash go to the current room; slash commands ([`slash`]) manage rooms
//! and people. Everything hearth-core reports (messages, joins, removals, warnings about
//! the relay, connection state) is printed above the input line as it happens.

pub(crate) mod render;
pub mod screen;
pub mod slash;
pub(crate) mod terminal;

use std::collections::HashMap;

use anyhow::Result;
use hearth_core::{Client, ClientEvent};
use hearth_protocol::{RoomId, Seq};

use crate::cli::GlobalArgs;
use crate::inert::inert;
use crate::session;
use screen::Screen;
use slash::{Command, Input};

/// Runs the interactive chat until `/bye` or end of input.
pub async fn run(global: &GlobalArgs, room: Option<&str>, arrivals: bool) -> Result<()> {
    let client = session::connect(global).await?;
    let mut events = client.events();
    if arrivals {
        client.watch_registrations(true).await?;
    }
    let mut state = ChatState {
        current: None,
        me: client.profile().handle().clone(),
        shown: HashMap::new(),
    };
    match room {
        Some(name) => state.current = Some(session::resolve_room(&client, name).await?),
        // Not an old room an admin rebuilt: its name means the new one.
        None => {
            state.current = client
                .rooms()
                .await?
                .iter()
                .find(|r| r.rebuilt_as.is_none())
                .map(|r| r.id)
        }
    }
    let term = terminal::start("> ".to_string())?;
    let mut screen = Screen::new(term);
    screen.say(format!(
        "hearth: you are {} on {}. Type /help for commands, /bye to quit.",
        state.me,
        client.profile().relay()
    ));
    if let Some(id) = state.current {
        show_room(&client, &mut screen, id, &state.me, &mut state.shown).await;
    } else {
        screen.say("No rooms yet: /list shows invitations; /create NAME makes a room.".into());
    }
    for invitation in client.invitations().await.unwrap_or_default() {
        screen.say(render::invitation(&invitation));
    }
    // What the agent heard while no chat was open and the user must know.
    let names = room_names(&client).await;
    for event in client.missed_notices() {
        if let Some(line) = render::event(&event, state.current, &state.me, &names) {
            screen.event(&event, line, &names, &state.me, None);
        }
    }
    // The members of our rooms see us come online (and go offline on /bye).
    client.announce_presence().await;
    screen.view(screen::view(&client, state.current, &state.me).await);
    loop {
        tokio::select! {
            line = screen.term.lines.recv() => {
                let Some(line) = line else { break };
                match slash::parse(&line) {
                    Ok(Input::Empty) => {}
                    Ok(Input::Message(text)) => send(&client, &state, &mut screen, &text).await,
                    Ok(Input::Command(Command::Bye)) => break,
                    Ok(Input::Command(command)) => {
                        if let Err(err) = execute(&client, &mut state, &mut screen, command).await {
                            screen.say(format!("! {}", inert(&format!("{err:#}"))));
                        }
                    }
                    Err(usage) => screen.say(format!("! {}", inert(&usage))),
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
                if let ClientEvent::Message(item) = &event {
                    if !mark_shown(&mut state.shown, item.room, item.seq) {
                        continue;
                    }
                    // Shown here (every room's messages are): `hearth read` need not show
                    // it again.
                    let _ = client.set_read_mark(item.room, item.seq);
                }
                let quote = match &event {
                    ClientEvent::Message(item) | ClientEvent::MessageChanged { item, .. } => {
                        quote_of(&client, item, &[]).await
                    }
                    _ => None,
                };
                let line = match &event {
                    ClientEvent::Message(item) => Some(render::arrived(
                        item,
                        state.current,
                        &state.me,
                        &names,
                        quote.as_deref(),
                    )),
                    _ => render::event(&event, state.current, &state.me, &names),
                };
                if matches!(event, ClientEvent::RemovedFromRoom { .. }) && screen.is_full_screen() {
                    // The room on screen may have gone: move the window first, so that the
                    // notice lands in the room it shows next.
                    screen.view(screen::view(&client, state.current, &state.me).await);
                }
                if let Some(line) = line {
                    screen.event(&event, line, &names, &state.me, quote.as_deref());
                    if render::is_security(&event) {
                        // Shown: the next `hearth read` need not tell it again.
                        client.missed_notices();
                    }
                }
            }
        }
        if screen.is_full_screen() {
            screen.view(screen::view(&client, state.current, &state.me).await);
        }
    }
    screen.say("Bye.".into());
    client.close().await;
    Ok(())
}

/// Records that message `seq` of `room` is printed; false if it (or a newer one) already was.
fn mark_shown(shown: &mut HashMap<RoomId, Seq>, room: RoomId, seq: Seq) -> bool {
    let newest = shown.entry(room).or_default();
    if seq <= *newest {
        return false;
    }
    *newest = seq;
    true
}

/// What the chat remembers between lines.
struct ChatState {
    current: Option<RoomId>,
    me: hearth_protocol::Handle,
    /// The newest message already printed per room, so a message shown from history is
    /// not printed again when its live event arrives.
    shown: HashMap<RoomId, Seq>,
}

async fn send(client: &Client, state: &ChatState, screen: &mut Screen, text: &str) {
    let Some(room) = state.current else {
        screen.say("! no current room: /list shows your rooms, /join ROOM picks one".into());
        return;
    };
    let sent = client.send_text_or_queue(room, text).await;
    delivered(screen, sent, text);
}

/// Says what became of something sent: nothing when the relay took it (it shows when
/// its copy comes back), pending when it waits for the relay, or why not.
fn delivered(
    screen: &mut Screen,
    sent: Result<hearth_core::Delivery, hearth_core::ClientError>,
    what: &str,
) {
    match sent {
        Ok(hearth_core::Delivery::Sent(_)) => {}
        Ok(hearth_core::Delivery::Queued { waiting }) => screen.say(format!(
            "* pending ({waiting} waiting): the relay cannot be reached; sent when it is back: {}",
            inert(what)
        )),
        Err(err) => screen.say(format!("! not sent: {}", inert(&err.to_string()))),
    }
}

/// The one-line quote of the message `item` replies to, looked up among `near` (the
/// messages being shown) and then in the store; `None` when it is no reply or the
/// message is not held here (the line then says `re #N`).
pub(crate) async fn quote_of(
    client: &Client,
    item: &hearth_core::HistoryItem,
    near: &[hearth_core::HistoryItem],
) -> Option<String> {
    let to = item.reply_to?;
    if let Some(target) = near.iter().find(|i| i.seq == to) {
        return Some(crate::output::quote(target));
    }
    let target = client.message(item.room, to).await.ok()??;
    Some(crate::output::quote(&target))
}

/// The most matches `/search` prints (the newest).
const SEARCH_SHOWN: usize = 50;
/// How far back `/search` looks, in messages.
const SEARCH_DEPTH: usize = 10_000;

/// The messages of `room` that contain `query` (ignoring case) in their text or sender.
pub fn matching<'a>(
    items: &'a [hearth_core::HistoryItem],
    query: &str,
) -> Vec<&'a hearth_core::HistoryItem> {
    let query = query.to_lowercase();
    items
        .iter()
        .filter(|item| {
            !item.deleted
                && (item.text.to_lowercase().contains(&query)
                    || crate::output::sender_label(item)
                        .to_lowercase()
                        .contains(&query))
        })
        .collect()
}

async fn execute(
    client: &Client,
    state: &mut ChatState,
    screen: &mut Screen,
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
                screen.say(inert(line).into_owned());
            }
        }
        Command::List => {
            let rooms = client.rooms().await?;
            let names = room_names(client).await;
            if rooms.is_empty() {
                screen.say("You are in no room yet.".into());
            }
            for room in rooms {
                let mark = if Some(room.id) == state.current {
                    "*"
                } else {
                    " "
                };
                let label = names.name(room.id);
                if room.direct {
                    screen.say(format!("{mark} {label:<20} private conversation"));
                    continue;
                }
                let members: Vec<&str> = room.members.iter().map(|h| h.as_str()).collect();
                screen.say(format!("{mark} {label:<20} {}", members.join(", ")));
            }
            for invitation in client.invitations().await? {
                screen.say(render::invitation(&invitation));
            }
            for listed in client.public_rooms().await? {
                if !listed.joined {
                    let name = inert(&listed.public_name);
                    screen.say(format!("  {name:<20} public room: /join {name}"));
                }
            }
        }
        Command::Join(name) => {
            let (room, joined_name, how) = session::join(client, &name).await?;
            let joined_name = inert(&joined_name);
            match how {
                session::Joined::Invitation { from } => {
                    screen.say(format!("* you joined {joined_name} (invited by {from})"))
                }
                session::Joined::Public => {
                    screen.say(format!("* you joined the public room {joined_name}"))
                }
                session::Joined::AlreadyMember => {}
            }
            state.current = Some(room);
            show_room(client, screen, room, &state.me, &mut state.shown).await;
        }
        Command::Leave => {
            let room = current()?;
            let name = room_names(client).await.name(room);
            client.leave(room).await?;
            state.current = client
                .rooms()
                .await?
                .into_iter()
                .map(|r| r.id)
                .find(|id| *id != room);
            screen.say(format!("* you left {name}"));
        }
        Command::Current(None) => {
            let names = room_names(client).await;
            match state.current {
                Some(room) => screen.say(format!("* current room: {}", names.name(room))),
                None => screen.say("* no current room".into()),
            }
        }
        Command::Current(Some(name)) => {
            let room = session::resolve_room(client, &name).await?;
            state.current = Some(room);
            show_room(client, screen, room, &state.me, &mut state.shown).await;
        }
        Command::Who => {
            let room = current()?;
            let online = client.online(room).await.unwrap_or_default();
            for member in client.members(room).await? {
                let trust = format!(" {}", crate::output::member_trust(&member, &state.me));
                let seen = if member.handle != state.me && online.contains(&member.handle) {
                    " online"
                } else {
                    ""
                };
                let note = format!("{trust}{seen}");
                let fp = hearth_core::fingerprint::fingerprint(&member.account);
                screen.say(format!(
                    "  {:<16} {:<7} {}{note}",
                    member.handle.as_str(),
                    crate::output::member_role(&member),
                    fp
                ));
            }
        }
        Command::Invite(nick) => {
            let room = current()?;
            let handle = session::parse_handle(&nick)?;
            client.invite(room, &handle).await?;
            screen.say(format!("* invited {handle}"));
        }
        Command::Kick(nick) => {
            let room = current()?;
            let handle = session::parse_handle(&nick)?;
            client.kick(room, &handle).await?;
            screen.say(format!("* you kicked {handle}"));
        }
        Command::Ban(nick) => {
            let room = current()?;
            let handle = session::parse_handle(&nick)?;
            client.ban(room, &handle).await?;
            screen.say(format!(
                "* you banned {handle}; no admin can re-add them until /unban"
            ));
        }
        Command::Unban(nick) => {
            let room = current()?;
            let handle = session::parse_handle(&nick)?;
            client.unban(room, &handle).await?;
            screen.say(format!(
                "* {handle} is no longer banned (invite them again with /invite)"
            ));
        }
        Command::Grant(nick) => {
            let room = current()?;
            let handle = session::parse_handle(&nick)?;
            client.grant_admin(room, &handle).await?;
            screen.say(format!("* {handle} is now an admin"));
        }
        Command::Revoke(nick) => {
            let room = current()?;
            let handle = session::parse_handle(&nick)?;
            client.revoke_admin(room, &handle).await?;
            screen.say(format!("* {handle} is no longer an admin"));
        }
        Command::Rename(name) => {
            let room = current()?;
            client.rename(room, &name).await?;
            screen.say(format!("* room renamed to {}", inert(&name)));
        }
        Command::Expire(setting) => {
            let room = current()?;
            let expire = crate::commands::parse_expiry(&setting)?;
            client.set_expiry(room, expire).await?;
            match expire {
                Some(after) => screen.say(format!(
                    "* messages now disappear after {}",
                    humantime::format_duration(after)
                )),
                None => screen.say("* messages no longer disappear".into()),
            }
        }
        Command::Msg { nicks, text } => {
            // Each recipient's copy shows up as `-> nick: text` once the relay stored it.
            for nick in nicks {
                let sent = match session::parse_handle(&nick) {
                    Ok(handle) => client
                        .send_private(&handle, &text)
                        .await
                        .map(|_| ())
                        .map_err(anyhow::Error::from),
                    Err(err) => Err(err),
                };
                if let Err(err) = sent {
                    screen.say(format!(
                        "! not sent to {}",
                        inert(&format!("{nick}: {err:#}"))
                    ));
                }
            }
        }
        Command::Rebuild => {
            let room = current()?;
            let new = client.rebuild(room).await?;
            let names = room_names(client).await;
            screen.say(format!(
                "* rebuilt the room as a new one, {}; its members were invited there (the old one is {} now)",
                names.name(new),
                names.name(room)
            ));
            state.current = Some(new);
            show_room(client, screen, new, &state.me, &mut state.shown).await;
        }
        Command::Nick(name) => {
            client.set_display_name(&name).await?;
            let name = client.display_name(&state.me).unwrap_or(name);
            screen.say(format!(
                "* you are now known as {} ({})",
                inert(&name),
                state.me
            ));
        }
        Command::Create(name) => {
            let room = client.create_room(&name).await?;
            screen.say(format!(
                "* created {}; invite people with /invite NICK",
                inert(&name)
            ));
            state.current = Some(room);
            show_room(client, screen, room, &state.me, &mut state.shown).await;
        }
        Command::Topic(topic) => {
            let room = current()?;
            client.set_topic(room, &topic).await?;
            if topic.is_empty() {
                screen.say("* topic cleared".into());
            } else {
                screen.say(format!("* topic set to {}", inert(&topic)));
            }
        }
        Command::Publish(public_name) => {
            let room = current()?;
            client.publish_room(room, &public_name).await?;
            screen.say(format!(
                "* listed publicly as \"{}\": anyone registered on the relay can join; the name and the members' handles are visible to the relay",
                inert(&public_name)
            ));
        }
        Command::Info => {
            let room = current()?;
            let policy = client.policy(room).await?;
            let list = |hs: &[hearth_protocol::Handle]| {
                let names: Vec<&str> = hs.iter().map(|h| h.as_str()).collect();
                if names.is_empty() {
                    "-".to_string()
                } else {
                    names.join(", ")
                }
            };
            screen.say(format!("* name:   {}", inert(&policy.name)));
            screen.say(format!(
                "* topic:  {}",
                if policy.topic.is_empty() {
                    "-".into()
                } else {
                    inert(&policy.topic)
                }
            ));
            screen.say(format!("* owner:  {}", policy.owner));
            screen.say(format!("* admins: {}", list(&policy.admins)));
            screen.say(format!("* banned: {}", list(&policy.banned)));
            screen.say(format!(
                "* expiry: {}",
                policy
                    .expire
                    .map(|d| humantime::format_duration(d).to_string())
                    .unwrap_or_else(|| "off".into())
            ));
        }
        Command::Verify(nick) => {
            let handle = session::parse_handle(&nick)?;
            let contact = client
                .contact(&handle)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user named {handle} on this relay"))?;
            let number = hearth_core::safety_number(&client.profile().account(), &contact.account);
            screen.say(format!("* safety number with {handle}: {number}"));
            screen.say(format!(
                "* compare it in person with what {handle} sees; then record it with `hearth verify {handle}` outside the chat"
            ));
        }
        Command::Accept(which) => {
            let invitation = pick_invitation(client, &which).await?;
            client.accept_invitation(invitation.room).await?;
            screen.say(format!(
                "* you joined {} (invited by {})",
                inert(&invitation.name),
                invitation.from
            ));
            state.current = Some(invitation.room);
            show_room(client, screen, invitation.room, &state.me, &mut state.shown).await;
        }
        Command::Decline(which) => {
            let invitation = pick_invitation(client, &which).await?;
            client.decline_invitation(invitation.room).await?;
            screen.say(format!(
                "* you declined the invitation to {} from {}",
                inert(&invitation.name),
                invitation.from
            ));
        }
        Command::Reply { to, text } => {
            let room = current()?;
            let sent = client.send_reply_or_queue(room, Seq(to), &text).await;
            delivered(screen, sent, &text);
        }
        Command::Edit { target, text } => {
            let room = current()?;
            let sent = client.send_edit(room, Seq(target), &text).await;
            delivered(screen, sent, &format!("edit of #{target}"));
        }
        Command::Delete(target) => {
            let room = current()?;
            let sent = client.send_delete(room, Seq(target)).await;
            delivered(screen, sent, &format!("deletion of #{target}"));
        }
        Command::React { target, emoji } => {
            let room = current()?;
            let sent = client.send_reaction(room, Seq(target), &emoji).await;
            delivered(screen, sent, &format!("reaction to #{target}"));
        }
        Command::Search(query) => {
            let room = current()?;
            let names = room_names(client).await;
            let items = client.history(room, SEARCH_DEPTH, None).await?;
            let found = matching(&items, &query);
            let shown = &found[found.len().saturating_sub(SEARCH_SHOWN)..];
            screen.say(format!(
                "* {} message{} with \"{}\" in {}{}",
                found.len(),
                if found.len() == 1 { "" } else { "s" },
                inert(&query),
                names.name(room),
                if shown.len() < found.len() {
                    format!(" (the newest {SEARCH_SHOWN} below)")
                } else {
                    String::new()
                }
            ));
            for item in shown {
                let quote = quote_of(client, item, &items).await;
                screen.say(render::message(item, &names, &state.me, quote.as_deref()));
            }
        }
        Command::File(path) => {
            let room = current()?;
            let path = chat_path(&path)?;
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            screen.say(format!("* sending {}…", inert(&name)));
            client.send_file(room, &path, None, &|_, _| {}).await?;
        }
        Command::Save { id, dir } => {
            let dir = match dir {
                Some(dir) => chat_path(&dir)?,
                None => dirs::download_dir()
                    .or_else(dirs::home_dir)
                    .ok_or_else(|| {
                        anyhow::anyhow!("no Downloads folder: name one, /save ID DIR")
                    })?,
            };
            screen.say(format!("* saving file {}…", inert(&id)));
            let room = crate::commands::files::room_of_chat(client, state.current, &id);
            let saved = client.save_file_in(room, &id, &dir, &|_, _| {}).await?;
            screen.say(format!(
                "* saved {} ({}, checked)",
                inert(&saved.path.to_string_lossy()),
                hearth_core::attachment::human_size(saved.size)
            ));
        }
        Command::Open(id) => {
            let room = crate::commands::files::room_of_chat(client, state.current, &id);
            let (path, _) =
                crate::commands::files::fetch_for_self(client, room, &id, &|_, _| {}).await?;
            crate::commands::files::refuse_launcher(&path, &id)?;
            ::open::that_detached(&path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot start a program to open {}: {e}; it is saved there",
                    inert(&path.to_string_lossy())
                )
            })?;
            screen.say(format!("* opened {}", inert(&path.to_string_lossy())));
        }
        Command::Preview(id) => {
            let room = crate::commands::files::room_of_chat(client, state.current, &id);
            let (path, file) =
                crate::commands::files::fetch_for_self(client, room, &id, &|_, _| {}).await?;
            let what = format!(
                "{} ({}, {})",
                inert(&file.name),
                inert(&file.media_type),
                hearth_core::attachment::human_size(file.size)
            );
            if screen.is_full_screen() && file.media_type.starts_with("image/") {
                screen.preview(
                    &path,
                    format!("* preview of {what}: any key goes back to the chat"),
                );
            } else {
                screen.say(format!(
                    "* {what}: no preview here (pictures show in the full-screen chat); /open {} opens it",
                    inert(&id)
                ));
            }
        }
        Command::Bye => {}
    }
    Ok(())
}

/// The one pending invitation `which` names (room name, or at least 4 hex digits of
/// its id).
async fn pick_invitation(client: &Client, which: &str) -> Result<hearth_core::Invitation> {
    let wanted = which.to_lowercase();
    let mut found: Vec<_> = client
        .invitations()
        .await?
        .into_iter()
        .filter(|i| {
            i.name.to_lowercase() == wanted
                || (wanted.len() >= 4 && i.room.to_hex().starts_with(&wanted))
        })
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => anyhow::bail!(
            "no invitation to {}: /list shows your invitations",
            inert(which)
        ),
        n => anyhow::bail!(
            "{n} invitations match {}: name the one you mean by its id",
            inert(which)
        ),
    }
}

/// Shows the room's header and recent history.
async fn show_room(
    client: &Client,
    screen: &mut Screen,
    room: RoomId,
    me: &hearth_protocol::Handle,
    shown: &mut HashMap<RoomId, Seq>,
) {
    let names = room_names(client).await;
    screen.header(room, format!("-- {} --", names.name(room)));
    // A full-screen chat keeps a scrollback per room: give it more to scroll through.
    let count = if screen.is_full_screen() { 200 } else { 20 };
    match client.history(room, count, None).await {
        Ok(items) => {
            if let Some(last) = items.last() {
                // Shown here: `hearth read` need not show it again.
                let _ = client.set_read_mark(room, last.seq);
            }
            for item in &items {
                let quote = quote_of(client, item, &items).await;
                screen.message(item, &names, me, quote.as_deref());
                mark_shown(shown, item.room, item.seq);
            }
        }
        Err(err) => screen.say(format!(
            "! cannot read history: {}",
            inert(&err.to_string())
        )),
    }
}

async fn room_names(client: &Client) -> render::Rooms {
    render::Rooms::of(client).await
}

/// A path typed in the chat: `~/` is the home directory; a relative path is relative to
/// the current directory, which only a chat running in this process has (the agent's is
/// not the terminal's).
fn chat_path(text: &str) -> anyhow::Result<std::path::PathBuf> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("~/") {
        let home = dirs::home_dir().ok_or_else(|| anyhow::anyhow!("no home directory"))?;
        return Ok(home.join(rest));
    }
    let path = std::path::PathBuf::from(text);
    if path.is_absolute() {
        return Ok(path);
    }
    if crate::console::caller().is_some() {
        anyhow::bail!("give the full path (starting with / or ~/): the chat runs in the background agent, which does not know this terminal's directory");
    }
    Ok(std::path::absolute(&path)?)
}
