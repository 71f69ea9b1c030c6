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
