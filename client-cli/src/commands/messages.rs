//! `hearth send`, `read` and `history`.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use hearth_core::{ClientEvent, Delivery, HistoryItem, RoomSummary};
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
        let delivery = client.send_text_or_queue(id, text).await?;
        let room = client.room_ref(id).await;
        match delivery {
            Delivery::Sent(seq) => {
                if global.json {
                    outln!("{}", output::with_room(&room, json!({"seq": seq.0})));
                }
            }
            Delivery::Queued { waiting } => {
                if global.json {
                    outln!("{}", output::with_room(&room, json!({"queued": true, "waiting": waiting})));
                } else {
                    outln!("Queued for {}: the relay cannot be reached now; the message is sent when it is back ({waiting} waiting).", output::room_name(&room));
                }
            }
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
                let room = client.room_ref(id).await;
                outln!(
                    "{}",
                    output::with_room(&room, json!({"to": handle.as_str()}))
                );
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
            outln!("{}", json!({"handle": me.as_str(), "display_name": name}));
        } else {
            outln!("You are now known as {} ({me}).", inert(&name));
        }
        anyhow::Ok(())
    }
    .await;
    client.close().await;
    result
}

/// `hearth read ROOM [--all] [--since D] [--follow]`: the messages not read before (by
/// the room's read mark), then, with `--follow`, new ones as they arrive.
pub async fn read(
    global: &GlobalArgs,
    room: &str,
    all: bool,
    since: Option<Duration>,
    follow: bool,
) -> Result<()> {
    let client = session::connect(global).await?;
    let mut events = client.events();
    let result = async {
        let id = session::resolve_room(&client, room).await?;
        let since_time = since.map(|d| SystemTime::now() - d);
        let mark = if all || since.is_some() {
            None
        } else {
            Some(client.read_mark(id)?).filter(|seq| seq.0 > 0)
        };
        let limit = match (since, mark) {
            (Some(_), _) | (_, Some(_)) => READ_MAX,
            (None, None) => READ_FIRST,
        };
        let (name, summary) = room_name(&client, id).await;
        let style = Style {
            name: &name,
            room: summary.as_ref(),
            me: client.profile().handle(),
        };
        let items = client.history(id, limit, since_time).await?;
        let new: Vec<_> = items
            .iter()
            .filter(|item| mark.is_none_or(|mark| item.seq > mark))
            .collect();
        if mark.is_some() && new.is_empty() && !global.json {
            errln!(
                "(nothing new in {}; --all shows the last {READ_FIRST})",
                output::room_name(&client.room_ref(id).await)
            );
        }
        for item in &new {
            let quote = crate::chat::quote_of(&client, item, &items).await;
            print_item(global, item, &style, quote.as_deref());
        }
        if let Some(last) = items.last() {
            client.set_read_mark(id, last.seq)?;
        }
        // What catching up found that the user must know (a key rotation, an impostor,
        // a refused commit...), on standard error so scripts reading messages are not
        // disturbed.
        let rooms = crate::chat::render::Rooms::of(&client).await;
        for event in client.missed_notices() {
            notice(&event, Some(id), client.profile().handle(), &rooms);
        }
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
                            let quote = crate::chat::quote_of(&client, &item, &[]).await;
                            print_item(global, &item, &style, quote.as_deref());
                            client.set_read_mark(id, item.seq)?;
                        }
                        ClientEvent::MessageChanged { ref item, .. } if item.room == id => {
                            if global.json {
                                let mut value = output::message_json(item, style.name);
                                value["type"] = json!("changed");
                                outln!("{value}");
                            } else if let Some(line) = crate::chat::render::event(&event, Some(id), client.profile().handle(), &rooms) {
                                outln!("{line}");
                            }
                        }
                        other => notice(&other, Some(id), client.profile().handle(), &rooms),
                    }
                }
                () = crate::console::interrupted() => break,
            }
        }
        anyhow::Ok(())
    }
    .await;
    client.close().await;
    result
}

/// Messages `read` shows when the room was never read (or with `--all`).
const READ_FIRST: usize = 50;
/// The most messages one `read` prints.
const READ_MAX: usize = 10_000;

/// Prints a security notice to standard error: what the chat shows with `!!` (and key
/// rotations), for `read`, which otherwise prints messages only.
fn notice(
    event: &ClientEvent,
    current: Option<RoomId>,
    me: &Handle,
    rooms: &crate::chat::render::Rooms,
) {
    if let Some(line) = crate::chat::render::is_security(event)
        .then(|| crate::chat::render::event(event, current, me, rooms))
        .flatten()
    {
        errln!("{line}");
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
                outln!("{}", output::message_json(item, &name));
            } else {
                let quote = crate::chat::quote_of(&client, item, &items).await;
                let shown = output::Shown {
                    number: true,
                    quote: quote.as_deref(),
                };
                outln!(
                    "{} {}",
                    output::timestamp(item.time),
                    output::line_in_as(item, summary.as_ref(), me, shown)
                );
            }
        }
        // What waits for the relay comes last, marked: it is not in the room yet.
        let queued = client.queued().context("cannot read the message queue")?;
        for message in queued.iter().filter(|q| q.room == id) {
            if global.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "type": "pending",
                        "room": id.to_hex(),
                        "room_name": name,
                        "sender": me.as_str(),
                        "text": message.text,
                        "queued_at": output::timestamp(message.queued_at),
                    })
                );
            } else {
                outln!(
                    "{} <{me}> {}  (pending: sent when the relay can be reached)",
                    output::timestamp(message.queued_at),
                    crate::inert::inert_lines(&message.text)
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

fn print_item(global: &GlobalArgs, item: &HistoryItem, style: &Style<'_>, quote: Option<&str>) {
    if global.json {
        outln!("{}", output::message_json(item, style.name));
    } else {
        let shown = output::Shown {
            number: false,
            quote,
        };
        outln!("{}", output::line_in_as(item, style.room, style.me, shown));
    }
}

/// The room's name for JSON (`@NICK` for a private conversation, as set: not inert; a
/// room we are no longer in by the name it had), and its summary if we are in it.
async fn room_name(
    client: &hearth_core::Client,
    id: hearth_protocol::RoomId,
) -> (String, Option<RoomSummary>) {
    let summary = client
        .rooms()
        .await
        .ok()
        .and_then(|rooms| rooms.into_iter().find(|r| r.id == id));
    let name = match &summary {
        Some(room) => output::room_label(room, client.profile().handle()),
        None => client
            .room_ref(id)
            .await
            .label()
            .unwrap_or_else(|| id.to_hex()),
    };
    (name, summary)
}
