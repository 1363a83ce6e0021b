//! `hearth config`: the profile's own settings, kept in its store.

use anyhow::Result;
use serde_json::json;

use crate::agent::notify;
use crate::cli::{GlobalArgs, OnOff, Setting};
use crate::session;

/// `hearth config [SETTING [on|off]]`: shows the settings, or sets one.
pub fn run(global: &GlobalArgs, setting: Option<Setting>, value: Option<OnOff>) -> Result<()> {
    let profile = session::profile(global)?;
    let store = profile.store();
    if let (Some(Setting::Notifications), Some(value)) = (setting, value) {
        notify::set_enabled(store, value == OnOff::On)?;
    }
    let on = notify::enabled(store);
    if global.json {
        outln!("{}", json!({ "notifications": on }));
        return Ok(());
    }
    let word = if on { "on" } else { "off" };
    outln!("notifications  {word}");
    if value.is_some() && on && crate::console::caller().is_none() {
        outln!("Desktop notifications come from the profile's agent: this command ran without one, so none are shown until one runs.");
    }
    Ok(())
}
