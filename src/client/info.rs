//! `makuo members|status|exclude|loglevel`: questions to a daemon (or, for `members`, to the
//! cluster directly) whose answer is printed as it comes.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::ArgMatches;

use super::direct::{direct_node, discover};
use super::want_direct;
use super::Console;
use crate::cli::{ConsoleArgs, FrontArgs, MembersArgs, OutputArgs};
use crate::exit::Exit;

/// `makuo members`.
pub fn members(args: &MembersArgs, sub: &ArgMatches) -> Result<Exit> {
    let front = &args.front;
    if let Some(name) = &args.forget {
        let mut c = Console::connect(
            &front.console.console,
            front.console.password_file.as_deref(),
        )?;
        return simple(
            &mut c,
            &format!("members forget {}", super::quote(name)),
            &front.output,
        );
    }
    if !want_direct(front, sub) {
        match Console::connect(
            &front.console.console,
            front.console.password_file.as_deref(),
        ) {
            Ok(mut c) => return simple(&mut c, "members", &front.output),
            Err(e) if e.is::<crate::console_trust::Untrusted>() => return Err(e),
            Err(_) => {}
        }
    }
    front.cluster.require_key()?;
    let mut node = direct_node(front, None, None)?;
    discover(&mut node, Duration::from_millis(front.discover), &[])?;
    let mut lines = Vec::new();
    for m in node.engine.members() {
        lines.push(crate::node::member_line(m));
    }
    for f in node.engine.foreign() {
        lines.push(crate::node::foreign_line(f, Instant::now()));
    }
    node.leave();
    if front.output.json {
        println!("{}", serde_json::to_string(&lines)?);
    } else {
        for l in &lines {
            println!("{l}");
        }
    }
    Ok(if lines.is_empty() {
        Exit::NoMember
    } else {
        Exit::Ok
    })
}

pub(super) fn simple(c: &mut Console, cmd: &str, out: &OutputArgs) -> Result<Exit> {
    let mut lines = Vec::new();
    let last = c.command(cmd, |l| lines.push(l.to_string()))?;
    if out.json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({"lines": lines, "result": last}))?
        );
    } else {
        for l in &lines {
            println!("{l}");
        }
    }
    let _ = c.command("quit", |_| {});
    if last == "ok" {
        Ok(Exit::Ok)
    } else {
        eprintln!("makuo: {}", last.trim_start_matches("error: "));
        Ok(Exit::Error)
    }
}

/// `makuo status` (daemon only).
pub fn status(front: &FrontArgs) -> Result<Exit> {
    let mut c = Console::connect(
        &front.console.console,
        front.console.password_file.as_deref(),
    )?;
    simple(&mut c, "status", &front.output)
}

/// `makuo exclude ...` and `makuo loglevel N` (daemon only): forwards the console words.
pub fn console_words(console: &ConsoleArgs, words: &str, out: &OutputArgs) -> Result<Exit> {
    let mut c = Console::connect(&console.console, console.password_file.as_deref())?;
    simple(&mut c, words, out)
}
