//! rsync filter-rule syntax: one rule's text (`- *.o`, `P /keep`, `dir-merge,n- .ignore`,
//! `clear`) parsed into a [`Parsed`] rule, as rsync's `parse_rule_tok()` (exclude.c) reads it.
//!
//! Supported: the rules `+`/`include`, `-`/`exclude`, `P`/`protect`, `R`/`risk`,
//! `H`/`hide`, `S`/`show`, `.`/`merge`, `:`/`dir-merge`, `!`/`clear`; the modifiers `!`
//! (negate), `s` (sender side), `r` (receiver side), and for merge rules `-`/`+` (every line
//! is an exclude/include pattern), `n` (not inherited), `w` (split at whitespace), `e`
//! (exclude the merge file itself). Refused with an error: `/` (absolute-path matching),
//! `x` (xattr names), `p` (perishable) and `C` (CVS), which makuo does not implement.
//!
//! This module does no I/O.

use anyhow::{bail, Result};

/// What a parsed rule is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An include (`true`) or exclude (`false`) pattern.
    Pattern(bool),
    /// `clear` / `!`: drop the rules before it in the same list.
    Clear,
    /// `merge FILE`: the file's rules come in at this place.
    Merge,
    /// `dir-merge FILE`: a per-directory merge file.
    DirMerge,
}

/// How a merge file's lines are read (the merge rule's modifiers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MergeMods {
    /// `-` or `+`: every line is a pattern of this kind (`Some(include)`).
    pub no_prefixes: Option<bool>,
    /// `n`: a per-directory file's rules are not inherited by subdirectories.
    pub no_inherit: bool,
    /// `w`: split the file at whitespace, not lines (and no comments).
    pub word_split: bool,
    /// `e`: exclude the merge file itself.
    pub exclude_self: bool,
}

/// One parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub kind: Kind,
    /// Applies when selecting what to send.
    pub sender: bool,
    /// Applies when deciding what `--delete` may remove on the receivers.
    pub receiver: bool,
    /// `!` modifier: the rule applies to names that do NOT match.
    pub negate: bool,
    /// Merge-file modifiers (merge rules only).
    pub mods: MergeMods,
    /// The pattern, or the merge file's name.
    pub pattern: String,
}

/// How the rules of a list are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// Full filter-rule syntax (`--filter`, merge files).
    Full,
    /// `--include`/`--exclude`/`--exclude-from`: a bare pattern of the given kind, with the
    /// optional old prefixes `+ ` and `- `, and `!` alone clearing the list.
    Old(bool),
    /// A merge file read with `-` or `+`: every line is a pattern of the given kind.
    NoPrefixes(bool),
}

/// Sides a merge file's rules inherit from the merge rule (`Some((sender, receiver))`).
pub(crate) type Sides = Option<(bool, bool)>;

/// Parses one rule. `sides` are imposed by the merge rule the text was read through (a rule
/// naming its own side inside such a file is an error, as in rsync).
pub(crate) fn parse(text: &str, syntax: Syntax, sides: Sides) -> Result<Parsed> {
    let mut p = Parsed {
        kind: Kind::Pattern(false),
        sender: true,
        receiver: true,
        negate: false,
        mods: MergeMods::default(),
        pattern: String::new(),
    };
    let rest: &str = match syntax {
        Syntax::NoPrefixes(include) => {
            p.kind = Kind::Pattern(include);
            text
        }
        Syntax::Old(include) => {
            if text == "!" {
                p.kind = Kind::Clear;
                ""
            } else if let Some(r) = text.strip_prefix("+ ") {
                p.kind = Kind::Pattern(true);
                r
            } else if let Some(r) = text.strip_prefix("- ") {
                p.kind = Kind::Pattern(false);
                r
            } else {
                p.kind = Kind::Pattern(include);
                text
            }
        }
        Syntax::Full => parse_prefix(text, &mut p)?,
    };
    let own_side = !(p.sender && p.receiver);
    if let Some((s, r)) = sides {
        if own_side {
            bail!("{text:?}: a rule naming its side inside a merge file that names one");
        }
        p.sender = s;
        p.receiver = r;
    }
    match p.kind {
        Kind::Clear => {
            if !rest.is_empty() {
                bail!("{text:?}: '!' (clear) takes no pattern");
            }
        }
        Kind::Merge | Kind::DirMerge => {
            if rest.is_empty() {
                bail!("{text:?}: a merge rule needs a file name (.cvsignore is not supported)");
            }
        }
        Kind::Pattern(_) => {
            if rest.is_empty() {
                bail!("{text:?}: unexpected end of filter rule");
            }
        }
    }
    p.pattern = rest.to_owned();
    Ok(p)
}

/// Writes a parsed rule back as full filter-rule text that [`parse`] reads to the same rule.
pub(crate) fn render(p: &Parsed) -> String {
    let mut t = String::new();
    let one_side = !(p.sender && p.receiver);
    match p.kind {
        Kind::Clear => return "clear".into(),
        Kind::Pattern(inc) => {
            t.push(match (inc, p.sender, p.receiver) {
                (true, true, true) => '+',
                (false, true, true) => '-',
                (true, true, false) => 'S',
                (false, true, false) => 'H',
                (true, _, _) => 'R',
                (false, _, _) => 'P',
            });
            if p.negate {
                t.push('!');
            }
        }
        Kind::Merge | Kind::DirMerge => {
            t.push(if p.kind == Kind::Merge { '.' } else { ':' });
            if let Some(inc) = p.mods.no_prefixes {
                t.push(if inc { '+' } else { '-' });
            }
            for (on, c) in [
                (p.mods.no_inherit, 'n'),
                (p.mods.word_split, 'w'),
                (p.mods.exclude_self, 'e'),
                (one_side && p.sender, 's'),
                (one_side && p.receiver, 'r'),
            ] {
                if on {
                    t.push(c);
                }
            }
        }
    }
    t.push(' ');
    t.push_str(&p.pattern);
    t
}

/// Reads the rule name and modifiers of a full-syntax rule; returns the pattern text.
fn parse_prefix<'a>(text: &'a str, p: &mut Parsed) -> Result<&'a str> {
    const WORDS: &[(&str, char)] = &[
        ("clear", '!'),
        ("dir-merge", ':'),
        ("exclude", '-'),
        ("hide", 'H'),
        ("include", '+'),
        ("merge", '.'),
        ("protect", 'P'),
        ("risk", 'R'),
        ("show", 'S'),
    ];
    let b = text.as_bytes();
    // `i` ends up at the first modifier (or separator) after the rule name.
    let (ch, mut i) = match WORDS.iter().find(|(w, _)| {
        b.starts_with(w.as_bytes()) && matches!(b.get(w.len()), None | Some(b' ' | b'_' | b','))
    }) {
        Some(&(w, c)) => (c, w.len() + usize::from(b.get(w.len()) == Some(&b','))),
        None => match b.first() {
            Some(&c) => (c as char, 1 + usize::from(b.get(1) == Some(&b','))),
            None => bail!("empty filter rule"),
        },
    };
    let mut side_named = false;
    match ch {
        ':' => p.kind = Kind::DirMerge,
        '.' => p.kind = Kind::Merge,
        '+' => p.kind = Kind::Pattern(true),
        '-' => p.kind = Kind::Pattern(false),
        'S' | 'H' => {
            p.kind = Kind::Pattern(ch == 'S');
            p.receiver = false;
            side_named = true;
        }
        'R' | 'P' => {
            p.kind = Kind::Pattern(ch == 'R');
            p.sender = false;
            side_named = true;
        }
        '!' => {
            p.kind = Kind::Clear;
            return Ok(&text[i.min(text.len())..]);
        }
        _ => bail!("unknown filter rule: {text:?}"),
    }
    let merge = matches!(p.kind, Kind::Merge | Kind::DirMerge);
    let (mut s_mod, mut r_mod) = (false, false);
    while let Some(&m) = b.get(i) {
        if m == b' ' || m == b'_' {
            break;
        }
        match m {
            b'-' | b'+' if merge && p.mods.no_prefixes.is_none() => {
                p.mods.no_prefixes = Some(m == b'+')
            }
            b'!' if !merge => p.negate = true,
            b'n' if merge => p.mods.no_inherit = true,
            b'w' if merge => p.mods.word_split = true,
            b'e' if merge => p.mods.exclude_self = true,
            b's' if !side_named => s_mod = true,
            b'r' if !side_named => r_mod = true,
            b'/' | b'x' | b'p' | b'C' => {
                bail!(
                    "filter rule {text:?}: modifier '{}' is not supported by makuo",
                    m as char
                )
            }
            _ => bail!("invalid modifier '{}' in filter rule {text:?}", m as char),
        }
        i += 1;
    }
    if s_mod || r_mod {
        p.sender = s_mod;
        p.receiver = r_mod;
    }
    // Skip the one separator.
    Ok(text.get(i + 1..).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(t: &str) -> Parsed {
        parse(t, Syntax::Full, None).unwrap()
    }

    #[test]
    fn rule_short_and_long_names() {
        for (t, kind, s, r, pat) in [
            ("- *.o", Kind::Pattern(false), true, true, "*.o"),
            ("+ foo/", Kind::Pattern(true), true, true, "foo/"),
            ("exclude *.o", Kind::Pattern(false), true, true, "*.o"),
            ("include,s x", Kind::Pattern(true), true, false, "x"),
            ("P /keep", Kind::Pattern(false), false, true, "/keep"),
            ("protect /keep", Kind::Pattern(false), false, true, "/keep"),
            ("R x", Kind::Pattern(true), false, true, "x"),
            ("H x", Kind::Pattern(false), true, false, "x"),
            ("S x", Kind::Pattern(true), true, false, "x"),
            ("-r x", Kind::Pattern(false), false, true, "x"),
            ("-sr x", Kind::Pattern(false), true, true, "x"),
            ("-_x y", Kind::Pattern(false), true, true, "x y"),
            (
                ": /.rsync-filter",
                Kind::DirMerge,
                true,
                true,
                "/.rsync-filter",
            ),
            ("dir-merge .f", Kind::DirMerge, true, true, ".f"),
            (". rules", Kind::Merge, true, true, "rules"),
            ("merge rules", Kind::Merge, true, true, "rules"),
            ("!", Kind::Clear, true, true, ""),
            ("clear", Kind::Clear, true, true, ""),
        ] {
            let p = full(t);
            assert_eq!(
                (&p.kind, p.sender, p.receiver, p.pattern.as_str()),
                (&kind, s, r, pat),
                "{t}"
            );
        }
        let p = full("-! *.c");
        assert!(p.negate);
        let p = full(":n- .ignore");
        assert_eq!(
            p.mods,
            MergeMods {
                no_prefixes: Some(false),
                no_inherit: true,
                ..Default::default()
            }
        );
        let p = full("dir-merge,e+w list");
        assert_eq!(p.mods.no_prefixes, Some(true));
        assert!(p.mods.exclude_self && p.mods.word_split);
    }

    #[test]
    fn rule_errors_are_errors() {
        for bad in [
            "", "-", "- ", "-foo", "Q x", "! x", "clear x", "-x foo", "-/ foo", "-p x", "-C", ":",
            "merge", "Ps x", "-e x", "+n x", ".! x",
        ] {
            assert!(parse(bad, Syntax::Full, None).is_err(), "{bad:?} accepted");
        }
        assert!(parse("P x", Syntax::Full, Some((true, false))).is_err());
        let p = parse("- x", Syntax::Full, Some((false, true))).unwrap();
        assert!(!p.sender && p.receiver);
    }

    #[test]
    fn rule_render_reads_back_the_same() {
        for t in [
            "- *.o",
            "+  lead",
            "P /keep",
            "R x",
            "H x",
            "S x",
            "-! *.c",
            "P! y",
            "clear",
            ":n- .ignore",
            "dir-merge,e+w list",
            ":r .f",
            ". m",
        ] {
            let p = full(t);
            assert_eq!(full(&render(&p)), p, "{t} -> {}", render(&p));
        }
        let p = parse("- x", Syntax::Full, Some((false, true))).unwrap();
        assert_eq!(full(&render(&p)), p);
        let p = parse("x y", Syntax::NoPrefixes(true), None).unwrap();
        assert_eq!(full(&render(&p)), p);
    }

    #[test]
    fn rule_old_prefixes() {
        let p = parse("+ x", Syntax::Old(false), None).unwrap();
        assert_eq!(p.kind, Kind::Pattern(true));
        assert_eq!(p.pattern, "x");
        let p = parse("P x", Syntax::Old(false), None).unwrap();
        assert_eq!((p.kind, p.pattern.as_str()), (Kind::Pattern(false), "P x"));
        assert_eq!(
            parse("!", Syntax::Old(true), None).unwrap().kind,
            Kind::Clear
        );
        let p = parse("- x", Syntax::NoPrefixes(true), None).unwrap();
        assert_eq!((p.kind, p.pattern.as_str()), (Kind::Pattern(true), "- x"));
    }
}
