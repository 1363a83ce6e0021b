//! Where a relay lives: which data directory and config file a `hearth-relay` command
//! means when it is not told.
//!
//! Owner commands (`invite`, `status`...) must reach the relay that runs, never create
//! another one by accident: [`locate`] finds the user's own relay
//! (`~/.local/share/hearth-relay`) or the system relay of the package (the data directory
//! named by `/etc/hearth/relay.toml`, `/var/lib/hearth/relay`), and says when there is
//! none. Only the first start and `hearth-relay init` create a relay.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, RelayConfig};
use crate::server::STORE_FILE;

/// The config file of the packaged relay (the systemd service reads it).
pub const SYSTEM_CONFIG: &str = "/etc/hearth/relay.toml";
/// The data directory of the packaged relay (its systemd `StateDirectory=`).
pub const SYSTEM_DATA_DIR: &str = "/var/lib/hearth/relay";
/// Overrides [`SYSTEM_CONFIG`], for tests and for installs under another prefix.
pub const SYSTEM_CONFIG_ENV: &str = "HEARTH_RELAY_SYSTEM_CONFIG";
/// The config file's name inside a data directory of a relay run by hand.
pub const CONFIG_FILE: &str = "hearth-relay.toml";

/// What the command was told, and where to look otherwise.
#[derive(Debug, Clone)]
pub struct Search {
    /// `--data` (or `HEARTH_RELAY_DATA`).
    pub data: Option<PathBuf>,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// The user's own relay: `<user data dir>/hearth-relay`.
    pub user_data_dir: PathBuf,
    /// The packaged relay's config file.
    pub system_config: PathBuf,
}

impl Search {
    /// The search for this process: the given flags, the user's data dir, and
    /// [`SYSTEM_CONFIG`] (or `$HEARTH_RELAY_SYSTEM_CONFIG`).
    pub fn new(data: Option<PathBuf>, config: Option<PathBuf>) -> Search {
        Search {
            data,
            config,
            user_data_dir: crate::config::default_data_dir(),
            system_config: std::env::var_os(SYSTEM_CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(SYSTEM_CONFIG)),
        }
    }
}

/// How the relay was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// `--data` or `--config` named it.
    Given,
    /// The user's own relay, in `<user data dir>/hearth-relay`.
    User,
    /// The packaged relay, through its system config file.
    System,
    /// Nothing was given and no relay exists: the user's data dir is where a new one
    /// would go.
    Nothing,
}

/// A relay's place: its data directory and config file, and how they were found.
#[derive(Debug, Clone)]
pub struct Location {
    /// The config file (it may not exist: then every setting has its default).
    pub config_file: PathBuf,
    /// The configuration read from it, with `data_dir` resolved.
    pub config: RelayConfig,
    /// How the place was found.
    pub found: Found,
}

impl Location {
    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Whether a relay exists here (its store was created).
    pub fn exists(&self) -> bool {
        self.data_dir().join(STORE_FILE).is_file()
    }
}

/// Finds the relay a command means.
///
/// 1. `--config FILE`: that file; its `data_dir` unless `--data` is given.
/// 2. `--data DIR`: `DIR/hearth-relay.toml` if it exists, else the system config if its
///    `data_dir` is `DIR` (the packaged relay named by its directory), else
///    `DIR/hearth-relay.toml` (not there yet).
/// 3. Neither: the user's relay if its data dir holds a store or config, else the system
///    relay if its config file exists, else [`Found::Nothing`] (the user's data dir).
pub fn locate(search: &Search) -> Result<Location, ConfigError> {
    let in_dir = |dir: &Path| dir.join(CONFIG_FILE);
    if let Some(file) = &search.config {
        let mut config = RelayConfig::load(file)?;
        if let Some(data) = &search.data {
            config.data_dir = data.clone();
        }
        return Ok(Location {
            config_file: file.clone(),
            config,
            found: Found::Given,
        });
    }
    if let Some(data) = &search.data {
        let own = in_dir(data);
        let file = if !own.exists() && system_config_names(search, data) {
            search.system_config.clone()
        } else {
            own
        };
        let mut config = RelayConfig::load(&file)?;
        config.data_dir = data.clone();
        return Ok(Location {
            config_file: file,
            config,
            found: Found::Given,
        });
    }
    let user = &search.user_data_dir;
    if user.join(STORE_FILE).exists() || in_dir(user).exists() {
        let file = in_dir(user);
        let mut config = RelayConfig::load(&file)?;
        config.data_dir = user.clone();
        return Ok(Location {
            config_file: file,
            config,
            found: Found::User,
        });
    }
    if search.system_config.exists() {
        let mut config = RelayConfig::load(&search.system_config)?;
        if config.data_dir == crate::config::default_data_dir() {
            // The file names no data dir: the package's.
            config.data_dir = PathBuf::from(SYSTEM_DATA_DIR);
        }
        return Ok(Location {
            config_file: search.system_config.clone(),
            config,
            found: Found::System,
        });
    }
    Ok(Location {
        config_file: in_dir(user),
        config: RelayConfig {
            data_dir: user.clone(),
            ..RelayConfig::default()
        },
        found: Found::Nothing,
    })
}

/// Whether the system config exists and names `data` as its data directory.
fn system_config_names(search: &Search, data: &Path) -> bool {
    if !search.system_config.exists() {
        return false;
    }
    match RelayConfig::load(&search.system_config) {
        Ok(config) => {
            let named = if config.data_dir == crate::config::default_data_dir() {
                PathBuf::from(SYSTEM_DATA_DIR)
            } else {
                config.data_dir
            };
            same_dir(&named, data)
        }
        Err(_) => false,
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Places {
        _root: tempfile::TempDir,
        search: Search,
        system_data: PathBuf,
    }

    fn places() -> Places {
        let root = tempfile::tempdir().unwrap();
        let search = Search {
            data: None,
            config: None,
            user_data_dir: root.path().join("home/.local/share/hearth-relay"),
            system_config: root.path().join("etc/hearth/relay.toml"),
        };
        let system_data = root.path().join("var/lib/hearth/relay");
        Places {
            _root: root,
            search,
            system_data,
        }
    }

    fn install_system(p: &Places) {
        std::fs::create_dir_all(p.search.system_config.parent().unwrap()).unwrap();
        RelayConfig::write_new(
            &p.search.system_config,
            &[
                ("data_dir", p.system_data.to_str().unwrap().into()),
                ("public_host", "raspberrypi.local".into()),
            ],
        )
        .unwrap();
        std::fs::create_dir_all(&p.system_data).unwrap();
        std::fs::write(p.system_data.join(STORE_FILE), b"").unwrap();
    }

    #[test]
    fn nothing_found_names_the_user_dir_and_creates_nothing() {
        let p = places();
        let found = locate(&p.search).unwrap();
        assert_eq!(found.found, Found::Nothing);
        assert_eq!(found.data_dir(), p.search.user_data_dir);
        assert!(!found.exists());
        assert!(!p.search.user_data_dir.exists(), "looking creates nothing");
    }

    #[test]
    fn the_packaged_relay_is_found_without_flags() {
        let p = places();
        install_system(&p);
        let found = locate(&p.search).unwrap();
        assert_eq!(found.found, Found::System);
        assert_eq!(found.data_dir(), p.system_data);
        assert_eq!(
            found.config.public_host.as_deref(),
            Some("raspberrypi.local")
        );
        assert!(found.exists());
        assert!(!p.search.user_data_dir.exists());
    }

    #[test]
    fn the_packaged_relay_named_by_its_data_dir_keeps_its_config() {
        let p = places();
        install_system(&p);
        let search = Search {
            data: Some(p.system_data.clone()),
            ..p.search.clone()
        };
        let found = locate(&search).unwrap();
        assert_eq!(found.found, Found::Given);
        assert_eq!(found.config_file, p.search.system_config);
        assert_eq!(
            found.config.public_host.as_deref(),
            Some("raspberrypi.local")
        );
    }

    #[test]
    fn the_users_own_relay_comes_first() {
        let p = places();
        install_system(&p);
        std::fs::create_dir_all(&p.search.user_data_dir).unwrap();
        std::fs::write(p.search.user_data_dir.join(STORE_FILE), b"").unwrap();
        let found = locate(&p.search).unwrap();
        assert_eq!(found.found, Found::User);
        assert_eq!(found.data_dir(), p.search.user_data_dir);
        assert_eq!(found.config.public_host, None);
    }

    #[test]
    fn a_given_dir_without_a_relay_is_not_one() {
        let p = places();
        let search = Search {
            data: Some(p.search.user_data_dir.join("elsewhere")),
            ..p.search.clone()
        };
        let found = locate(&search).unwrap();
        assert_eq!(found.found, Found::Given);
        assert!(!found.exists());
        assert!(!found.data_dir().exists());
    }
}
