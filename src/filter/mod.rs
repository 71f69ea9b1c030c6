//! rsync's filter rules: which paths a push selects (sender side) and which receiver paths
//! `--delete` must spare (receiver side).
//!
//! A [`Filter`] is built from rule sources in order ([`RuleSpec`]: `--include`/`--exclude`
//! patterns with rsync's old `+ `/`- ` prefixes, and full `--filter` rules). Semantics are
//! rsync's (exclude.c), checked against rsync itself by `tests/filter_rsync.rs`:
//!
//! - rules apply in order and the first matching rule wins; no match means included;
//! - `-`/`+` apply on both sides; `H`/`S` (or the `s` modifier) only when selecting what to
//!   send; `P`/`R` (or `r`) only to what `--delete` may remove on the receivers, where an
//!   excluded path is protected;
//! - `clear` (`!`) drops the rules before it; `merge FILE` reads FILE's rules in its place
//!   (read where the filter is built: the front end's working directory);
//! - `dir-merge NAME` reads NAME in every directory of the push: its rules apply to that
//!   directory and (unless the `n` modifier) below, the deepest file's rules first, and all of
//!   them at the position of the `dir-merge` rule. `dir-merge /NAME` also reads NAME in every
//!   parent of each transfer root, from the base down (rsync reads from `/`; makuo's `/` is
//!   the base, as for an rsync daemon module). A `clear` in a per-directory file drops what it
//!   inherited. A leading `/` in a per-directory file anchors at that file's directory;
//! - `-F` is `dir-merge /.rsync-filter`, `-FF` adds `- .rsync-filter`.
//!
//! Not supported (an error, not silently ignored): the `/`, `x`, `p` and `C` modifiers,
//! `--cvs-exclude`, and `merge`/`dir-merge` rules inside a per-directory file.
//!
//! More rule sources (the daemon's standing excludes, issue 14) are more [`RuleSpec`]s placed
//! first, as rsync's daemon `exclude` parameter is checked before the client's rules.
//!
//! Receivers get the sender's rules in the manifest ([`Filter::table`] /
//! [`Filter::from_table`]) including every per-directory file the sender read, and evaluate
//! the receiver side with the same code; they never read filter files of their own.
//!
//! I/O: only [`Filter::load_dir`] (through the base's confined view, `apply::source`) and
//! the rule-file readers in `files.rs` read files.

mod files;
mod pattern;
mod rule;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, Context as _, Result};

pub use files::{read_files_from, read_rules_file};
use pattern::Pattern;
use rule::{Kind, MergeMods, Parsed, Syntax};

use crate::apply::source::Source;
use crate::proto::limits::{MAX_FILTER_BYTES, MAX_FILTER_RULES};
use crate::proto::manifest::{DirRules, FilterRule, FilterTable, WireRule};

/// The name `-F` reads in every directory.
pub const RSYNC_FILTER: &str = ".rsync-filter";

/// One source of rules, in command-line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleSpec {
    /// `--include`/`--exclude` (and the console's `include add`/`exclude add`): a pattern
    /// that may start with rsync's old prefixes `+ ` or `- `; `!` alone clears the list.
    Old(FilterRule),
    /// `--filter RULE`: full rsync filter-rule syntax.
    Rule(String),
}

impl RuleSpec {
    /// The console words that add this rule to a daemon session.
    pub fn console_words(&self) -> (&'static str, &str) {
        match self {
            RuleSpec::Old(r) if r.include => ("include add", &r.pattern),
            RuleSpec::Old(r) => ("exclude add", &r.pattern),
            RuleSpec::Rule(t) => ("filter add", t),
        }
    }
}

/// How a manifest carries a filter's rules ([`Filter::to_manifest`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestRules {
    /// Plain include/exclude rules for both sides: the manifest's simple list, which
    /// receivers read with rsync's old `+ `/`- ` prefixes.
    Simple(Vec<FilterRule>),
    /// Everything else: the manifest's filter section.
    Table(FilterTable),
}

/// Which side a question is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Selecting what to send.
    Sender,
    /// Deciding what `--delete` may remove.
    Receiver,
}

/// A compiled filter rule.
#[derive(Clone, Debug)]
struct Rule {
    include: bool,
    sender: bool,
    receiver: bool,
    negate: bool,
    pattern: Pattern,
    /// The pattern as written (for the manifest).
    text: String,
}

impl Rule {
    fn compile(p: &Parsed) -> Result<Self> {
        let Kind::Pattern(include) = p.kind else {
            bail!("not a pattern rule");
        };
        Ok(Self {
            include,
            sender: p.sender,
            receiver: p.receiver,
            negate: p.negate,
            pattern: Pattern::compile(&p.pattern)
                .with_context(|| format!("bad filter pattern {:?}", p.pattern))?,
            text: p.pattern.clone(),
        })
    }

    fn applies(&self, side: Side) -> bool {
        match side {
            Side::Sender => self.sender,
            Side::Receiver => self.receiver,
        }
    }

    /// Matches `rel`; `dir` is the directory of the per-directory file the rule came from
    /// (an anchored rule is anchored there), empty for the base.
    fn matches(&self, dir: &[u8], rel: &[u8], is_dir: bool) -> bool {
        let m = if self.pattern.anchored && !dir.is_empty() {
            rel.strip_prefix(dir)
                .and_then(|r| r.strip_prefix(b"/"))
                .is_some_and(|r| self.pattern.matches(r, is_dir))
        } else {
            self.pattern.matches(rel, is_dir)
        };
        m != self.negate
    }

    fn wire(&self) -> WireRule {
        let mut flags = 0;
        if self.include {
            flags |= WireRule::INCLUDE;
        }
        if self.sender {
            flags |= WireRule::SENDER;
        }
        if self.receiver {
            flags |= WireRule::RECEIVER;
        }
        if self.negate {
            flags |= WireRule::NEGATE;
        }
        WireRule {
            flags,
            pattern: self.text.clone(),
        }
    }

    fn from_wire(w: &WireRule) -> Result<Self> {
        Rule::compile(&Parsed {
            kind: Kind::Pattern(w.flags & WireRule::INCLUDE != 0),
            sender: w.flags & WireRule::SENDER != 0,
            receiver: w.flags & WireRule::RECEIVER != 0,
            negate: w.flags & WireRule::NEGATE != 0,
            mods: MergeMods::default(),
            pattern: w.pattern.clone(),
        })
    }
}

/// A `dir-merge` rule.
#[derive(Clone, Debug)]
struct DirMerge {
    /// The file name read in each directory.
    name: String,
    /// `/NAME`: also read in the parents of each transfer root.
    parents: bool,
    mods: MergeMods,
    /// Sides imposed on the file's rules (`s`/`r` on the dir-merge rule).
    sides: rule::Sides,
}

#[derive(Clone, Debug)]
enum Item {
    Rule(Rule),
    /// Index into [`Filter::merges`].
    DirMerge(usize),
}

/// The rules one per-directory file gave.
#[derive(Clone, Debug, Default)]
struct DirList {
    /// The file held a `clear`: rules inherited from parents do not apply here or below.
    clear: bool,
    rules: Vec<Rule>,
}

/// A compiled, ordered rule list with the per-directory files read so far.
///
/// Bounded like a manifest's rules, whoever builds it (front end, console session, config
/// file, per-directory files read while walking, or a manifest): at most
/// [`MAX_FILTER_RULES`] rules and [`MAX_FILTER_BYTES`] of patterns (counted as they are
/// added, `clear` included), each rule within its compiled-size allowance
/// (`pattern::rule_allowance`), so its compiled memory is at most
/// [`crate::proto::limits::MAX_FILTER_MEMORY`].
#[derive(Clone, Debug, Default)]
pub struct Filter {
    items: Vec<Item>,
    merges: Vec<DirMerge>,
    /// Per directory (relative, `""` for the base): for each dir-merge rule, `None` until
    /// that directory's file was looked for.
    dirs: HashMap<Vec<u8>, Vec<Option<DirList>>>,
    /// Built from a manifest: every per-directory list is already known.
    complete: bool,
    /// Rules and pattern bytes added so far (against the caps), and what the compiled
    /// rules may hold.
    rules: usize,
    bytes: usize,
    memory: u64,
}

impl Filter {
    /// Compiles `--include`/`--exclude`-style rules in order (rsync's old prefixes apply).
    pub fn new(rules: &[FilterRule]) -> Result<Self> {
        let specs: Vec<RuleSpec> = rules.iter().cloned().map(RuleSpec::Old).collect();
        Self::build(&specs)
    }

    /// Compiles rule sources in order. `merge FILE` rules must have been expanded by
    /// [`expand_merges`] (a daemon never reads files named by a console user).
    pub fn build(specs: &[RuleSpec]) -> Result<Self> {
        let mut f = Filter::default();
        for s in specs {
            f.add(parse_spec(s)?)?;
        }
        Ok(f)
    }

    /// Counts one more rule of `len` pattern bytes against the caps.
    fn charge(&mut self, len: usize) -> Result<()> {
        self.rules += 1;
        self.bytes += len;
        if self.rules > MAX_FILTER_RULES {
            bail!("more than {MAX_FILTER_RULES} filter rules (per-directory files included)");
        }
        if self.bytes > MAX_FILTER_BYTES {
            bail!("more than {MAX_FILTER_BYTES} bytes of filter patterns (per-directory files included)");
        }
        Ok(())
    }

    /// Counts and compiles one pattern rule.
    fn compile(&mut self, p: &Parsed) -> Result<Rule> {
        self.charge(p.pattern.len())?;
        let r = Rule::compile(p)?;
        self.memory += r.pattern.memory;
        Ok(r)
    }

    /// Bytes the compiled rules may hold (regexes and their search caches).
    pub fn memory(&self) -> u64 {
        self.memory
    }

    fn add(&mut self, p: Parsed) -> Result<()> {
        match p.kind {
            Kind::Clear => {
                self.items.clear();
            }
            Kind::Pattern(_) => {
                let r = self.compile(&p)?;
                self.items.push(Item::Rule(r));
            }
            Kind::Merge => {
                bail!(
                    "merge {:?}: merge files are read by the front end (makuo sync -f 'merge FILE')",
                    p.pattern
                );
            }
            Kind::DirMerge => {
                if p.mods.exclude_self {
                    self.exclude_self(&p)?;
                }
                let (parents, name) = match p.pattern.strip_prefix('/') {
                    Some(n) => (true, n),
                    None => (false, p.pattern.as_str()),
                };
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    bail!(
                        "dir-merge {:?}: only NAME or /NAME (a file in each directory) is supported",
                        p.pattern
                    );
                }
                // rsync ignores a per-directory file named twice.
                if self.merges.iter().any(|m| m.name == name) {
                    return Ok(());
                }
                self.charge(name.len())?;
                let sides = (!(p.sender && p.receiver)).then_some((p.sender, p.receiver));
                self.merges.push(DirMerge {
                    name: name.to_owned(),
                    parents,
                    mods: p.mods,
                    sides,
                });
                self.items.push(Item::DirMerge(self.merges.len() - 1));
            }
        }
        Ok(())
    }

    /// The `e` modifier: an exclude rule for the merge file's own name.
    fn exclude_self(&mut self, p: &Parsed) -> Result<()> {
        let base = p.pattern.rsplit('/').next().unwrap_or(&p.pattern);
        let q = Parsed {
            kind: Kind::Pattern(false),
            sender: true,
            receiver: true,
            negate: false,
            mods: MergeMods::default(),
            pattern: base.to_owned(),
        };
        let r = self.compile(&q)?;
        self.items.push(Item::Rule(r));
        Ok(())
    }

    /// Whether there are no rules (everything is included).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether there are `dir-merge` rules (per-directory files to read while walking).
    pub fn has_dir_merges(&self) -> bool {
        !self.merges.is_empty()
    }

    /// The per-directory file names this filter reads (a change to one changes the rules).
    pub fn merge_names(&self) -> impl Iterator<Item = &str> {
        self.merges.iter().map(|m| m.name.as_str())
    }

    /// Whether `rel` (relative to the base, `/`-separated bytes) is excluded from what is
    /// sent. `is_dir` tells whether the path is a directory (for `dir/` and `dir/***`
    /// patterns). An excluded directory is not descended by the walker. Per-directory files
    /// apply once [`Filter::load_dir`] has read them.
    pub fn excluded(&self, rel: &[u8], is_dir: bool) -> bool {
        self.decide(Side::Sender, rel, is_dir) == Some(false)
    }

    /// Whether `rel` on a receiver is protected from `--delete`.
    pub fn protected(&self, rel: &[u8], is_dir: bool) -> bool {
        self.decide(Side::Receiver, rel, is_dir) == Some(false)
    }

    /// The first matching rule's verdict for `side` (`Some(true)` include, `Some(false)`
    /// exclude), `None` when no rule matches.
    pub fn decide(&self, side: Side, rel: &[u8], is_dir: bool) -> Option<bool> {
        self.decide_with(side, rel, is_dir, true)
    }

    /// rsync's check of a `--files-from` name: the rules outside per-directory files only.
    pub fn excluded_by_list(&self, rel: &[u8], is_dir: bool) -> bool {
        self.decide_with(Side::Sender, rel, is_dir, false) == Some(false)
    }

    fn decide_with(&self, side: Side, rel: &[u8], is_dir: bool, dirs: bool) -> Option<bool> {
        for item in &self.items {
            match item {
                Item::DirMerge(_) if !dirs => {}
                Item::Rule(r) => {
                    if r.applies(side) && r.matches(b"", rel, is_dir) {
                        return Some(r.include);
                    }
                }
                Item::DirMerge(k) => {
                    let mut d = parent(rel);
                    loop {
                        if let Some(Some(list)) = self.dirs.get(d).and_then(|v| v.get(*k)) {
                            for r in &list.rules {
                                if r.applies(side) && r.matches(d, rel, is_dir) {
                                    return Some(r.include);
                                }
                            }
                            if list.clear {
                                break;
                            }
                        }
                        if self.merges[*k].mods.no_inherit || d.is_empty() {
                            break;
                        }
                        d = parent(d);
                    }
                }
            }
        }
        None
    }

    /// Reads the per-directory files of `dir` (relative to `base`, `""` for the base) that
    /// were not read yet. With `parents_only`, only those of `dir-merge /NAME` rules (the scan
    /// of a transfer root's parents). A missing or unreadable file gives no rules, as in
    /// rsync; a malformed one is an error.
    pub fn load_dir(&mut self, base: &Path, dir: &[u8], parents_only: bool) -> Result<()> {
        if self.merges.is_empty() || self.complete {
            return Ok(());
        }
        let n = self.merges.len();
        let slot = self
            .dirs
            .entry(dir.to_vec())
            .or_insert_with(|| vec![None; n]);
        let todo: Vec<usize> = (0..n)
            .filter(|&k| slot[k].is_none() && (!parents_only || self.merges[k].parents))
            .collect();
        let mut src = None;
        for k in todo {
            let m = &self.merges[k];
            let mut p = base.to_path_buf();
            if !dir.is_empty() {
                p.push(OsStr::from_bytes(dir));
            }
            p.push(&m.name);
            let mut rel = dir.to_vec();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(m.name.as_bytes());
            if src.is_none() {
                src = Source::open(base).ok();
            }
            let list = match src.as_mut().and_then(|s| read_confined(s, &rel)) {
                Some(data) => parse_dir_file(&data, m)
                    .with_context(|| format!("per-directory filter file {}", p.display()))?,
                None => DirList::default(),
            };
            for r in &list.rules {
                self.charge(r.text.len())
                    .with_context(|| format!("per-directory filter file {}", p.display()))?;
                self.memory += r.pattern.memory;
            }
            if let Some(v) = self.dirs.get_mut(dir) {
                v[k] = Some(list);
            }
        }
        Ok(())
    }

    /// Reads the per-directory files that apply to `root`'s entry itself: those of
    /// `dir-merge /NAME` rules in every directory from the base down to `root`'s parent.
    pub fn load_parents(&mut self, base: &Path, root: &[u8]) -> Result<()> {
        if !self.merges.iter().any(|m| m.parents) {
            return Ok(());
        }
        self.load_dir(base, b"", true)?;
        let par = parent(root);
        if !par.is_empty() {
            for i in (0..par.len()).filter(|&i| par[i] == b'/') {
                self.load_dir(base, &par[..i], true)?;
            }
            self.load_dir(base, par, true)?;
        }
        Ok(())
    }

    /// Forgets the per-directory files read so far (they changed).
    pub fn forget_dirs(&mut self) {
        if !self.complete {
            self.dirs.clear();
        }
    }

    /// The rules as the manifest carries them to receivers: the simple rule list when they
    /// are plain include/exclude rules, a [`FilterTable`] otherwise (rules that only apply on
    /// the sender left out).
    pub fn to_manifest(&self) -> ManifestRules {
        let simple = self.merges.is_empty()
            && self.items.iter().all(|i| match i {
                Item::Rule(r) => r.sender && r.receiver && !r.negate,
                Item::DirMerge(_) => false,
            });
        if simple {
            return ManifestRules::Simple(
                self.items
                    .iter()
                    .filter_map(|i| match i {
                        Item::Rule(r) => Some(FilterRule {
                            include: r.include,
                            // The prefix keeps a pattern starting with "+ " or "- " (or "!")
                            // literal for the receiver's old-prefix reading.
                            pattern: format!("{} {}", if r.include { '+' } else { '-' }, r.text),
                        }),
                        Item::DirMerge(_) => None,
                    })
                    .collect(),
            );
        }
        let mut t = FilterTable::default();
        // Global index of each dir-merge rule in the table.
        let mut merge_at = vec![0u32; self.merges.len()];
        for i in &self.items {
            match i {
                Item::Rule(r) if r.receiver => t.rules.push(r.wire()),
                Item::Rule(_) => {}
                Item::DirMerge(k) => {
                    merge_at[*k] = t.rules.len() as u32;
                    let m = &self.merges[*k];
                    let mut flags = WireRule::DIR_MERGE;
                    if m.mods.no_inherit {
                        flags |= WireRule::NO_INHERIT;
                    }
                    t.rules.push(WireRule {
                        flags,
                        pattern: m.name.clone(),
                    });
                }
            }
        }
        let mut dirs: Vec<(&Vec<u8>, &Vec<Option<DirList>>)> = self.dirs.iter().collect();
        dirs.sort_by(|a, b| a.0.cmp(b.0));
        for (dir, lists) in dirs {
            for (k, l) in lists.iter().enumerate() {
                let Some(l) = l else { continue };
                let rules: Vec<WireRule> = l
                    .rules
                    .iter()
                    .filter(|r| r.receiver)
                    .map(Rule::wire)
                    .collect();
                if rules.is_empty() && !l.clear {
                    continue;
                }
                t.dirs.push(DirRules {
                    merge: merge_at[k],
                    dir: if dir.is_empty() {
                        b".".to_vec()
                    } else {
                        dir.clone()
                    },
                    clear: l.clear,
                    rules,
                });
            }
        }
        ManifestRules::Table(t)
    }

    /// The filter a receiver applies to a manifest's rules: the table when there is one,
    /// else the simple rule list.
    pub fn for_manifest(m: &crate::proto::manifest::Manifest) -> Result<Self> {
        match &m.filter {
            Some(t) => Self::from_table(t),
            None => Self::new(&m.rules),
        }
    }

    /// Rebuilds a filter from a manifest's table (receiver side: every per-directory list
    /// is in it).
    pub fn from_table(t: &FilterTable) -> Result<Self> {
        let mut f = Filter {
            complete: true,
            ..Filter::default()
        };
        let mut merge_of = HashMap::new();
        for (i, w) in t.rules.iter().enumerate() {
            if w.flags & WireRule::DIR_MERGE != 0 {
                f.charge(w.pattern.len())?;
                merge_of.insert(i as u32, f.merges.len());
                f.merges.push(DirMerge {
                    name: w.pattern.clone(),
                    parents: false,
                    mods: MergeMods {
                        no_inherit: w.flags & WireRule::NO_INHERIT != 0,
                        ..MergeMods::default()
                    },
                    sides: None,
                });
                f.items.push(Item::DirMerge(f.merges.len() - 1));
            } else {
                let r = f.wire_rule(w)?;
                f.items.push(Item::Rule(r));
            }
        }
        let n = f.merges.len();
        for d in &t.dirs {
            let Some(&k) = merge_of.get(&d.merge) else {
                bail!("per-directory rules for a rule that is not dir-merge");
            };
            f.charge(0)?;
            let rules = d
                .rules
                .iter()
                .map(|w| f.wire_rule(w))
                .collect::<Result<Vec<_>>>()?;
            let dir = if d.dir == b"." {
                Vec::new()
            } else {
                d.dir.clone()
            };
            let slot = f.dirs.entry(dir).or_insert_with(|| vec![None; n]);
            slot[k] = Some(DirList {
                clear: d.clear,
                rules,
            });
        }
        Ok(f)
    }
}

impl Filter {
    /// Counts and compiles a rule from a manifest's table.
    fn wire_rule(&mut self, w: &WireRule) -> Result<Rule> {
        self.charge(w.pattern.len())?;
        let r = Rule::from_wire(w)?;
        self.memory += r.pattern.memory;
        Ok(r)
    }
}

fn parse_spec(s: &RuleSpec) -> Result<Parsed> {
    match s {
        RuleSpec::Old(r) => rule::parse(&r.pattern, Syntax::Old(r.include), None),
        RuleSpec::Rule(t) => rule::parse(t, Syntax::Full, None),
    }
}

/// Reads the files of `merge FILE` rules (relative to `cwd`, nested merges included) and puts
/// their rules in their place, written as full rules; checks every rule's syntax. What it
/// returns compiles with [`Filter::build`] anywhere, without reading files.
pub fn expand_merges(specs: &[RuleSpec], cwd: &Path) -> Result<Vec<RuleSpec>> {
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        let p = parse_spec(s)?;
        if p.kind == Kind::Merge {
            merge_into(&p, cwd, 0, &mut out)?;
        } else {
            // Compiles the pattern now, so a bad one is reported before anything runs.
            if let Kind::Pattern(_) = p.kind {
                Rule::compile(&p)?;
            }
            out.push(s.clone());
        }
    }
    Ok(out)
}

fn merge_into(p: &Parsed, cwd: &Path, depth: u32, out: &mut Vec<RuleSpec>) -> Result<()> {
    if depth > 8 {
        bail!("merge {:?}: merge files nested too deeply", p.pattern);
    }
    if p.mods.exclude_self {
        let base = p.pattern.rsplit('/').next().unwrap_or(&p.pattern);
        out.push(RuleSpec::Rule(format!("- {base}")));
    }
    let path = cwd.join(&p.pattern);
    let data = std::fs::read(&path).with_context(|| format!("merge file {}", path.display()))?;
    let sides = (!(p.sender && p.receiver)).then_some((p.sender, p.receiver));
    let syntax = match p.mods.no_prefixes {
        Some(inc) => Syntax::NoPrefixes(inc),
        None => Syntax::Full,
    };
    for line in files::split_rules(&data, p.mods.word_split)
        .with_context(|| format!("merge file {}", path.display()))?
    {
        let q = rule::parse(&line, syntax, sides)
            .with_context(|| format!("merge file {}", path.display()))?;
        if q.kind == Kind::Merge {
            merge_into(&q, cwd, depth + 1, out)?;
        } else {
            if let Kind::Pattern(_) = q.kind {
                Rule::compile(&q).with_context(|| format!("merge file {}", path.display()))?;
            }
            out.push(RuleSpec::Rule(rule::render(&q)));
        }
    }
    Ok(())
}

/// The parent of a relative path (`""` for a top-level name).
fn parent(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => &rel[..i],
        None => b"",
    }
}

/// Reads a per-directory file through its confined parent (see `apply::source`), never
/// following a symlink (a link, or a parent swapped for one, could lead out of the base),
/// regular files only. `None` when it is missing or unreadable.
fn read_confined(src: &mut Source, rel: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut f = src.open_file(rel).ok()?;
    let mut data = Vec::new();
    // A filter file is small; a huge one is refused rather than read whole.
    f.by_ref().take(1 << 20).read_to_end(&mut data).ok()?;
    Some(data)
}

/// Parses a per-directory file's rules.
fn parse_dir_file(data: &[u8], m: &DirMerge) -> Result<DirList> {
    let mut list = DirList::default();
    let syntax = match m.mods.no_prefixes {
        Some(inc) => Syntax::NoPrefixes(inc),
        None => Syntax::Full,
    };
    for line in files::split_rules(data, m.mods.word_split)? {
        let p = rule::parse(&line, syntax, m.sides)?;
        match p.kind {
            Kind::Clear => {
                list.rules.clear();
                list.clear = true;
            }
            Kind::Pattern(_) => list.rules.push(Rule::compile(&p)?),
            Kind::Merge | Kind::DirMerge => {
                bail!("{line:?}: merge rules inside a per-directory file are not supported")
            }
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests;
