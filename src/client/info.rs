//! `makuo members|status|exclude|loglevel`: questions to a daemon (or, for `members`, to the
//! cluster directly) whose answer is printed as it comes.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::ArgMatches;

use super::direct::{direct_node, discover};
use super::want_direct;
use super::Console;
use crate::cli::{ConsoleArgs, FrontArgs, OutputArgs};
use crate::exit::Exit;

/// The `members` lines, from the daemon's console or (direct) from the cluster itself.
fn member_lines(front: &FrontArgs, sub: &ArgMatches) -> Result<Vec<String>> {
    if !want_direct(front, sub) {
        if let Ok(mut c) = Console::connect(
            &front.console.console,
            front.console.password_file.as_deref(),
        ) {
            let mut lines = Vec::new();
            let last = c.command("members", |l| lines.push(l.to_string()))?;
            if last != "ok" {
                anyhow::bail!("members: {last}");
            }
            return Ok(lines);
        }
    }
    front.cluster.require_key()?;
    let mut node = direct_node(front, None, None)?;
    discover(&mut node, Duration::from_millis(front.discover), &[])?;
    let lines = node.engine.members().map(|m| node.member_line(m)).collect();
    node.leave();
    Ok(lines)
}

/// `makuo doctor`: per member, whether multicast reaches it and comes from it, and its path;
/// exit 1 when a member is reachable only by unicast.
pub fn doctor(front: &FrontArgs, sub: &ArgMatches) -> Result<Exit> {
    let lines = member_lines(front, sub)?;
    let field = |l: &str, k: &str| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or("-")
            .to_string()
    };
    let mut rows = vec![[
        "MEMBER".to_string(),
        "ADDRESS".to_string(),
        "TO-IT".to_string(),
        "FROM-IT".to_string(),
        "PATH".to_string(),
        "WHY".to_string(),
    ]];
    let mut unicast = 0;
    let mut json = Vec::new();
    for l in &lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        // Our own line and members known only second hand say nothing about paths.
        if w.len() < 3 || w[2] != "live" {
            continue;
        }
        let path = field(l, "path=");
        let to_it = if path == "multicast" {
            "multicast"
        } else {
            "no"
        };
        let from_it = match field(l, "from=").as_str() {
            "multicast" => "multicast",
            _ => "no",
        };
        if path == "unicast" {
            unicast += 1;
        }
        let why = field(l, "why=");
        json.push(serde_json::json!({
            "name": w[0], "address": w[1], "multicast_to": to_it == "multicast",
            "multicast_from": from_it == "multicast", "path": path, "why": why,
        }));
        rows.push([
            w[0].to_string(),
            w[1].to_string(),
            to_it.to_string(),
            from_it.to_string(),
            path,
            why,
        ]);
    }
    if front.output.json {
        println!("{}", serde_json::to_string(&json)?);
    } else {
        let w: Vec<usize> = (0..5)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            println!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:<w4$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4]
            );
        }
        if unicast > 0 {
            eprintln!("makuo doctor: {unicast} member(s) reachable only by unicast");
        }
    }
    Ok(if rows.len() == 1 {
        Exit::NoMember
    } else if unicast > 0 {
        Exit::Error
    } else {
        Exit::Ok
    })
}

/// `makuo members`.
pub fn members(front: &FrontArgs, sub: &ArgMatches) -> Result<Exit> {
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
        lines.push(node.member_line(m));
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
