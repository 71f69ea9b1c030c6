//! rsync-style include/exclude selection, matched with globset.
//!
//! Patterns are matched against paths relative to the transfer root (the base directory),
//! `/`-separated raw bytes. The semantics follow rsync's `rule_matches()` (exclude.c) and its
//! `wildmatch`, checked against rsync 3.2.7 by `tests/filter_rsync.rs`:
//!
//! - rules apply in order and the first matching rule wins; no match means included;
//! - a pattern with no `/` and no `**` matches the basename at any depth;
//! - an unanchored pattern with an inner `/` (and no `**`) matches the trailing components
//!   (`sub/foo` matches `sub/foo` and `a/sub/foo`);
//! - an unanchored pattern with `**` (not leading) is tried at the start and after every `/`;
//!   a pattern starting with `**` is matched against `/` + path;
//! - a leading `/` anchors at the transfer root; a trailing `/` matches directories only;
//! - `*` and `?` stop at `/`, a run of two or more `*` crosses it, `[...]` is a class (`!` or
//!   `^` negates, never matches `/`), `\` escapes when the pattern has wildcards;
//! - `dir/**` matches everything below `dir` but not `dir`; `dir/***` matches `dir` too;
//! - rsync's old-style prefixes: a pattern starting with `+ ` is an include and `- ` an exclude
//!   whatever option it came from, and a lone `!` clears the rules before it.
//!
//! globset's own `**` only works as a whole path component and matches zero directories in
//! `a/**/b`; rsync's `**` is "any string". Each rsync `**` is therefore translated to the
//! globset alternation `{*,*/**/*}`, which matches exactly the strings `.*` matches.
//!
//! This module does no I/O except [`read_rules_file`].

use std::path::Path;

use anyhow::Context as _;
use globset::{Candidate, GlobBuilder, GlobMatcher};

use crate::proto::manifest::FilterRule;

/// A compiled, ordered list of include/exclude rules: the first matching rule wins.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    rules: Vec<Rule>,
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

#[derive(Clone, Debug)]
struct Rule {
    include: bool,
    dir_only: bool,
    /// Match the basename only (no `/` and no `**` in the pattern).
    basename: bool,
    /// Prepend `/` to the text (pattern starts with `**`, unanchored).
    slash_prefix: bool,
    /// For directories, append `/` to the text (pattern ends with `***`).
    slash_suffix_dirs: bool,
    anchor: Anchor,
    matcher: GlobMatcher,
}

impl Filter {
    /// Compiles rules in the order given. A pattern may carry rsync's `+ ` / `- ` prefix,
    /// which overrides [`FilterRule::include`]; a pattern of exactly `!` clears the rules
    /// before it; an empty pattern is ignored (as rsync does).
    pub fn new(rules: &[FilterRule]) -> anyhow::Result<Self> {
        let mut out = Vec::with_capacity(rules.len());
        for r in rules {
            let (include, pat) = split_prefix(r.include, &r.pattern);
            if pat == "!" {
                out.clear();
                continue;
            }
            if pat.is_empty() {
                continue;
            }
            let rule = Rule::compile(include, pat)
                .with_context(|| format!("bad filter pattern {:?}", r.pattern))?;
            out.push(rule);
        }
        Ok(Self { rules: out })
    }

    /// Whether there are no rules (everything is included).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `rel` (relative to the base, `/`-separated bytes) is excluded. `is_dir` tells
    /// whether the path is a directory (for `dir/` and `dir/***` patterns). An excluded
    /// directory is not descended by the walker.
    pub fn excluded(&self, rel: &[u8], is_dir: bool) -> bool {
        for r in &self.rules {
            if r.matches(rel, is_dir) {
                return !r.include;
            }
        }
        false
    }
}

/// Splits rsync's old-style `+ ` / `- ` prefix off a pattern given to `--include`,
/// `--exclude` or read from an `--exclude-from` file.
fn split_prefix(include: bool, pat: &str) -> (bool, &str) {
    if let Some(rest) = pat.strip_prefix("+ ") {
        (true, rest)
    } else if let Some(rest) = pat.strip_prefix("- ") {
        (false, rest)
    } else {
        (include, pat)
    }
}

impl Rule {
    fn compile(include: bool, pat: &str) -> anyhow::Result<Self> {
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
            include,
            dir_only,
            basename: slash_cnt == 0 && !wild2,
            slash_prefix: wild2_prefix,
            slash_suffix_dirs: wild3_suffix,
            anchor,
            matcher,
        })
    }

    fn matches(&self, rel: &[u8], is_dir: bool) -> bool {
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

/// Reads an rsync `--exclude-from` / `--include-from` file: one pattern per line (`\n`, `\r`
/// or `\r\n` ends a line); blank lines and lines starting with `;` or `#` are skipped. Other
/// whitespace is kept, as rsync keeps it. Patterns may carry the `+ ` / `- ` prefixes, which
/// [`Filter::new`] interprets.
pub fn read_rules_file(path: impl AsRef<Path>) -> anyhow::Result<Vec<String>> {
    let path = path.as_ref();
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_rules(&data).with_context(|| format!("reading {}", path.display()))
}

fn parse_rules(data: &[u8]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (n, line) in data.split(|&b| b == b'\n' || b == b'\r').enumerate() {
        if line.is_empty() || line[0] == b';' || line[0] == b'#' {
            continue;
        }
        let s = std::str::from_utf8(line)
            .map_err(|_| anyhow::anyhow!("line {}: pattern is not UTF-8", n + 1))?;
        out.push(s.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(rules: &[(bool, &str)]) -> Filter {
        let rules: Vec<FilterRule> = rules
            .iter()
            .map(|&(include, p)| FilterRule {
                include,
                pattern: p.to_owned(),
            })
            .collect();
        Filter::new(&rules).unwrap()
    }

    fn ex(p: &str) -> Filter {
        filter(&[(false, p)])
    }

    #[track_caller]
    fn check(f: &Filter, path: &str, is_dir: bool, want: bool) {
        assert_eq!(
            f.excluded(path.as_bytes(), is_dir),
            want,
            "{path:?} (dir={is_dir}) with {f:?}"
        );
    }

    #[test]
    fn filter_empty_includes_everything() {
        let f = filter(&[]);
        assert!(f.is_empty());
        check(&f, "a", false, false);
        check(&f, "a/b", true, false);
    }

    #[test]
    fn filter_basename_at_any_depth() {
        let f = ex("*.log");
        check(&f, "x.log", false, true);
        check(&f, "a/b/x.log", false, true);
        check(&f, "a.log/x", false, false);
        check(&f, "a.log", true, true);
        let f = ex("core");
        check(&f, "core", false, true);
        check(&f, "a/core", true, true);
        check(&f, "a/core/x", false, false);
        check(&f, "acore", false, false);
    }

    #[test]
    fn filter_unanchored_slash_matches_trailing_components() {
        let f = ex("sub/foo");
        check(&f, "sub/foo", false, true);
        check(&f, "a/sub/foo", false, true);
        check(&f, "asub/foo", false, false);
        check(&f, "sub/foo/x", false, false);
        let f = ex("s*/f?o");
        check(&f, "x/sub/foo", false, true);
        check(&f, "x/sub/fooo", false, false);
        check(&f, "sub/x/foo", false, false);
    }

    #[test]
    fn filter_anchored() {
        let f = ex("/top");
        check(&f, "top", false, true);
        check(&f, "a/top", false, false);
        let f = ex("/a/*");
        check(&f, "a/x", false, true);
        check(&f, "a/x/y", false, false);
        check(&f, "b/a/x", false, false);
    }

    #[test]
    fn filter_dir_only() {
        let f = ex("cache/");
        check(&f, "cache", true, true);
        check(&f, "a/cache", true, true);
        check(&f, "cache", false, false);
        let f = ex("*/");
        check(&f, "x", true, true);
        check(&f, "x", false, false);
    }

    #[test]
    fn filter_star_does_not_cross_slash_but_double_star_does() {
        let f = ex("/a/*/f");
        check(&f, "a/b/f", false, true);
        check(&f, "a/b/c/f", false, false);
        let f = ex("/a/**/f");
        check(&f, "a/b/f", false, true);
        check(&f, "a/b/c/f", false, true);
        // rsync's ** is "any string": a/**/f needs something between the slashes.
        check(&f, "a/f", false, false);
        let f = ex("a**");
        check(&f, "a", false, true);
        check(&f, "x/abc/d", false, true);
        check(&f, "x/b", false, false);
        let f = ex("**/f");
        check(&f, "f", false, true);
        check(&f, "a/b/f", false, true);
        check(&f, "a/bf", false, false);
    }

    #[test]
    fn filter_dir_double_and_triple_star() {
        let f = ex("foo/**");
        check(&f, "foo", true, false);
        check(&f, "foo/x", false, true);
        check(&f, "a/foo/x/y", false, true);
        let f = ex("foo/***");
        check(&f, "foo", true, true);
        check(&f, "a/foo", true, true);
        check(&f, "foo", false, false);
        check(&f, "foo/x/y", false, true);
    }

    #[test]
    fn filter_question_and_classes() {
        let f = ex("?.c");
        check(&f, "a.c", false, true);
        check(&f, "ab.c", false, false);
        let f = ex("[ab]*");
        check(&f, "apple", false, true);
        check(&f, "cherry", false, false);
        for neg in ["[!ab]*", "[^ab]*"] {
            let f = ex(neg);
            check(&f, "apple", false, false);
            check(&f, "cherry", false, true);
        }
        let f = ex("/a[!x]b");
        check(&f, "a/b", false, false);
        let f = ex("f[[:digit:]]");
        check(&f, "f1", false, true);
        check(&f, "fx", false, false);
        let f = ex("[]x]");
        check(&f, "]", false, true);
    }

    #[test]
    fn filter_literal_specials() {
        // No wildcard: compared as a string, backslash included.
        let f = ex("to\\p");
        check(&f, "top", false, false);
        check(&f, "to\\p", false, true);
        // With a wildcard, backslash escapes.
        let f = ex("\\t*");
        check(&f, "top", false, true);
        let f = ex("\\*x*");
        check(&f, "*xy", false, true);
        check(&f, "axy", false, false);
        for name in ["a{b}", "a,b", "a!b", "x y", "a]b"] {
            check(&ex(name), name, false, true);
        }
        check(&ex("a\\[b*"), "a[bc", false, true);
        check(&ex("{a,b}*"), "a", false, false);
        check(&ex("{a,b}*"), "{a,b}c", false, true);
    }

    #[test]
    fn filter_first_match_wins() {
        let f = filter(&[(true, "*/"), (true, "*.php"), (false, "*")]);
        check(&f, "a", true, false);
        check(&f, "a/x.php", false, false);
        check(&f, "a/x.html", false, true);
        let f = filter(&[(false, "cache/"), (true, "cache/keep")]);
        check(&f, "cache", true, true);
        let f = filter(&[(true, "cache/keep"), (false, "cache/*")]);
        check(&f, "cache/keep", false, false);
        check(&f, "cache/other", false, true);
    }

    #[test]
    fn filter_old_prefixes_and_clear() {
        let f = filter(&[(false, "+ foo"), (false, "*")]);
        check(&f, "foo", true, false);
        check(&f, "bar", false, true);
        let f = filter(&[(true, "- foo")]);
        check(&f, "foo", false, true);
        let f = filter(&[(false, "foo"), (false, "!"), (false, "bar")]);
        check(&f, "foo", false, false);
        check(&f, "bar", false, true);
        // No space: an ordinary pattern.
        check(&ex("+top"), "top", false, false);
        check(&ex("+top"), "+top", false, true);
        check(&ex("-  lead"), " lead", false, true);
    }

    #[test]
    fn filter_non_utf8_paths() {
        let f = ex("*.bin");
        assert!(f.excluded(b"d\xff/x\xfe.bin", false));
        assert!(!f.excluded(b"d\xff/x\xfe.txt", false));
        let f = ex("/d?/*");
        assert!(f.excluded(b"d\xff/x", false));
    }

    #[test]
    fn filter_bad_patterns_are_errors() {
        for p in ["[abc", "a[\\]]", "[[:alpha"] {
            let r = Filter::new(&[FilterRule {
                include: false,
                pattern: p.to_owned(),
            }]);
            assert!(r.is_err(), "{p:?} accepted");
        }
    }

    #[test]
    fn filter_rules_file() {
        let got = parse_rules(b"# c\n; c\n\n+ foo\nsub \n- a\r\n #x\n*").unwrap();
        assert_eq!(got, ["+ foo", "sub ", "- a", " #x", "*"]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rules");
        std::fs::write(&p, "*.tmp\n").unwrap();
        assert_eq!(read_rules_file(&p).unwrap(), ["*.tmp"]);
        let err = read_rules_file(dir.path().join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("missing"));
    }
}
