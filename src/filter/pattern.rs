//! One rsync pattern compiled to a globset glob, and how it is matched against a path.
//!
//! The semantics follow rsync's `rule_matches()` (exclude.c) and its `wildmatch`, checked
//! against real rsync by `tests/filter_rsync.rs`:
//!
//! - a pattern with no `/` and no `**` matches the basename at any depth;
//! - an unanchored pattern with an inner `/` (and no `**`) matches the trailing components
//!   (`sub/foo` matches `sub/foo` and `a/sub/foo`);
//! - an unanchored pattern with `**` (not leading) is tried at the start and after every `/`;
//!   a pattern starting with `**` is matched against `/` + path;
//! - a leading `/` anchors; a trailing `/` matches directories only;
//! - `*` and `?` stop at `/`, a run of two or more `*` crosses it, `[...]` is a class (`!` or
//!   `^` negates, never matches `/`), `\` escapes when the pattern has wildcards;
//! - `dir/**` matches everything below `dir` but not `dir`; `dir/***` matches `dir` too.
//!
//! globset's own `**` only works as a whole path component and matches zero directories in
//! `a/**/b`; rsync's `**` is "any string". Each rsync `**` is therefore translated to the
//! globset alternation `{*,*/**/*}`, which matches exactly the strings `.*` matches.
//!
//! globset only translates the glob into a regular expression; the matcher is built here,
//! within limits, because patterns come from the network (a manifest's rules) and from
//! console users: a rule may take at most [`rule_allowance`] bytes compiled (the regex, its
//! search caches and a lazy DFA cache of [`LAZY_DFA_CACHE`]), so a pattern written to
//! explode (`**a` repeated) is refused instead of costing megabytes and a stalled loop. A
//! pattern tried "at the start and after every `/`" is one regex (`(?:.*/)?` in front), so
//! matching costs one pass over the path, not one per directory level.

use anyhow::{bail, Context as _};
use globset::GlobBuilder;
use regex_automata::meta::Regex;
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

use crate::proto::limits::{RULE_MEMORY, RULE_MEMORY_PER_BYTE};

/// Capacity of each rule's lazy DFA cache (meta keeps a forward and a reverse one). Small:
/// measured, globs of the usual kinds match as fast with 4 KiB as with globset's 10 MiB
/// (about 0.1 µs per path and rule); a pattern whose DFA would not fit falls back to the
/// NFA simulation, slower but bounded by the rule's compiled size.
pub(crate) const LAZY_DFA_CACHE: usize = 4 << 10;

/// Bytes one compiled rule may take, for a pattern of `len` bytes: the regex, the caches
/// of one search thread and the lazy DFA caches. The manifest decoder counts the same sum
/// against the inbound memory cap before anything is compiled. Matching time grows with
/// the compiled size too (the NFA simulation visits each state at most once per byte), so
/// this bounds what one rule costs per path as well: measured, a rule just within it
/// takes at most about 1 ms on a 4 KiB path (typical rules 0.1 µs on a 60-byte one).
pub(crate) fn rule_allowance(len: usize) -> u64 {
    RULE_MEMORY + RULE_MEMORY_PER_BYTE * len as u64
}

/// Where in the path a rule's glob is tried (rsync's `slash_handling`).
#[derive(Clone, Copy, Debug)]
enum Anchor {
    /// Against the whole text only.
    Start,
    /// Against the last `n` `/`-separated elements (the whole text if it has fewer).
    Trailing(usize),
    /// At the start and after every `/`.
    AnySlash,
}

/// One compiled rsync pattern: a glob and where in the path it is tried.
#[derive(Clone, Debug)]
pub(crate) struct Pattern {
    dir_only: bool,
    /// Match the basename only (no `/` and no `**` in the pattern).
    basename: bool,
    /// Prepend `/` to the text (pattern starts with `**`, unanchored).
    slash_prefix: bool,
    /// For directories, append `/` to the text (pattern ends with `***`).
    slash_suffix_dirs: bool,
    anchor: Anchor,
    /// The pattern started with `/` (anchored at the transfer root, or at its merge file's
    /// directory for a per-directory rule).
    pub(crate) anchored: bool,
    matcher: Regex,
    /// What the compiled rule may hold at most (see [`rule_allowance`]).
    pub(crate) memory: u64,
}

impl Pattern {
    /// Compiles an rsync pattern (a trailing `/` means directories only; a leading `/`
    /// anchors).
    pub(crate) fn compile(pat: &str) -> anyhow::Result<Self> {
        let mut body = pat;
        let mut dir_only = false;
        if body.len() > 1 && body.ends_with('/') {
            body = &body[..body.len() - 1];
            dir_only = true;
        }
        // rsync counts every `/` (a leading one included) after the trailing one is removed.
        let slash_cnt = body.bytes().filter(|&b| b == b'/').count();
        let anchored = body.starts_with('/');
        let wild = body.contains(['*', '?', '[']);
        let wild2 = wild && body.contains("**");
        let wild2_prefix = wild2 && body.starts_with("**");
        let wild3_suffix = wild2 && body.ends_with("***");
        if anchored {
            body = &body[1..];
        }
        let anchor = if !anchored && slash_cnt > 0 && !wild2 {
            Anchor::Trailing(slash_cnt + 1)
        } else if !anchored && wild2 && !wild2_prefix {
            Anchor::AnySlash
        } else {
            Anchor::Start
        };
        let glob = if wild {
            translate(body)?
        } else {
            escape_all(body)
        };
        let re = GlobBuilder::new(&glob)
            .literal_separator(true)
            .backslash_escape(true)
            .build()?
            .regex()
            .to_owned();
        // globset writes `(?-u)^BODY$`; a pattern tried after every `/` becomes one regex.
        let inner = re
            .strip_prefix("(?-u)^")
            .and_then(|r| r.strip_suffix('$'))
            .context("unexpected glob translation")?;
        let re = match anchor {
            Anchor::AnySlash => format!("(?-u)^(?:(?s-u:.)*/)?(?:{inner})$"),
            _ => format!("(?-u)^(?:{inner})$"),
        };
        let allowance = rule_allowance(pat.len());
        let (matcher, memory) = build_limited(&re, allowance)?;
        Ok(Self {
            anchored,
            dir_only,
            basename: slash_cnt == 0 && !wild2,
            slash_prefix: wild2_prefix,
            slash_suffix_dirs: wild3_suffix,
            anchor,
            matcher,
            memory,
        })
    }

    /// Whether `rel` (`/`-separated, relative) matches; `is_dir` for `dir/` and `***`.
    pub(crate) fn matches(&self, rel: &[u8], is_dir: bool) -> bool {
        if self.dir_only && !is_dir {
            return false;
        }
        let name = if self.basename {
            match rel.iter().rposition(|&b| b == b'/') {
                Some(i) => &rel[i + 1..],
                None => rel,
            }
        } else {
            rel
        };
        let mut text = Vec::with_capacity(name.len() + 2);
        if self.slash_prefix {
            text.push(b'/');
        }
        text.extend_from_slice(name);
        if is_dir && self.slash_suffix_dirs {
            text.push(b'/');
        }
        let is_match = |t: &[u8]| self.matcher.is_match(Input::new(t).anchored(Anchored::Yes));
        match self.anchor {
            Anchor::Start | Anchor::AnySlash => is_match(&text),
            Anchor::Trailing(n) => {
                let mut start = 0;
                let mut seen = 0;
                for (i, &b) in text.iter().enumerate().rev() {
                    if b == b'/' {
                        seen += 1;
                        if seen == n {
                            start = i + 1;
                            break;
                        }
                    }
                }
                is_match(&text[start..])
            }
        }
    }
}

/// Builds `re` into a matcher that holds at most `allowance` bytes; returns it and what it
/// may hold: the regex itself, as much again for one search thread's caches (the NFA
/// simulation keeps a few words per NFA state) and the two lazy DFA caches. The NFA is
/// built under the same limit, so a pattern written to explode stops compiling early.
fn build_limited(re: &str, allowance: u64) -> anyhow::Result<(Regex, u64)> {
    let limit = usize::try_from(allowance / 2).unwrap_or(usize::MAX);
    let syntax = syntax::Config::new()
        .utf8(false)
        .dot_matches_new_line(true)
        .nest_limit(64);
    let config = Regex::config()
        .utf8_empty(false)
        .which_captures(WhichCaptures::None)
        .nfa_size_limit(Some(limit))
        .onepass_size_limit(Some(limit))
        // No full DFA (its size grows with the pattern) and no bounded backtracker (its
        // visited set grows with path length times NFA size, up to 256 KiB per rule).
        .dfa(false)
        .backtrack(false)
        .hybrid_cache_capacity(LAZY_DFA_CACHE);
    let matcher = Regex::builder()
        .syntax(syntax)
        .configure(config)
        .build(re)
        .map_err(|e| match e.size_limit() {
            Some(_) => anyhow::anyhow!("pattern too complex (over {allowance} bytes compiled)"),
            None => anyhow::anyhow!("{e}"),
        })?;
    let memory = 2 * matcher.memory_usage() as u64 + 2 * LAZY_DFA_CACHE as u64;
    if memory > allowance {
        bail!("pattern too complex ({memory} > {allowance} bytes compiled)");
    }
    Ok((matcher, memory))
}

/// A glob that matches `s` literally (rsync compares patterns without wildcards as strings,
/// backslashes included).
fn escape_all(s: &str) -> String {
    let mut g = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        push_literal(&mut g, c);
    }
    g
}

fn push_literal(g: &mut String, c: char) {
    if c.is_alphanumeric() || c == '/' {
        g.push(c);
    } else {
        g.push('\\');
        g.push(c);
    }
}

/// Translates an rsync wildmatch pattern (leading `/` and trailing `/` already removed) into
/// an equivalent globset glob (built with `literal_separator` and `backslash_escape`).
fn translate(p: &str) -> anyhow::Result<String> {
    let chars: Vec<char> = p.chars().collect();
    let mut g = String::with_capacity(p.len() * 2);
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                // A trailing backslash matches itself.
                let c = chars.get(i + 1).copied().unwrap_or('\\');
                push_literal(&mut g, c);
                i += 2;
            }
            '*' => {
                let mut n = 0;
                while chars.get(i + n) == Some(&'*') {
                    n += 1;
                }
                g.push_str(if n == 1 { "*" } else { "{*,*/**/*}" });
                i += n;
            }
            '?' => {
                g.push('?');
                i += 1;
            }
            '[' => {
                i = translate_class(&chars, i, &mut g)?;
            }
            c => {
                push_literal(&mut g, c);
                i += 1;
            }
        }
    }
    Ok(g)
}

/// Copies the class starting at `chars[start] == '['` into `g`; returns the index after it.
fn translate_class(chars: &[char], start: usize, g: &mut String) -> anyhow::Result<usize> {
    let mut i = start + 1;
    g.push('[');
    if matches!(chars.get(i), Some('!') | Some('^')) {
        g.push('!');
        i += 1;
    }
    let mut first = true;
    loop {
        match chars.get(i) {
            None => anyhow::bail!("unclosed character class"),
            Some(']') if !first => {
                g.push(']');
                return Ok(i + 1);
            }
            Some('\\') => anyhow::bail!("backslash inside a character class is not supported"),
            Some('[') if chars.get(i + 1) == Some(&':') => {
                // A POSIX class such as `[:digit:]`, copied whole (globset knows them).
                let rest = &chars[i + 2..];
                let end = rest
                    .windows(2)
                    .position(|w| w == [':', ']'])
                    .ok_or_else(|| anyhow::anyhow!("unclosed [: in character class"))?;
                g.extend(&chars[i..i + 2 + end + 2]);
                i += 2 + end + 2;
            }
            Some(&c) => {
                g.push(c);
                i += 1;
            }
        }
        first = false;
    }
}
