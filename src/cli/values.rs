//! Values of flags parsed from text: console addresses, `--bwlimit` sizes, `--min-rate`
//! floors, and the filter flags in the order the user typed them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::ArgMatches;

/// The daemon console address given to `--console`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleAddr {
    /// `HOST:PORT` (host may be a name, an IPv4 address or a bracketed IPv6 address).
    Tcp(String),
    /// A unix socket path.
    Unix(PathBuf),
}

impl FromStr for ConsoleAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // msync's spellings (MSYNC_TARGET, msync -c): tcp:HOST:PORT and unix:PATH.
        if let Some(p) = s.strip_prefix("unix:") {
            return match p {
                "" => Err("'unix:' needs a socket path".into()),
                p => Ok(ConsoleAddr::Unix(PathBuf::from(p))),
            };
        }
        let s = s.strip_prefix("tcp:").unwrap_or(s);
        if s.contains('/') {
            return Ok(ConsoleAddr::Unix(PathBuf::from(s)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(ConsoleAddr::Tcp(s.to_owned()))
            }
            _ => Err(format!(
                "'{s}' is neither HOST:PORT nor a unix socket path (a path must contain '/')"
            )),
        }
    }
}

impl fmt::Display for ConsoleAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleAddr::Tcp(s) => f.write_str(s),
            ConsoleAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The engine's floor for a `--min-rate` as given: `Some(0)` means none, and without the
/// flag the documented default ([`crate::proto::DEFAULT_MIN_RATE`]).
pub fn min_rate_floor(given: Option<u64>) -> Option<u64> {
    match given {
        Some(0) => None,
        Some(r) => Some(r),
        None => Some(crate::proto::DEFAULT_MIN_RATE),
    }
}

/// Parses an rsync `--bwlimit` RATE into bytes per second (0 means no limit).
///
/// A plain number is KiB/s. A suffix sets the unit: `B` bytes; `K`, `M`, `G`, `T`, `P` (alone
/// or followed by `iB`) powers of 1024; `KB`, `MB`, ... powers of 1000. Suffixes are
/// case-insensitive and the number may have a fraction (`1.5M`). As in rsync, a nonzero rate
/// below 512 bytes/s is refused.
pub fn parse_bwlimit(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(format!(
            "invalid rate '{s}': expected a number, e.g. 500, 1.5M"
        ));
    }
    let lower = suffix.to_ascii_lowercase();
    let (letter, rest) = match lower.chars().next() {
        Some(c) => lower.split_at(c.len_utf8()),
        None => ("k", ""),
    };
    let power: i32 = match letter {
        "b" if rest.is_empty() => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(format!("invalid rate '{s}': unknown unit '{suffix}'")),
    };
    let base: f64 = match rest {
        "" | "ib" => 1024.0,
        "b" => 1000.0,
        _ => return Err(format!("invalid rate '{s}': unknown unit '{suffix}'")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid rate '{s}': expected a number"))?;
    let bytes = (n * base.powi(power)).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("invalid rate '{s}': too large"));
    }
    let bytes = bytes as u64;
    if bytes != 0 && bytes < 512 {
        return Err(format!(
            "rate '{s}' is too small (min: 512 bytes/s, or 0 for no limit)"
        ));
    }
    Ok(bytes)
}

/// Which filter flag a rule came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterArgKind {
    /// `--include PATTERN`.
    Include,
    /// `--exclude PATTERN`.
    Exclude,
    /// `--exclude-from FILE` (the value is the file name, not yet read).
    ExcludeFrom,
    /// `--include-from FILE` (the value is the file name, not yet read).
    IncludeFrom,
    /// `--filter RULE` / `-f RULE`.
    Filter,
    /// `-F` (each occurrence; the value is empty).
    FilterFiles,
}

impl FilterArgKind {
    /// The clap argument id of the flag (the field name in [`SelectArgs`]).
    pub const fn id(self) -> &'static str {
        match self {
            FilterArgKind::Include => "include",
            FilterArgKind::Exclude => "exclude",
            FilterArgKind::ExcludeFrom => "exclude_from",
            FilterArgKind::IncludeFrom => "include_from",
            FilterArgKind::Filter => "filter",
            FilterArgKind::FilterFiles => "filter_files",
        }
    }
}

/// The `--include`, `--exclude` and `--exclude-from` values in command-line order.
///
/// clap keeps one `Vec` per flag, which loses how they interleave, yet rsync rules apply in the
/// order given. `matches` should be the `sync` or `check` subcommand's matches; given the
/// top-level matches, this descends into the subcommand. Matches without filter flags give an
/// empty list.
pub fn filter_args_in_order(matches: &ArgMatches) -> Vec<(FilterArgKind, String)> {
    if let Some((_, sub)) = matches.subcommand() {
        return filter_args_in_order(sub);
    }
    let mut found: Vec<(usize, FilterArgKind, String)> = Vec::new();
    for kind in [
        FilterArgKind::FilterFiles,
        FilterArgKind::Include,
        FilterArgKind::Exclude,
        FilterArgKind::ExcludeFrom,
        FilterArgKind::IncludeFrom,
        FilterArgKind::Filter,
    ] {
        // try_get_many rather than get_many: an unknown id panics in debug builds.
        let Ok(Some(values)) = matches.try_get_many::<String>(kind.id()) else {
            continue;
        };
        let Some(indices) = matches.indices_of(kind.id()) else {
            continue;
        };
        found.extend(indices.zip(values).map(|(i, v)| (i, kind, v.clone())));
    }
    found.sort_by_key(|&(i, _, _)| i);
    found.into_iter().map(|(_, k, v)| (k, v)).collect()
}

/// A `--peer` value: an address, with a port or without (then the group's port is meant).
/// `198.18.0.5`, `198.18.0.5:5000`, `fd00::1`, `[fd00::1]:5000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    /// The peer's unicast address.
    pub ip: std::net::IpAddr,
    /// Its port, if given.
    pub port: Option<u16>,
}

impl PeerAddr {
    /// The socket address, with `port` when none was given.
    pub fn with_default_port(&self, port: u16) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.ip, self.port.unwrap_or(port))
    }
}

impl FromStr for PeerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(ip) = s.parse() {
            return Ok(PeerAddr { ip, port: None });
        }
        match s.parse::<std::net::SocketAddr>() {
            Ok(a) if a.port() != 0 => Ok(PeerAddr {
                ip: a.ip(),
                port: Some(a.port()),
            }),
            _ => Err(format!(
                "{s:?}: expected ADDR or ADDR:PORT (IPv6 as [ADDR]:PORT), port 1-65535"
            )),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (ip, None) => write!(f, "{ip}"),
            (ip, Some(p)) => write!(f, "{}", std::net::SocketAddr::new(ip, p)),
        }
    }
}
