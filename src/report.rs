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
    /// It could not keep `--min-rate` and left the group's pace (why): it was served after
    /// the others (its result says whether that finished it, or it was too slow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_pace: Option<String>,
    /// A check: for each of `changes`, how that path differs ([`CHECK_CONTENT`],
    /// [`CHECK_KIND`], [`CHECK_MISSING`] or [`CHECK_EXTRA`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub why: Vec<String>,
    /// Paths that differ but that this member protects (its daemon's `--protect`): neither
    /// written nor deleted there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<String>,
    /// How the push reached it: `multicast`, or `unicast` (copies to a member that does not
    /// hear the group, or `--peer` without multicast); the member's path when the push ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Paths of the entries a member reported as protected ([`change::PROTECTED`]).
///
/// [`change::PROTECTED`]: crate::proto::manifest::change::PROTECTED
fn protected_paths(
    m: &Manifest,
    changes: &[(u32, crate::proto::manifest::change::Flags)],
) -> Vec<String> {
    use crate::proto::manifest::change;
    changes
        .iter()
        .filter(|(_, f)| f & change::PROTECTED != 0)
        .map(|(i, _)| show(&m.entries[*i as usize].path))
        .collect()
}

/// Whether a member's failure is its own `--max-delete` refusing the push.
fn refused_max_delete(m: &MemberOutcome) -> bool {
    m.error
        .as_deref()
        .is_some_and(|e| e.starts_with(crate::proto::storage::MAX_DELETE_REFUSAL))
}

/// A check found other contents (size, checksum, link text) on the member.
pub const CHECK_CONTENT: &str = "content differs";
/// A check found another kind of entry (file, directory, link) on the member.
pub const CHECK_KIND: &str = "kind differs";
/// A check found the path missing on the member.
pub const CHECK_MISSING: &str = "missing on member";
/// A check found the path only on the member.
pub const CHECK_EXTRA: &str = "only on member";

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
    /// A check (`makuo check`, console `md5`): a comparison, not a push.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub check: bool,
    /// rsync's `--stats` numbers, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Box<Stats>>,
    /// Listed source paths (`--files-from`) that could not be sent (rsync's exit 23).
    #[serde(default)]
    pub missing: u64,
}

/// rsync's `--stats` numbers as far as makuo can fill them honestly. Per-member figures
/// (created, deleted) are the largest over the members; contents cross the wire once for
/// all members, so "transferred" is what was multicast.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Entries in the push: regular files, directories, symlinks.
    pub files: u64,
    /// Regular files.
    pub reg: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub links: u64,
    /// Entries created on the member that created the most: regular files, dirs, links.
    pub created: (u64, u64, u64),
    /// Paths deleted on the member that deleted the most.
    pub deleted: u64,
    /// Regular files whose contents were multicast.
    pub transferred: u64,
    /// Bytes of all regular files.
    pub total_size: u64,
    /// Bytes of the files whose contents were multicast.
    pub transferred_size: u64,
    /// Encoded manifest (rsync's file list) bytes.
    pub file_list_size: u64,
    /// Walk time (rsync's file list generation time), seconds.
    pub file_list_secs: f64,
    /// Payload bytes the sender multicast (contents once, plus repair).
    pub sent: u64,
}

/// `1234567` as rsync prints it: `1,234,567`.
fn commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Stats {
    /// rsync's `--stats` lines (the ones makuo can fill) and its closing two lines.
    pub fn lines(&self, seconds: f64) -> Vec<String> {
        let kinds = |r: u64, d: u64, l: u64| {
            let parts: Vec<String> = [("reg", r), ("dir", d), ("link", l)]
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{k}: {}", commas(*n)))
                .collect();
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            }
        };
        let (cr, cd, cl) = self.created;
        let speed = if seconds > 0.0 {
            self.sent as f64 / seconds
        } else {
            0.0
        };
        let speedup = if self.sent > 0 {
            self.total_size as f64 / self.sent as f64
        } else {
            0.0
        };
        vec![
            format!(
                "Number of files: {}{}",
                commas(self.files),
                kinds(self.reg, self.dirs, self.links)
            ),
            format!(
                "Number of created files: {}{}",
                commas(cr + cd + cl),
                kinds(cr, cd, cl)
            ),
            format!("Number of deleted files: {}", commas(self.deleted)),
            format!(
                "Number of regular files transferred: {}",
                commas(self.transferred)
            ),
            format!("Total file size: {} bytes", commas(self.total_size)),
            format!(
                "Total transferred file size: {} bytes",
                commas(self.transferred_size)
            ),
            format!("Literal data: {} bytes", commas(self.transferred_size)),
            "Matched data: 0 bytes".into(),
            format!("File list size: {}", commas(self.file_list_size)),
            format!(
                "File list generation time: {:.3} seconds",
                self.file_list_secs
            ),
            format!("Total bytes sent: {}", commas(self.sent)),
            String::new(),
            format!(
                "sent {} bytes  received - bytes  {}.{:02} bytes/sec",
                commas(self.sent),
                commas(speed as u64),
                ((speed.fract() * 100.0).round() as u64).min(99)
            ),
            format!(
                "total size is {}  speedup is {:.2}",
                commas(self.total_size),
                speedup
            ),
        ]
    }
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
            let mut diffs = Vec::new();
            let mut why = Vec::new();
            for (i, f) in &mr.changes {
                if f & (change::MISSING | change::TYPE | change::SIZE | change::SUM | change::LINK)
                    == 0
                {
                    continue;
                }
                diffs.push(show(&m.entries[*i as usize].path));
                why.push(
                    if f & change::MISSING != 0 {
                        CHECK_MISSING
                    } else if f & change::TYPE != 0 {
                        CHECK_KIND
                    } else {
                        CHECK_CONTENT
                    }
                    .to_string(),
                );
            }
            // A check compares as a dry `--delete`: what the member would delete exists
            // only there.
            for d in &mr.deletions {
                diffs.push(show(d));
                why.push(CHECK_EXTRA.to_string());
            }
            mo.protected = protected_paths(m, &mr.changes);
            mo.files = diffs.len() as u64;
            mo.bytes = 0;
            mo.deleted = 0;
            if mo.result == "ok" && !diffs.is_empty() {
                mo.result = "differ".into();
            }
            mo.changes = diffs;
            mo.why = why;
        }
        o.dry_run = true;
        o.check = true;
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
                use crate::proto::manifest::change::PROTECTED;
                let mut changes = Vec::new();
                let protected = protected_paths(m, &mr.changes);
                if dry {
                    for (i, f) in mr.changes.iter().filter(|(_, f)| f & PROTECTED == 0) {
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
                    let n = mr.changes.len() - protected.len();
                    (n as u64, bytes, mr.would_delete)
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
                    left_pace: mr.left_pace.clone(),
                    protected,
                    path: None,
                    why: Vec::new(),
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
            check: false,
            stats: None,
            missing: 0,
        };
        // An atomic push that did not commit anywhere says so as a whole.
        if o.members.iter().any(|m| {
            m.error
                .as_deref()
                .is_some_and(|e| e.starts_with(crate::proto::NOT_COMMITTED))
        }) {
            o.error = Some(crate::proto::NOT_COMMITTED.into());
        }
        o.exit = o.compute_exit().code();
        o
    }

    /// Fills every member's itemized changes (`-i` on a real run; a dry run has them).
    pub fn add_itemized(&mut self, m: &Manifest, r: &PushReport) {
        for (mo, mr) in self.members.iter_mut().zip(r.members.iter()) {
            if !mo.changes.is_empty() {
                continue;
            }
            let shown = mr
                .changes
                .iter()
                .filter(|(_, f)| f & crate::proto::manifest::change::PROTECTED == 0);
            for (i, f) in shown {
                let e = &m.entries[*i as usize];
                let mut p = show(&e.path);
                if e.kind == crate::proto::manifest::EntryKind::Dir {
                    p.push('/');
                }
                if let Some((arrow, to)) = itemize_suffix(e, *f) {
                    p.push_str(arrow);
                    p.push_str(&show(to));
                }
                mo.changes.push(format!("{} {}", itemize(e, *f), p));
            }
            // What it deleted (listed by members for a `--delete` push), as rsync's `-i`.
            if mo.result == "ok" && !m.options.dry_run && mr.deleted > 0 {
                for d in &mr.deletions {
                    mo.changes.push(format!("*deleting {}", show(d)));
                }
            }
        }
    }

    /// rsync's `-v` lines: the name of every path sent, created or changed, and
    /// `deleting PATH` for every deletion, each once (with the members it applies to when
    /// not all of them); from the itemized changes.
    pub fn names(&self) -> Vec<String> {
        self.itemized()
            .into_iter()
            .map(|l| match l.strip_prefix("*deleting ") {
                Some(p) => format!("deleting {p}"),
                // `YXcstpoguax PATH`: the code is one word of 11 characters.
                None => match l.split_once(' ') {
                    Some((code, p)) if code.len() == 11 => p.to_string(),
                    _ => l,
                },
            })
            .collect()
    }

    /// Fills [`Outcome::stats`].
    pub fn add_stats(
        &mut self,
        m: &Manifest,
        r: &PushReport,
        list_size: usize,
        walk: std::time::Duration,
    ) {
        use crate::proto::manifest::{change, EntryKind};
        let count = |k: EntryKind| m.entries.iter().filter(|e| e.kind == k).count() as u64;
        let mut st = Stats {
            files: m.entries.len() as u64,
            reg: count(EntryKind::File),
            dirs: count(EntryKind::Dir),
            links: count(EntryKind::Symlink),
            total_size: m.total_bytes(),
            file_list_size: list_size as u64,
            file_list_secs: walk.as_secs_f64(),
            sent: r.payload_bytes,
            ..Stats::default()
        };
        let mut planned = vec![false; m.entries.len()];
        for mr in &r.members {
            let mut c = (0, 0, 0);
            for (i, f) in &mr.changes {
                let e = &m.entries[*i as usize];
                if needs_data(e.kind, *f, m.options.checksum) {
                    planned[*i as usize] = true;
                }
                if f & change::MISSING != 0 {
                    match e.kind {
                        EntryKind::File => c.0 += 1,
                        EntryKind::Dir => c.1 += 1,
                        _ => c.2 += 1,
                    }
                }
            }
            if c.0 + c.1 + c.2 > st.created.0 + st.created.1 + st.created.2 {
                st.created = c;
            }
            st.deleted = st.deleted.max(if m.options.dry_run {
                mr.would_delete
            } else {
                mr.deleted as u64
            });
        }
        for (i, p) in planned.iter().enumerate() {
            if *p {
                st.transferred += 1;
                st.transferred_size += m.entries[i].size;
            }
        }
        self.stats = Some(Box::new(st));
    }

    /// Folds what the walk found into the exit status: listed paths that could not be sent
    /// (23, as rsync) and source files that vanished (24).
    pub fn fold_walk(&mut self, vanished: u64, missing: usize) {
        self.missing = missing as u64;
        if missing > 0 && matches!(Exit::from_code(self.exit), Exit::Ok | Exit::Vanished) {
            self.exit = Exit::Partial.code();
        } else if vanished > 0 && self.exit == 0 {
            self.exit = Exit::Vanished.code();
        }
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
        let mut failed = self.members.iter().filter(|m| m.result != "ok").peekable();
        if failed.peek().is_some() {
            // Refused only by members' own --max-delete: rsync's 25, as the sender's is.
            if failed.all(refused_max_delete) {
                return Exit::MaxDelete;
            }
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
                    // Names one word each, so a name cannot fake the list.
                    let who: Vec<_> = who.iter().map(|n| crate::escape::word_str(n)).collect();
                    format!("{l}  [{}]", who.join(","))
                };
                crate::escape::text_str(&l).into_owned()
            })
            .collect()
    }

    /// Records the path (`multicast`/`unicast`) that served the member `name` at `address`.
    pub fn set_path(&mut self, name: &str, address: &str, path: &str) {
        for m in &mut self.members {
            if m.name == name && m.address == address {
                m.path = Some(path.to_string());
            }
        }
    }

    /// The per-member table (the last lines of human output).
    pub fn table(&self) -> Vec<String> {
        let mut rows = vec![[
            "MEMBER".to_string(),
            "ADDRESS".to_string(),
            "FILES".to_string(),
            "BYTES".to_string(),
            "DELETED".to_string(),
            "RESULT".to_string(),
        ]];
        // A dry run changed nothing: every row says so (rsync's `(DRY RUN)`). A check is a
        // comparison and says `differ` where it found something.
        let dry = self.dry_run && !self.check;
        for m in &self.members {
            let result = match (&m.error, &m.left_pace) {
                (Some(e), _) if m.result != "ok" => format!("{}: {e}", m.result),
                (_, Some(why)) => format!("{} (left the group's pace: {why})", m.result),
                _ => m.result.clone(),
            };
            let result = match m.protected.as_slice() {
                [] => result,
                p => {
                    let more = p.len().saturating_sub(3);
                    let mut names = p[..p.len().min(3)].join(", ");
                    if more > 0 {
                        names.push_str(&format!(" and {more} more"));
                    }
                    format!("{result} (protected: {names})")
                }
            };
            // Only the exception is shown: a member served by unicast copies.
            let result = match m.path.as_deref() {
                Some("unicast") => format!("{result} (by unicast)"),
                _ => result,
            };
            let result = if dry {
                format!("{result} (dry run)")
            } else {
                result
            };
            let esc = |s: &str| crate::escape::text_str(s).into_owned();
            // Name and address are one column each: spaces in them escaped too.
            let word = |s: &str| crate::escape::word_str(s).into_owned();
            rows.push([
                word(&m.name),
                word(&m.address),
                m.files.to_string(),
                m.bytes.to_string(),
                m.deleted.to_string(),
                esc(&result),
            ]);
        }
        let w: Vec<usize> = (0..5)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        rows.iter()
            .map(|r| {
                format!(
                    "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {}",
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
                )
            })
            .collect()
    }

    /// The final console line: `ok` or `error: REASON` (names and reasons escaped).
    pub fn final_line(&self) -> String {
        crate::escape::text_str(&self.final_line_raw()).into_owned()
    }

    fn final_line_raw(&self) -> String {
        let failed: Vec<_> = self
            .members
            .iter()
            .filter(|m| m.result != "ok")
            .map(|m| crate::escape::word_str(&m.name))
            .collect();
        match Exit::from_code(self.exit) {
            Exit::Ok => "ok".into(),
            Exit::Partial if self.error.as_deref() == Some(crate::proto::NOT_COMMITTED) => {
                format!(
                    "error: {} ({} member(s) failed: {})",
                    crate::proto::NOT_COMMITTED,
                    failed.len(),
                    failed.join(", ")
                )
            }
            Exit::Partial if failed.is_empty() => {
                "error: some files were not transferred (see previous errors)".into()
            }
            Exit::Partial => format!(
                "error: {} member(s) failed: {}",
                failed.len(),
                failed.join(", ")
            ),
            Exit::MaxDelete if !failed.is_empty() => format!(
                "error: refused by --max-delete on {} member(s): {}",
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
            Exit::Timeout => match &self.error {
                Some(e) => format!("error: timed out: {e}"),
                None => "error: timed out".into(),
            },
            Exit::Error => format!("error: {}", self.error.as_deref().unwrap_or("failed")),
        }
    }
}
