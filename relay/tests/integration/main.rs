//! hearth-relay's integration tests, one module per area, linked into one test binary (a
//! fraction of the link time and disk of one binary per file). nextest still runs every test
//! in its own process.

mod common;

mod admission;
mod hostile;
mod owner;
mod packaging;
mod protocol;
mod public_rooms;
mod quota;
mod robustness;
mod rooms;
