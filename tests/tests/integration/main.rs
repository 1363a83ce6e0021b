//! End-to-end tests of the whole system, one module per scenario, linked into one test
//! binary. nextest still runs every test in its own process.

mod family_room;
mod many_rooms;
mod what_the_relay_knows;
