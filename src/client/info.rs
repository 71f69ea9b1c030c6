//! `makuo members|status|exclude|loglevel`: questions to a daemon (or, for `members`, to the
//! cluster directly) whose answer is printed as it comes.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::ArgMatches;

use super::direct::{direct_node, discover};
use super::want_direct;
use super::Console;
use crate::cli::{ConsoleArgs, FrontArgs, MembersArgs, OutputArgs, StatusArgs};
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
    let mut rows = vec![[
        "MEMBER", "ADDRESS", "TO-IT", "FROM-IT", "PATH", "RTT", "LOSS", "WHY", "VIA",
    ]
    .map(String::from)];
    let mut unicast = 0;
    let mut json = Vec::new();
    for m in lines.iter().filter_map(|l| parse_member(l)) {
        // Our own line and members known only second hand say nothing about paths.
        if m.state != "live" {
            continue;
        }
        let path = m.path.clone().unwrap_or_else(|| "-".into());
        let to_it = path == "multicast";
        let from_it = m.from.as_deref() == Some("multicast");
        if path == "unicast" {
            unicast += 1;
        }
        let why = m.why.clone().unwrap_or_else(|| "-".into());
        let yes = |b: bool| if b { "multicast" } else { "no" }.to_string();
        json.push(serde_json::json!({
            "name": m.name, "address": m.address, "multicast_to": to_it,
            "multicast_from": from_it, "path": path, "why": why,
            "rtt_ms": m.rtt_ms, "loss": m.loss, "via": m.via,
        }));
        rows.push([
            crate::escape::word_str(&m.name).into_owned(),
            m.address.clone(),
            yes(to_it),
            yes(from_it),
            path,
            m.rtt_ms.map_or("-".into(), |r| format!("{r:.2}ms")),
            m.loss.map_or("-".into(), |l| format!("{:.1}%", l * 100.0)),
            why,
            m.via
                .as_deref()
                .map_or("-".into(), |v| crate::escape::word_str(v).into_owned()),
        ]);
    }
    if front.output.json {
        println!("{}", serde_json::to_string(&json)?);
    } else {
        let w: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                if c + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  ", width = w[c]));
                }
            }
            println!("{}", line.trim_end());
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
            Ok(mut c) => {
                let mut lines = Vec::new();
                let last = c.command("members", |l| lines.push(l.to_string()))?;
                let _ = c.command("quit", |_| {});
                if last != "ok" {
                    eprintln!("makuo: {}", last.trim_start_matches("error: "));
                    return Ok(Exit::Error);
                }
                print_members(&lines, &front.output)?;
                return Ok(Exit::Ok);
            }
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
    print_members(&lines, &front.output)?;
    Ok(if lines.is_empty() {
        Exit::NoMember
    } else {
        Exit::Ok
    })
}

/// One member as `members` shows it, parsed from the console's line (`NAME ADDR STATE
/// [VERSION] KEY=VALUE...`).
#[derive(Debug, serde::Serialize)]
struct MemberRow {
    name: String,
    address: String,
    /// `self`, `live`, `live-indirect`, `missing` or `incompatible`.
    state: String,
    version: Option<String>,
    proto: Option<u32>,
    /// The last push it applied.
    last_push: Option<LastPushRow>,
    /// Seconds since it was last heard (missing and incompatible members).
    last_seen_secs_ago: Option<u64>,
    /// How pushes reach it: `multicast`, or `unicast` copies (it does not hear the group).
    path: Option<String>,
    /// How its datagrams reach us: `multicast` or `unicast`.
    from: Option<String>,
    /// Why the path is unicast.
    why: Option<String>,
    /// Round-trip time of the last push to it, ms (when one was measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_ms: Option<f64>,
    /// Share of its heartbeats lost on the way to us, 0..1 (once a window was counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    loss: Option<f64>,
    /// With `--relay`: the relay that forwards our pushes to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<String>,
}

#[derive(Debug, serde::Serialize)]
struct LastPushRow {
    id: String,
    origin: String,
    /// Unix seconds.
    time: u64,
    digest: String,
}

fn unescaped(s: &str) -> String {
    crate::escape::exact(&crate::escape::unescape(s)).into_owned()
}

fn parse_member(l: &str) -> Option<MemberRow> {
    let w: Vec<&str> = l.split_whitespace().collect();
    // A name may hold spaces (even a forged "NAME ADDR live"): the address and state are the
    // last such pair of words, which the daemon writes after the name.
    const STATES: [&str; 5] = ["self", "live", "live-indirect", "missing", "incompatible"];
    let at = (1..w.len().saturating_sub(1))
        .rev()
        .find(|&i| w[i].parse::<std::net::IpAddr>().is_ok() && STATES.contains(&w[i + 1]))?;
    let (address, state) = (w[at], w[at + 1]);
    let name = w[..at].join(" ");
    let w = &w[at..];
    let mut row = MemberRow {
        name: unescaped(&name),
        address: address.to_string(),
        state: state.to_string(),
        version: None,
        proto: None,
        last_push: None,
        last_seen_secs_ago: None,
        path: None,
        from: None,
        why: None,
        rtt_ms: None,
        loss: None,
        via: None,
    };
    for word in &w[2..] {
        match word.split_once('=') {
            None if *word != "-" => row.version = Some(unescaped(word)),
            None => {}
            Some(("proto", p)) => row.proto = p.parse().ok(),
            Some(("last-push", v)) => {
                let f: Vec<&str> = v.split(',').collect();
                if let [id, origin, time, digest, ..] = f[..] {
                    row.last_push = Some(LastPushRow {
                        id: id.into(),
                        origin: unescaped(origin),
                        time: time.parse().unwrap_or(0),
                        digest: digest.into(),
                    });
                }
            }
            Some(("path", v)) => row.path = Some(v.to_string()),
            Some(("from", v)) => row.from = Some(v.to_string()),
            Some(("why", v)) => row.why = Some(unescaped(v)),
            Some(("via", v)) => row.via = Some(unescaped(v)),
            Some(("rtt", v)) => row.rtt_ms = v.trim_end_matches("ms").parse().ok(),
            Some(("loss", v)) => {
                row.loss = v
                    .trim_end_matches('%')
                    .parse::<f64>()
                    .ok()
                    .map(|p| p / 100.0)
            }
            Some(("last-seen" | "last-heard", v)) => {
                row.last_seen_secs_ago = v.trim_end_matches("s-ago").parse().ok();
            }
            Some(_) => {}
        }
    }
    Some(row)
}

/// `3s`, `4m`, `2h05m`, `3d04h`.
pub(crate) fn human_secs(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Prints the members, this node first and then by name: a table with a header, or one JSON
/// document `{"members":[...]}`.
fn print_members(lines: &[String], out: &OutputArgs) -> Result<()> {
    let mut rows: Vec<MemberRow> = lines.iter().filter_map(|l| parse_member(l)).collect();
    if rows.is_empty() && !out.json {
        return Ok(());
    }
    rows.sort_by(|a, b| {
        (a.state != "self", &a.name, &a.address).cmp(&(b.state != "self", &b.name, &b.address))
    });
    if out.json {
        println!("{}", serde_json::json!({ "members": rows }));
        return Ok(());
    }
    let now = crate::state::unix_now();
    let esc = |s: &str| crate::escape::text_str(s).into_owned();
    let mut table: Vec<[String; 7]> = vec![[
        "MEMBER".to_string(),
        "ADDRESS".into(),
        "STATE".into(),
        "VERSION".into(),
        "PROTO".into(),
        "PATH".into(),
        "LAST PUSH".into(),
    ]];
    for r in &rows {
        let last = match (&r.last_push, r.last_seen_secs_ago) {
            (Some(p), _) => format!(
                "{} ago from {} (digest {})",
                human_secs(now.saturating_sub(p.time)),
                esc(&p.origin),
                &p.digest[..p.digest.len().min(12)]
            ),
            (None, Some(s)) => format!("- (last heard {} ago)", human_secs(s)),
            (None, None) => "-".into(),
        };
        table.push([
            // One word, as the console writes it (spaces too are escaped).
            crate::escape::word_str(&r.name).into_owned(),
            r.address.clone(),
            r.state.clone(),
            r.version.as_deref().map_or("-".into(), esc),
            r.proto.map_or("-".into(), |p| p.to_string()),
            match (&r.path, &r.why, &r.via) {
                (Some(p), Some(w), Some(v)) => format!("{p} ({}, via {})", esc(w), esc(v)),
                (Some(p), Some(w), None) => format!("{p} ({})", esc(w)),
                (Some(p), None, Some(v)) => format!("{p} (via {})", esc(v)),
                (Some(p), None, None) => p.clone(),
                (None, ..) => "-".into(),
            },
            last,
        ]);
    }
    let w: Vec<usize> = (0..6)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in &table {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:<w4$}  {:<w5$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
            w5 = w[5]
        );
    }
    Ok(())
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

/// `makuo status` (daemon only): a header and the daemon's lines, or one JSON document of
/// objects (`pid`, `base`, `uptime_secs`, `version`, `transfers`, `counters`).
pub fn status(front: &StatusArgs) -> Result<Exit> {
    let mut c = Console::connect(
        &front.console.console,
        front.console.password_file.as_deref(),
    )?;
    let mut lines = Vec::new();
    let last = c.command("status", |l| lines.push(l.to_string()))?;
    let _ = c.command("quit", |_| {});
    if last != "ok" {
        eprintln!("makuo: {}", last.trim_start_matches("error: "));
        return Ok(Exit::Error);
    }
    let get = |k: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(' ')))
    };
    if front.output.json {
        let mut counters = serde_json::Map::new();
        let mut doc = serde_json::Map::new();
        for l in &lines {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            let w: Vec<&str> = v.split_whitespace().collect();
            let value = match k {
                "pid" | "uptime" | "members" => {
                    serde_json::Value::from(v.trim_end_matches('s').parse::<u64>().unwrap_or(0))
                }
                "name" | "base" | "last-push" | "standing-exclude" => {
                    serde_json::Value::from(unescaped(v))
                }
                _ if w.len() % 2 == 0 && w.chunks(2).all(|p| p[1].parse::<u64>().is_ok()) => w
                    .chunks(2)
                    .map(|p| {
                        (
                            p[0].to_string(),
                            serde_json::Value::from(p[1].parse::<u64>().unwrap_or(0)),
                        )
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
                _ => serde_json::Value::from(v),
            };
            match k {
                "pid" | "base" | "version" | "name" | "node" | "members" | "last-push" => {
                    doc.insert(k.replace('-', "_"), value);
                }
                "uptime" => {
                    doc.insert("uptime_secs".into(), value);
                }
                "transfers" => {
                    doc.insert("transfers".into(), value);
                }
                "unfinished-commit" => {
                    // `push=ID origin=NAME state=ready since=UNIX journal=yes`.
                    let o: serde_json::Map<_, _> = w
                        .iter()
                        .filter_map(|p| p.split_once('='))
                        .map(|(k, v)| {
                            let v = match v.parse::<u64>() {
                                Ok(n) if k == "since" => serde_json::Value::from(n),
                                _ => serde_json::Value::from(unescaped(v)),
                            };
                            (k.to_string(), v)
                        })
                        .collect();
                    if let Some(a) = doc
                        .entry("unfinished_commits")
                        .or_insert_with(|| serde_json::Value::Array(Vec::new()))
                        .as_array_mut()
                    {
                        a.push(o.into());
                    }
                }
                "behind" => {
                    // `NAME missed=ID origin=NAME at=UNIX last=ID|-`.
                    let mut o = serde_json::Map::new();
                    if let Some(n) = w.first() {
                        o.insert("name".into(), unescaped(n).into());
                    }
                    for (k, v) in w.iter().skip(1).filter_map(|p| p.split_once('=')) {
                        let v = match v.parse::<u64>() {
                            Ok(n) if k == "at" => serde_json::Value::from(n),
                            _ if k == "last" && v == "-" => serde_json::Value::Null,
                            _ => serde_json::Value::from(unescaped(v)),
                        };
                        o.insert(k.to_string(), v);
                    }
                    if let Some(a) = doc
                        .entry("behind")
                        .or_insert_with(|| serde_json::Value::Array(Vec::new()))
                        .as_array_mut()
                    {
                        a.push(o.into());
                    }
                }
                "behind-fix" => {
                    doc.insert("behind_fix".into(), w.join(" ").into());
                }
                "standing-exclude" => {
                    if let Some(a) = doc
                        .entry("standing_excludes")
                        .or_insert_with(|| serde_json::Value::Array(Vec::new()))
                        .as_array_mut()
                    {
                        a.push(value);
                    }
                }
                _ => {
                    counters.insert(k.to_string(), value);
                }
            }
        }
        doc.entry("unfinished_commits")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        doc.entry("behind")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        doc.insert("counters".into(), counters.into());
        println!("{}", serde_json::Value::Object(doc));
        return Ok(Exit::Ok);
    }
    println!(
        "makuo daemon {} (pid {}, up {}, version {}), base {}",
        get("name").unwrap_or("?"),
        get("pid").unwrap_or("?"),
        get("uptime")
            .and_then(|u| u.trim_end_matches('s').parse().ok())
            .map_or("?".into(), human_secs),
        get("version").unwrap_or("?"),
        get("base").unwrap_or("?"),
    );
    for l in &lines {
        println!("{l}");
    }
    Ok(Exit::Ok)
}

/// `makuo exclude ...` and `makuo loglevel N` (daemon only): forwards the console words.
pub fn console_words(console: &ConsoleArgs, words: &str, out: &OutputArgs) -> Result<Exit> {
    let mut c = Console::connect(&console.console, console.password_file.as_deref())?;
    simple(&mut c, words, out)
}
