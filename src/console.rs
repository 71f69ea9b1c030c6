//! The daemon's control console: makuosan's words, one command a line, over TCP
//! (127.0.0.1:5000 by default, `telnet`-able) or a unix socket.
//!
//! This module parses command lines into [`Request`]s and renders results into lines. Every
//! command streams progress lines and ends with exactly one final line: `ok` or
//! `error: REASON`. The daemon (`daemon.rs`) owns the sockets and sessions.

use crate::proto::manifest::FilterRule;
use crate::report::Outcome;

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
    /// `--json`: end with one `result {json}` line.
    pub json: bool,
    /// `--no-fsync`: members skip the durability step for this push.
    pub no_fsync: bool,
    /// Paths relative to the base (default `.`).
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
    /// `status`.
    Status,
    /// `exclude add PAT` / `include add PAT`: append a rule to the session's list.
    RuleAdd(FilterRule),
    /// `exclude del PAT`.
    RuleDel(String),
    /// `exclude list`.
    RuleList,
    /// `exclude clear`.
    RuleClear,
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
    "send [-n] [-r] [-c] [-t HOST]... [--delete] [--max-delete N] [--no-fsync] [--json] [PATH...]",
    "                      push PATHs (relative to the base; default .) to every member",
    "sync [...]            send, then delete on members what the sender lacks",
    "dsync [...]           only the delete half of sync",
    "md5|check [-r] [-t HOST]... [--json] [PATH...]",
    "                      compare checksums on every member; lists PATH MEMBER per difference",
    "members [--json]      live and missing members, one per line",
    "status                daemon state and counters",
    "exclude add|del PAT   session exclude rules (rsync patterns); include add PAT",
    "exclude list|clear    show or drop the session rules",
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

fn parse_send(words: &[String], check: bool) -> Result<SendCmd, String> {
    let mut c = SendCmd::default();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let mut value = || -> Result<String, String> {
            i += 1;
            words.get(i).cloned().ok_or(format!("{w} needs a value"))
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
            "--no-fsync" if !check => c.no_fsync = true,
            "--" => {
                c.paths.extend(words[i + 1..].iter().cloned());
                break;
            }
            f if f.starts_with('-') && f.len() > 1 => return Err(format!("unknown option {f}")),
            p => c.paths.push(p.to_string()),
        }
        i += 1;
    }
    if c.paths.is_empty() {
        c.paths.push(".".into());
    }
    Ok(c)
}

/// Parses one console line.
pub fn parse(line: &str) -> Result<Request, String> {
    let words = split_words(line)?;
    let Some(cmd) = words.first() else {
        return Ok(Request::Nothing);
    };
    let rest = &words[1..];
    let one = |what: &str| -> Result<String, String> {
        match rest {
            [_, p] => Ok(p.clone()),
            _ => Err(format!("usage: {what}")),
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
        "members" => Request::Members {
            json: rest.iter().any(|w| w == "--json"),
        },
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
        other => return Err(format!("unknown command '{other}' (try help)")),
    })
}

/// Human lines for a push/check outcome (without the final line): itemized changes of a dry
/// run, differences of a check (`PATH MEMBER`), then the per-member table.
pub fn render(o: &Outcome, check: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if check {
        for m in &o.members {
            for c in &m.changes {
                lines.push(format!("{c} {}", m.name));
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
            split_words(r#"a "b c" d\ e"#).unwrap(),
            vec!["a", "b c", "d e"]
        );
    }
}
