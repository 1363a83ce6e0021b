//! Where the binaries the tools start are: beside the running tool (the same
//! `target/<profile>/` directory), unless `HEARTH_RELAY_BIN` or `HEARTH_BIN` name them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The `hearth-relay` binary.
pub fn relay() -> Result<PathBuf> {
    find("hearth-relay", "HEARTH_RELAY_BIN", "hearth-relay")
}

/// The `hearth` CLI binary.
pub fn cli() -> Result<PathBuf> {
    find("hearth", "HEARTH_BIN", "hearth-cli")
}

fn find(name: &str, env: &str, package: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let binary = dir.join(name);
    if !binary.exists() {
        let release = if dir.ends_with("release") {
            " --release"
        } else {
            ""
        };
        bail!(
            "{} is missing: build it first with `cargo build{release} -p {package}` \
             (same profile and target dir as this tool), or name it with {env}=PATH",
            binary.display()
        );
    }
    Ok(binary)
}
