//! Receiver-side protection the sender cannot override: the daemon's `--protect` patterns
//! (paths a push never writes or deletes on this member) and its `--max-delete` limit (a
//! push that would delete more here is refused before anything is staged).
//!
//! A path is protected when a pattern matches it or any directory above it (rsync's rule:
//! an excluded directory takes its contents along). Protected entries that differ are
//! reported to the sender with the single change flag [`change::PROTECTED`], so the sender
//! sends nothing for them, `check` lists them as protected rather than different, and the
//! push's result names them; protected paths are never deletion candidates, and a tree
//! removal spares them.

use anyhow::{Context as _, Result};

use crate::filter::{Filter, RuleSpec};
use crate::proto::manifest::{change, EntryKind, Manifest};
use crate::proto::storage::{Inspection, MAX_DELETE_REFUSAL};

/// The daemon's `--protect` patterns, compiled.
#[derive(Clone, Debug)]
pub struct Protection {
    filter: Filter,
    patterns: Vec<String>,
}

impl Protection {
    /// Compiles rsync patterns (`config/**`, `*.local`, `/secrets/`): each is a receiver-side
    /// protect rule (`P PATTERN`). `None` when there are none.
    pub fn new(patterns: &[String]) -> Result<Option<Self>> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let specs: Vec<RuleSpec> = patterns
            .iter()
            .map(|p| RuleSpec::Rule(format!("P {p}")))
            .collect();
        let filter = Filter::build(&specs).context("--protect")?;
        Ok(Some(Self {
            filter,
            patterns: patterns.to_vec(),
        }))
    }

    /// The patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `rel` (relative, `/`-separated; `is_dir` for a directory) or a directory
    /// above it is protected.
    pub fn protects(&self, rel: &[u8], is_dir: bool) -> bool {
        if rel == b"." || rel.is_empty() {
            return false;
        }
        let mut end = 0;
        while let Some(p) = rel[end..].iter().position(|&b| b == b'/') {
            end += p;
            if self.filter.protected(&rel[..end], true) {
                return true;
            }
            end += 1;
        }
        self.filter.protected(rel, is_dir)
    }
}

/// Marks the inspection's protected entries (those that differ) as [`change::PROTECTED`]
/// alone, and refuses the push when it would delete more than `max_delete` paths here.
/// Returns how many entries were marked.
pub(super) fn guard(
    m: &Manifest,
    insp: &mut Inspection,
    protect: Option<&Protection>,
    max_delete: Option<u64>,
) -> usize {
    let mut marked = 0;
    if let Some(p) = protect {
        for (e, f) in m.entries.iter().zip(insp.flags.iter_mut()) {
            if *f != 0 && p.protects(m.sender_path(&e.path), e.kind == EntryKind::Dir) {
                *f = change::PROTECTED;
                marked += 1;
            }
        }
    }
    if let Some(max) = max_delete {
        let n = insp.deletions.len() as u64;
        if n > max {
            insp.refused = Some(format!(
                "{MAX_DELETE_REFUSAL} ({max}): the push would delete {n} paths here"
            ));
        }
    }
    marked
}
