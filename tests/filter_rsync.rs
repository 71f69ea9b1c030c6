//! rsync is the oracle for filter semantics: for each rule list, the set of paths
//! `rsync -rln` would transfer must equal the set `tree::walk` selects with `Filter`.
//!
//! Needs `rsync` on `PATH`; the test fails (rather than passing silently) without it.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use makuo::filter::Filter;
use makuo::proto::manifest::{EntryKind, FilterRule};
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
    let filter = Filter::new(rules).unwrap();
    let opts = WalkOptions {
        recursive: true,
        checksum: false,
        ..WalkOptions::default()
    };
    let w = walk(src, &[b".".to_vec()], &opts, &filter).unwrap();
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
