//! The daemon's settings: a TOML file (`--config`) whose every key is also a
//! flag of the same name. Flags win over the file, the file over what
//! `session-set` saved, and that over the defaults (so an operator's file
//! or command line always has the last word, and a change made over RPC
//! lasts until then).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::units::parse_size;

/// Everything that can be set in the file or on the command line; `None`
/// where neither says.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Where added torrents' data goes [default: ~/Downloads].
    #[arg(long, value_name = "DIR")]
    pub download_dir: Option<PathBuf>,
    /// Where the daemon keeps its torrents, their settings and resume state
    /// [default: $XDG_STATE_HOME/ringtorrent/daemon].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Address to accept peers on [default: [::]:51413, both families].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address of the RPC, web UI and metrics [default: 127.0.0.1:9091].
    #[arg(long, value_name = "ADDR")]
    pub rpc: Option<SocketAddr>,
    /// User name for HTTP basic auth (with --rpc-password).
    #[arg(long, value_name = "NAME")]
    pub rpc_username: Option<String>,
    /// Password for HTTP basic auth.
    #[arg(long, env = "RINGTORRENT_RPC_PASSWORD", hide_env_values = true)]
    pub rpc_password: Option<String>,
    /// Host names the RPC answers to besides IP addresses and localhost
    /// (comma-separated; guards against DNS rebinding).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub rpc_host_whitelist: Option<Vec<String>>,
    /// Directories data may be put in over RPC (comma-separated)
    /// [default: the download dir].
    #[arg(long, value_delimiter = ',', value_name = "DIRS")]
    pub allowed_roots: Option<Vec<PathBuf>>,
    /// A .torrent dropped here is added, then renamed `.added`.
    #[arg(long, value_name = "DIR")]
    pub watch_dir: Option<PathBuf>,
    /// Serve this web client instead of the built-in one (Transmission's
    /// `/usr/share/transmission/web`, say).
    #[arg(long, value_name = "DIR")]
    pub web_dir: Option<PathBuf>,
    /// Download limit, bytes per second (e.g. 10M).
    #[arg(long, value_parser = parse_size, value_name = "RATE")]
    #[serde(default, deserialize_with = "size")]
    pub speed_limit_down: Option<u64>,
    /// Upload limit, bytes per second.
    #[arg(long, value_parser = parse_size, value_name = "RATE")]
    #[serde(default, deserialize_with = "size")]
    pub speed_limit_up: Option<u64>,
    /// Alternative ("turtle") download limit, bytes per second.
    #[arg(long, value_parser = parse_size, value_name = "RATE")]
    #[serde(default, deserialize_with = "size")]
    pub alt_speed_down: Option<u64>,
    /// Alternative upload limit, bytes per second.
    #[arg(long, value_parser = parse_size, value_name = "RATE")]
    #[serde(default, deserialize_with = "size")]
    pub alt_speed_up: Option<u64>,
    /// Use the alternative limits.
    #[arg(long, value_name = "BOOL")]
    pub alt_speed_enabled: Option<bool>,
    /// Stop seeding a torrent once it has uploaded this many times its size.
    #[arg(long, value_name = "RATIO")]
    pub ratio_limit: Option<f64>,
    /// Stop seeding a torrent idle for this many minutes.
    #[arg(long, value_name = "MINUTES")]
    pub idle_seeding_limit: Option<u32>,
    /// Torrents downloading at once; the others wait [default: 5].
    #[arg(long, value_name = "N")]
    pub download_queue_size: Option<usize>,
    /// Torrents seeding at once [default: no limit].
    #[arg(long, value_name = "N")]
    pub seed_queue_size: Option<usize>,
    /// Peer connections, all torrents together [default: 500].
    #[arg(long, value_name = "N")]
    pub max_peers: Option<usize>,
    /// Connections from or to one IP address [default: 32].
    #[arg(long, value_name = "N")]
    pub max_peers_per_ip: Option<usize>,
    /// Memory for pieces in flight, all torrents together [default: 64M].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    #[serde(default, deserialize_with = "size")]
    pub memory: Option<u64>,
    /// Files kept open at once [default: 256].
    #[arg(long, value_name = "N")]
    pub max_open_files: Option<usize>,
    /// Shard threads [default: one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Start torrents as they are added [default: true].
    #[arg(long, value_name = "BOOL")]
    pub start_added_torrents: Option<bool>,
    /// Delete a watched or uploaded .torrent once added [default: false].
    #[arg(long, value_name = "BOOL")]
    pub trash_original_torrent_files: Option<bool>,
    /// Run a DHT node (BEP 5) on the peer port, over UDP [default: true].
    #[arg(long, value_name = "BOOL")]
    pub dht: Option<bool>,
    /// Join the DHT through this node (repeatable) [default: the
    /// well-known routers]; in the file, `dht-bootstrap = []` joins
    /// through none.
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    pub dht_bootstrap: Option<Vec<String>>,
    /// Local service discovery (BEP 14) [default: true].
    #[arg(long, value_name = "BOOL")]
    pub lsd: Option<bool>,
    /// Encryption (MSE/PE) of peer connections: `tolerated` (plaintext
    /// dialled, both accepted), `preferred` or `required` [default:
    /// tolerated].
    #[arg(long, value_name = "POLICY")]
    #[serde(default, deserialize_with = "policy")]
    pub encryption: Option<crate::mse::Policy>,
    /// Also run an HTTP and UDP tracker (as `ringtorrent tracker`) on this
    /// address, open to every torrent [default: none].
    #[arg(long, value_name = "ADDR")]
    pub tracker: Option<SocketAddr>,
}

fn policy<'de, D: Deserializer<'de>>(d: D) -> Result<Option<crate::mse::Policy>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

/// Sizes in the file: a number of bytes or a string such as `"10M"`.
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(s)) => parse_size(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("refusing to serve RPC on {0} without credentials (set rpc-username and rpc-password)")]
    OpenRpc(SocketAddr),
    #[error("no state directory: set --state-dir (neither XDG_STATE_HOME nor HOME is set)")]
    NoStateDir,
    #[error("rpc-password is set but rpc-username is not: set both, or neither")]
    PasswordWithoutUser,
    #[error("ratio-limit must be a finite number at least 0, not {0}")]
    BadRatio(f64),
    #[error("cannot tell the current directory for the relative {0}")]
    RelativePath(PathBuf),
}

impl Settings {
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Settings::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// These settings, with `lower`'s where these say nothing.
    pub fn or(self, lower: Settings) -> Settings {
        Settings {
            download_dir: self.download_dir.or(lower.download_dir),
            state_dir: self.state_dir.or(lower.state_dir),
            listen: self.listen.or(lower.listen),
            rpc: self.rpc.or(lower.rpc),
            rpc_username: self.rpc_username.or(lower.rpc_username),
            rpc_password: self.rpc_password.or(lower.rpc_password),
            rpc_host_whitelist: self.rpc_host_whitelist.or(lower.rpc_host_whitelist),
            allowed_roots: self.allowed_roots.or(lower.allowed_roots),
            watch_dir: self.watch_dir.or(lower.watch_dir),
            web_dir: self.web_dir.or(lower.web_dir),
            speed_limit_down: self.speed_limit_down.or(lower.speed_limit_down),
            speed_limit_up: self.speed_limit_up.or(lower.speed_limit_up),
            alt_speed_down: self.alt_speed_down.or(lower.alt_speed_down),
            alt_speed_up: self.alt_speed_up.or(lower.alt_speed_up),
            alt_speed_enabled: self.alt_speed_enabled.or(lower.alt_speed_enabled),
            ratio_limit: self.ratio_limit.or(lower.ratio_limit),
            idle_seeding_limit: self.idle_seeding_limit.or(lower.idle_seeding_limit),
            download_queue_size: self.download_queue_size.or(lower.download_queue_size),
            seed_queue_size: self.seed_queue_size.or(lower.seed_queue_size),
            max_peers: self.max_peers.or(lower.max_peers),
            max_peers_per_ip: self.max_peers_per_ip.or(lower.max_peers_per_ip),
            memory: self.memory.or(lower.memory),
            max_open_files: self.max_open_files.or(lower.max_open_files),
            threads: self.threads.or(lower.threads),
            start_added_torrents: self.start_added_torrents.or(lower.start_added_torrents),
            trash_original_torrent_files: self
                .trash_original_torrent_files
                .or(lower.trash_original_torrent_files),
            dht: self.dht.or(lower.dht),
            dht_bootstrap: self.dht_bootstrap.or(lower.dht_bootstrap),
            lsd: self.lsd.or(lower.lsd),
            encryption: self.encryption.or(lower.encryption),
            tracker: self.tracker.or(lower.tracker),
        }
    }

    pub fn state_dir(&self) -> Result<PathBuf, ConfigError> {
        match &self.state_dir {
            Some(d) => Ok(d.clone()),
            None => crate::resume::store::default_dir()
                .map(|d| d.join("daemon"))
                .ok_or(ConfigError::NoStateDir),
        }
    }

    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9091)))
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .unwrap_or(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 51413)))
    }

    pub fn credentials(&self) -> Option<(String, String)> {
        match (&self.rpc_username, &self.rpc_password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => None,
        }
    }

    /// Refuses what must not start: an RPC reachable from elsewhere with no
    /// password, a password that would be ignored, a ratio that cannot be
    /// saved. Relative directories are made absolute here, once.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        let rpc = self.rpc_addr();
        if self.rpc_password.is_some() && self.rpc_username.is_none() {
            return Err(ConfigError::PasswordWithoutUser);
        }
        if !rpc.ip().is_loopback() && self.credentials().is_none() {
            return Err(ConfigError::OpenRpc(rpc));
        }
        if let Some(r) = self.ratio_limit.filter(|r| !r.is_finite() || *r < 0.0) {
            return Err(ConfigError::BadRatio(r));
        }
        for dir in [
            &mut self.download_dir,
            &mut self.state_dir,
            &mut self.watch_dir,
        ]
        .into_iter()
        .flatten()
        {
            *dir = absolute(dir)?;
        }
        for root in self.allowed_roots.iter_mut().flatten() {
            *root = absolute(root)?;
        }
        Ok(())
    }

    /// The settings `session-set` changes, as these settings give them.
    pub fn prefs_over(&self, mut p: Prefs) -> Prefs {
        if let Some(d) = &self.download_dir {
            p.download_dir = d.clone();
        }
        if let Some(v) = self.speed_limit_down {
            (p.speed_limit_down, p.speed_limit_down_enabled) = (v, true);
        }
        if let Some(v) = self.speed_limit_up {
            (p.speed_limit_up, p.speed_limit_up_enabled) = (v, true);
        }
        if let Some(v) = self.alt_speed_down {
            p.alt_speed_down = v;
        }
        if let Some(v) = self.alt_speed_up {
            p.alt_speed_up = v;
        }
        if let Some(v) = self.alt_speed_enabled {
            p.alt_speed_enabled = v;
        }
        if let Some(v) = self.ratio_limit {
            (p.ratio_limit, p.ratio_limited) = (v, true);
        }
        if let Some(v) = self.idle_seeding_limit {
            (p.idle_seeding_limit, p.idle_seeding_limit_enabled) = (v, true);
        }
        if let Some(v) = self.download_queue_size {
            (p.download_queue_size, p.download_queue_enabled) = (v, true);
        }
        if let Some(v) = self.seed_queue_size {
            (p.seed_queue_size, p.seed_queue_enabled) = (v, true);
        }
        if let Some(v) = self.start_added_torrents {
            p.start_added_torrents = v;
        }
        if let Some(v) = self.trash_original_torrent_files {
            p.trash_original_torrent_files = v;
        }
        p
    }
}

fn absolute(p: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(p).map_err(|_| ConfigError::RelativePath(p.to_path_buf()))
}

/// What `session-set` changes while the daemon runs (saved with the
/// state). Rates in bytes per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Prefs {
    pub download_dir: PathBuf,
    pub speed_limit_down: u64,
    pub speed_limit_down_enabled: bool,
    pub speed_limit_up: u64,
    pub speed_limit_up_enabled: bool,
    pub alt_speed_down: u64,
    pub alt_speed_up: u64,
    pub alt_speed_enabled: bool,
    pub ratio_limit: f64,
    pub ratio_limited: bool,
    /// Minutes.
    pub idle_seeding_limit: u32,
    pub idle_seeding_limit_enabled: bool,
    pub download_queue_size: usize,
    pub download_queue_enabled: bool,
    pub seed_queue_size: usize,
    pub seed_queue_enabled: bool,
    pub start_added_torrents: bool,
    pub trash_original_torrent_files: bool,
}

impl Default for Prefs {
    fn default() -> Self {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        Prefs {
            download_dir: home.map_or_else(
                || std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
                |h| h.join("Downloads"),
            ),
            speed_limit_down: 100_000,
            speed_limit_down_enabled: false,
            speed_limit_up: 100_000,
            speed_limit_up_enabled: false,
            alt_speed_down: 50_000,
            alt_speed_up: 50_000,
            alt_speed_enabled: false,
            ratio_limit: 2.0,
            ratio_limited: false,
            idle_seeding_limit: 30,
            idle_seeding_limit_enabled: false,
            download_queue_size: 5,
            download_queue_enabled: true,
            seed_queue_size: 10,
            seed_queue_enabled: false,
            start_added_torrents: true,
            trash_original_torrent_files: false,
        }
    }
}

impl Prefs {
    /// The session-wide limits in force: (up, down), bytes per second.
    pub fn session_limits(&self) -> (Option<u64>, Option<u64>) {
        if self.alt_speed_enabled {
            (Some(self.alt_speed_up), Some(self.alt_speed_down))
        } else {
            (
                self.speed_limit_up_enabled.then_some(self.speed_limit_up),
                self.speed_limit_down_enabled
                    .then_some(self.speed_limit_down),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_are_the_flags_and_sizes_take_units() {
        let s = Settings::parse(
            r#"
            download-dir = "/srv/data"
            rpc = "0.0.0.0:9091"
            rpc-username = "u"
            rpc-password = "p"
            speed-limit-down = "10M"
            speed-limit-up = 2048
            download-queue-size = 3
            alt-speed-enabled = true
            "#,
        )
        .unwrap();
        assert_eq!(s.download_dir, Some(PathBuf::from("/srv/data")));
        assert_eq!(s.speed_limit_down, Some(10 << 20));
        assert_eq!(s.speed_limit_up, Some(2048));
        let mut s = s;
        assert!(s.validate().is_ok());
        let p = s.prefs_over(Prefs::default());
        assert_eq!(p.session_limits(), (Some(50_000), Some(50_000)));
        assert_eq!((p.download_queue_size, p.download_queue_enabled), (3, true));
    }

    #[test]
    fn bad_files_are_refused_with_the_key() {
        let e = Settings::parse("speed-limit-dwn = 1").unwrap_err();
        assert!(e.contains("speed-limit-dwn"), "{e}");
        let e = Settings::parse("speed-limit-down = \"fast\"").unwrap_err();
        assert!(e.contains("fast"), "{e}");
    }

    #[test]
    fn an_open_rpc_needs_credentials() {
        let mut open = Settings {
            rpc: Some("0.0.0.0:9091".parse().unwrap()),
            ..Settings::default()
        };
        assert!(matches!(open.validate(), Err(ConfigError::OpenRpc(_))));
        open.rpc_password = Some("secret".into());
        assert!(matches!(
            open.validate(),
            Err(ConfigError::PasswordWithoutUser)
        ));
        open.rpc_username = Some("admin".into());
        assert!(open.validate().is_ok());
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn settings_that_could_not_be_saved_or_found_again_are_fixed_or_refused() {
        let mut s = Settings::parse("ratio-limit = inf").unwrap();
        assert!(matches!(s.validate(), Err(ConfigError::BadRatio(_))));
        let mut s = Settings::parse("download-dir = \"data\"\nwatch-dir = \"w\"").unwrap();
        s.validate().unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(s.download_dir, Some(cwd.join("data")));
        assert_eq!(s.watch_dir, Some(cwd.join("w")));
    }

    #[test]
    fn flags_win_over_the_file() {
        let flags = Settings {
            download_queue_size: Some(1),
            ..Settings::default()
        };
        let file = Settings {
            download_queue_size: Some(7),
            seed_queue_size: Some(2),
            ..Settings::default()
        };
        let s = flags.or(file);
        assert_eq!(
            (s.download_queue_size, s.seed_queue_size),
            (Some(1), Some(2))
        );
    }
}
