//! The committed man pages and shell completions must match what `cli.rs` generates.
//!
//! Regenerates everything into a temporary directory and compares it with `man/` and
//! `completions/` in the repository. A flag changed without regenerating fails here, naming the
//! stale file and the command that fixes it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use makuo::cli::generate::generate;
use makuo::cli::GenerateWhat;

const FIX: &str = "cargo run -- generate all";
const DIRS: [&str; 2] = ["man", "completions"];

/// Every file under `root/man` and `root/completions`, relative to `root`.
fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for dir in DIRS {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                out.insert(Path::new(dir).join(e.file_name()));
            }
        }
    }
    out
}

#[test]
fn committed_docs_are_up_to_date() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let written: BTreeSet<PathBuf> = generate(GenerateWhat::All, tmp.path())
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        written,
        files_under(tmp.path()),
        "generate's report disagrees with the disk"
    );

    let mut problems = Vec::new();
    for rel in &written {
        let fresh = fs::read(tmp.path().join(rel)).unwrap();
        match fs::read(repo.join(rel)) {
            Ok(committed) if committed == fresh => {}
            Ok(_) => problems.push(format!("{} is stale", rel.display())),
            Err(e) => problems.push(format!("{} is missing ({e})", rel.display())),
        }
    }
    for rel in files_under(repo).difference(&written) {
        problems.push(format!(
            "{} is no longer generated; delete it",
            rel.display()
        ));
    }
    assert!(
        problems.is_empty(),
        "generated docs are out of date:\n  {}\nfix with `{FIX}` and commit the result",
        problems.join("\n  ")
    );
}

#[test]
fn generation_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let files = generate(GenerateWhat::All, a.path()).unwrap();
    generate(GenerateWhat::All, b.path()).unwrap();
    for rel in files {
        let x = fs::read(a.path().join(&rel)).unwrap();
        let y = fs::read(b.path().join(&rel)).unwrap();
        assert_eq!(x, y, "{} differs between two runs", rel.display());
        let text = String::from_utf8_lossy(&x);
        for leak in [a.path(), b.path(), Path::new(env!("CARGO_MANIFEST_DIR"))] {
            let leak = leak.display().to_string();
            assert!(!text.contains(&leak), "{} mentions {leak}", rel.display());
        }
    }
}

fn committed(rel: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The man pages have EXAMPLES, FILES, SIGNALS, ENVIRONMENT and EXIT STATUS where they
/// belong, and makuo-console(7) lists every console word.
#[test]
fn man_pages_have_the_operator_sections_and_the_console_page() {
    let top = committed("man/makuo.1");
    for sh in [
        "EXAMPLES",
        "FILES",
        "SIGNALS",
        "ENVIRONMENT",
        "\"EXIT STATUS\"",
    ] {
        assert!(top.contains(&format!(".SH {sh}\n")), "makuo.1 has no {sh}");
    }
    let daemon = committed("man/makuo-daemon.1");
    for sh in ["EXAMPLES", "FILES", "SIGNALS", "ENVIRONMENT"] {
        assert!(
            daemon.contains(&format!(".SH {sh}\n")),
            "makuo-daemon.1 has no {sh}"
        );
    }
    assert!(daemon.contains("SIGHUP") && daemon.contains("MAKUO_CONSOLE_PORT"));
    let sync = committed("man/makuo-sync.1");
    assert!(sync.contains(".SH EXAMPLES\n") && sync.contains("makuo sync \\-r htdocs"));
    assert!(sync.contains("makuo\\-console"), "sync's SEE ALSO");
    let console = committed("man/makuo-console.7");
    assert!(console.contains(".TH makuo-console 7"), "{console}");
    for w in makuo::console::COMMANDS.iter().filter(|w| **w != "?") {
        assert!(console.contains(w), "makuo-console.7 does not list {w}");
    }
    for r in ["progress DONE TOTAL PATH", "error: REASON", "result {JSON}"] {
        assert!(console.contains(r), "makuo-console.7 does not explain {r}");
    }
}

/// Bash completion: never `generate`; no file names after -t/--target, -m/--group, -p or
/// --ttl (file names only after options whose value is a path); -t asks `makuo members`.
#[test]
fn bash_completes_files_only_where_a_path_belongs() {
    let text = committed("completions/makuo.bash");
    assert!(!text.contains("generate"), "bash offers generate");
    let mut option = String::new();
    let mut saw_members = false;
    let mut saw_path = false;
    for l in text.lines() {
        let t = l.trim();
        if t.starts_with('-') && t.ends_with(')') && !t.contains(' ') {
            option = t.trim_end_matches(')').to_string();
        }
        if t.contains("compgen -f") {
            assert!(
                !["-t", "--target", "-m", "--group", "-p", "--port", "--ttl", "--name"]
                    .contains(&option.as_str()),
                "{option} completes file names"
            );
            saw_path |= option == "--exclude-from" || option == "--key" || option == "-k";
        }
        if t.contains("makuo members") {
            assert!(
                ["-t", "--target"].contains(&option.as_str()),
                "{option}: {t}"
            );
            saw_members = true;
        }
    }
    assert!(saw_members, "-t does not complete member names");
    assert!(saw_path, "file options lost their file names");
}
