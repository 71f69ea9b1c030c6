//! Per-member results of a push or check: built from the engine's report, rendered as
//! rsync-style itemized lines, a per-member table or one JSON document, and folded into
//! the exit status (`exit.rs`). A member that did not finish can never end in exit 0.

use serde::{Deserialize, Serialize};

use crate::exit::Exit;
use crate::proto::manifest::{itemize, itemize_suffix, needs_data, Manifest};
use crate::proto::storage::show;
use crate::proto::PushReport;

/// One member's result.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberOutcome {
    /// Member name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// `ok` or `failed`.
    pub result: String,
    /// Entries applied (or, in a dry run / check, that differ).
    pub files: u64,
    /// Bytes written (or, in a dry run, that would be sent).
    pub bytes: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// Paths deleted (or that would be).
    pub deleted: u64,
    /// Itemized changes (`>f.st...... path`, `*deleting path`): dry runs and checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
}

/// The whole outcome.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    /// Per member.
    pub members: Vec<MemberOutcome>,
    /// Files (entries) in the push.
    pub files: u64,
    /// Bytes of file contents in the push.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
    /// Exit status.
    pub exit: u8,
    /// Source paths that vanished or changed during the push.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vanished: Vec<String>,
    /// `--max-delete` vetoed deletions.
    #[serde(default)]
    pub max_delete_hit: bool,
    /// A run-level error (no member answered, timeout...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Dry run or check: nothing was changed.
    #[serde(default)]
    pub dry_run: bool,
}

/// A member the push should have reached but that is not live (remembered in the state dir).
#[derive(Clone, Debug)]
pub struct Absent {
    /// Name.
    pub name: String,
    /// Last known address.
    pub address: String,
    /// Why it counts as failed.
    pub reason: String,
}

impl Absent {
    /// Its row: failed, with the reason.
    pub fn outcome(&self) -> MemberOutcome {
        MemberOutcome {
            name: self.name.clone(),
            address: self.address.clone(),
            result: "failed".into(),
            error: Some(self.reason.clone()),
            ..Default::default()
        }
    }
}

impl Outcome {
    /// Outcome of a check (a dry run in checksum mode): a member "differs" when any file's
    /// contents (or existence, type, size, link text) differ; `changes` lists those paths.
    pub fn from_check(m: &Manifest, r: &PushReport, absent: &[Absent], seconds: f64) -> Self {
        use crate::proto::manifest::change;
        let mut o = Self::from_report(m, r, absent, seconds);
        for (mo, mr) in o.members.iter_mut().zip(r.members.iter()) {
            let diffs: Vec<String> = mr
                .changes
                .iter()
                .filter(|(_, f)| {
                    f & (change::MISSING | change::TYPE | change::SIZE | change::SUM | change::LINK)
                        != 0
                })
                .map(|(i, _)| show(&m.entries[*i as usize].path))
                .collect();
            mo.files = diffs.len() as u64;
            mo.bytes = 0;
            if mo.result == "ok" && !diffs.is_empty() {
                mo.result = "differ".into();
            }
            mo.changes = diffs;
        }
        o.dry_run = true;
        o.exit = o.compute_exit().code();
        o
    }

    /// Builds the outcome of a push from the engine's report.
    pub fn from_report(m: &Manifest, r: &PushReport, absent: &[Absent], seconds: f64) -> Self {
        let dry = m.options.dry_run;
        let checksum = m.options.checksum;
        let mut members: Vec<MemberOutcome> = r
            .members
            .iter()
            .map(|mr| {
                let mut changes = Vec::new();
                if dry {
                    for (i, f) in &mr.changes {
                        let e = &m.entries[*i as usize];
                        let mut p = show(&e.path);
                        if e.kind == crate::proto::manifest::EntryKind::Dir {
                            p.push('/');
                        }
                        if let Some((arrow, to)) = itemize_suffix(e, *f) {
                            p.push_str(arrow);
                            p.push_str(&show(to));
                        }
                        changes.push(format!("{} {}", itemize(e, *f), p));
                    }
                    for d in &mr.deletions {
                        changes.push(format!("*deleting {}", show(d)));
                    }
                }
                let (files, bytes, deleted) = if dry {
                    let bytes = mr
                        .changes
                        .iter()
                        .filter(|(i, f)| needs_data(m.entries[*i as usize].kind, *f, checksum))
                        .map(|(i, _)| m.entries[*i as usize].payload_len())
                        .sum();
                    (mr.changes.len() as u64, bytes, mr.would_delete)
                } else {
                    (mr.files as u64, mr.bytes, mr.deleted as u64)
                };
                MemberOutcome {
                    name: mr.name.clone(),
                    address: mr.addr.ip().to_string(),
                    result: if mr.ok { "ok".into() } else { "failed".into() },
                    files,
                    bytes,
                    error: mr.error.clone(),
                    deleted,
                    changes,
                }
            })
            .collect();
        members.extend(absent.iter().map(Absent::outcome));
        let mut o = Outcome {
            members,
            files: m.entries.len() as u64,
            bytes: m.total_bytes(),
            seconds,
            exit: 0,
            vanished: r
                .vanished
                .iter()
                .map(|&i| show(&m.entries[i as usize].path))
                .collect(),
            max_delete_hit: r.max_delete_hit,
            error: None,
            dry_run: dry,
        };
        o.exit = o.compute_exit().code();
        o
    }

    /// An outcome that failed before any member could be asked.
    pub fn failed(exit: Exit, error: String, seconds: f64) -> Self {
        Outcome {
            exit: exit.code(),
            error: Some(error),
            seconds,
            ..Default::default()
        }
    }

    /// The exit status this outcome deserves (see `exit.rs`).
    pub fn compute_exit(&self) -> Exit {
        if self.error.is_some() && self.members.is_empty() {
            return Exit::NoMember;
        }
        if self.members.is_empty() {
            return Exit::NoMember;
        }
        if self.members.iter().any(|m| m.result != "ok") {
            return Exit::Partial;
        }
        if self.max_delete_hit {
            return Exit::MaxDelete;
        }
        if !self.vanished.is_empty() {
            return Exit::Vanished;
        }
        Exit::Ok
    }

    /// Itemized lines for a dry run: each change once, with the members it applies to when
    /// not all of them.
    pub fn itemized(&self) -> Vec<String> {
        let mut seen: Vec<(String, Vec<String>)> = Vec::new();
        for m in &self.members {
            for c in &m.changes {
                match seen.iter_mut().find(|(l, _)| l == c) {
                    Some((_, who)) => who.push(m.name.clone()),
                    None => seen.push((c.clone(), vec![m.name.clone()])),
                }
            }
        }
        let all = self.members.iter().filter(|m| m.result == "ok").count();
        seen.into_iter()
            .map(|(l, who)| {
                let l = if who.len() >= all {
                    l
                } else {
                    format!("{l}  [{}]", who.join(","))
                };
                crate::escape::text_str(&l).into_owned()
            })
            .collect()
    }

    /// The per-member table (the last lines of human output).
    pub fn table(&self) -> Vec<String> {
        let mut rows = vec![[
            "MEMBER".to_string(),
            "ADDRESS".to_string(),
            "FILES".to_string(),
            "BYTES".to_string(),
            "RESULT".to_string(),
        ]];
        for m in &self.members {
            let result = match &m.error {
                Some(e) if m.result != "ok" => format!("{}: {e}", m.result),
                _ => m.result.clone(),
            };
            let esc = |s: &str| crate::escape::text_str(s).into_owned();
            rows.push([
                esc(&m.name),
                esc(&m.address),
                m.files.to_string(),
                m.bytes.to_string(),
                esc(&result),
            ]);
        }
        let w: Vec<usize> = (0..4)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        rows.iter()
            .map(|r| {
                format!(
                    "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {}",
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    w0 = w[0],
                    w1 = w[1],
                    w2 = w[2],
                    w3 = w[3]
                )
            })
            .collect()
    }

    /// The final console line: `ok` or `error: REASON` (names and reasons escaped).
    pub fn final_line(&self) -> String {
        crate::escape::text_str(&self.final_line_raw()).into_owned()
    }

    fn final_line_raw(&self) -> String {
        let failed: Vec<&str> = self
            .members
            .iter()
            .filter(|m| m.result != "ok")
            .map(|m| m.name.as_str())
            .collect();
        match Exit::from_code(self.exit) {
            Exit::Ok => "ok".into(),
            Exit::Partial => format!(
                "error: {} member(s) failed: {}",
                failed.len(),
                failed.join(", ")
            ),
            Exit::MaxDelete => "error: --max-delete exceeded; nothing was deleted".into(),
            Exit::Vanished => format!(
                "error: {} source file(s) vanished during the push",
                self.vanished.len()
            ),
            Exit::NoMember => format!(
                "error: {}",
                self.error.as_deref().unwrap_or("no member answered")
            ),
            Exit::Timeout => "error: timed out".into(),
            Exit::Error => format!("error: {}", self.error.as_deref().unwrap_or("failed")),
        }
    }
}
