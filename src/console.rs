//! The daemon's control console: makuosan's words, one command a line, over TCP
//! (127.0.0.1:5000 by default, `telnet`-able) or a unix socket.
//!
//! This module reads lines ([`read_line`], at most [`MAX_LINE`] bytes), parses them into
//! [`Request`]s and renders results into lines. Every command streams progress lines and ends
//! with exactly one final line: `ok` or `error: REASON`. The daemon (`daemon.rs`,
//! `console_access.rs`) owns the sockets, sessions and who may use them.
//!
//! The parser is strict, so that another protocol pointed at the console (an HTTP request,
//! say, from a browser or `curl` run by an allowed user) cannot run anything: a line that is
//! not a console command ([`ParseError::NotACommand`]: an unknown first word, a control
//! character, bytes that are not UTF-8) ends the session; a console command used wrongly
//! ([`ParseError::Usage`]) gets one error line and the session goes on; a blank line is
//! ignored. Words from the line quoted back in an error are cut to [`MAX_SHOWN`] characters.

use std::io::{self, BufRead};

use crate::proto::manifest::FilterRule;
use crate::report::Outcome;

/// Longest console line, in bytes (without its newline). A longer line ends the session.
pub const MAX_LINE: usize = 4096;

/// Longest piece of an input line quoted back in an error message, in characters.
pub const MAX_SHOWN: usize = 40;

/// The first words of console commands (case-insensitive).
pub const COMMANDS: &[&str] = &[
    "send", "sync", "dsync", "md5", "check", "members", "status", "exclude", "include", "loglevel",
    "alive", "echo", "help", "?", "quit", "exit", "bye", "password", "filter", "files", "watch",
    "standing", "rollback",
];

/// What [`read_line`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A line (in the buffer, without `\n` or a final `\r`); the last line may lack its `\n`.
    Line,
    /// More than the limit without a newline: the rest is not read.
    TooLong,
    /// End of input.
    Eof,
}

/// Reads one line of at most `max` bytes into `buf` (cleared first). Reads no further than the
/// line's newline, or than `max + 1` bytes of a line that is too long.
pub fn read_line(r: &mut impl BufRead, max: usize, buf: &mut Vec<u8>) -> io::Result<Input> {
    buf.clear();
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(if buf.is_empty() {
                Input::Eof
            } else {
                strip_cr(buf);
                Input::Line
            });
        }
        // Room for the line, a `\r` and the newline.
        let room = max + 2 - buf.len();
        let take = avail.len().min(room);
        if let Some(i) = avail[..take].iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&avail[..i]);
            r.consume(i + 1);
            strip_cr(buf);
            return Ok(if buf.len() > max {
                Input::TooLong
            } else {
                Input::Line
            });
        }
        buf.extend_from_slice(&avail[..take]);
        r.consume(take);
        if buf.len() > max + 1 || (buf.len() == max + 1 && buf.last() != Some(&b'\r')) {
            return Ok(Input::TooLong);
        }
    }
}

fn strip_cr(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
}

/// Why a line was not turned into a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a console command at all (another protocol, binary): the session must end.
    NotACommand(String),
    /// A console command used wrongly: one error line, the session goes on.
    Usage(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::NotACommand(m) | ParseError::Usage(m) => f.write_str(m),
        }
    }
}

impl From<String> for ParseError {
    fn from(m: String) -> Self {
        ParseError::Usage(m)
    }
}

impl From<&str> for ParseError {
    fn from(m: &str) -> Self {
        ParseError::Usage(m.to_string())
    }
}

/// A piece of input fit to quote in an error: at most [`MAX_SHOWN`] characters, control
/// characters and quotes escaped.
pub fn shown(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_SHOWN {
            out.push_str("...");
            break;
        }
        if c.is_control() || c == '\'' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses one line as read from a connection: UTF-8 text without control characters (tabs
/// aside), whose first word is a console command.
pub fn parse_line(line: &[u8]) -> Result<Request, ParseError> {
    let Ok(text) = std::str::from_utf8(line) else {
        return Err(ParseError::NotACommand(
            "not a console command (not UTF-8 text)".into(),
        ));
    };
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(ParseError::NotACommand(format!(
            "not a console command (control character {:#04x})",
            c as u32
        )));
    }
    parse(text)
}

/// What a `send`-family command asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendCmd {
    /// `-n`: dry run.
    pub dry_run: bool,
    /// `-r`: recursive.
    pub recursive: bool,
    /// `-c`: compare checksums.
    pub checksum: bool,
    /// `-t HOST` (repeatable): only these members.
    pub targets: Vec<String>,
    /// Delete extras (`sync`, or `send --delete`).
    pub delete: bool,
    /// Only delete (`dsync`).
    pub delete_only: bool,
    /// `--max-delete N`.
    pub max_delete: Option<u64>,
    /// `--atomic`: commit on every member or on none.
    pub atomic: bool,
    /// `--json`: end with one `result {json}` line.
    pub json: bool,
    /// `--progress`: with `--json` too, stream the progress and keep-alive lines before the
    /// result (the front end's `--progress` and `--timeout` read them).
    pub progress: bool,
    /// `--no-fsync`: members skip the durability step for this push.
    pub no_fsync: bool,
    /// `-H`: hard links within the push arrive as hard links.
    pub hard_links: bool,
    /// `-S`: sparse files keep their holes.
    pub sparse: bool,
    /// `--devices` (or `-D`): send device nodes.
    pub devices: bool,
    /// `--specials` (or `-D`): send FIFOs and sockets.
    pub specials: bool,
    /// `-X`: extended attributes.
    pub xattrs: bool,
    /// `-A`: POSIX ACLs.
    pub acls: bool,
    /// Paths relative to the base (default `.`).
    pub paths: Vec<String>,
    /// `-i`: report every member's itemized changes in the result.
    pub itemize: bool,
    /// `--stats`: add rsync's statistics to the result.
    pub stats: bool,
    /// `--files-from`: push the session's `files add` list (rsync's `--files-from`).
    pub files_from: bool,
    /// `--release NAME` (or `rollback NAME`): push into `releases/<push-id>/` and flip the
    /// link NAME to it on every member (implies `--atomic`).
    pub release: Option<String>,
    /// `--keep-releases K`.
    pub keep_releases: Option<u32>,
    /// `rollback NAME`: flip NAME back to the release before, on every member or on none.
    pub rollback: bool,
}

/// `watch add|del|list`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchCmd {
    /// `add`, `del` or `list`.
    pub action: String,
    /// `-r`.
    pub recursive: bool,
    /// `--delete`.
    pub delete: bool,
    /// `-c`.
    pub checksum: bool,
    /// `--no-fsync`.
    pub no_fsync: bool,
    /// `--delay MS` (default 500).
    pub delay_ms: u64,
    /// `-t HOST`.
    pub targets: Vec<String>,
    /// Paths relative to the base.
    pub paths: Vec<String>,
}

/// A parsed console line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `send`, `sync`, `dsync`.
    Send(SendCmd),
    /// `md5` / `check`: compare checksums on every member.
    Check(SendCmd),
    /// `members [--json]`.
    Members {
        /// Machine-readable.
        json: bool,
    },
    /// `members forget NAME`: drop a remembered member.
    Forget(String),
    /// `status`.
    Status,
    /// `standing add|del PAT`, `standing list|clear`: the daemon's standing excludes, kept
    /// in its state directory and applied to every push it sends (`makuo exclude`).
    Standing {
        /// `add`, `del`, `list` or `clear`.
        action: String,
        /// The pattern of `add` and `del`.
        pattern: Option<String>,
    },
    /// `exclude add PAT` / `include add PAT`: append a rule to the session's list.
    RuleAdd(FilterRule),
    /// `exclude del PAT`.
    RuleDel(String),
    /// `exclude list`.
    RuleList,
    /// `exclude clear`.
    RuleClear,
    /// `filter add RULE`: append a full rsync filter rule to the session's list.
    FilterAdd(String),
    /// `files add PATH...`: append to the session's `--files-from` list.
    FilesAdd(Vec<String>),
    /// `files clear`.
    FilesClear,
    /// `watch add|del|list`.
    Watch(WatchCmd),
    /// `loglevel N`.
    Loglevel(u8),
    /// `alive`.
    Alive,
    /// `echo WORDS`.
    Echo(String),
    /// `help`.
    Help,
    /// `quit`, `exit`, `bye`.
    Quit,
    /// `password SECRET` (when the daemon has `-K`).
    Password(String),
    /// Empty line.
    Nothing,
}

/// The help text (`help`).
pub const HELP: &[&str] = &[
    "send [-n] [-r] [-c] [-t HOST]... [--delete] [--max-delete N] [--no-fsync] [--json]",
    "     [--progress] [-i] [--stats] [--files-from]",
    "     [-H] [-S] [-D] [--devices] [--specials] [-X] [-A]",
    "     [--release NAME [--keep-releases N]] [PATH...]",
    "                      push PATHs (relative to the base; default .) to every member",
    "sync [...]            send, then delete on members what the sender lacks",
    "dsync [...]           only the delete half of sync",
    "md5|check [-r] [-t HOST]... [--json] [PATH...]",
    "                      compare checksums on every member; lists PATH MEMBER per difference",
    "rollback NAME [-t HOST]... [--json]",
    "                      flip release link NAME back to its previous release, everywhere or nowhere",
    "members [--json]      live and missing members, one per line",
    "members forget NAME   stop remembering member NAME (it is no longer named failed)",
    "status                daemon state and counters",
    "exclude add|del PAT   session exclude rules (rsync patterns); include add PAT",
    "exclude list|clear    show or drop the session rules",
    "standing add|del PAT  the daemon's standing excludes (kept, apply to every push)",
    "standing list|clear   show or drop the standing excludes",
    "filter add RULE       session rule in rsync's --filter syntax (- + P R H S dir-merge clear)",
    "files add PATH...     list for send --files-from (rsync's meaning); files clear",
    "watch add [-r] [--delete] [--delay MS] [-c] [--no-fsync] [-t HOST]... PATH...",
    "                      push changes under PATH as they happen (session rules apply)",
    "watch del PATH...     stop watching; watch list: the watches, last push, lag",
    "loglevel N            0 (quiet) to 9 (debug)",
    "alive, echo WORDS, help, quit|exit|bye",
];

/// Splits a line into words; double quotes group words, backslash escapes.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(chars.next().ok_or("trailing backslash")?);
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn parse_send(words: &[String], check: bool) -> Result<SendCmd, ParseError> {
    let mut c = SendCmd::default();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let mut value = || -> Result<String, String> {
            i += 1;
            words
                .get(i)
                .cloned()
                .ok_or(format!("{} needs a value", shown(w)))
        };
        match w {
            "-n" | "--dry-run" if !check => c.dry_run = true,
            "-r" | "--recursive" => c.recursive = true,
            "-c" | "--checksum" if !check => c.checksum = true,
            "-t" | "--target" => c.targets.push(value()?),
            "--delete" if !check => c.delete = true,
            "--max-delete" if !check => {
                c.max_delete = Some(
                    value()?
                        .parse()
                        .map_err(|_| "--max-delete takes a number")?,
                )
            }
            "--json" => c.json = true,
            "--atomic" if !check => c.atomic = true,
            "--release" if !check => {
                let name = value()?;
                crate::proto::manifest::release::check_name(name.as_bytes())
                    .map_err(|e| format!("--release {}: {e}", shown(&name)))?;
                c.release = Some(name);
                c.atomic = true;
            }
            "--keep-releases" if !check => {
                c.keep_releases = Some(
                    value()?
                        .parse()
                        .ok()
                        .filter(|k| (1..=crate::proto::manifest::release::MAX_KEEP).contains(k))
                        .ok_or("--keep-releases takes 1 to 10000")?,
                )
            }
            "--progress" => c.progress = true,
            "--no-fsync" if !check => c.no_fsync = true,
            "-H" | "--hard-links" if !check => c.hard_links = true,
            "-S" | "--sparse" if !check => c.sparse = true,
            "-D" if !check => (c.devices, c.specials) = (true, true),
            "--devices" if !check => c.devices = true,
            "--specials" if !check => c.specials = true,
            "-X" | "--xattrs" if !check => c.xattrs = true,
            "-A" | "--acls" if !check => c.acls = true,
            "-i" | "--itemize-changes" if !check => c.itemize = true,
            "--stats" if !check => c.stats = true,
            "--files-from" => c.files_from = true,
            "--" => {
                c.paths.extend(words[i + 1..].iter().cloned());
                break;
            }
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(format!("unknown option {}", shown(f)).into())
            }
            p => c.paths.push(p.to_string()),
        }
        i += 1;
    }
    if c.paths.is_empty() && !c.files_from {
        c.paths.push(".".into());
        // makuosan's `md5` without a path compares the whole base (as `md5 -r`).
        c.recursive |= check;
    }
    Ok(c)
}

/// `rollback NAME [-t HOST]... [--json] [--progress]`: an atomic push of no files that flips
/// NAME back to its previous release.
fn parse_rollback(words: &[String]) -> Result<SendCmd, ParseError> {
    const USAGE: &str = "usage: rollback NAME [-t HOST]... [--json] [--progress]";
    let mut c = SendCmd {
        rollback: true,
        atomic: true,
        ..SendCmd::default()
    };
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        match w {
            "-t" | "--target" => {
                i += 1;
                c.targets
                    .push(words.get(i).cloned().ok_or("-t needs a value")?);
            }
            "--json" => c.json = true,
            "--progress" => c.progress = true,
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(format!("unknown option {}", shown(f)).into())
            }
            name if c.release.is_none() => {
                crate::proto::manifest::release::check_name(name.as_bytes())
                    .map_err(|e| format!("rollback {}: {e}", shown(name)))?;
                c.release = Some(name.to_string());
            }
            _ => return Err(USAGE.into()),
        }
        i += 1;
    }
    if c.release.is_none() {
        return Err(USAGE.into());
    }
    Ok(c)
}

fn parse_watch(words: &[String]) -> Result<WatchCmd, ParseError> {
    let mut c = WatchCmd {
        delay_ms: 500,
        ..WatchCmd::default()
    };
    let Some(action) = words.first() else {
        return Err("usage: watch add|del|list [PATH...]".into());
    };
    c.action = action.to_ascii_lowercase();
    let mut i = 1;
    while i < words.len() {
        let w = words[i].as_str();
        let mut value = || -> Result<String, String> {
            i += 1;
            words
                .get(i)
                .cloned()
                .ok_or(format!("{} needs a value", shown(w)))
        };
        match w {
            "-r" | "--recursive" => c.recursive = true,
            "--delete" => c.delete = true,
            "-c" | "--checksum" => c.checksum = true,
            "--no-fsync" => c.no_fsync = true,
            "-t" | "--target" => c.targets.push(value()?),
            "--delay" => {
                c.delay_ms = value()?
                    .parse()
                    .ok()
                    .filter(|&d| (1..=3_600_000).contains(&d))
                    .ok_or("--delay takes 1 to 3600000 (ms)")?
            }
            "--" => {
                c.paths.extend(words[i + 1..].iter().cloned());
                break;
            }
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(format!("unknown option {}", shown(f)).into())
            }
            p => c.paths.push(p.to_string()),
        }
        i += 1;
    }
    match c.action.as_str() {
        "add" | "del" if c.paths.is_empty() => {
            Err(format!("usage: watch {} PATH...", shown(&c.action)).into())
        }
        "add" | "del" | "list" => Ok(c),
        _ => Err("usage: watch add|del|list [PATH...]".into()),
    }
}

/// Parses one console line (see [`parse_line`] for raw bytes).
pub fn parse(line: &str) -> Result<Request, ParseError> {
    // The first word decides whether this is a console command at all, before any quoting
    // is looked at.
    let Some(first) = line.split_whitespace().next() else {
        return Ok(Request::Nothing);
    };
    if !COMMANDS.iter().any(|c| c.eq_ignore_ascii_case(first)) {
        return Err(ParseError::NotACommand(format!(
            "'{}' is not a console command (try help)",
            shown(first)
        )));
    }
    let words = split_words(line)?;
    let Some(cmd) = words.first() else {
        return Ok(Request::Nothing);
    };
    let rest = &words[1..];
    let one = |what: &str| -> Result<String, ParseError> {
        match rest {
            [_, p] => Ok(p.clone()),
            _ => Err(format!("usage: {what}").into()),
        }
    };
    Ok(match cmd.to_ascii_lowercase().as_str() {
        "send" => Request::Send(parse_send(rest, false)?),
        "sync" => {
            let mut c = parse_send(rest, false)?;
            c.delete = true;
            Request::Send(c)
        }
        "dsync" => {
            let mut c = parse_send(rest, false)?;
            c.delete = true;
            c.delete_only = true;
            Request::Send(c)
        }
        "md5" | "check" => Request::Check(parse_send(rest, true)?),
        "rollback" => Request::Send(parse_rollback(rest)?),
        "members"
            if rest
                .first()
                .is_some_and(|w| w.eq_ignore_ascii_case("forget")) =>
        {
            Request::Forget(one("members forget NAME")?)
        }
        "members" => Request::Members {
            json: rest.iter().any(|w| w == "--json"),
        },
        "standing" => {
            let action = rest.first().map(|w| w.to_ascii_lowercase());
            match action.as_deref() {
                Some(a @ ("add" | "del")) => Request::Standing {
                    action: a.into(),
                    pattern: Some(one("standing add|del PATTERN")?),
                },
                Some(a @ ("list" | "clear")) if rest.len() == 1 => Request::Standing {
                    action: a.into(),
                    pattern: None,
                },
                _ => return Err("usage: standing add|del PATTERN, standing list|clear".into()),
            }
        }
        "status" => Request::Status,
        "exclude" | "include" => {
            let include = cmd.eq_ignore_ascii_case("include");
            match rest.first().map(String::as_str) {
                Some("add") => Request::RuleAdd(FilterRule {
                    include,
                    pattern: one("exclude add PATTERN")?,
                }),
                Some("del") if !include => Request::RuleDel(one("exclude del PATTERN")?),
                Some("list") => Request::RuleList,
                Some("clear") => Request::RuleClear,
                _ => return Err("usage: exclude add|del|list|clear [PATTERN]".into()),
            }
        }
        "filter" => match rest {
            [a, r] if a == "add" => Request::FilterAdd(r.clone()),
            _ => return Err("usage: filter add RULE".into()),
        },
        "files" => match rest.first().map(String::as_str) {
            Some("add") if rest.len() > 1 => Request::FilesAdd(rest[1..].to_vec()),
            Some("clear") if rest.len() == 1 => Request::FilesClear,
            _ => return Err("usage: files add PATH... | files clear".into()),
        },
        "watch" => Request::Watch(parse_watch(rest)?),
        "loglevel" => match rest {
            [n] => Request::Loglevel(
                n.parse()
                    .ok()
                    .filter(|n| *n <= 9)
                    .ok_or("loglevel takes 0-9")?,
            ),
            _ => return Err("usage: loglevel N".into()),
        },
        "alive" => Request::Alive,
        "echo" => Request::Echo(rest.join(" ")),
        "help" | "?" => Request::Help,
        "quit" | "exit" | "bye" => Request::Quit,
        "password" => Request::Password(rest.join(" ")),
        other => {
            return Err(ParseError::NotACommand(format!(
                "'{}' is not a console command (try help)",
                shown(other)
            )))
        }
    })
}

/// Human lines for a push/check outcome (without the final line): itemized changes of a dry
/// run, differences of a check (`PATH MEMBER`), then the per-member table.
pub fn render(o: &Outcome, check: bool) -> Vec<String> {
    render_with(o, check, false)
}

/// As [`render`]; with `why` a check's lines say how each path differs
/// (`PATH MEMBER (missing on member)`).
pub fn render_with(o: &Outcome, check: bool, why: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if check {
        for m in &o.members {
            for (i, c) in m.changes.iter().enumerate() {
                match m.why.get(i).filter(|_| why) {
                    Some(w) => lines.push(format!("{c} {} ({w})", m.name)),
                    None => lines.push(format!("{c} {}", m.name)),
                }
            }
        }
    } else if o.dry_run {
        lines.extend(o.itemized());
    }
    for v in &o.vanished {
        lines.push(format!("file has vanished: {v}"));
    }
    lines.extend(o.table());
    // Paths and member names from the network: one line each, whatever they hold.
    lines
        .into_iter()
        .map(|l| crate::escape::text_str(&l).into_owned())
        .collect()
}

/// The final line of a check: `ok` or `error: N differ`.
pub fn check_final(o: &Outcome) -> String {
    let n: usize = o.members.iter().map(|m| m.changes.len()).sum();
    let failed = o.members.iter().filter(|m| m.result == "failed").count();
    if o.members.is_empty() {
        o.final_line()
    } else if n > 0 {
        format!("error: {n} differ")
    } else if failed > 0 {
        format!("error: {failed} member(s) failed")
    } else {
        "ok".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_makuosan_words() {
        let Request::Send(c) = parse("send -n -r -t web2 htdocs").unwrap() else {
            panic!()
        };
        assert!(c.dry_run && c.recursive && !c.delete);
        assert_eq!(c.targets, vec!["web2"]);
        assert_eq!(c.paths, vec!["htdocs"]);
        let Request::Send(c) = parse("sync -r").unwrap() else {
            panic!()
        };
        assert!(c.delete && !c.delete_only);
        assert_eq!(c.paths, vec!["."]);
        let Request::Send(c) = parse("dsync -r x").unwrap() else {
            panic!()
        };
        assert!(c.delete_only);
        assert!(matches!(parse("md5 -r").unwrap(), Request::Check(_)));
        assert_eq!(
            parse("exclude add \"*.tmp\"").unwrap(),
            Request::RuleAdd(FilterRule {
                include: false,
                pattern: "*.tmp".into()
            })
        );
        assert_eq!(parse("loglevel 7").unwrap(), Request::Loglevel(7));
        assert!(parse("loglevel 12").is_err());
        assert!(parse("frobnicate").is_err());
        assert!(parse("send --bogus").is_err());
        assert_eq!(parse("   ").unwrap(), Request::Nothing);
        assert_eq!(parse("BYE").unwrap(), Request::Quit);
        assert_eq!(
            parse("filter add \"dir-merge /.rsync-filter\"").unwrap(),
            Request::FilterAdd("dir-merge /.rsync-filter".into())
        );
        assert!(parse("filter add").is_err());
        assert_eq!(
            parse("files add a/x \"b c\"").unwrap(),
            Request::FilesAdd(vec!["a/x".into(), "b c".into()])
        );
        let Request::Send(c) = parse("send -i --stats --files-from --json").unwrap() else {
            panic!()
        };
        assert!(c.itemize && c.stats && c.files_from && c.paths.is_empty());
        let Request::Watch(w) = parse("watch add -r --delete --delay 300 -t m1 htdocs").unwrap()
        else {
            panic!()
        };
        assert!(w.recursive && w.delete && w.delay_ms == 300 && w.paths == ["htdocs"]);
        assert!(parse("watch add").is_err() && parse("watch frob").is_err());
        assert!(parse("watch add --delay 0 x").is_err());
        assert!(matches!(parse("watch list").unwrap(), Request::Watch(_)));
        assert_eq!(
            split_words(r#"a "b c" d\ e"#).unwrap(),
            vec!["a", "b c", "d e"]
        );
    }

    #[test]
    fn strict_first_word() {
        for foreign in [
            "POST / HTTP/1.1",
            "GET / HTTP/1.0",
            "Host: 127.0.0.1:5000",
            "User-Agent: curl/8.0",
            "Content-Length: 12",
            "frobnicate now",
            "\"sync\" -r .",
            "sync\u{7}",
        ] {
            assert!(
                matches!(
                    parse_line(foreign.as_bytes()),
                    Err(ParseError::NotACommand(_))
                ),
                "{foreign:?}"
            );
        }
        assert!(matches!(
            parse_line(b"sync \xff"),
            Err(ParseError::NotACommand(_))
        ));
        for usage in ["send --bogus", "loglevel 12", "echo \"open", "exclude frob"] {
            assert!(
                matches!(parse_line(usage.as_bytes()), Err(ParseError::Usage(_))),
                "{usage:?}"
            );
        }
        assert_eq!(parse_line(b"\t").unwrap(), Request::Nothing);
        assert_eq!(parse_line(b"Status").unwrap(), Request::Status);
        // What an error quotes back is short and has no control characters.
        let e = parse(&format!("{} x", "A".repeat(3000)))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 120, "{e}");
        let e = parse(&format!("send --{}", "\u{202e}".repeat(100)))
            .unwrap_err()
            .to_string();
        assert!(e.chars().count() < 120, "{e}");
    }

    fn lines_of(input: &[u8], max: usize, chunk: usize) -> Vec<Result<String, Input>> {
        struct Chunky<'a>(&'a [u8], usize);
        impl std::io::Read for Chunky<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = io::BufReader::with_capacity(7, Chunky(input, chunk));
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            match read_line(&mut r, max, &mut buf).unwrap() {
                Input::Line => out.push(Ok(String::from_utf8(buf.clone()).unwrap())),
                Input::Eof => return out,
                other => {
                    out.push(Err(other));
                    return out;
                }
            }
        }
    }

    #[test]
    fn read_line_caps_and_strips() {
        for chunk in [1, 2, 3, 5, 64] {
            assert_eq!(
                lines_of(b"a\r\nbb\n\nccc", 10, chunk),
                [
                    Ok("a".into()),
                    Ok("bb".into()),
                    Ok("".into()),
                    Ok("ccc".into())
                ]
            );
            // Exactly at the cap, with or without a CR.
            assert_eq!(
                lines_of(b"0123456789\r\n0123456789\nx", 10, chunk),
                [
                    Ok("0123456789".into()),
                    Ok("0123456789".into()),
                    Ok("x".into())
                ]
            );
            assert_eq!(
                lines_of(b"ok\n01234567890\nnever", 10, chunk),
                [Ok("ok".into()), Err(Input::TooLong)]
            );
            assert_eq!(
                lines_of(b"0123456789\r\r\n", 10, chunk),
                [Err(Input::TooLong)]
            );
            assert_eq!(lines_of(&[b'x'; 100_000], 10, chunk), [Err(Input::TooLong)]);
        }
    }
}
