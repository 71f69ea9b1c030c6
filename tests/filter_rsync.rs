//! rsync is the oracle for filter semantics: for each rule list, the set of paths
//! `rsync -rln` would transfer must equal the set `tree::walk` selects with `Filter`; for
//! `--filter` rules (merge, dir-merge with inheritance, clear, protect, -F, -FF) and
//! `--files-from` (with and without -r) too; and for `--delete`, the receiver paths rsync
//! would delete must equal what a makuo member's inspection lists, with the rules carried in
//! an encoded manifest (so the receiver side, per-directory files included, is checked).
//!
//! Needs `rsync` on `PATH`; the test fails (rather than passing silently) without it.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use makuo::apply::{ApplyOptions, FsStorage};
use makuo::filter::{Filter, RuleSpec};
use makuo::node::{build_manifest, Select};
use makuo::proto::manifest::{EntryKind, FilterRule, Manifest, PushOptions};
use makuo::proto::storage::{Storage, XferKey};
use makuo::tree::{walk, WalkOptions};

/// `(include, pattern)`, passed to rsync in order as `--include=` / `--exclude=`.
type Rules = &'static [(bool, &'static str)];

const I: bool = true;
const X: bool = false;

const CASES: &[Rules] = &[
    // Basename patterns at any depth.
    &[(X, "*.php")],
    &[(X, ".*")],
    &[(X, "cache")],
    &[(X, "*.PHP")],
    &[(X, "* *")],
    &[(X, "foo.php")],
    // Directory-only.
    &[(X, "cache/")],
    &[(X, "*/")],
    &[(X, "*.php/")],
    &[(X, "my docs/")],
    &[(X, "logs/*/")],
    // Anchored.
    &[(X, "/cache")],
    &[(X, "/cache/")],
    &[(X, "/sub/foo")],
    &[(X, "/a/*/c")],
    &[(X, "/*/*")],
    &[(X, "/index.*")],
    // Unanchored with an inner slash: trailing components.
    &[(X, "sub/foo")],
    &[(X, "a/b")],
    &[(X, "b/c/d")],
    &[(X, "*/*/*")],
    // ?, classes.
    &[(X, "file?")],
    &[(X, "file[0-9]*")],
    &[(X, "file[!0-9]")],
    &[(X, "file[^0-9]")],
    &[(X, "[[:upper:]]*")],
    &[(X, "?ub/f??")],
    // ** and ***.
    &[(X, "**/c")],
    &[(X, "a/**")],
    &[(X, "a/***")],
    &[(X, "cache/***")],
    &[(X, "/a/**/f.txt")],
    &[(X, "a/**/f.txt")],
    &[(X, "/a/**/deep.php")],
    &[(X, "**.log")],
    &[(X, "src/**.rs")],
    &[(X, "a**e")],
    &[(X, "**/")],
    &[(X, "/**/objects/**")],
    // Include/exclude orders: first match wins.
    &[(I, "*/"), (I, "*.php"), (X, "*")],
    &[(X, "cache/"), (I, "cache/keep")],
    &[(I, "cache/keep"), (X, "cache/*")],
    &[
        (I, "/cache/"),
        (I, "/cache/keep"),
        (X, "/cache/*"),
        (X, "/*"),
    ],
    &[(I, "*.php"), (X, "a/")],
    &[(X, "a/"), (I, "*.php")],
    &[(I, "/src/"), (I, "/src/*.rs"), (X, "*")],
    &[(I, "**/"), (I, "*.txt"), (X, "*")],
    &[(I, "/.htaccess"), (X, ".*")],
    &[(I, "a/b/c/deep.php"), (X, "*")],
    &[(I, "a/***"), (X, "*")],
    &[(I, "*/"), (I, "**/c/**"), (X, "*")],
    // Old-style prefixes and the list-clearing `!`.
    &[(X, "+ *.php"), (X, "*")],
    &[(I, "- *.txt")],
    &[(X, "*.php"), (X, "!"), (X, "*.txt")],
    // Symlinks are not directories.
    &[(X, "dirlink/")],
    &[(X, "*link")],
];

fn touch(base: &Path, rel: &str) {
    let p = base.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, rel).unwrap();
}

fn build_tree(src: &Path) {
    for f in [
        "index.php",
        "index.html",
        "README",
        ".htaccess",
        ".git/config",
        ".git/objects/ab/cdef",
        "a/b/c/deep.php",
        "a/b/c/d/e/f.txt",
        "a/b/f.txt",
        "a/cache/x",
        "a/f.txt",
        "cache/keep",
        "cache/tmp/y",
        "cache/z.log",
        "src/cache",
        "src/main.rs",
        "src/lib.rs",
        "src/util/mod.rs",
        "logs/app.log",
        "logs/old/app.log.1",
        "my docs/a file.txt",
        "my docs/b.PHP",
        "foo.php/inner.txt",
        "sub/foo",
        "x/sub/foo",
        "xsub/foo",
        "file1",
        "file2",
        "fileA",
        "file10",
        "Makefile",
        "b/c/d",
    ] {
        touch(src, f);
    }
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::create_dir_all(src.join("deep/er/still/empty")).unwrap();
    symlink("index.php", src.join("link")).unwrap();
    symlink("a", src.join("dirlink")).unwrap();
}

fn rsync_selection(src: &Path, dst: &Path, rules: Rules) -> BTreeSet<String> {
    let args: Vec<String> = rules
        .iter()
        .map(|(include, pat)| {
            let opt = if *include { "--include" } else { "--exclude" };
            format!("{opt}={pat}")
        })
        .collect();
    rsync_list(src, dst, &args)
}

/// What `rsync -rln` would transfer from `src/` to `dst/` with these filter options;
/// directories end in `/`.
fn rsync_list(src: &Path, dst: &Path, filter_args: &[String]) -> BTreeSet<String> {
    let mut cmd = Command::new("rsync");
    cmd.args(["-rln", "--out-format=%n"]).args(filter_args);
    let mut s = src.as_os_str().to_owned();
    s.push("/");
    let mut d = dst.as_os_str().to_owned();
    d.push("/");
    cmd.arg(s).arg(d);
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "rsync not found on PATH: this test uses rsync as the oracle for filter \
             semantics; install it (apt-get install rsync)"
        ),
        Err(e) => panic!("running rsync: {e}"),
    };
    assert!(
        out.status.success(),
        "rsync failed for {filter_args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && *l != "./")
        .map(str::to_owned)
        .collect()
}

fn makuo_selection(src: &Path, rules: Rules) -> BTreeSet<String> {
    let rules: Vec<FilterRule> = rules
        .iter()
        .map(|&(include, p)| FilterRule {
            include,
            pattern: p.to_owned(),
        })
        .collect();
    makuo_walk(src, &rules)
}

/// What `tree::walk` selects under `src` (the whole base, recursive); directories end in `/`.
fn makuo_walk(src: &Path, rules: &[FilterRule]) -> BTreeSet<String> {
    let mut filter = Filter::new(rules).unwrap();
    let opts = WalkOptions {
        recursive: true,
        checksum: false,
        ..WalkOptions::default()
    };
    let w = walk(src, &[b".".to_vec()], &opts, &mut filter).unwrap();
    assert!(w.skipped.is_empty(), "{:?}", w.skipped);
    w.entries
        .iter()
        .map(|e| {
            let mut s = String::from_utf8(e.path.clone()).unwrap();
            if e.kind == EntryKind::Dir {
                s.push('/');
            }
            s
        })
        .collect()
}

#[test]
fn filter_rsync_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    build_tree(&src);

    // Sanity: with no rules both sides see the whole tree.
    let all = rsync_selection(&src, &dst, &[]);
    assert_eq!(all, makuo_selection(&src, &[]));
    assert!(all.contains("my docs/a file.txt") && all.contains("dirlink"));

    assert!(CASES.len() >= 30);
    let mut failures = Vec::new();
    for rules in CASES {
        let want = rsync_selection(&src, &dst, rules);
        let got = makuo_selection(&src, rules);
        if want != got {
            failures.push(format!(
                "{rules:?}\n  only rsync: {:?}\n  only makuo: {:?}",
                want.difference(&got).collect::<Vec<_>>(),
                got.difference(&want).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from rsync:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// `--exclude-from`: comments, blank lines, CRLF, prefixes and kept whitespace read the way
/// rsync reads them.
#[test]
fn filter_rsync_exclude_from_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    build_tree(&src);
    let rules_file = tmp.path().join("rules");
    fs::write(
        &rules_file,
        "# comment\n; comment\n\n+ /src/\n+ /src/*.rs\r\nfile1 \n README\n- /src/*\n*.txt\n+ *.php\n/a/b/\n",
    )
    .unwrap();

    let want = rsync_list(
        &src,
        &dst,
        &[format!("--exclude-from={}", rules_file.display())],
    );
    let rules: Vec<FilterRule> = makuo::filter::read_rules_file(&rules_file)
        .unwrap()
        .into_iter()
        .map(|pattern| FilterRule {
            include: false,
            pattern,
        })
        .collect();
    let got = makuo_walk(&src, &rules);
    assert_eq!(want, got);
    assert!(!got.contains("src/util/") && got.contains("src/main.rs"));
}

// ---------------------------------------------------------------------------------------------
// --filter rules, per-directory files, --files-from, and the receiver side of --delete
// ---------------------------------------------------------------------------------------------

/// The names in a selection, directories ending in `/` (as rsync's `%n`).
fn names_of(m: &Manifest) -> BTreeSet<String> {
    m.entries
        .iter()
        .map(|e| {
            let mut s = String::from_utf8(e.path.clone()).unwrap();
            if e.kind == EntryKind::Dir {
                s.push('/');
            }
            s
        })
        .collect()
}

/// What `makuo sync` would select: `rules` as given to `-f` (merge files read from `cwd`).
fn makuo_select(
    src: &Path,
    rules: &[RuleSpec],
    cwd: &Path,
    list: Option<(&[&str], bool)>,
) -> Manifest {
    let rules = makuo::filter::expand_merges(rules, cwd).unwrap();
    let (paths, files_from, recursive) = match list {
        Some((l, r)) => (l.iter().map(|s| s.to_string()).collect(), true, r),
        None => (vec![".".to_string()], false, true),
    };
    let sel = build_manifest(
        src,
        &Select {
            paths: &paths,
            recursive,
            files_from,
            rules: &rules,
        },
        PushOptions {
            delete: true,
            dry_run: true,
            ..PushOptions::default()
        },
    )
    .unwrap();
    assert!(sel.skipped.is_empty(), "{:?}", sel.skipped);
    sel.manifest
}

fn spec(r: &str) -> RuleSpec {
    RuleSpec::Rule(r.to_string())
}

/// Per-directory filter files sprinkled through the oracle tree, and a merge file.
fn add_filter_files(src: &Path, tmp: &Path) {
    fs::write(
        src.join(".rsync-filter"),
        "- *.log\n+ keep.tmp\n- /README\n",
    )
    .unwrap();
    fs::write(
        src.join("a/.rsync-filter"),
        "+ app.log\n- /f.txt\n- cache/\n",
    )
    .unwrap();
    fs::write(src.join("a/b/.rsync-filter"), "clear\n- *.php\n").unwrap();
    fs::write(src.join("logs/.rsync-filter"), "+ *.log\n").unwrap();
    fs::write(src.join("src/.filt"), "*.rs\n").unwrap();
    fs::write(src.join("src/util/.filt"), "mod.*\n").unwrap();
    fs::write(src.join("cache/keep.tmp"), "x").unwrap();
    fs::write(src.join("a/app.log"), "x").unwrap();
    fs::write(
        tmp.join("rules.merge"),
        "- *.html\n+ /src/\n# comment\nclear\n- Makefile\n",
    )
    .unwrap();
}

/// Filter cases: rsync's arguments and makuo's rules, which must select the same.
fn filter_cases(merge: &str) -> Vec<(Vec<String>, Vec<RuleSpec>)> {
    let same = |rules: &[&str]| -> (Vec<String>, Vec<RuleSpec>) {
        (
            rules.iter().map(|r| format!("--filter={r}")).collect(),
            rules.iter().map(|r| spec(r)).collect(),
        )
    };
    vec![
        same(&["- *.php"]),
        same(&["+ */", "+ *.php", "- *"]),
        same(&["-! *.php"]),
        same(&["exclude *.txt", "include /a/", "- /*"]),
        // Sender-only and receiver-only rules.
        same(&["H *.php"]),
        same(&["S index.php", "H *.php"]),
        same(&["P *.php"]),
        same(&["R *.txt", "- *.txt"]),
        same(&["-s *.txt"]),
        same(&["-r *.txt"]),
        // clear drops what came before.
        same(&["- *.php", "clear", "- *.html"]),
        same(&["- *.php", "!", "- *.txt"]),
        // merge: the file's rules in its place (its clear clears the list so far).
        same(&["- *.txt", &format!("merge {merge}"), "- *.rs"]),
        same(&[&format!("merge,- {merge}")]),
        same(&[&format!(".e {merge}")]),
        // dir-merge: inherited below, deepest first, at the rule's position, clear, anchors.
        same(&["dir-merge .rsync-filter"]),
        same(&[": /.rsync-filter"]),
        same(&["+ README", "dir-merge .rsync-filter", "- *.tmp"]),
        same(&["dir-merge,n .rsync-filter"]),
        same(&["dir-merge,- .filt"]),
        same(&["dir-merge,n- .filt"]),
        same(&["dir-merge,e- .filt"]),
        same(&["dir-merge,+ .filt", "- *.rs", "- mod.*"]),
        same(&["dir-merge,s .rsync-filter"]),
        same(&["dir-merge .rsync-filter", "dir-merge,- .filt"]),
        // -F and -FF.
        (vec!["-F".into()], vec![spec("dir-merge /.rsync-filter")]),
        (
            vec!["-FF".into()],
            vec![spec("dir-merge /.rsync-filter"), spec("- .rsync-filter")],
        ),
        (
            vec![
                "--exclude=*.php".into(),
                "-F".into(),
                "--include=*.log".into(),
            ],
            vec![
                RuleSpec::Old(FilterRule {
                    include: false,
                    pattern: "*.php".into(),
                }),
                spec("dir-merge /.rsync-filter"),
                RuleSpec::Old(FilterRule {
                    include: true,
                    pattern: "*.log".into(),
                }),
            ],
        ),
    ]
}

#[test]
fn filter_rsync_oracle_filter_rules_merge_and_dir_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    build_tree(&src);
    add_filter_files(&src, tmp.path());
    let merge = tmp.path().join("rules.merge");
    let merge = merge.to_str().unwrap();
    let cases = filter_cases(merge);
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for (args, rules) in &cases {
        let want = rsync_list(&src, &dst, args);
        let got = names_of(&makuo_select(&src, rules, tmp.path(), None));
        if want != got {
            failures.push(format!(
                "{args:?}\n  only rsync: {:?}\n  only makuo: {:?}",
                want.difference(&got).collect::<Vec<_>>(),
                got.difference(&want).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from rsync:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The case: `- *.log` in a subdirectory's .rsync-filter keeps `*.log` under it (and
/// only there) from being pushed by `-rF`, as `rsync -rF` selects.
#[test]
fn filter_rsync_oracle_rsync_filter_in_a_subdirectory() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    build_tree(&src);
    fs::write(src.join("logs/.rsync-filter"), "- *.log\n").unwrap();
    fs::write(src.join("top.log"), "x").unwrap();
    touch(&src, "logs/old/deep.log");
    let want = rsync_list(&src, &dst, &["-F".into()]);
    let got = names_of(&makuo_select(
        &src,
        &[spec("dir-merge /.rsync-filter")],
        tmp.path(),
        None,
    ));
    assert_eq!(want, got);
    assert!(!got.contains("logs/app.log") && !got.contains("logs/old/deep.log"));
    assert!(got.contains("logs/old/app.log.1"));
    assert!(got.contains("top.log") && got.contains("logs/.rsync-filter"));
}

/// `--files-from`, with and without -r, with rules: the listed paths and their parents.
#[test]
fn filter_rsync_oracle_files_from() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    build_tree(&src);
    let list: &[&str] = &[
        "a/b/f.txt",
        "src/util",
        "cache/",
        "/logs/app.log",
        "./my docs/b.PHP",
        "sub",
        "a//cache/x",
    ];
    let file = tmp.path().join("list");
    fs::write(&file, list.join("\n") + "\n# comment\n").unwrap();
    let from = format!("--files-from={}", file.display());
    let cleaned = makuo::filter::read_files_from(&file, false).unwrap();
    let cleaned: Vec<String> = cleaned
        .iter()
        .map(|p| String::from_utf8(p.clone()).unwrap())
        .collect();
    let cleaned: Vec<&str> = cleaned.iter().map(String::as_str).collect();
    for (recursive, extra, rules) in [
        (false, vec![], vec![]),
        (true, vec![], vec![]),
        (
            true,
            vec!["--exclude=*.rs".to_string()],
            vec![spec("- *.rs")],
        ),
        (
            false,
            vec!["--exclude=b.PHP".to_string()],
            vec![spec("- b.PHP")],
        ),
        // Excluding a parent does not drop a listed path below it.
        (false, vec!["--exclude=a/".to_string()], vec![spec("- a/")]),
    ] {
        let mut args = vec![from.clone()];
        args.extend(extra.clone());
        let want = if recursive {
            rsync_list(&src, &dst, &args)
        } else {
            rsync_list_flags(&src, &dst, "-ln", &args)
        };
        let got = names_of(&makuo_select(
            &src,
            &rules,
            tmp.path(),
            Some((&cleaned, recursive)),
        ));
        assert_eq!(want, got, "-r={recursive} {extra:?}");
    }
}

/// The receiver side: what `rsync -r --delete` deletes on a destination holding extra paths
/// is what a makuo member lists for deletion, with the rules (protect, risk, hide, excludes,
/// per-directory files) carried to it in the manifest.
#[test]
fn filter_rsync_oracle_delete_spares_what_rsync_spares() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_tree(&src);
    add_filter_files(&src, tmp.path());
    let merge = tmp.path().join("rules.merge");
    let merge = merge.to_str().unwrap();
    let mut failures = Vec::new();
    let cases = filter_cases(merge);
    for (i, (args, rules)) in cases.iter().enumerate() {
        let dst = tmp.path().join(format!("dst{i}"));
        build_tree(&dst);
        let unused = tmp.path().join(format!("unused{i}"));
        fs::create_dir_all(&unused).unwrap();
        add_filter_files(&dst, &unused);
        for extra in [
            "extra.php",
            "extra.txt",
            "a/extra.log",
            "a/b/extra.php",
            "logs/extra.log",
            "only/here.txt",
            "only/here.php",
            "src/extra.rs",
            "src/util/mod.c",
            "cache/extra.tmp",
        ] {
            touch(&dst, extra);
        }
        let mut a = vec!["--delete".to_string()];
        a.extend(args.iter().cloned());
        let want = rsync_deletions(&src, &dst, &a);
        let got = makuo_deletions(&src, &dst, rules, tmp.path());
        if want != got {
            failures.push(format!(
                "{args:?}\n  only rsync: {:?}\n  only makuo: {:?}",
                want.difference(&got).collect::<Vec<_>>(),
                got.difference(&want).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases delete differently from rsync:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// As [`rsync_list`] with other flags than `-rln`.
fn rsync_list_flags(src: &Path, dst: &Path, flags: &str, args: &[String]) -> BTreeSet<String> {
    let mut cmd = Command::new("rsync");
    cmd.args([flags, "--out-format=%n"]).args(args);
    let mut s = src.as_os_str().to_owned();
    s.push("/");
    cmd.arg(s).arg(dst);
    let out = cmd.output().expect("rsync");
    assert!(
        out.status.success() || out.status.code() == Some(23),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && *l != "./")
        .map(str::to_owned)
        .collect()
}

/// Every path `rsync -rn --delete` would delete under `dst` (directories without `/`).
fn rsync_deletions(src: &Path, dst: &Path, args: &[String]) -> BTreeSet<String> {
    let mut cmd = Command::new("rsync");
    cmd.args(["-rlni"]).args(args);
    let mut s = src.as_os_str().to_owned();
    s.push("/");
    let mut d = dst.as_os_str().to_owned();
    d.push("/");
    cmd.arg(s).arg(d);
    let out = cmd.output().expect("rsync");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("*deleting"))
        .map(|p| p.trim_start().trim_end_matches('/').to_owned())
        .collect()
}

/// What a makuo member with base `dst` lists for deletion, the manifest encoded and decoded
/// on the way; a directory listed goes whole, so its contents are listed too.
fn makuo_deletions(src: &Path, dst: &Path, rules: &[RuleSpec], cwd: &Path) -> BTreeSet<String> {
    let m = makuo_select(src, rules, cwd, None);
    let m = Manifest::decode(&m.encode()).unwrap();
    let mut st = FsStorage::new(dst.to_path_buf(), ApplyOptions::default()).unwrap();
    let insp = st
        .inspect(XferKey { origin: 1, xfer: 1 }, &m)
        .expect("an inspection");
    let mut out = BTreeSet::new();
    for d in insp.deletions {
        let d = String::from_utf8(d).unwrap();
        let p = dst.join(&d);
        if p.is_dir() && !p.is_symlink() {
            for e in walkdir_all(&p) {
                out.insert(format!("{d}/{e}"));
            }
        }
        out.insert(d);
    }
    out
}

fn walkdir_all(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if e.file_type().unwrap().is_dir() {
            for sub in walkdir_all(&e.path()) {
                out.push(format!("{name}/{sub}"));
            }
        }
        out.push(name);
    }
    out
}
