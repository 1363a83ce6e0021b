//! hearth-core's integration tests, one module per area, linked into one test binary (one
//! binary instead of one per file: a fraction of the link time and disk of the workspace's
//! test build). nextest still runs every test in its own process.

mod common;
mod relay_process;

mod backup_restore;
mod catch_up_pages;
mod clock;
mod consistency;
mod direct;
mod display_names;
mod files;
mod files_kill;
mod impostors;
mod in_process;
mod keys;
mod lockout;
mod membership;
mod metadata;
mod policy;
mod public_rooms;
mod reconnect;
mod refused_rooms;
mod revert;
mod rollback;
mod room_names;
mod rooms;
mod rotation;
mod round_trips;
mod said;
mod store_crash;
mod transport;
mod trust;
