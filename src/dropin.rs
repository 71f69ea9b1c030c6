//! The binary's other front doors: installed or symlinked as `makuosan` it is `makuo daemon`
//! (whose flag letters are makuosan's); as `msync` it takes msync's options and runs the
//! matching `makuo` front-end command against a daemon's console (never direct mode).
//!
//! Only argv is translated here; the work is done by the same code as `makuo …`
//! (docs/makuosan-migration.md maps every flag, console word and variable).

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{ConsoleAddr, MsyncArgs};
use crate::exit::Exit;

/// Which name the binary was started under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    /// `makuo` (or anything else).
    Makuo,
    /// `makuosan`: the daemon.
    Makuosan,
    /// `msync`: the console client.
    Msync,
}

/// The face for `argv[0]` (its file name).
pub fn face(argv0: &OsStr) -> Face {
    match Path::new(argv0).file_name().and_then(OsStr::to_str) {
        Some("makuosan") => Face::Makuosan,
        Some("msync") => Face::Msync,
        _ => Face::Makuo,
    }
}

/// What `main` should do.
#[derive(Debug)]
pub enum Door {
    /// Parse and run these `makuo` arguments.
    Makuo(Vec<OsString>),
    /// msync `-f SCRIPT`: run console lines from a file.
    Script(Script),
    /// Done already (usage printed): exit with this status.
    Exit(Exit),
}

/// msync `-f FILE`: console commands, one a line, sent to a daemon.
#[derive(Debug)]
pub struct Script {
    /// The console.
    pub console: ConsoleAddr,
    /// `-K FILE`.
    pub password_file: Option<std::path::PathBuf>,
    /// The file (`-` for standard input).
    pub file: std::path::PathBuf,
}

/// Turns the process's arguments into what to run.
pub fn front_door(argv: Vec<OsString>) -> Door {
    let Some(argv0) = argv.first().cloned() else {
        return Door::Makuo(argv);
    };
    match face(&argv0) {
        Face::Makuo => Door::Makuo(argv),
        Face::Makuosan => makuosan(argv),
        Face::Msync => match Msync::try_parse_from(&argv) {
            Ok(m) => match msync(m.0) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("msync: {e:#}");
                    Door::Exit(Exit::Error)
                }
            },
            Err(e) => {
                let _ = e.print();
                Door::Exit(if e.use_stderr() {
                    Exit::Error
                } else {
                    Exit::Ok
                })
            }
        },
    }
}

#[derive(Debug)]
struct Msync(MsyncArgs);

impl Msync {
    fn try_parse_from(argv: &[OsString]) -> Result<Msync, clap::Error> {
        if argv.len() == 1 {
            // msync with no argument at all prints its usage and fails, as the original.
            use clap::CommandFactory;
            let mut cmd = MsyncArgs::command();
            return Err(cmd.error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "nothing to do: give a PATH, -r, --members, --status, --check or -f FILE",
            ));
        }
        MsyncArgs::try_parse_from(argv).map(Msync)
    }
}

/// `makuosan ARGS` is `makuo daemon ARGS`; with no argument at all it prints its usage and
/// exits 0, as makuosan did.
fn makuosan(argv: Vec<OsString>) -> Door {
    let mut out: Vec<OsString> = vec!["makuo".into(), "daemon".into()];
    if argv.len() == 1 {
        out.push("--help".into());
    }
    out.extend(argv.into_iter().skip(1));
    Door::Makuo(out)
}

fn msync(m: MsyncArgs) -> Result<Door> {
    // msync only ever talks to a daemon: the console is always named, so makuo never falls
    // back to direct mode.
    let console = match m.target {
        Some(t) => t,
        None => crate::config::default_console()?,
    };
    if let Some(file) = m.script {
        return Ok(Door::Script(Script {
            console,
            password_file: m.password_file,
            file,
        }));
    }
    let mut a: Vec<OsString> = vec!["makuo".into()];
    let sub = if m.status {
        "status"
    } else if m.members {
        "members"
    } else if m.check {
        "check"
    } else {
        "sync"
    };
    a.push(sub.into());
    a.push("--console".into());
    a.push(console.to_string().into());
    if let Some(k) = &m.password_file {
        a.push("-K".into());
        a.push(k.into());
    }
    let verbose = m.verbose + u8::from(m.loglevel.unwrap_or(0) > 0);
    for _ in 0..verbose.min(3) {
        a.push("-v".into());
    }
    if matches!(sub, "status" | "members") {
        return Ok(Door::Makuo(a));
    }
    if m.recursive {
        a.push("-r".into());
    }
    if m.dry_run && sub == "sync" {
        a.push("-n".into());
    }
    if (m.delete || m.sync) && sub == "sync" {
        a.push("--delete".into());
    }
    for t in &m.targets {
        a.push("-t".into());
        a.push(t.into());
    }
    for p in &m.exclude {
        a.push(format!("--exclude={p}").into());
    }
    for f in &m.exclude_from {
        a.push(format!("--exclude-from={f}").into());
    }
    a.push("--".into());
    if m.paths.is_empty() {
        // msync without a path sends the whole base.
        a.push(".".into());
    }
    a.extend(m.paths.iter().map(OsString::from));
    Ok(Door::Makuo(a))
}

/// msync `-f FILE`: sends each non-blank line to the console, printing what it answers;
/// a line answered with an error makes the exit status 1 (the rest still run).
pub fn run_script(s: &Script) -> Result<Exit> {
    let input: Box<dyn BufRead> = if s.file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(&s.file).with_context(|| format!("{}", s.file.display()))?,
        ))
    };
    let mut c = crate::client::Console::connect(&s.console, s.password_file.as_deref())?;
    let mut exit = Exit::Ok;
    let mut out = std::io::stdout().lock();
    for line in input.lines() {
        let line = line.with_context(|| format!("{}", s.file.display()))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let last = c.command(line, |l| {
            let _ = writeln!(out, "{l}");
        })?;
        if last != "ok" {
            eprintln!("msync: {line}: {}", last.trim_start_matches("error: "));
            exit = Exit::Error;
        }
    }
    let _ = c.command("quit", |_| {});
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn door(v: &[&str]) -> Vec<String> {
        match front_door(args(v)) {
            Door::Makuo(a) => a.iter().map(|s| s.to_string_lossy().into_owned()).collect(),
            other => panic!("{v:?}: {other:?}"),
        }
    }

    #[test]
    fn faces_by_file_name() {
        assert_eq!(face(OsStr::new("/usr/sbin/makuosan")), Face::Makuosan);
        assert_eq!(face(OsStr::new("msync")), Face::Msync);
        assert_eq!(face(OsStr::new("./target/release/makuo")), Face::Makuo);
        assert_eq!(face(OsStr::new("msync-old")), Face::Makuo);
    }

    #[test]
    fn makuosan_is_the_daemon_with_the_same_letters() {
        assert_eq!(
            door(&[
                "/usr/sbin/makuosan",
                "-b",
                "/srv",
                "-c",
                "-l",
                "127.0.0.1",
                "-f",
                "3"
            ]),
            [
                "makuo",
                "daemon",
                "-b",
                "/srv",
                "-c",
                "-l",
                "127.0.0.1",
                "-f",
                "3"
            ]
        );
        assert_eq!(door(&["makuosan"]), ["makuo", "daemon", "--help"]);
    }

    #[test]
    fn msync_options_become_front_end_commands() {
        let c = "--console";
        assert_eq!(
            door(&["msync", "-c", "tcp:127.0.0.1:5001", "--members"]),
            ["makuo", "members", c, "127.0.0.1:5001"]
        );
        assert_eq!(
            door(&["msync", "-c", "unix:/run/m.sock", "--status"]),
            ["makuo", "status", c, "/run/m.sock"]
        );
        assert_eq!(
            door(&["msync", "-c", "tcp:h:1", "-r"]),
            ["makuo", "sync", c, "h:1", "-r", "--", "."]
        );
        assert_eq!(
            door(&[
                "msync",
                "-c",
                "tcp:h:1",
                "-rn",
                "--delete",
                "-t",
                "web1",
                "--exclude",
                "*.swp",
                "--exclude-from",
                "ex.txt",
                "-K",
                "pw",
                "-v",
                "htdocs"
            ]),
            [
                "makuo",
                "sync",
                c,
                "h:1",
                "-K",
                "pw",
                "-v",
                "-r",
                "-n",
                "--delete",
                "-t",
                "web1",
                "--exclude=*.swp",
                "--exclude-from=ex.txt",
                "--",
                "htdocs"
            ]
        );
        assert_eq!(
            door(&["msync", "-c", "tcp:h:1", "--check", "-r", "lib"]),
            ["makuo", "check", c, "h:1", "-r", "--", "lib"]
        );
        assert!(matches!(
            front_door(args(&["msync", "-c", "tcp:h:1", "-f", "cmds.txt"])),
            Door::Script(Script {
                console: ConsoleAddr::Tcp(_),
                ..
            })
        ));
        // Nothing to do, or contradictions: usage, exit 1.
        assert!(matches!(
            front_door(args(&["msync"])),
            Door::Exit(Exit::Error)
        ));
        assert!(matches!(
            front_door(args(&["msync", "--members", "--check"])),
            Door::Exit(Exit::Error)
        ));
        assert!(matches!(
            front_door(args(&["msync", "--help"])),
            Door::Exit(Exit::Ok)
        ));
    }
}
