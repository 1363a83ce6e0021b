//! The `hearth` CLI's integration tests, one module per area, linked into one test binary
//! (a fraction of the link time and disk of one binary per file). nextest still runs every
//! test in its own process.

mod common;

mod admin;
mod agent;
mod chat_pty;
mod demo;
mod errors;
mod files;
mod help;
mod inert;
mod invitations;
mod passphrase_protection;
mod relay_address;
mod room_names;
mod said;
mod scripted;
mod trust_backup;
