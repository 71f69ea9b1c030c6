//! Unit tests of the filter: pattern matching, rule order, sides, per-directory files and the
//! manifest table.

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

fn rules(specs: &[&str]) -> Filter {
    let specs: Vec<RuleSpec> = specs
        .iter()
        .map(|s| RuleSpec::Rule(s.to_string()))
        .collect();
    Filter::build(&specs).unwrap()
}

#[test]
fn filter_sides_protect_hide_risk_show() {
    let f = rules(&["P /keep", "H *.secret", "- *.log"]);
    // Sender: P does not hide, H does, - does.
    assert!(!f.excluded(b"keep", false));
    assert!(f.excluded(b"a.secret", false));
    assert!(f.excluded(b"x.log", false));
    // Receiver: P protects, H does not, - does.
    assert!(f.protected(b"keep", false));
    assert!(!f.protected(b"a.secret", false));
    assert!(f.protected(b"x.log", false));
    // R risks what a later rule would protect; S shows on the sender only.
    let f = rules(&["R old.log", "S keep.log", "- *.log"]);
    assert!(!f.protected(b"old.log", false));
    assert!(f.excluded(b"old.log", false));
    assert!(f.protected(b"keep.log", false));
    assert!(!f.excluded(b"keep.log", false));
    // Negation.
    let f = rules(&["-! *.php"]);
    assert!(f.excluded(b"a.html", false));
    assert!(!f.excluded(b"a.php", false));
}

#[test]
fn filter_clear_and_old_prefixes_mix() {
    let specs = vec![
        RuleSpec::Old(FilterRule {
            include: false,
            pattern: "*.o".into(),
        }),
        RuleSpec::Rule("clear".into()),
        RuleSpec::Rule("- *.a".into()),
        RuleSpec::Old(FilterRule {
            include: true,
            pattern: "P x".into(),
        }),
    ];
    let f = Filter::build(&specs).unwrap();
    assert!(!f.excluded(b"x.o", false));
    assert!(f.excluded(b"x.a", false));
    // An --include of "P x" is a pattern, not a protect rule.
    assert_eq!(f.decide(Side::Sender, b"P x", false), Some(true));
    assert!(Filter::build(&[RuleSpec::Rule("merge x".into())]).is_err());
}

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let p = d.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    d
}

fn load_all(f: &mut Filter, base: &Path, dirs: &[&str]) {
    for d in dirs {
        f.load_dir(base, d.as_bytes(), false).unwrap();
    }
}

#[test]
fn filter_dir_merge_inherits_deepest_first_at_its_position() {
    let d = tree(&[
        (".rsync-filter", "- *.log\n+ keep.tmp\n"),
        ("a/.rsync-filter", "+ *.log\n- /only\n"),
        ("a/b/.rsync-filter", "clear\n- *.c\n"),
    ]);
    let mut f = rules(&["+ always.log", "dir-merge .rsync-filter", "- *.tmp"]);
    load_all(&mut f, d.path(), &["", "a", "a/b"]);
    assert!(f.excluded(b"x.log", false));
    assert!(
        !f.excluded(b"always.log", false),
        "a rule before the dir-merge wins"
    );
    assert!(
        !f.excluded(b"a/x.log", false),
        "a's file comes before the inherited one"
    );
    assert!(f.excluded(b"a/only", false), "anchored at a/");
    assert!(!f.excluded(b"only", false));
    assert!(!f.excluded(b"a/c/only", false));
    assert!(
        !f.excluded(b"keep.tmp", false),
        "per-dir rules come before the later - *.tmp"
    );
    assert!(f.excluded(b"other.tmp", false));
    // a/b cleared what it inherited: *.log is not excluded there; *.c is.
    assert!(!f.excluded(b"a/b/x.log", false));
    assert!(f.excluded(b"a/b/x.c", false));
    assert!(f.excluded(b"a/b/deeper/x.c", false));
    assert!(!f.excluded(b"a/x.c", false));
}

#[test]
fn filter_dir_merge_modifiers() {
    let d = tree(&[(".ig", "*.o\n*.a\n"), ("s/.ig", "*.b\n")]);
    // n: not inherited; -: every line an exclude; e: the file itself excluded.
    let mut f = rules(&["dir-merge,ne- .ig"]);
    load_all(&mut f, d.path(), &["", "s"]);
    assert!(f.excluded(b"x.o", false));
    assert!(!f.excluded(b"s/x.o", false), "not inherited");
    assert!(f.excluded(b"s/x.b", false));
    assert!(f.excluded(b".ig", false) && f.excluded(b"s/.ig", false));
    // A receiver-side dir-merge: protects, never hides.
    let mut f = rules(&["dir-merge,r- .ig"]);
    load_all(&mut f, d.path(), &[""]);
    assert!(!f.excluded(b"x.o", false));
    assert!(f.protected(b"x.o", false));
    // Malformed per-directory files are errors; nested merges are refused.
    let d = tree(&[
        (".rsync-filter", "Q x\n"),
        ("n/.rsync-filter", "merge other\n"),
    ]);
    let mut f = rules(&["dir-merge .rsync-filter"]);
    assert!(f.load_dir(d.path(), b"", false).is_err());
    assert!(f.load_dir(d.path(), b"n", false).is_err());
}

#[test]
fn filter_parent_scan_reads_from_the_base_down() {
    let d = tree(&[
        (".rsync-filter", "- *.log\n"),
        ("a/.rsync-filter", "- *.c\n"),
    ]);
    let mut f = rules(&["dir-merge /.rsync-filter"]);
    f.load_parents(d.path(), b"a/b/c").unwrap();
    assert!(f.excluded(b"a/b/c/x.log", false));
    assert!(f.excluded(b"a/b/c/x.c", false));
    let mut f = rules(&["dir-merge .rsync-filter"]);
    f.load_parents(d.path(), b"a/b/c").unwrap();
    assert!(
        !f.excluded(b"a/b/c/x.log", false),
        "only /NAME scans parents"
    );
}

#[test]
fn filter_table_round_trip_gives_the_receiver_the_same_answers() {
    let d = tree(&[
        (".rsync-filter", "- *.log\nP /top.keep\nH *.hid\n"),
        ("a/.rsync-filter", "clear\n-! *.c\n"),
    ]);
    let mut f = rules(&[
        "+ always.log",
        "dir-merge,n .rsync-filter",
        "R risky",
        "H hidden",
    ]);
    load_all(&mut f, d.path(), &["", "a"]);
    let ManifestRules::Table(t) = f.to_manifest() else {
        panic!("sides and dir-merge rules need the table");
    };
    assert!(t
        .rules
        .iter()
        .all(|r| r.flags & WireRule::RECEIVER != 0 || r.flags & WireRule::DIR_MERGE != 0));
    let r = Filter::from_table(&t).unwrap();
    for (p, dir) in [
        ("x.log", false),
        ("always.log", false),
        ("top.keep", false),
        ("x.hid", false),
        ("a/x.c", false),
        ("a/x.h", false),
        ("a/b/x.log", false),
        ("risky", false),
        ("hidden", false),
        ("a", true),
    ] {
        assert_eq!(
            r.protected(p.as_bytes(), dir),
            f.protected(p.as_bytes(), dir),
            "{p}"
        );
    }
    assert!(r.protected(b"top.keep", false) && !r.protected(b"x.hid", false));
    // Plain rules stay in the simple list, prefixed so that they read back the same.
    let f = Filter::build(&[
        RuleSpec::Rule("- + odd".into()),
        RuleSpec::Old(FilterRule {
            include: true,
            pattern: "*.php".into(),
        }),
    ])
    .unwrap();
    let ManifestRules::Simple(simple) = f.to_manifest() else {
        panic!("plain rules go in the simple list");
    };
    let back = Filter::new(&simple).unwrap();
    assert!(back.excluded(b"+ odd", false) && !back.excluded(b"x.php", false));
}

#[test]
fn filter_merge_files_are_expanded_in_place() {
    let d = tree(&[
        ("outer", "- *.o\nmerge inner\ndir-merge .f\n"),
        ("inner", "+ keep.o\n"),
        ("plain", "*.tmp\n*.bak\n"),
    ]);
    let specs = vec![
        RuleSpec::Rule("+ first.o".into()),
        RuleSpec::Rule("merge outer".into()),
        RuleSpec::Rule("merge,r- plain".into()),
        RuleSpec::Rule(".e inner".into()),
    ];
    let got = expand_merges(&specs, d.path()).unwrap();
    let texts: Vec<String> = got
        .iter()
        .map(|s| match s {
            RuleSpec::Rule(t) => t.clone(),
            RuleSpec::Old(r) => format!("old {}", r.pattern),
        })
        .collect();
    assert_eq!(
        texts,
        [
            "+ first.o",
            "- *.o",
            "+ keep.o",
            ": .f",
            "P *.tmp",
            "P *.bak",
            "- inner",
            "+ keep.o"
        ]
    );
    let f = Filter::build(&got).unwrap();
    assert!(f.excluded(b"x.o", false) && !f.excluded(b"first.o", false));
    assert!(
        f.excluded(b"keep.o", false),
        "first match wins: - *.o comes first"
    );
    assert!(!f.excluded(b"x.tmp", false) && f.protected(b"x.tmp", false));
    assert!(expand_merges(&[RuleSpec::Rule("merge missing".into())], d.path()).is_err());
    assert!(expand_merges(&[RuleSpec::Rule("- [".into())], d.path()).is_err());
}

/// Issue 12 review, F1: patterns written to explode (`**a` repeated: 3.9 KB compiled to
/// ~1.5 MB in 33 ms by globset) are refused while compiling, not built.
#[test]
fn filter_explosive_patterns_are_refused_while_compiling() {
    for n in [5, 100, 1300] {
        let bomb = "**a".repeat(n);
        let err = Filter::build(&[RuleSpec::Rule(format!("- {bomb}"))]).unwrap_err();
        assert!(format!("{err:#}").contains("too complex"), "{n}: {err:#}");
        let err = Filter::from_table(&FilterTable {
            rules: vec![WireRule {
                flags: WireRule::RECEIVER,
                pattern: bomb.clone(),
            }],
            dirs: Vec::new(),
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("too complex"), "{n}: {err:#}");
    }
    // Ordinary rules stay within their allowance, and their memory is known.
    let f = rules(&[
        "- *.o",
        "- **/node_modules/**",
        "P a/**/b/**/c",
        "- /build/",
        "+ [a-z]*.txt",
    ]);
    assert!(f.memory() > 0);
    let allowed: u64 = [
        "*.o",
        "**/node_modules/**",
        "a/**/b/**/c",
        "/build/",
        "[a-z]*.txt",
    ]
    .iter()
    .map(|p| pattern::rule_allowance(p.len()))
    .sum();
    assert!(f.memory() <= allowed, "{} > {allowed}", f.memory());
    // A long literal path (4 KiB) is fine.
    rules(&[&format!("- {}", "d/".repeat(2047))]);
}

#[test]
fn filter_rule_count_and_pattern_bytes_are_capped() {
    let many = |n: usize| -> Vec<RuleSpec> {
        (0..n)
            .map(|i| {
                RuleSpec::Old(FilterRule {
                    include: false,
                    pattern: format!("*.x{i}"),
                })
            })
            .collect()
    };
    Filter::build(&many(MAX_FILTER_RULES)).unwrap();
    let err = Filter::build(&many(MAX_FILTER_RULES + 1)).unwrap_err();
    assert!(format!("{err:#}").contains("filter rules"), "{err:#}");
    // `clear` does not give the count back.
    let mut specs = many(MAX_FILTER_RULES);
    specs.insert(0, RuleSpec::Rule("!".into()));
    specs.insert(MAX_FILTER_RULES / 2, RuleSpec::Rule("!".into()));
    specs.push(RuleSpec::Rule("- one-more".into()));
    assert!(Filter::build(&specs).is_err());
    // Pattern bytes: 40 literal 4000-byte patterns are 160,000 bytes.
    let long: Vec<RuleSpec> = (0..40)
        .map(|i| RuleSpec::Rule(format!("- {i:04}{}", "p".repeat(3996))))
        .collect();
    let err = Filter::build(&long).unwrap_err();
    assert!(
        format!("{err:#}").contains("bytes of filter patterns"),
        "{err:#}"
    );
    // The same caps for rules a manifest brings, and for per-directory files read while
    // walking.
    let t = FilterTable {
        rules: (0..=MAX_FILTER_RULES)
            .map(|i| WireRule {
                flags: WireRule::RECEIVER,
                pattern: format!("*.x{i}"),
            })
            .collect(),
        dirs: Vec::new(),
    };
    assert!(Filter::from_table(&t).is_err());
    let body: String = (0..=MAX_FILTER_RULES)
        .map(|i| format!("- *.y{i}\n"))
        .collect();
    let d = tree(&[(".rsync-filter", &body)]);
    let mut f = rules(&["dir-merge .rsync-filter"]);
    let err = f.load_dir(d.path(), b"", false).unwrap_err();
    assert!(format!("{err:#}").contains("filter rules"), "{err:#}");
}

/// A pattern tried after every `/` is one regex, with the same answers as trying it at
/// each level.
#[test]
fn filter_any_level_patterns_match_in_one_pass() {
    let f = ex("b/**/z");
    check(&f, "b/z", false, false);
    check(&f, "b/c/z", false, true);
    check(&f, "a/b/c/d/z", false, true);
    check(&f, "a/xb/c/z", false, false);
    check(&f, "a/b/c/zz", false, false);
    let deep = format!("{}b/c/z", "d/".repeat(2000));
    check(&f, &deep, false, true);
}
