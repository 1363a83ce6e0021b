//! `hearth-bench`: the load tool of issue 15.
//!
//! - `hearth-bench relay` starts the real `hearth-relay` binary (its own process, a fresh
//!   data dir) and a raw quinn fan-out (`hearth-bench raw-server`, also its own process),
//!   drives each over real QUIC on loopback with one publisher and many subscribers, and
//!   prints deliveries/s, latency, server CPU per delivery and peak memory from /proc, the
//!   fdatasync floor measured in the same run, and the relay's ratio to the raw fan-out.
//! - `hearth-bench client` measures the client side through hearth-core against a relay
//!   process: sending and receiving a message, joining a 25-member room, catching up on
//!   10,000 messages.
//! - `hearth-bench files` sends and saves a 100 MiB file through hearth-core and the
//!   relay process, beside the disk's write speed and `scp` to localhost, with the
//!   relay's memory during the transfers.
#![forbid(unsafe_code)]

mod client_side;
mod files;
mod fsync;
mod load;
mod procfs;
mod raw;
mod relay_table;
mod servers;
mod stats;
mod wire;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Load and cost figures for hearth (see the README's Performance section).
#[derive(Parser, Debug)]
#[command(name = "hearth-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The relay under load beside a raw quinn fan-out; prints a table.
    Relay(relay_table::RelayArgs),
    /// Client-side costs through hearth-core against a relay process.
    Client(client_side::ClientArgs),
    /// A file's upload and download through the relay, beside disk and scp.
    Files(files::FilesArgs),
    /// The raw quinn fan-out server (started by `relay`; prints its address).
    #[command(hide = true)]
    RawServer,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Client(_) | Command::Files(_) = cli.command {
        // Before any thread starts: cheap profile keys (see client_side).
        std::env::set_var("HEARTH_TEST_FAST_KDF", "1");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cli.command {
            Command::Relay(a) => relay_table::run(a).await,
            Command::Client(a) => client_side::run(a).await,
            Command::Files(a) => files::run(a).await,
            Command::RawServer => raw::serve().await,
        }
    })
}
