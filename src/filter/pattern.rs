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

use globset::{Candidate, GlobBuilder, GlobMatcher};

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
    matcher: GlobMatcher,
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
        let matcher = GlobBuilder::new(&glob)
            .literal_separator(true)
            .backslash_escape(true)
            .build()?
            .compile_matcher();
        Ok(Self {
            anchored,
            dir_only,
            basename: slash_cnt == 0 && !wild2,
            slash_prefix: wild2_prefix,
            slash_suffix_dirs: wild3_suffix,
            anchor,
            matcher,
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
        let is_match = |t: &[u8]| self.matcher.is_match_candidate(&Candidate::from_bytes(t));
        match self.anchor {
            Anchor::Start => is_match(&text),
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
            Anchor::AnySlash => {
                if is_match(&text) {
                    return true;
                }
                text.iter()
                    .enumerate()
                    .filter(|&(_, &b)| b == b'/')
                    .any(|(i, _)| is_match(&text[i + 1..]))
            }
        }
    }
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
