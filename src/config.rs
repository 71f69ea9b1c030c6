//! Settings from three places, resolved once: command-line flags, the environment and the
//! config file, in that order of precedence, over the built-in defaults.
//!
//! The split follows ripgrep's LowArgs/HiArgs: clap ([`crate::cli`]) checks what was typed;
//! this module adds the other two layers and produces the final [`DaemonArgs`], remembering
//! where each value came from (`makuo daemon --print-config`). Every flag is defined once:
//! a key in the file (`console_port = 5001`) or a variable (`MAKUO_CONSOLE_PORT=5001`) is
//! turned back into the flag (`--console-port=5001`) and checked by the same clap definition,
//! so a value is valid in the file exactly when it is valid on the command line. Errors name
//! the file and line, or the variable.
//!
//! The front end takes its defaults (console address, key file, group, port, interface, base,
//! MTU) from the same file and variables ([`apply_front`]); its own flags still win.
//!
//! Reads files and the environment; opens no sockets and changes nothing.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::{Cli, ConsoleAddr, ConsoleArgs, DaemonArgs, FrontArgs};

/// The config file read when `--config` (or `MAKUO_CONFIG`) does not name one, if it exists.
pub const DEFAULT_FILE: &str = "/etc/makuo/makuo.conf";

/// Largest config file read (it is a handful of lines).
const MAX_FILE: u64 = 1 << 20;

/// makuosan's environment variables and the settings they stand for.
pub const MAKUOSAN_ENV: &[(&str, &str)] = &[
    ("MAKUOSAN_BASE", "base"),
    ("MAKUOSAN_PORT", "port"),
    ("MAKUOSAN_USER", "user"),
    ("MAKUOSAN_GROUP", "run_group"),
    ("MAKUOSAN_GROUPS", "groups"),
    ("MAKUOSAN_SOCK", "console_socket"),
];

/// msync's variable for the console address (`tcp:HOST:PORT` or `unix:PATH`).
pub const MSYNC_TARGET: &str = "MSYNC_TARGET";

/// Keys the file and the environment may hold besides the daemon's flags.
const EXTRA_KEYS: &[(&str, &str)] = &[
    (
        "exclude",
        "rsync exclude patterns applied to every push this daemon sends (a list)",
    ),
    (
        "console",
        "the front end's console address (HOST:PORT or a socket path)",
    ),
];

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Nobody set it.
    Default,
    /// The config file, at this line (1-based).
    File(PathBuf, usize),
    /// This environment variable.
    Env(String),
    /// The command line.
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p, l) => write!(f, "file {} line {l}", p.display()),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

/// One layer's value for a setting.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    /// A switch (`--foreground`), on or explicitly off.
    Switch(bool),
    /// The value(s) as they would be typed after the flag.
    Words(Vec<OsString>),
}

/// What one layer (flags, environment or file) sets, by key.
type Layer = BTreeMap<String, (Value, Source)>;

/// One daemon flag as the file and the environment see it.
#[derive(Clone, Debug)]
struct Setting {
    /// clap's id (the field name).
    id: String,
    /// The key: the long option with `-` written `_`.
    key: String,
    /// The long option.
    long: String,
    /// A switch, one value, or a list.
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Switch,
    One,
    List,
}

fn daemon_command() -> clap::Command {
    let mut cli = Cli::command();
    cli.build();
    cli.find_subcommand("daemon")
        .expect("the daemon subcommand exists")
        .clone()
}

/// Every daemon flag that is a setting (not `--help`, `--config`, `--print-config`).
fn settings(cmd: &clap::Command) -> Vec<Setting> {
    cmd.get_arguments()
        .filter_map(|a| {
            let id = a.get_id().as_str();
            let long = a.get_long()?;
            if matches!(id, "help" | "version" | "config" | "print_config") {
                return None;
            }
            let kind = match a.get_action() {
                ArgAction::SetTrue => Kind::Switch,
                ArgAction::Append => Kind::List,
                _ => Kind::One,
            };
            Some(Setting {
                id: id.to_string(),
                // `--peer` is repeated on the command line; in a file it is a list.
                key: if long == "peer" {
                    "peers".to_string()
                } else {
                    long.replace('-', "_")
                },
                long: long.to_string(),
                kind,
            })
        })
        .collect()
}

/// The environment variable of a key.
pub fn env_name(key: &str) -> String {
    format!("MAKUO_{}", key.to_ascii_uppercase())
}

fn parse_switch(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Checks one setting's value with the flag's own clap definition.
fn check_value(cmd: &clap::Command, s: &Setting, v: &Value) -> Result<()> {
    let mut argv: Vec<OsString> = vec!["daemon".into()];
    match v {
        Value::Switch(true) => argv.push(format!("--{}", s.long).into()),
        Value::Switch(false) => return Ok(()),
        Value::Words(ws) => {
            for w in ws {
                let mut a = OsString::from(format!("--{}=", s.long));
                a.push(w);
                argv.push(a);
            }
        }
    }
    cmd.clone()
        .try_get_matches_from(argv)
        .map(|_| ())
        .map_err(|e| {
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            anyhow!("{first}")
        })
}

/// What the environment sets: `MAKUO_KEY` for every key, then makuosan's names for those
/// left unset. Lists (`MAKUO_KEY`) are comma-separated.
fn env_layer(cmd: &clap::Command, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Layer> {
    let mut layer = Layer::new();
    let all = settings(cmd);
    for s in &all {
        let name = env_name(&s.key);
        let Some(raw) = env(&name) else { continue };
        let v = env_value(s, &name, &raw)?;
        check_value(cmd, s, &v).with_context(|| format!("environment {name}"))?;
        layer.insert(s.key.clone(), (v, Source::Env(name)));
    }
    for (name, key) in MAKUOSAN_ENV {
        let Some(raw) = env(name) else { continue };
        if layer.contains_key(*key) {
            continue;
        }
        let s = all
            .iter()
            .find(|s| s.key == *key)
            .expect("makuosan keys exist");
        let v = env_value(s, name, &raw)?;
        check_value(cmd, s, &v).with_context(|| format!("environment {name}"))?;
        layer.insert(s.key.clone(), (v, Source::Env(name.to_string())));
    }
    for (key, _) in EXTRA_KEYS {
        let name = env_name(key);
        if let Some(raw) = env(&name) {
            let words = split_list(&raw);
            layer.insert(key.to_string(), (Value::Words(words), Source::Env(name)));
        }
    }
    Ok(layer)
}

fn split_list(raw: &OsString) -> Vec<OsString> {
    raw.to_string_lossy()
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(OsString::from)
        .collect()
}

fn env_value(s: &Setting, name: &str, raw: &OsString) -> Result<Value> {
    Ok(match s.kind {
        Kind::Switch => {
            let text = raw.to_string_lossy();
            Value::Switch(parse_switch(&text).ok_or_else(|| {
                anyhow!("environment {name}={text}: expected 1/0, true/false, yes/no or on/off")
            })?)
        }
        Kind::List => Value::Words(split_list(raw)),
        Kind::One => Value::Words(vec![raw.clone()]),
    })
}

/// Edit distance (Levenshtein) between two keys, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Reads and checks a config file: every key must be a daemon flag's (or `exclude`,
/// `console`), every value valid for it.
fn file_layer(cmd: &clap::Command, path: &Path) -> Result<Layer> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("config file {}", path.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("config file {}", path.display()))?;
    let (euid, uid) = (rustix::process::geteuid(), rustix::process::getuid());
    if let Some(why) = untrusted(&meta, euid.as_raw(), uid.as_raw()) {
        bail!(
            "config file {}: {why}; as root makuo reads only a file that root (or the user \
             running it) owns and no one else may write (chown root {0}; chmod go-w {0})",
            path.display()
        );
    }
    let mut text = String::new();
    f.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("config file {}", path.display()))?;
    if text.len() as u64 > MAX_FILE {
        bail!(
            "config file {}: larger than {MAX_FILE} bytes",
            path.display()
        );
    }
    parse_file(cmd, path, &text)
}

/// Why a config file must not be read by a process running as `euid` (real uid `uid`), as
/// sshd's StrictModes: as root, a file someone else could change would let them choose what
/// root runs (the base, `-u`, the key), so it must be a regular file owned by root or the user
/// running makuo, writable by its owner alone. Other users read their own files unchecked.
/// Judged on the opened file (a symlink to a good file is fine); `/dev/null` is no settings.
fn untrusted(meta: &std::fs::Metadata, euid: u32, uid: u32) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    if euid != 0 {
        return None;
    }
    // `MAKUO_CONFIG=/dev/null`: no settings at all.
    if meta.file_type().is_char_device() && meta.rdev() == nix::sys::stat::makedev(1, 3) {
        return None;
    }
    if !meta.is_file() {
        return Some("not a regular file".into());
    }
    if meta.uid() != 0 && meta.uid() != uid {
        return Some(format!("owned by uid {}", meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        let who = if mode & 0o002 != 0 {
            "anyone"
        } else {
            "its group"
        };
        return Some(format!("writable by {who} (mode {mode:04o})"));
    }
    None
}

fn parse_file(cmd: &clap::Command, path: &Path, text: &str) -> Result<Layer> {
    use toml::Spanned;
    let shown = path.display();
    let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> =
        toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            anyhow!("config file {shown} line {line}: {}", e.message())
        })?;
    let all = settings(cmd);
    let mut layer = Layer::new();
    for (k, v) in table {
        let line = line_of(text, k.span().start);
        let at = || format!("config file {shown} line {line}");
        let key = k.get_ref().as_str();
        let src = Source::File(path.to_path_buf(), line);
        if let Some((extra, _)) = EXTRA_KEYS.iter().find(|(e, _)| *e == key) {
            let words = match v.get_ref() {
                toml::Value::String(s) => vec![OsString::from(s)],
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| match i {
                        toml::Value::String(s) => Ok(OsString::from(s)),
                        _ => Err(anyhow!("{}: {extra} takes strings", at())),
                    })
                    .collect::<Result<_>>()?,
                _ => bail!("{}: {extra} takes a string or a list of strings", at()),
            };
            layer.insert(key.to_string(), (Value::Words(words), src));
            continue;
        }
        let Some(s) = all.iter().find(|s| s.key == key) else {
            if matches!(key, "config" | "print_config") {
                bail!("{}: {key} cannot be set in a config file", at());
            }
            let near = all
                .iter()
                .map(|s| s.key.as_str())
                .chain(EXTRA_KEYS.iter().map(|(k, _)| *k))
                .min_by_key(|c| distance(c, key))
                .filter(|c| distance(c, key) <= 2)
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default();
            bail!("{}: unknown key {key}{near}", at());
        };
        let scalar = |x: &toml::Value| -> Result<OsString> {
            match x {
                toml::Value::String(s) => Ok(s.into()),
                toml::Value::Integer(i) => Ok(i.to_string().into()),
                _ => Err(anyhow!("{}: {key} takes a string or a number", at())),
            }
        };
        let value = match (s.kind, v.get_ref()) {
            (Kind::Switch, toml::Value::Boolean(b)) => Value::Switch(*b),
            (Kind::Switch, _) => bail!("{}: {key} takes true or false", at()),
            (Kind::List, toml::Value::Array(items)) => {
                Value::Words(items.iter().map(scalar).collect::<Result<_>>()?)
            }
            (Kind::List, x) => Value::Words(vec![scalar(x)?]),
            (Kind::One, x) => Value::Words(vec![scalar(x)?]),
        };
        check_value(cmd, s, &value).with_context(at)?;
        layer.insert(key.to_string(), (value, src));
    }
    Ok(layer)
}

/// The daemon's settings, resolved, with where each came from.
#[derive(Debug)]
pub struct Resolved {
    /// The settings as the daemon uses them.
    pub args: DaemonArgs,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    /// `exclude` from the file or the environment: rules for every push this daemon sends.
    pub exclude: Vec<String>,
    sources: BTreeMap<String, Source>,
    /// The merged settings as clap matched them (for printing).
    matches: ArgMatches,
    flags: Layer,
    env: Layer,
    explicit_file: bool,
}

/// Which config file to read: `--config`, else `MAKUO_CONFIG`, else [`DEFAULT_FILE`] if it
/// exists. `true` when it was named (and so must exist).
fn which_file(
    flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> (Option<PathBuf>, bool) {
    if let Some(p) = flag {
        return (Some(p.to_path_buf()), true);
    }
    if let Some(p) = env("MAKUO_CONFIG").filter(|p| !p.is_empty()) {
        return (Some(PathBuf::from(p)), true);
    }
    let d = Path::new(DEFAULT_FILE);
    (d.exists().then(|| d.to_path_buf()), false)
}

fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// Resolves `makuo daemon`'s settings from its command-line matches, the process environment
/// and the config file.
pub fn resolve_daemon(sub: &ArgMatches) -> Result<Resolved> {
    resolve_with(sub, &process_env)
}

/// As [`resolve_daemon`], with the environment given (for tests).
pub fn resolve_with(sub: &ArgMatches, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Resolved> {
    let cmd = daemon_command();
    let mut flags = Layer::new();
    for s in settings(&cmd) {
        if sub.value_source(&s.id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let v = match s.kind {
            Kind::Switch => Value::Switch(sub.get_flag(&s.id)),
            _ => Value::Words(
                sub.get_raw(&s.id)
                    .map(|vs| vs.map(OsString::from).collect())
                    .unwrap_or_default(),
            ),
        };
        flags.insert(s.key.clone(), (v, Source::Flag));
    }
    let config_flag = sub.get_one::<PathBuf>("config").cloned();
    let env_layer = env_layer(&cmd, env)?;
    let (file, explicit_file) = which_file(config_flag.as_deref(), env);
    let file_layer = match &file {
        Some(p) => file_layer(&cmd, p)?,
        None => Layer::new(),
    };
    merge(&cmd, flags, env_layer, file, explicit_file, file_layer)
}

fn merge(
    cmd: &clap::Command,
    flags: Layer,
    env: Layer,
    file: Option<PathBuf>,
    explicit_file: bool,
    file_layer: Layer,
) -> Result<Resolved> {
    let mut argv: Vec<OsString> = vec!["daemon".into()];
    let mut sources = BTreeMap::new();
    for s in settings(cmd) {
        let chosen = flags
            .get(&s.key)
            .or_else(|| env.get(&s.key))
            .or_else(|| file_layer.get(&s.key));
        let Some((v, src)) = chosen else {
            sources.insert(s.key.clone(), Source::Default);
            continue;
        };
        sources.insert(s.key.clone(), src.clone());
        match v {
            Value::Switch(true) => argv.push(format!("--{}", s.long).into()),
            Value::Switch(false) => {}
            Value::Words(ws) => {
                for w in ws {
                    let mut a = OsString::from(format!("--{}=", s.long));
                    a.push(w);
                    argv.push(a);
                }
            }
        }
    }
    let matches = cmd.clone().try_get_matches_from(&argv).map_err(|e| {
        let text = e.to_string();
        anyhow!(
            "the settings do not fit together: {}",
            text.lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
        )
    })?;
    let args = DaemonArgs::from_arg_matches(&matches).map_err(|e| anyhow!("{e}"))?;
    let mut exclude = Vec::new();
    for (key, _) in EXTRA_KEYS {
        let chosen = env.get(*key).or_else(|| file_layer.get(*key));
        sources.insert(
            key.to_string(),
            chosen.map_or(Source::Default, |(_, s)| s.clone()),
        );
        if *key == "exclude" {
            if let Some((Value::Words(ws), _)) = chosen {
                exclude = ws
                    .iter()
                    .map(|w| w.to_string_lossy().into_owned())
                    .collect();
            }
        }
    }
    Ok(Resolved {
        args,
        file,
        exclude,
        sources,
        matches,
        flags,
        env,
        explicit_file,
    })
}

/// Settings SIGHUP applies without a restart.
pub const RELOADABLE: &[&str] = &["loglevel", "member_expiry", "member_timeout", "exclude"];

impl Resolved {
    /// Where setting `key` came from.
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }

    /// Whether the base directory was given (flag, environment or file): the daemon needs it.
    pub fn base_given(&self) -> bool {
        self.source("base") != Source::Default
    }

    /// Reads the config file again (flags and environment stay as they were at start) and
    /// returns the new settings. A file that has become unreadable or wrong is an error, and
    /// the caller keeps the old settings.
    pub fn reload(&self) -> Result<Resolved> {
        let cmd = daemon_command();
        let file_layer = match &self.file {
            Some(p) if self.explicit_file || p.exists() => file_layer(&cmd, p)?,
            _ => Layer::new(),
        };
        merge(
            &cmd,
            self.flags.clone(),
            self.env.clone(),
            self.file.clone(),
            self.explicit_file,
            file_layer,
        )
    }

    /// Every setting's value as a TOML literal (`None`: not set), in flag order.
    pub fn values(&self) -> Vec<(String, Option<String>)> {
        let cmd = daemon_command();
        let m = &self.matches;
        let mut out = Vec::new();
        for s in settings(&cmd) {
            let v = match s.kind {
                Kind::Switch => Some(m.get_flag(&s.id).to_string()),
                _ => m.get_raw(&s.id).map(|vs| {
                    let words: Vec<String> = vs.map(|w| w.to_string_lossy().into_owned()).collect();
                    if s.kind == Kind::List {
                        let items: Vec<String> = words.iter().map(|w| toml_str(w)).collect();
                        format!("[{}]", items.join(", "))
                    } else {
                        toml_scalar(&words.join(","))
                    }
                }),
            };
            out.push((s.key, v));
        }
        let items: Vec<String> = self.exclude.iter().map(|w| toml_str(w)).collect();
        out.push((
            "exclude".into(),
            (!self.exclude.is_empty()).then(|| format!("[{}]", items.join(", "))),
        ));
        out
    }

    /// `--print-config`: one `key = value  # source` line per setting (a valid config file).
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.file {
            Some(p) => out.push_str(&format!(
                "# makuo daemon settings; config file {}\n",
                p.display()
            )),
            None => out.push_str(&format!(
                "# makuo daemon settings; no config file ({DEFAULT_FILE} does not exist)\n"
            )),
        }
        for (key, v) in self.values() {
            let src = self.source(&key);
            let line = match v {
                Some(v) => format!("{key} = {v}"),
                None => format!("# {key} is not set"),
            };
            out.push_str(&format!("{line:<48} # {src}\n"));
        }
        out
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A number when the text is one, else a string.
fn toml_scalar(s: &str) -> String {
    match s.parse::<i64>() {
        Ok(n) if n.to_string() == s => s.to_string(),
        _ => toml_str(s),
    }
}

/// The front end's defaults from the config file and the environment: what the command line
/// did not give. Never makes the front end go direct: only flags typed on the command line
/// do that (see `client.rs`).
pub fn apply_front(front: &mut FrontArgs, sub: &ArgMatches) -> Result<()> {
    apply_front_with(front, sub, &process_env)
}

/// As [`apply_front`], with the environment given (for tests).
pub fn apply_front_with(
    front: &mut FrontArgs,
    sub: &ArgMatches,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<()> {
    let d = front_layer(env)?;
    let typed = |id: &str| sub.value_source(id) == Some(ValueSource::CommandLine);
    let one = |key: &str| -> Option<(String, Source)> {
        d.get(key).and_then(|(v, s)| match v {
            Value::Words(ws) => ws
                .first()
                .map(|w| (w.to_string_lossy().into_owned(), s.clone())),
            Value::Switch(b) => Some((b.to_string(), s.clone())),
        })
    };
    fn parsed<T: std::str::FromStr>(v: &str, src: &Source, key: &str) -> Result<T>
    where
        T::Err: fmt::Display,
    {
        v.parse::<T>()
            .map_err(|e| anyhow!("{src}: {key} = {v}: {e}"))
    }
    if !typed("base") {
        if let Some((v, _)) = one("base") {
            front.cluster.base = PathBuf::from(v);
        }
    }
    if !typed("group") {
        if let Some((v, s)) = one("group") {
            front.cluster.group = parsed(&v, &s, "group")?;
        }
    }
    if !typed("port") {
        if let Some((v, s)) = one("port") {
            front.cluster.port = parsed(&v, &s, "port")?;
        }
    }
    if !typed("interface") {
        if let Some((v, s)) = one("interface") {
            front.cluster.interface = Some(parsed(&v, &s, "interface")?);
        }
    }
    if !typed("peers") {
        if let Some((Value::Words(ws), s)) = d.get("peers") {
            front.cluster.peers = ws
                .iter()
                .map(|w| parsed(&w.to_string_lossy(), s, "peers"))
                .collect::<Result<_>>()?;
        }
    }
    if !typed("ttl") {
        if let Some((v, s)) = one("ttl") {
            front.cluster.ttl = parsed(&v, &s, "ttl")?;
        }
    }
    if !typed("mtu") {
        if let Some((v, s)) = one("mtu") {
            front.cluster.mtu = parsed(&v, &s, "mtu")?;
        }
    }
    if !typed("keys") {
        if let Some((Value::Words(ws), _)) = d.get("key") {
            front.cluster.keys = ws.iter().map(PathBuf::from).collect();
        }
    }
    if !typed("insecure") {
        if let Some((Value::Switch(b), _)) = d.get("insecure") {
            front.cluster.insecure = *b;
        }
    }
    if !typed("relay") {
        if let Some((Value::Switch(b), _)) = d.get("relay") {
            front.cluster.relay = *b;
        }
    }
    apply_console_layer(&mut front.console, sub, &d)
}

/// The console address the front end uses when none is typed: `MAKUO_CONSOLE`,
/// `MSYNC_TARGET`, the config file, or 127.0.0.1:5000.
pub fn default_console() -> Result<ConsoleAddr> {
    let d = front_layer(&process_env)?;
    let mut c = ConsoleArgs {
        console: ConsoleAddr::Tcp("127.0.0.1:5000".into()),
        password_file: None,
    };
    apply_console_layer(&mut c, &ArgMatches::default(), &d)?;
    Ok(c.console)
}

/// The daemon's user as the front end sees it configured (`user` in the config file,
/// `MAKUO_USER`, `MAKUOSAN_USER`): a console held by that user is trusted
/// ([`crate::console_trust`]).
pub fn front_daemon_user() -> Result<Option<String>> {
    let d = front_layer(&process_env)?;
    Ok(match d.get("user") {
        Some((Value::Words(ws), _)) => ws.first().map(|w| w.to_string_lossy().into_owned()),
        _ => None,
    })
}

/// The console address and nothing else (`makuo exclude`, `makuo loglevel`).
pub fn apply_console(console: &mut ConsoleArgs, sub: &ArgMatches) -> Result<()> {
    let d = front_layer(&process_env)?;
    apply_console_layer(console, sub, &d)
}

fn apply_console_layer(console: &mut ConsoleArgs, sub: &ArgMatches, d: &Layer) -> Result<()> {
    if sub.value_source("console") == Some(ValueSource::CommandLine) {
        return Ok(());
    }
    let word = |key: &str| -> Option<(String, Source)> {
        match d.get(key) {
            Some((Value::Words(ws), s)) => ws
                .first()
                .map(|w| (w.to_string_lossy().into_owned(), s.clone())),
            _ => None,
        }
    };
    if let Some((v, s)) = word("console") {
        console.console = v
            .parse::<ConsoleAddr>()
            .map_err(|e| anyhow!("{s}: console = {v}: {e}"))?;
        return Ok(());
    }
    let port = word("console_port").or_else(|| word("port"));
    let addr = word("console_addr");
    if port.is_none() && addr.is_none() {
        return Ok(());
    }
    let port = port.map(|(p, _)| p).unwrap_or_else(|| "5000".into());
    let host = match addr.map(|(a, _)| a) {
        // A console on every address is reached on loopback.
        None => "127.0.0.1".to_string(),
        Some(a) if a == "0.0.0.0" => "127.0.0.1".to_string(),
        Some(a) if a == "::" => "[::1]".to_string(),
        Some(a) if a.contains(':') => format!("[{a}]"),
        Some(a) => a,
    };
    let text = format!("{host}:{port}");
    console.console = text
        .parse::<ConsoleAddr>()
        .map_err(|e| anyhow!("console address {text} from the config: {e}"))?;
    Ok(())
}

/// The environment over the file, for the front end; `MSYNC_TARGET` stands for `console`
/// below `MAKUO_CONSOLE`.
fn front_layer(env: &dyn Fn(&str) -> Option<OsString>) -> Result<Layer> {
    let cmd = daemon_command();
    let mut layer = env_layer(&cmd, env)?;
    if !layer.contains_key("console") {
        if let Some(t) = env(MSYNC_TARGET).filter(|t| !t.is_empty()) {
            layer.insert(
                "console".into(),
                (Value::Words(vec![t]), Source::Env(MSYNC_TARGET.into())),
            );
        }
    }
    let (file, _) = which_file(None, env);
    if let Some(p) = file {
        for (k, v) in file_layer(&cmd, &p)? {
            layer.entry(k).or_insert(v);
        }
    }
    Ok(layer)
}

/// The keys a config file may hold, with a line of help each (for the docs and tests).
pub fn keys() -> Vec<(String, String)> {
    let cmd = daemon_command();
    let mut out: Vec<(String, String)> = cmd
        .get_arguments()
        .filter_map(|a| {
            let s = settings(&cmd)
                .into_iter()
                .find(|s| s.id == a.get_id().as_str())?;
            Some((
                s.key,
                a.get_help().map(|h| h.to_string()).unwrap_or_default(),
            ))
        })
        .collect();
    out.extend(
        EXTRA_KEYS
            .iter()
            .map(|(k, h)| (k.to_string(), h.to_string())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(args: &[&str]) -> ArgMatches {
        let m = Cli::command()
            .try_get_matches_from(
                std::iter::once("makuo")
                    .chain(std::iter::once("daemon"))
                    .chain(args.iter().copied()),
            )
            .unwrap();
        m.subcommand().unwrap().1.clone()
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: BTreeMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("makuo.conf");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn as_root_a_config_file_others_may_change_is_refused() {
        use std::os::unix::fs::{chown, PermissionsExt};
        let (_d, p) = file("base = \"/srv\"\n");
        let set = |mode: u32| {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let meta = || std::fs::metadata(&p).unwrap();
        let me = rustix::process::getuid().as_raw();
        set(0o644);
        assert_eq!(untrusted(&meta(), 0, me), None);
        set(0o600);
        assert_eq!(untrusted(&meta(), 0, me), None);
        set(0o664);
        assert_eq!(
            untrusted(&meta(), 0, me).as_deref(),
            Some("writable by its group (mode 0664)")
        );
        set(0o646);
        assert_eq!(
            untrusted(&meta(), 0, me).as_deref(),
            Some("writable by anyone (mode 0646)")
        );
        // Not running as root: the user's own business.
        assert_eq!(untrusted(&meta(), 1000, 1000), None);
        set(0o644);
        let dir = std::fs::metadata(p.parent().unwrap()).unwrap();
        assert_eq!(
            untrusted(&dir, 0, me).as_deref(),
            Some("not a regular file")
        );
        let null = std::fs::metadata("/dev/null").unwrap();
        assert_eq!(untrusted(&null, 0, me), None);
        let zero = std::fs::metadata("/dev/zero").unwrap();
        assert_eq!(
            untrusted(&zero, 0, me).as_deref(),
            Some("not a regular file")
        );
        if rustix::process::geteuid().is_root() {
            // Owned by another user: refused to root, whoever runs it.
            chown(&p, Some(65534), None).unwrap();
            assert_eq!(
                untrusted(&meta(), 0, 0).as_deref(),
                Some("owned by uid 65534")
            );
            // ... unless that user is the one running makuo (sudo -E, a root-owned setuid).
            assert_eq!(untrusted(&meta(), 0, 65534), None);
            // And the daemon refuses it with the path and the fix.
            let cmd = daemon_command();
            let e = file_layer(&cmd, &p).unwrap_err().to_string();
            assert!(e.contains("owned by uid 65534"), "{e}");
            assert!(e.contains("chown root"), "{e}");
            chown(&p, Some(0), None).unwrap();
            set(0o666);
            let e = file_layer(&cmd, &p).unwrap_err().to_string();
            assert!(e.contains("writable by anyone (mode 0666)"), "{e}");
            set(0o644);
            assert!(file_layer(&cmd, &p).is_ok());
        } else {
            eprintln!("skipping the ownership half: not root");
        }
    }

    #[test]
    fn flags_beat_environment_beat_file_beat_defaults() {
        let (_d, p) =
            file("base = \"/srv/file\"\nport = 6000\nconsole_port = 6001\nname = \"f\"\n");
        let conf = p.to_str().unwrap();
        let env = env_of(&[("MAKUO_CONSOLE_PORT", "7001"), ("MAKUO_NAME", "e")]);
        let r = resolve_with(&sub(&["--config", conf, "--name", "flag"]), &env).unwrap();
        assert_eq!(r.args.cluster.base, PathBuf::from("/srv/file"));
        assert_eq!(r.args.cluster.port, 6000);
        assert_eq!(r.args.console_port(), 7001);
        assert_eq!(r.args.cluster.name.as_deref(), Some("flag"));
        assert_eq!(r.source("base"), Source::File(p.clone(), 1));
        assert_eq!(
            r.source("console_port"),
            Source::Env("MAKUO_CONSOLE_PORT".into())
        );
        assert_eq!(r.source("name"), Source::Flag);
        assert_eq!(r.source("mtu"), Source::Default);
        let text = r.render();
        assert!(text.contains("name = \"flag\""), "{text}");
        assert!(text.contains("# flag"), "{text}");
        assert!(text.contains("console_port = 7001"), "{text}");
        assert!(text.contains("# environment MAKUO_CONSOLE_PORT"), "{text}");
        assert!(text.contains(&format!("# file {conf} line 1")), "{text}");
        assert!(text.contains("mtu = 1500"), "{text}");
    }

    #[test]
    fn the_printed_config_reads_back_the_same() {
        let (_d, p) = file(
            "base = \"/srv\"\nkey = [\"/k1\", \"/k2\"]\nforeground = true\nexclude = [\"*.swp\"]\n",
        );
        let r = resolve_with(&sub(&["--config", p.to_str().unwrap()]), &env_of(&[])).unwrap();
        assert_eq!(
            r.args.cluster.keys,
            [PathBuf::from("/k1"), PathBuf::from("/k2")]
        );
        assert!(r.args.foreground);
        assert_eq!(r.exclude, ["*.swp"]);
        let (_d2, p2) = file(&r.render());
        let again = resolve_with(&sub(&["--config", p2.to_str().unwrap()]), &env_of(&[])).unwrap();
        assert_eq!(again.values(), r.values());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_line() {
        for (text, want) in [
            (
                "base = \"/srv\"\n\nprot = 5000\n",
                "line 3: unknown key prot (did you mean port?)",
            ),
            ("port = 0\n", "line 1"),
            ("port = \"x\"\n", "line 1"),
            (
                "foreground = \"yes\"\n",
                "line 1: foreground takes true or false",
            ),
            ("loglevel = 12\n", "line 1"),
            ("base = \n", "line 1"),
            ("config = \"/x\"\n", "cannot be set in a config file"),
            ("[daemon]\nport = 1\n", "unknown key daemon"),
        ] {
            let (_d, p) = file(text);
            let e =
                resolve_with(&sub(&["--config", p.to_str().unwrap()]), &env_of(&[])).unwrap_err();
            let msg = format!("{e:#}");
            assert!(msg.contains(want), "{text:?}: {msg}");
            assert!(msg.contains(p.to_str().unwrap()), "{msg}");
        }
    }

    #[test]
    fn environment_errors_name_the_variable_and_makuosan_names_count() {
        let e = resolve_with(&sub(&[]), &env_of(&[("MAKUO_PORT", "zero")])).unwrap_err();
        assert!(format!("{e:#}").contains("MAKUO_PORT"), "{e:#}");
        let e = resolve_with(&sub(&[]), &env_of(&[("MAKUO_FOREGROUND", "maybe")])).unwrap_err();
        assert!(format!("{e:#}").contains("MAKUO_FOREGROUND"), "{e:#}");
        let env = env_of(&[
            ("MAKUOSAN_BASE", "/srv/m"),
            ("MAKUOSAN_PORT", "6100"),
            ("MAKUOSAN_USER", "www"),
            ("MAKUOSAN_GROUP", "web"),
            ("MAKUOSAN_GROUPS", "adm,7"),
            ("MAKUOSAN_SOCK", "/run/m.sock"),
            ("MAKUO_PORT", "6200"),
        ]);
        let r = resolve_with(&sub(&[]), &env).unwrap();
        let a = &r.args;
        assert_eq!(a.cluster.base, PathBuf::from("/srv/m"));
        // MAKUO_ names win over makuosan's.
        assert_eq!(a.cluster.port, 6200);
        assert_eq!(a.console_port(), 6200);
        assert_eq!(a.user.as_deref(), Some("www"));
        assert_eq!(a.run_group.as_deref(), Some("web"));
        assert_eq!(a.groups.as_deref(), Some("adm,7"));
        assert_eq!(a.console_socket.as_deref(), Some(Path::new("/run/m.sock")));
        assert_eq!(r.source("base"), Source::Env("MAKUOSAN_BASE".into()));
        assert!(r.base_given());
        let r = resolve_with(&sub(&["--config", "/dev/null"]), &env_of(&[])).unwrap();
        assert!(!r.base_given());
        let r = resolve_with(
            &sub(&["--config", "/dev/null"]),
            &env_of(&[("MAKUO_FOREGROUND", "0")]),
        )
        .unwrap();
        assert!(!r.args.foreground);
    }

    #[test]
    fn an_explicit_false_beats_a_true_below_it() {
        let (_d, p) = file("foreground = true\nno_fsync = true\n");
        let conf = p.to_str().unwrap();
        let env = env_of(&[("MAKUO_FOREGROUND", "no")]);
        let r = resolve_with(&sub(&["--config", conf]), &env).unwrap();
        assert!(!r.args.foreground && r.args.no_fsync);
    }

    #[test]
    fn reload_sees_a_changed_file_but_keeps_flags_and_environment() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.conf");
        std::fs::write(&p, "loglevel = 2\nmember_expiry = 9000\n").unwrap();
        let r = resolve_with(
            &sub(&["--config", p.to_str().unwrap(), "-P", "7000"]),
            &env_of(&[]),
        )
        .unwrap();
        assert_eq!((r.args.loglevel, r.args.member_expiry), (2, Some(9000)));
        std::fs::write(
            &p,
            "loglevel = 5\nconsole_port = 1234\nexclude = [\"*.tmp\"]\n",
        )
        .unwrap();
        let n = r.reload().unwrap();
        assert_eq!((n.args.loglevel, n.args.member_expiry), (5, None));
        assert_eq!(n.args.console_port(), 7000, "the flag still wins");
        assert_eq!(n.exclude, ["*.tmp"]);
        std::fs::write(&p, "nonsense = 1\n").unwrap();
        assert!(r.reload().is_err());
    }

    #[test]
    fn front_end_defaults_come_from_the_file_and_environment() {
        let (_d, p) = file(
            "port = 6000\ngroup = \"239.1.2.3\"\nkey = [\"/etc/k\"]\ninterface = \"10.0.0.5\"\n\
             peers = [\"198.18.0.5\", \"[fd00::1]:7000\"]\nttl = 3\n",
        );
        let conf = p.to_str().unwrap().to_string();
        let parse = |args: &[&str]| {
            let m = Cli::command()
                .try_get_matches_from(std::iter::once("makuo").chain(args.iter().copied()))
                .unwrap();
            let cli = Cli::from_arg_matches(&m).unwrap();
            (cli, m.subcommand().unwrap().1.clone())
        };
        let (cli, m) = parse(&["members", "-p", "6500"]);
        let crate::cli::Command::Members(crate::cli::MembersArgs { front: mut f, .. }) =
            cli.command
        else {
            panic!()
        };
        let env = env_of(&[("MAKUO_CONFIG", &conf)]);
        apply_front_with(&mut f, &m, &env).unwrap();
        assert_eq!(f.cluster.port, 6500, "typed flag wins");
        assert_eq!(f.cluster.group.to_string(), "239.1.2.3");
        assert_eq!(f.cluster.keys, [PathBuf::from("/etc/k")]);
        let peers: Vec<String> = f.cluster.peers.iter().map(|p| p.to_string()).collect();
        assert_eq!(peers, ["198.18.0.5", "[fd00::1]:7000"]);
        assert_eq!(f.cluster.ttl, 3);
        assert_eq!(f.console.console, ConsoleAddr::Tcp("127.0.0.1:6000".into()));
        let (cli, m) = parse(&["members"]);
        let crate::cli::Command::Members(crate::cli::MembersArgs { front: mut f, .. }) =
            cli.command
        else {
            panic!()
        };
        let env = env_of(&[
            ("MAKUO_CONFIG", &conf),
            ("MSYNC_TARGET", "tcp:127.0.0.1:7000"),
        ]);
        apply_front_with(&mut f, &m, &env).unwrap();
        assert_eq!(f.console.console, ConsoleAddr::Tcp("127.0.0.1:7000".into()));
        let env = env_of(&[
            ("MAKUO_CONFIG", &conf),
            ("MSYNC_TARGET", "tcp:127.0.0.1:7000"),
            ("MAKUO_CONSOLE", "/run/makuo.sock"),
        ]);
        let (cli, m) = parse(&["members"]);
        let crate::cli::Command::Members(crate::cli::MembersArgs { front: mut f, .. }) =
            cli.command
        else {
            panic!()
        };
        apply_front_with(&mut f, &m, &env).unwrap();
        assert_eq!(
            f.console.console,
            ConsoleAddr::Unix("/run/makuo.sock".into())
        );
    }

    #[test]
    fn every_daemon_flag_has_a_key() {
        let keys: Vec<String> = keys().into_iter().map(|(k, _)| k).collect();
        for k in [
            "base",
            "group",
            "port",
            "interface",
            "peers",
            "ttl",
            "console_port",
            "name",
            "state_dir",
            "key",
            "metrics",
            "exclude",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
    }
}
