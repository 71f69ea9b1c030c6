//! Build script: records which git commit the binary is built from, for `makuo --version`.
//!
//! Sets `MAKUO_GIT_COMMIT` for the crate: the abbreviated commit, with `-dirty` when the files
//! the binary is built from (`src/`, `build.rs`, `Cargo.toml`, `Cargo.lock`) differ from that
//! commit, or `unknown` when there is no git or no repository (a build from a tarball). A
//! `MAKUO_GIT_COMMIT` already set in the environment wins (a packager who knows the commit).
//!
//! Benchmark figures name the binary that produced them through this, so "dirty" is scoped to
//! the binary's inputs: edits to docs or benchmark scripts do not change the binary and do not
//! mark it. Cargo reruns this script only when HEAD, the branch's ref or one of those inputs
//! changes, so an ordinary rebuild costs nothing extra (no `.git/index` watch: staging a file
//! must not recompile the crate).

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the dirty check and the rerun triggers cover, relative to the manifest directory.
const INPUTS: [&str; 4] = ["src", "build.rs", "Cargo.toml", "Cargo.lock"];

fn main() {
    println!("cargo:rerun-if-env-changed=MAKUO_GIT_COMMIT");
    for input in INPUTS {
        println!("cargo:rerun-if-changed={input}");
    }
    let commit = match std::env::var("MAKUO_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => {
            let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
            from_git(&dir).unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo:rustc-env=MAKUO_GIT_COMMIT={commit}");
}

/// Runs git in `dir`; its trimmed stdout when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit (and `-dirty`) of the checkout at `dir`, registering HEAD and the branch's ref as
/// rerun triggers; `None` without git or outside a repository.
fn from_git(dir: &Path) -> Option<String> {
    // Only a checkout of this crate counts: a tarball unpacked inside some other repository
    // must not borrow that repository's commit.
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let commit = git(dir, &["rev-parse", "--short", "HEAD"])?;
    if commit.is_empty() {
        return None;
    }
    // HEAD lives in the worktree's git dir, branch refs in the common one: ask git for both.
    // Only existing files are watched (cargo treats a missing one as always changed); a packed
    // ref is watched through packed-refs.
    let path = |p: &str| git(dir, &["rev-parse", "--git-path", p]).map(|p| dir.join(p));
    let mut watch = vec![path("HEAD")];
    if let Some(r) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        match path(&r) {
            Some(p) if p.is_file() => watch.push(Some(p)),
            _ => watch.push(path("packed-refs")),
        }
    }
    for p in watch.into_iter().flatten() {
        if p.is_file() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    let mut args = vec![
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=normal",
        "--",
    ];
    args.extend(INPUTS);
    let dirty = match git(dir, &args) {
        Some(s) => !s.is_empty(),
        None => {
            // Cannot tell: say so at build time and claim nothing clean.
            println!("cargo:warning=git status failed: marking {commit} dirty");
            true
        }
    };
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}
