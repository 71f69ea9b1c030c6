//! What a push sends to whom: the walk of the chosen paths turned into a manifest
//! ([`build_manifest`], [`selection_of`]), the targets resolved from the member table
//! ([`resolve_targets`]), and the one-line form of a member for `members`
//! ([`member_line`], [`foreign_line`]). Used by the daemon and by direct mode alike.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::proto;

/// What to push: the walk of `paths` under `base` turned into a manifest.
pub struct Selection {
    /// The manifest.
    pub manifest: proto::manifest::Manifest,
    /// Source files that vanished during the walk.
    pub vanished: u64,
    /// Paths skipped, with why (special files, unreadable).
    pub skipped: Vec<(Vec<u8>, String)>,
    /// Listed paths (`--files-from`) that could not be sent, with why (rsync's exit 23).
    pub missing: Vec<(Vec<u8>, String)>,
    /// How long walking (and hashing) took.
    pub walk_time: Duration,
    /// What the operator must hear about this selection (deletions turned off).
    pub warnings: Vec<String>,
}

impl Selection {
    /// A selection of nothing (`makuo rollback`: a push of no files).
    pub fn nothing(options: proto::manifest::PushOptions) -> Self {
        Selection {
            manifest: proto::manifest::Manifest {
                options,
                ..Default::default()
            },
            vanished: 0,
            skipped: Vec::new(),
            missing: Vec::new(),
            walk_time: Duration::ZERO,
            warnings: Vec::new(),
        }
    }
}

/// What to walk for a push.
#[derive(Clone, Copy, Debug)]
pub struct Select<'a> {
    /// Paths relative to the base (`.` for all of it), or with `files_from` rsync's list.
    pub paths: &'a [String],
    /// Descend into directories.
    pub recursive: bool,
    /// `paths` is a `--files-from` list: parents are implied, listed names are filtered
    /// by themselves, and only directories walked recursively are `--delete` scopes.
    pub files_from: bool,
    /// Filter rules in order (merge files already expanded).
    pub rules: &'a [crate::filter::RuleSpec],
}

/// Walks the selection under `base` with the filter rules and builds the manifest.
pub fn build_manifest(
    base: &std::path::Path,
    sel: &Select<'_>,
    options: proto::manifest::PushOptions,
) -> Result<Selection> {
    let started = std::time::Instant::now();
    let mut filter = crate::filter::Filter::build(sel.rules)?;
    let opts = crate::tree::WalkOptions {
        recursive: sel.recursive,
        checksum: options.checksum,
        kinds: crate::kinds::KindOptions::of(&options),
    };
    let walk = if sel.files_from {
        let list: Vec<crate::tree::Listed> = sel
            .paths
            .iter()
            .map(|p| {
                let dir_slash = p.len() > 1 && p.ends_with('/');
                crate::tree::Listed {
                    path: crate::tree::path_arg(p),
                    depth: if sel.recursive {
                        crate::tree::Depth::All
                    } else if dir_slash {
                        crate::tree::Depth::Contents
                    } else {
                        crate::tree::Depth::Itself
                    },
                }
            })
            .collect();
        crate::tree::walk_list(
            base,
            &list,
            &crate::tree::ListFilter::Name,
            &opts,
            &mut filter,
        )?
    } else {
        let paths: Vec<Vec<u8>> = sel.paths.iter().map(|p| crate::tree::path_arg(p)).collect();
        crate::tree::walk(base, &paths, &opts, &mut filter)?
    };
    let mut sel = selection_of(walk, &filter, options, started.elapsed());
    // `releases/` and release links are makuo's: they never travel.
    crate::apply::drop_owned(base, &mut sel.manifest);
    Ok(sel)
}

/// Turns a walk into a manifest carrying the filter's receiver side.
pub fn selection_of(
    walk: crate::tree::Walk,
    filter: &crate::filter::Filter,
    options: proto::manifest::PushOptions,
    walk_time: Duration,
) -> Selection {
    let mut options = options;
    let mut warnings = Vec::new();
    if walk.io_error && options.delete {
        options.delete = false;
        warnings.push("IO error encountered -- skipping file deletion".to_string());
    }
    let (rules, table) = match filter.to_manifest() {
        crate::filter::ManifestRules::Table(t) => (Vec::new(), Some(t)),
        crate::filter::ManifestRules::Simple(simple) => (simple, None),
    };
    Selection {
        manifest: proto::manifest::Manifest {
            options,
            roots: walk.roots,
            rules,
            entries: walk.entries,
            filter: table,
            // The push's place in the cluster-wide order (`apply/order.rs`).
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_millis() as u64),
        },
        vanished: walk.vanished,
        skipped: walk.skipped,
        missing: walk.missing,
        walk_time,
        warnings,
    }
}

/// Chooses the targets of a push: every live member that receives (or those named by
/// `-t`, by name or address), plus remembered members that are not live now and peers that
/// would receive but speak another protocol version, which are reported failed instead of
/// silently skipped.
///
/// A daemon restarted under the same name on the same address is a new node id, and its dead
/// incarnation stays in the member table until it expires; of such twins only the one heard
/// most recently is targeted, so a push right after a restart does not fail on the dead one.
pub fn resolve_targets<'a>(
    members: impl Iterator<Item = &'a proto::members::MemberInfo>,
    foreign: impl Iterator<Item = &'a proto::version::Foreign>,
    remembered: &[crate::state::Remembered],
    only: &[String],
) -> (Vec<u64>, Vec<crate::report::Absent>, Vec<String>) {
    let wanted =
        |name: &str, addr: &str| only.is_empty() || only.iter().any(|t| t == name || t == addr);
    let all: Vec<&proto::members::MemberInfo> = members.collect();
    // A live member that announces it does not receive (a front end's sender, a `-r` daemon)
    // is never a target, even when remembered from before.
    let senders: std::collections::BTreeSet<&str> = all
        .iter()
        .filter(|m| !m.receives() && !all.iter().any(|o| o.receives() && o.name == m.name))
        .map(|m| m.name.as_str())
        .collect();
    let receivers: Vec<&proto::members::MemberInfo> =
        all.iter().copied().filter(|m| m.receives()).collect();
    let superseded = |m: &proto::members::MemberInfo| {
        receivers.iter().any(|o| {
            o.node != m.node
                && o.name == m.name
                && o.addr.ip() == m.addr.ip()
                && (o.last_seen, o.node) > (m.last_seen, m.node)
        })
    };
    let mut live = Vec::new();
    let mut live_names = std::collections::BTreeSet::new();
    let mut found = std::collections::BTreeSet::new();
    for &m in &receivers {
        let addr = m.addr.ip().to_string();
        if superseded(m) {
            continue;
        }
        if wanted(&m.name, &addr) {
            live.push(m.node);
            found.insert(m.name.clone());
            found.insert(addr.clone());
        }
        live_names.insert(m.name.clone());
    }
    let foreign: Vec<&proto::version::Foreign> = foreign
        .filter(|f| f.receives && !f.name.is_empty() && !live_names.contains(&f.name))
        .collect();
    let mut absent = Vec::new();
    for r in remembered {
        if !live_names.contains(&r.name)
            && !senders.contains(r.name.as_str())
            && wanted(&r.name, &r.addr)
        {
            found.insert(r.name.clone());
            found.insert(r.addr.clone());
            absent.push(crate::report::Absent {
                name: r.name.clone(),
                address: r.addr.clone(),
                reason: match foreign.iter().find(|f| f.name == r.name) {
                    Some(f) => f.reason(),
                    None => format!(
                        "not answering (last seen {}s ago)",
                        crate::state::unix_now().saturating_sub(r.last_seen)
                    ),
                },
            });
        }
    }
    for f in foreign {
        let addr = f.addr.ip().to_string();
        if !found.contains(&f.name) && wanted(&f.name, &addr) {
            found.insert(f.name.clone());
            found.insert(addr.clone());
            absent.push(crate::report::Absent {
                name: f.name.clone(),
                address: addr,
                reason: f.reason(),
            });
        }
    }
    let unknown = only
        .iter()
        .filter(|t| !found.contains(*t))
        .cloned()
        .collect();
    (live, absent, unknown)
}

/// One line of `members` for a live member: `NAME ADDR live|live-indirect VERSION proto=P
/// last-push=ID,ORIGIN,TIME,DIGEST` (the name is the first word; VERSION is its software
/// version, P the highest protocol version it speaks, `-` when it was only passed along).
pub fn member_line(m: &proto::members::MemberInfo) -> String {
    // Name, version and info come from the member's heartbeats: escaped, so that one line
    // stays one line whatever they hold, and name and version one word each (a space in a
    // name would fake the other columns).
    let info = if m.info.is_empty() {
        "-".to_string()
    } else {
        crate::escape::text(&m.info).replace(' ', ",")
    };
    format!(
        "{} {} {} {} proto={} last-push={info}",
        crate::escape::word_str(&m.name),
        m.addr.ip(),
        if m.direct { "live" } else { "live-indirect" },
        if m.version.is_empty() {
            "-".into()
        } else {
            crate::escape::word_str(&m.version)
        },
        if m.proto.1 == 0 {
            "-".to_string()
        } else {
            m.proto.1.to_string()
        },
    )
}

/// One line of `members` for a peer refused for its protocol version: `NAME ADDR incompatible
/// VERSION proto=P last-heard=Ns-ago` (`?` for a name not learned yet; escaped like a
/// member's, since they come from the peer).
pub fn foreign_line(f: &proto::version::Foreign, now: Instant) -> String {
    format!(
        "{} {} incompatible {} proto={} last-heard={}s-ago",
        if f.name.is_empty() {
            "?".into()
        } else {
            crate::escape::word_str(&f.name)
        },
        f.addr.ip(),
        if f.software.is_empty() {
            "-".into()
        } else {
            crate::escape::word_str(&f.software)
        },
        f.proto.map_or(f.wire_version, |p| p.1),
        now.saturating_duration_since(f.last_seen).as_secs()
    )
}
