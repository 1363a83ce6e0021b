//! `hearth send`, `read` and `history`.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use hearth_core::{ClientEvent, HistoryItem};
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::output;
use crate::session;

/// `hearth send ROOM TEXT` (`ROOM` may be `@nick` for a private message once supported).
pub async fn send(global: &GlobalArgs, room: &str, text: &str) -> Result<()> {
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
        let name = room_name(&client, id).await;
        for item in client.history(id, limit, since_time).await? {
            print_item(global, &item, &name);
        }
        if !follow {
            return anyhow::Ok(());
        }
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    if let ClientEvent::Message(item) = event {
                        if item.room == id {
                            print_item(global, &item, &name);
                        }
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

/// `hearth history ROOM [-n N]`.
pub async fn history(global: &GlobalArgs, room: &str, count: usize) -> Result<()> {
    let client = session::connect(global).await?;
    let result = async {
        let id = session::resolve_room(&client, room).await?;
        let name = room_name(&client, id).await;
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
                    output::message_line(item)
                );
            }
        }
        anyhow::Ok(())
    }
    .await;
    client.close().await;
    result
}

fn print_item(global: &GlobalArgs, item: &HistoryItem, room_name: &str) {
    if global.json {
        println!("{}", output::message_json(item, room_name));
    } else {
        println!("{}", output::message_line(item));
    }
}

async fn room_name(client: &hearth_core::Client, id: hearth_protocol::RoomId) -> String {
    client
        .rooms()
        .await
        .ok()
        .and_then(|rooms| rooms.into_iter().find(|r| r.id == id).map(|r| r.name))
        .unwrap_or_else(|| id.to_hex())
}
