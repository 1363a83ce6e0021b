//! `hearth send`, `read` and `history`.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use hearth_core::{ClientEvent, HistoryItem, RoomSummary};
use hearth_protocol::{Handle, RoomId};
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::inert::inert;
use crate::output;
use crate::session;

/// `hearth send ROOM TEXT`; `ROOM` may be `@NICK[;NICK2...]`: a private message to each.
pub async fn send(global: &GlobalArgs, room: &str, text: &str) -> Result<()> {
    if let Some(nicks) = room.trim().strip_prefix('@') {
        return send_private(global, nicks, text).await;
    }
    let client = session::connect(global).await?;
    let result = async {
        let id = session::resolve_room(&client, room).await?;
        let seq = client.send_text(id, text).await?;
        if global.json {
            println!("{}", json!({"room": id.to_hex(), "seq": seq.0}));
        }
        anyhow::Ok(())
    }
    .await;
    client.close().await;
    result
}

/// A private message to every one of `nicks` (`bob;carol`, `@` optional), each through
/// the two-person room shared with them. Stops at the first failure, naming who got it.
async fn send_private(global: &GlobalArgs, nicks: &str, text: &str) -> Result<()> {
    let handles = nicks
        .split(';')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(session::parse_handle)
        .collect::<Result<Vec<_>>>()?;
    if handles.is_empty() {
        return Err(crate::error::UsageError(
            "name someone after the @: hearth send @NICK TEXT, or \"@NICK;NICK2\" for several"
                .into(),
        )
        .into());
    }
    let client = session::connect(global).await?;
    let result = async {
        for handle in &handles {
            let id = client
                .send_private(handle, text)
                .await
                .with_context(|| format!("the private message to {handle} was not sent"))?;
            if global.json {
                println!("{}", json!({"room": id.to_hex(), "to": handle.as_str()}));
            }
        }
        anyhow::Ok(())
    }
    .await;
    client.close().await;
    result
}

/// `hearth nick NAME`: sets our display name and sends it to every room we are in.
pub async fn nick(global: &GlobalArgs, name: &str) -> Result<()> {
    let client = session::connect(global).await?;
    let result = async {
        client.set_display_name(name).await?;
        let me = client.profile().handle().clone();
        let name = client
            .display_name(&me)
            .unwrap_or_else(|| name.trim().to_string());
        if global.json {
            println!("{}", json!({"handle": me.as_str(), "display_name": name}));
        } else {
            println!("You are now known as {} ({me}).", inert(&name));
        }
        anyhow::Ok(())
    }
    .await;
    client.close().await;
    result
}

/// `hearth read ROOM [--since D] [--follow]`.
pub async fn read(
    global: &GlobalArgs,
    room: &str,
    since: Option<Duration>,
    follow: bool,
) -> Result<()> {
    let client = session::connect(global).await?;
    let mut events = client.events();
    let result = async {
        let id = session::resolve_room(&client, room).await?;
        let since_time = since.map(|d| SystemTime::now() - d);
        let limit = if since.is_some() { usize::MAX } else { 50 };
        let (name, summary) = room_name(&client, id).await;
        let style = Style {
            name: &name,
            room: summary.as_ref(),
            me: client.profile().handle(),
        };
        for item in client.history(id, limit, since_time).await? {
            print_item(global, &item, &style);
        }
        // What catching up found that the user must know (a key rotation, an impostor,
        // a refused commit...), on standard error so scripts reading messages are not
        // disturbed.
        let rooms = client.rooms().await.unwrap_or_default();
        while let Ok(event) = events.try_recv() {
            notice(&event, Some(id), client.profile().handle(), &rooms);
        }
        if !follow {
            return anyhow::Ok(());
        }
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    match event {
                        ClientEvent::Message(item) if item.room == id => {
                            print_item(global, &item, &style);
                        }
                        other => notice(&other, Some(id), client.profile().handle(), &rooms),
                    }
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        anyhow::Ok(())
    }
    .await;
    client.close().await;
    result
}

/// Prints a security notice to standard error: what the chat shows with `!!` (and key
/// rotations), for `read`, which otherwise prints messages only.
fn notice(event: &ClientEvent, current: Option<RoomId>, me: &Handle, rooms: &[RoomSummary]) {
    let security = matches!(
        event,
        ClientEvent::KeyRotated { .. }
            | ClientEvent::KeyChanged { .. }
            | ClientEvent::Impostor { .. }
            | ClientEvent::CommitReverted { .. }
            | ClientEvent::Consistency { .. }
            | ClientEvent::RolledBack { .. }
            | ClientEvent::ClockSkewed { .. }
            | ClientEvent::RetentionRestored { .. }
            | ClientEvent::RemovedFromRoom { .. }
    );
    if let Some(line) = security
        .then(|| crate::chat::render::event(event, current, me, rooms))
        .flatten()
    {
        eprintln!("{line}");
    }
}

/// `hearth history ROOM [-n N]`.
pub async fn history(global: &GlobalArgs, room: &str, count: usize) -> Result<()> {
    let client = session::connect(global).await?;
    let result = async {
        let id = session::resolve_room(&client, room).await?;
        let (name, summary) = room_name(&client, id).await;
        let me = client.profile().handle();
        let items = client
            .history(id, count, None)
            .await
            .context("cannot read the stored history")?;
        for item in &items {
            if global.json {
                println!("{}", output::message_json(item, &name));
            } else {
                println!(
                    "{} {}",
                    output::timestamp(item.time),
                    output::line_in(item, summary.as_ref(), me)
                );
            }
        }
        anyhow::Ok(())
    }
    .await;
    client.close().await;
    result
}

/// How messages of one room are printed.
struct Style<'a> {
    name: &'a str,
    room: Option<&'a RoomSummary>,
    me: &'a Handle,
}

fn print_item(global: &GlobalArgs, item: &HistoryItem, style: &Style<'_>) {
    if global.json {
        println!("{}", output::message_json(item, style.name));
    } else {
        println!("{}", output::line_in(item, style.room, style.me));
    }
}

/// The room's name as shown to the user (`@NICK` for a private conversation), and its
/// summary.
async fn room_name(
    client: &hearth_core::Client,
    id: hearth_protocol::RoomId,
) -> (String, Option<RoomSummary>) {
    let summary = client
        .rooms()
        .await
        .ok()
        .and_then(|rooms| rooms.into_iter().find(|r| r.id == id));
    let name = summary
        .as_ref()
        .map(|r| output::room_label(r, client.profile().handle()))
        .unwrap_or_else(|| id.to_hex());
    (name, summary)
}
