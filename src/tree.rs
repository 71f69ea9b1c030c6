//! The sender's side of a push: walk the paths given under the base directory and describe
//! them as manifest [`Entry`]s.
//!
//! Owns: reading the source tree (walkdir lists names, never following symlinks), applying
//! the [`Filter`] (reading per-directory filter files as it enters each directory), and the
//! optional MD5 of every regular file (in parallel on rayon). It writes nothing and opens no
//! sockets.
//!
//! Every entry is stat'ed, its link text, holes and attributes read, and its contents hashed
//! through its parent directory resolved one `O_NOFOLLOW` component at a time from the base
//! (`apply::source`), never by full path: a parent that a base writer swaps for a symlink
//! mid-walk is refused (the entry is reported as skipped and the rest of that directory is
//! not walked), and a file that changed type is reported, never followed or opened as a
//! FIFO or device. (walkdir itself lists directories by path: through such a swapped parent
//! it may list one directory's names, which are then refused.)
//!
//! Like rsync without `-R`, the parents of a given path are not emitted (receivers create
//! missing parents); `.` stands for the contents of the base. A list ([`walk_list`]: rsync's
//! `--files-from`, and the watch's changed paths) emits the parents of every listed path, as
//! rsync's implied directories. Entries come out in tree order:
//! sorted by path with `/` ordering before every other byte, so a directory precedes its
//! contents and siblings are sorted by name bytes. A path reached twice (overlapping roots)
//! is emitted once.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context as _};
use rayon::prelude::*;

use crate::apply::is_refused;
use crate::apply::source::{md5_of_file, Source};
use crate::filter::Filter;
use crate::kinds::{self, KindOptions};
use crate::proto::manifest::{check_rel_path, Entry, EntryKind, MAX_PATH};

/// What to walk and what to compute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkOptions {
    /// Descend into directories (rsync `-r`). Without it a directory path yields only its
    /// own entry.
    pub recursive: bool,
    /// Fill [`Entry::checksum`] with the MD5 of each regular file.
    pub checksum: bool,
    /// Which kinds beyond files, directories and symlinks to send, and what of them
    /// (hard links, holes, devices and specials, attributes): see [`kinds`].
    pub kinds: KindOptions,
}

/// How many levels below a listed directory [`walk_list`] goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// The path itself.
    Itself,
    /// Its direct contents too (a listed `dir/` without `-r`).
    Contents,
    /// Everything below (`-r`).
    All,
}

/// A PATH argument as the tree functions take it: trailing slashes dropped (`dir/` is
/// `dir`), and what is left empty (`/`, an empty argument) is the base itself, `.`.
pub fn path_arg(p: &str) -> Vec<u8> {
    let p = p.trim_end_matches('/');
    if p.is_empty() {
        b".".to_vec()
    } else {
        p.as_bytes().to_vec()
    }
}

/// One path of a [`walk_list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the base, clean (no `.`/`..`/empty components), or `.`.
    pub path: Vec<u8>,
    /// How far below it to go when it is a directory.
    pub depth: Depth,
}

/// How [`walk_list`] applies the filter to a listed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListFilter {
    /// rsync's `--files-from`: only the listed name itself is checked, against the rules
    /// outside per-directory files; its parents are implied and never filtered.
    Name,
    /// The watch: the path and each of its parents below `root` (the watched path) are
    /// checked as a walk from `root` would check them, per-directory files included.
    Walk {
        /// The transfer root the path lies under.
        root: Vec<u8>,
    },
}

/// The result of a walk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// Entries in tree order, each path once.
    pub entries: Vec<Entry>,
    /// The transfer roots, normalised (no trailing `/`), in the order given.
    pub roots: Vec<Vec<u8>>,
    /// Paths that disappeared between being listed and being read (rsync's exit 24 case).
    pub vanished: u64,
    /// Paths left out, with the reason: sockets, FIFOs and devices (unless asked for),
    /// unreadable directories or files, paths too long for a manifest, and attributes that
    /// could not be sent (rsync's exit 23 case).
    pub skipped: Vec<(Vec<u8>, String)>,
    /// Device and inode of every regular file with more than one link (`-H`).
    inodes: HashMap<Vec<u8>, (u64, u64)>,
    /// Listed paths that do not exist or cannot be used, with the reason (rsync's exit 23).
    pub missing: Vec<(Vec<u8>, String)>,
    /// A file could not be read: a `--delete` would remove it on the members, so this push
    /// deletes nothing (rsync's "IO error encountered -- skipping file deletion").
    pub io_error: bool,
}

/// Walks `paths` (relative to `base`, as given to `send`) and returns their entries.
///
/// Fails, before reading anything, on a path that is absolute, contains `.`/`..`/empty
/// components or NUL, or whose parent directories under `base` include a symlink (it could
/// lead out of `base`). Fails if `base` is not a directory or a given path does not exist.
pub fn walk(
    base: &Path,
    paths: &[Vec<u8>],
    opts: &WalkOptions,
    filter: &mut Filter,
) -> anyhow::Result<Walk> {
    let base_md = fs::metadata(base).with_context(|| format!("base {}", base.display()))?;
    if !base_md.is_dir() {
        bail!("base {} is not a directory", base.display());
    }
    let mut roots = Vec::with_capacity(paths.len());
    for p in paths {
        let root = normalize_root(base, p)?;
        check_parents(base, &root)?;
        roots.push(root);
    }

    let mut w = Walk {
        roots: roots.clone(),
        ..Walk::default()
    };
    let mut src = Source::open(base).with_context(|| format!("base {}", base.display()))?;
    for root in &roots {
        let is_dir = if root != b"." {
            // A missing root is the user's mistake, not a vanished file.
            src.metadata(root)
                .with_context(|| {
                    format!(
                        "{} (in the base {})",
                        crate::escape::text(root),
                        base.display()
                    )
                })?
                .is_dir()
        } else {
            true
        };
        if !opts.recursive && is_dir {
            // rsync without -r: a named directory is skipped, and says so.
            w.skipped.push((root.clone(), SKIP_DIR.into()));
            // Nor is it a scope of `--delete` (which would empty it on every member).
            w.roots.retain(|r| r != root);
            continue;
        }
        filter.load_parents(base, root)?;
        let depth = if opts.recursive { usize::MAX } else { 0 };
        walk_root(base, &mut src, root, depth, true, opts, filter, &mut w)?;
    }
    finish(base, &src, opts, w)
}

fn finish(base: &Path, src: &Source, opts: &WalkOptions, mut w: Walk) -> anyhow::Result<Walk> {
    w.entries.sort_by(|a, b| tree_cmp(&a.path, &b.path));
    w.entries.dedup_by(|a, b| a.path == b.path);
    kinds::group_hard_links(&mut w.entries, &std::mem::take(&mut w.inodes));

    if opts.checksum {
        checksum_all(src, &mut w);
    } else {
        drop_unreadable(base, &mut w);
    }
    Ok(w)
}

/// The reason [`Walk::skipped`] gives for a directory named without `-r`.
pub const SKIP_DIR: &str = "directory";

/// The line that tells the operator a path was skipped: `skipping directory DIR` (rsync's
/// words) or `skipping PATH: WHY`.
pub fn skip_line(path: &[u8], why: &str) -> String {
    if why == SKIP_DIR {
        format!("skipping directory {}", crate::escape::text(path))
    } else {
        format!("skipping {}: {why}", crate::escape::text(path))
    }
}

/// The reason recorded for a regular file this process may not read (rsync's exit 23).
fn unreadable_reason(path: &[u8]) -> String {
    format!("{}: Permission denied", crate::escape::text(path))
}

/// Moves the regular files this process may not read from the entries to
/// [`Walk::missing`]: they cannot be sent, and the push goes on without them. Root reads
/// everything; others are asked of the kernel (`access`) only when the mode bits do not
/// already say the file is readable by anyone.
fn drop_unreadable(base: &Path, w: &mut Walk) {
    let euid = rustix::process::geteuid();
    if euid.is_root() {
        return;
    }
    let mut keep = Vec::with_capacity(w.entries.len());
    for e in &w.entries {
        let ok = e.kind != EntryKind::File
            || e.mode & 0o004 != 0 && e.uid != euid.as_raw()
            || rustix::fs::accessat(
                rustix::fs::CWD,
                base.join(OsStr::from_bytes(&e.path)).as_path(),
                rustix::fs::Access::READ_OK,
                rustix::fs::AtFlags::EACCESS,
            )
            .map_or_else(|err| err != rustix::io::Errno::ACCESS, |_| true);
        if !ok {
            w.missing.push((e.path.clone(), unreadable_reason(&e.path)));
            w.io_error = true;
        }
        keep.push(ok);
    }
    let mut keep = keep.into_iter();
    w.entries.retain(|_| keep.next().unwrap_or(true));
}

/// Walks a list of paths (rsync's `--files-from`, or the watch's changed paths): each listed
/// path that exists, its parent directories (rsync's implied directories), and below a
/// listed directory as far as its [`Depth`] says. A listed path that does not exist, or
/// whose parents are not real directories, is recorded in [`Walk::missing`] and the rest goes
/// on. [`Walk::roots`] are the listed directories walked with [`Depth::All`], the only
/// scopes of `--delete`. `opts.recursive` is not used.
pub fn walk_list(
    base: &Path,
    list: &[Listed],
    how: &ListFilter,
    opts: &WalkOptions,
    filter: &mut Filter,
) -> anyhow::Result<Walk> {
    let base_md = fs::metadata(base).with_context(|| format!("base {}", base.display()))?;
    if !base_md.is_dir() {
        bail!("base {} is not a directory", base.display());
    }
    let mut w = Walk::default();
    let mut src = Source::open(base).with_context(|| format!("base {}", base.display()))?;
    for item in list {
        let p = &item.path;
        let show = || crate::escape::text(p);
        if check_rel_path(p).is_err() {
            w.missing
                .push((p.clone(), format!("{}: not a clean relative path", show())));
            continue;
        }
        if let Err(e) = check_parents(base, p) {
            w.missing.push((p.clone(), format!("{e:#}")));
            continue;
        }
        let whole = p == b".";
        let md = if whole {
            None
        } else {
            match src.metadata(p) {
                Ok(md) => Some(md),
                Err(e) => {
                    w.missing
                        .push((p.clone(), format!("link_stat {} failed: {e}", show())));
                    continue;
                }
            }
        };
        let is_dir = md.as_ref().is_none_or(Metadata::is_dir);
        // Every component from the first one down to the path's parent.
        let parents: Vec<&[u8]> = (0..p.len())
            .filter(|&i| p[i] == b'/')
            .map(|i| &p[..i])
            .collect();
        let mut check_root = true;
        match how {
            ListFilter::Name => {
                if !whole && filter.excluded_by_list(p, is_dir) {
                    continue;
                }
                check_root = false;
            }
            ListFilter::Walk { root } => {
                if root != b"."
                    && !(p == root || p.starts_with(root) && p.get(root.len()) == Some(&b'/'))
                {
                    continue;
                }
                if !whole {
                    filter.load_parents(base, root)?;
                    let below: Vec<&[u8]> = parents
                        .iter()
                        .copied()
                        .filter(|a| root == b"." || a.len() >= root.len())
                        .collect();
                    if root == b"." {
                        filter.load_dir(base, b"", false)?;
                    }
                    let mut out = false;
                    for a in below {
                        if filter.excluded(a, true) {
                            out = true;
                            break;
                        }
                        filter.load_dir(base, a, false)?;
                    }
                    if out {
                        continue;
                    }
                }
            }
        }
        for a in &parents {
            match src.metadata(a) {
                Ok(md) => match entry_of(&mut src, a.to_vec(), &md, &opts.kinds, &mut w.skipped) {
                    Ok(e) => w.entries.push(e),
                    Err(Skip::Vanished) => w.vanished += 1,
                    Err(Skip::Other(rel, why)) => w.skipped.push((rel, why)),
                },
                Err(_) => w.vanished += 1,
            }
        }
        let depth = match (is_dir, item.depth) {
            (false, _) | (true, Depth::Itself) => 0,
            (true, Depth::Contents) => 1,
            (true, Depth::All) => usize::MAX,
        };
        if whole && depth == 0 {
            continue;
        }
        if is_dir && item.depth == Depth::All {
            w.roots.push(p.clone());
        }
        walk_root(base, &mut src, p, depth, check_root, opts, filter, &mut w)?;
    }
    finish(base, &src, opts, w)
}

/// Strips trailing `/`s and checks the path with [`check_rel_path`].
/// A PATH as rsync users type it, relative to `base`: `./x`, `x/` and an absolute path inside
/// `base` are accepted (as `x`); anything else is refused naming the base.
fn normalize_root(base: &Path, p: &[u8]) -> anyhow::Result<Vec<u8>> {
    let show = crate::escape::text(p);
    if p.is_empty() {
        bail!(
            "an empty PATH (give . for the whole base {})",
            base.display()
        );
    }
    let mut rel = p;
    if rel.first() == Some(&b'/') {
        let inside = [Some(base.to_path_buf()), base.canonicalize().ok()]
            .into_iter()
            .flatten()
            .find_map(|b| {
                let b = b.as_os_str().as_bytes();
                let b = b.strip_suffix(b"/").unwrap_or(b);
                let rest = rel.strip_prefix(b)?;
                (rest.is_empty() || rest[0] == b'/').then_some(rest)
            });
        match inside {
            Some(rest) => rel = rest,
            None => bail!(
                "{show}: outside the base {} (PATHs are relative to it)",
                base.display()
            ),
        }
    }
    loop {
        while rel.first() == Some(&b'/') {
            rel = &rel[1..];
        }
        match rel.strip_prefix(b"./") {
            Some(r) => rel = r,
            None => break,
        }
    }
    let mut end = rel.len();
    while end > 0 && rel[end - 1] == b'/' {
        end -= 1;
    }
    let root = if end == 0 { &b"."[..] } else { &rel[..end] };
    check_rel_path(root).map_err(|e| {
        anyhow::anyhow!(
            "{show}: {e} (PATHs are relative to the base {})",
            base.display()
        )
    })?;
    Ok(root.to_vec())
}

/// Refuses a root whose parents under `base` are not real directories (a symlinked parent
/// could point outside `base`).
fn check_parents(base: &Path, root: &[u8]) -> anyhow::Result<()> {
    if root == b"." {
        return Ok(());
    }
    let mut dir = base.to_path_buf();
    let comps: Vec<&[u8]> = root.split(|&b| b == b'/').collect();
    for c in &comps[..comps.len() - 1] {
        dir.push(OsStr::from_bytes(c));
        let md = fs::symlink_metadata(&dir).with_context(|| {
            format!(
                "{:?}: cannot stat parent {}",
                String::from_utf8_lossy(root),
                dir.display()
            )
        })?;
        if !md.is_dir() {
            bail!(
                "{:?}: parent {} is not a directory (symlinked parents are refused)",
                String::from_utf8_lossy(root),
                dir.display()
            );
        }
    }
    Ok(())
}

/// Walks `root` down to `depth` levels below it. `check_root`: whether the root's own entry
/// goes through the filter. Per-directory filter files are read as each directory is
/// entered.
#[allow(clippy::too_many_arguments)]
fn walk_root(
    base: &Path,
    src: &mut Source,
    root: &[u8],
    depth: usize,
    check_root: bool,
    opts: &WalkOptions,
    filter: &mut Filter,
    w: &mut Walk,
) -> anyhow::Result<()> {
    let whole_base = root == b".";
    let top = if whole_base {
        base.to_path_buf()
    } else {
        base.join(OsStr::from_bytes(root))
    };
    if whole_base && depth > 0 {
        filter.load_dir(base, b"", false)?;
    }
    let mut it = walkdir::WalkDir::new(&top)
        .follow_links(false)
        .follow_root_links(false)
        .min_depth(usize::from(whole_base))
        .max_depth(depth)
        .into_iter();
    loop {
        let ent = match it.next() {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                let path = e.path().map(|p| rel_of(base, p));
                if e.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound) {
                    w.vanished += 1;
                } else if let Some(path) = path {
                    w.skipped.push((path, error_reason(&e)));
                } else {
                    bail!("walking {}: {e}", top.display());
                }
                continue;
            }
        };
        let rel = rel_of(base, ent.path());
        let ft = ent.file_type();
        let is_root = ent.depth() == 0;
        if (check_root || !is_root) && filter.excluded(&rel, ft.is_dir()) {
            if ft.is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        if ft.is_dir() && ent.depth() < depth && rel.len() <= MAX_PATH {
            // Its per-directory filter files apply to what comes next: its contents.
            filter.load_dir(base, &rel, false)?;
        }
        if rel.len() > MAX_PATH {
            if ft.is_dir() {
                it.skip_current_dir();
            }
            w.skipped.push((rel, "path too long".into()));
            continue;
        }
        // Through the confined parent, never by full path.
        let md = match src.metadata(&rel) {
            Ok(md) => md,
            Err(e) => {
                if e.kind() == io::ErrorKind::NotFound {
                    w.vanished += 1;
                } else {
                    w.skipped.push((rel, format!("cannot read: {e}")));
                }
                if ft.is_dir() || is_refused(&e) {
                    // A refused parent (swapped for a symlink): the rest of that directory
                    // is not walked either.
                    it.skip_current_dir();
                }
                continue;
            }
        };
        if md.is_dir() != ft.is_dir() {
            // Changed type since it was listed: reported, never followed.
            if ft.is_dir() {
                it.skip_current_dir();
            }
            w.skipped.push((rel, "changed type during the walk".into()));
            continue;
        }
        match entry_of(src, rel, &md, &opts.kinds, &mut w.skipped) {
            Ok(e) => {
                if opts.kinds.hard_links && e.kind == EntryKind::File && md.nlink() > 1 {
                    w.inodes.insert(e.path.clone(), (md.dev(), md.ino()));
                }
                w.entries.push(e)
            }
            Err(Skip::Vanished) => w.vanished += 1,
            Err(Skip::Other(rel, why)) => w.skipped.push((rel, why)),
        }
    }
    Ok(())
}

enum Skip {
    Vanished,
    Other(Vec<u8>, String),
}

fn entry_of(
    src: &mut Source,
    rel: Vec<u8>,
    md: &Metadata,
    opts: &KindOptions,
    warn: &mut Vec<(Vec<u8>, String)>,
) -> Result<Entry, Skip> {
    let ft = md.file_type();
    let (kind, size, target) = if ft.is_file() {
        (EntryKind::File, md.len(), Vec::new())
    } else if ft.is_dir() {
        (EntryKind::Dir, 0, Vec::new())
    } else if ft.is_symlink() {
        match src.read_link(&rel) {
            Ok(t) => (EntryKind::Symlink, 0, t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Skip::Vanished),
            Err(e) => return Err(Skip::Other(rel, format!("cannot read link: {e}"))),
        }
    } else {
        match kinds::special_kind(md, opts) {
            Ok(kind) => (kind, 0, Vec::new()),
            Err(why) => return Err(Skip::Other(rel, why.into())),
        }
    };
    let mut e = Entry {
        path: rel,
        kind,
        size,
        mode: md.mode() & 0o7777,
        mtime: md.mtime(),
        mtime_nsec: md.mtime_nsec().clamp(0, 999_999_999) as u32,
        uid: md.uid(),
        gid: md.gid(),
        target,
        ..Entry::default()
    };
    let mut notes = Vec::new();
    match kinds::describe(src, md, &mut e, opts, &mut notes) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(Skip::Vanished),
        Err(err) => return Err(Skip::Other(e.path, format!("cannot read: {err}"))),
    }
    warn.extend(notes.into_iter().map(|n| (e.path.clone(), n)));
    Ok(e)
}

/// The path of `p` relative to `base`, as bytes.
fn rel_of(base: &Path, p: &Path) -> Vec<u8> {
    p.strip_prefix(base)
        .unwrap_or(p)
        .as_os_str()
        .as_bytes()
        .to_vec()
}

fn error_reason(e: &walkdir::Error) -> String {
    match e.io_error() {
        Some(io) => format!("cannot read: {io}"),
        None => e.to_string(),
    }
}

/// Tree order: byte order with `/` before every other byte (names hold no NUL), so `a`,
/// `a/x`, `a.txt`.
pub fn tree_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let key = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.iter().map(key).cmp(b.iter().map(key))
}

/// Computes the MD5 of every regular file in parallel, each opened through its confined
/// parent (`O_NOFOLLOW|O_NONBLOCK`, regular files only). Files that vanished meanwhile are
/// dropped and counted; unreadable ones, and paths that are no longer regular files or
/// whose parents are no longer real directories, are dropped and recorded as skipped.
fn checksum_all(src: &Source, w: &mut Walk) {
    let results: Vec<Result<(), io::Error>> = w
        .entries
        .par_iter_mut()
        .map(|e| {
            if e.kind == EntryKind::File {
                let f = src.open_file_fresh(&e.path)?;
                e.checksum = Some(md5_of_file(&f)?);
            }
            Ok(())
        })
        .collect();
    let mut keep = Vec::with_capacity(results.len());
    for (r, e) in results.into_iter().zip(w.entries.iter()) {
        match r {
            Ok(()) => keep.push(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                w.vanished += 1;
                keep.push(false);
            }
            Err(err) if err.raw_os_error() == Some(libc::EACCES) => {
                w.missing.push((e.path.clone(), unreadable_reason(&e.path)));
                w.io_error = true;
                keep.push(false);
            }
            Err(err) => {
                w.skipped
                    .push((e.path.clone(), format!("cannot read for checksum: {err}")));
                keep.push(false);
            }
        }
    }
    let mut keep = keep.into_iter();
    w.entries.retain(|_| keep.next().unwrap_or(true));
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;
    use crate::proto::manifest::FilterRule;

    const REC: WalkOptions = WalkOptions {
        recursive: true,
        checksum: false,
        kinds: KindOptions::NONE,
    };

    fn touch(base: &Path, rel: &[u8], contents: &[u8]) {
        let p = base.join(OsStr::from_bytes(rel));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, contents).unwrap();
    }

    fn mkdir(base: &Path, rel: &str) {
        fs::create_dir_all(base.join(rel)).unwrap();
    }

    fn excluding(pats: &[&str]) -> Filter {
        let rules: Vec<FilterRule> = pats
            .iter()
            .map(|p| FilterRule {
                include: false,
                pattern: (*p).to_owned(),
            })
            .collect();
        Filter::new(&rules).unwrap()
    }

    fn paths(w: &Walk) -> Vec<String> {
        w.entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect()
    }

    fn run(base: &Path, roots: &[&[u8]], opts: &WalkOptions, f: &Filter) -> Walk {
        let roots: Vec<Vec<u8>> = roots.iter().map(|r| r.to_vec()).collect();
        walk(base, &roots, opts, &mut f.clone()).unwrap()
    }

    #[test]
    fn tree_order_dir_before_contents_siblings_by_bytes() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        touch(b, b"a/x", b"1");
        touch(b, b"a.txt", b"22");
        touch(b, b"B", b"");
        touch(b, b"a0/y", b"");
        let w = run(b, &[b"."], &REC, &Filter::default());
        assert_eq!(paths(&w), ["B", "a", "a/x", "a.txt", "a0", "a0/y"]);
        assert_eq!(w.roots, [b".".to_vec()]);
        let e = &w.entries[3];
        assert_eq!((e.kind, e.size, e.checksum), (EntryKind::File, 2, None));
        assert_eq!(w.entries[1].kind, EntryKind::Dir);
    }

    #[test]
    fn tree_attributes() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        touch(b, b"f", b"hello");
        fs::set_permissions(b.join("f"), fs::Permissions::from_mode(0o4751)).unwrap();
        let w = run(b, &[b"f"], &REC, &Filter::default());
        let md = fs::symlink_metadata(b.join("f")).unwrap();
        let e = &w.entries[0];
        assert_eq!(e.path, b"f");
        assert_eq!(e.mode, 0o4751);
        assert_eq!(e.size, 5);
        assert_eq!(
            (e.mtime, e.mtime_nsec as i64),
            (md.mtime(), md.mtime_nsec())
        );
        assert_eq!((e.uid, e.gid), (md.uid(), md.gid()));
    }

    #[test]
    fn tree_non_utf8_names() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        touch(b, b"d\xff/n\xfe.bin", b"x");
        touch(b, b"d\xff/keep", b"x");
        let w = run(b, &[b"."], &REC, &excluding(&["*.bin"]));
        let got: Vec<&[u8]> = w.entries.iter().map(|e| e.path.as_slice()).collect();
        assert_eq!(got, [&b"d\xff"[..], b"d\xff/keep"]);
    }

    #[test]
    fn tree_symlinks_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        touch(b, b"real/f", b"x");
        symlink("real", b.join("link")).unwrap();
        symlink("/nonexistent/\u{e9}", b.join("dangling")).unwrap();
        let w = run(b, &[b"."], &REC, &Filter::default());
        assert_eq!(paths(&w), ["dangling", "link", "real", "real/f"]);
        assert_eq!(w.entries[1].kind, EntryKind::Symlink);
        assert_eq!(w.entries[1].target, b"real");
        assert_eq!(w.entries[0].target, "/nonexistent/\u{e9}".as_bytes());
        // A symlink given as a root is not followed either.
        let w = run(b, &[b"link/"], &REC, &Filter::default());
        assert_eq!(paths(&w), ["link"]);
        // A symlinked parent is refused: it could lead out of the base.
        let err = walk(b, &[b"link/f".to_vec()], &REC, &mut Filter::default()).unwrap_err();
        assert!(format!("{err:#}").contains("symlink"), "{err:#}");
    }

    #[test]
    fn tree_excluded_dir_prunes_subtree() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        touch(b, b"cache/keep", b"");
        touch(b, b"cache/sub/x", b"");
        touch(b, b"src/cache", b"");
        let f = Filter::new(&[
            FilterRule {
                include: true,
                pattern: "cache/keep".into(),
            },
            FilterRule {
                include: false,
                pattern: "cache/".into(),
            },
        ])
        .unwrap();
        let w = run(b, &[b"."], &REC, &f);
        // cache/keep is never seen: its directory is excluded and not descended.
        assert_eq!(paths(&w), ["src", "src/cache"]);
        // The root itself is filtered too (unless it is `.`).
        let w = run(b, &[b"cache"], &REC, &f);
        assert!(w.entries.is_empty());
    }

    #[test]
    fn tree_roots_parents_not_emitted_and_non_recursive() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        touch(b, b"a/b/c/f", b"");
        touch(b, b"a/b/c/g/h", b"");
        touch(b, b"z", b"");
        let w = run(b, &[b"a/b/c/", b"z"], &REC, &Filter::default());
        assert_eq!(paths(&w), ["a/b/c", "a/b/c/f", "a/b/c/g", "a/b/c/g/h", "z"]);
        assert_eq!(w.roots, [b"a/b/c".to_vec(), b"z".to_vec()]);
        let flat = WalkOptions::default();
        // rsync without -r: a directory is skipped, says so, and is no `--delete` scope.
        let w = run(b, &[b"a/b/c", b"z"], &flat, &Filter::default());
        assert_eq!(paths(&w), ["z"]);
        assert_eq!(w.skipped, [(b"a/b/c".to_vec(), SKIP_DIR.to_string())]);
        assert_eq!(w.roots, [b"z".to_vec()]);
        let w = run(b, &[b"."], &flat, &Filter::default());
        assert!(w.entries.is_empty() && w.roots.is_empty());
        assert_eq!(skip_line(b".", SKIP_DIR), "skipping directory .");
        // Overlapping roots: each path once, in tree order.
        let w = run(b, &[b"a/b/c/g", b"a/b"], &REC, &Filter::default());
        assert_eq!(
            paths(&w),
            ["a/b", "a/b/c", "a/b/c/f", "a/b/c/g", "a/b/c/g/h"]
        );
    }

    #[test]
    fn tree_refuses_escaping_paths() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        mkdir(b, "a");
        for bad in [
            &b".."[..],
            b"a/../..",
            b"../x",
            b"a/./b",
            b"/etc",
            b"",
            b"a//b",
            b"a\0b",
        ] {
            let r = walk(b, &[bad.to_vec()], &REC, &mut Filter::default());
            assert!(r.is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
        }
        let err = walk(b, &[b"missing".to_vec()], &REC, &mut Filter::default()).unwrap_err();
        assert!(format!("{err:#}").contains("missing"));
        assert!(
            format!("{err:#}").contains(&b.display().to_string()),
            "{err:#}"
        );
        let err = walk(b, &[b"/etc".to_vec()], &REC, &mut Filter::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!("outside the base {}", b.display())),
            "{err:#}"
        );
    }

    #[test]
    fn tree_accepts_paths_as_rsync_users_type_them() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        touch(b, b"a/f", b"");
        let abs = format!("{}/a", b.display());
        let abs_slash = format!("{}/", b.display());
        for (given, root) in [
            ("./a", "a"),
            ("a/", "a"),
            ("././a//", "a"),
            (abs.as_str(), "a"),
            (abs_slash.as_str(), "."),
            ("./", "."),
        ] {
            let w = run(b, &[given.as_bytes()], &REC, &Filter::default());
            assert_eq!(w.roots, [root.as_bytes().to_vec()], "{given}");
        }
    }

    #[test]
    fn tree_skips_special_files() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        touch(b, b"f", b"");
        let sock = b.join("sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        use rustix::fs::{mknodat, FileType, Mode, CWD};
        mknodat(
            CWD,
            b.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let w = run(b, &[b"."], &REC, &Filter::default());
        assert_eq!(paths(&w), ["f"]);
        let mut skipped: Vec<_> = w.skipped.iter().map(|(p, _)| p.clone()).collect();
        skipped.sort();
        assert_eq!(skipped, [b"fifo".to_vec(), b"sock".to_vec()]);
        assert!(w.skipped.iter().all(|(_, why)| !why.is_empty()));
        // Excluded special files are not reported.
        let w = run(b, &[b"."], &REC, &excluding(&["sock", "fifo"]));
        assert!(w.skipped.is_empty());
    }

    #[test]
    fn tree_checksums() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        touch(b, b"d/empty", b"");
        touch(b, b"d/abc", b"abc");
        symlink("d/abc", b.join("l")).unwrap();
        let opts = WalkOptions {
            recursive: true,
            checksum: true,
            kinds: KindOptions::NONE,
        };
        let w = run(b, &[b"."], &opts, &Filter::default());
        let sum = |p: &[u8]| {
            w.entries
                .iter()
                .find(|e| e.path == p)
                .unwrap()
                .checksum
                .map(|s| s.iter().map(|b| format!("{b:02x}")).collect::<String>())
        };
        assert_eq!(sum(b"d/abc").unwrap(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(sum(b"d/empty").unwrap(), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(sum(b"d"), None);
        assert_eq!(sum(b"l"), None);
    }

    #[test]
    fn tree_vanished_during_checksum_is_counted_and_dropped() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path();
        touch(b, b"gone", b"x");
        touch(b, b"stays", b"x");
        let mut w = run(b, &[b"."], &REC, &Filter::default());
        fs::remove_file(b.join("gone")).unwrap();
        checksum_all(&Source::open(b).unwrap(), &mut w);
        assert_eq!(w.vanished, 1);
        assert_eq!(paths(&w), ["stays"]);
        assert!(w.entries[0].checksum.is_some());
    }

    #[test]
    fn tree_cmp_orders_slash_first() {
        let mut v: Vec<&[u8]> = vec![b"a.txt", b"a/x", b"a", b"a0", b"a/x/y", b"a-"];
        v.sort_by(|a, b| tree_cmp(a, b));
        assert_eq!(v, [&b"a"[..], b"a/x", b"a/x/y", b"a-", b"a.txt", b"a0"]);
    }

    /// Issue 12 review, F6: checksums were taken by full path, following a parent that a
    /// base writer swapped for a symlink (to `/dev`: the root daemon hashed `/dev/zero`
    /// forever), and opening FIFOs without `O_NONBLOCK`. A file is hashed through its
    /// confined parent, and only if it is a regular file; anything else is reported.
    #[test]
    fn checksums_never_follow_a_swapped_parent_or_open_a_non_file() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let b = d.path();
        touch(b, b"uploads/d/f", b"mine");
        touch(b, b"uploads/g", b"fifo later");
        touch(b, b"ok", b"fine");
        fs::write(outside.path().join("f"), b"a secret of someone else").unwrap();
        let sums = WalkOptions {
            checksum: true,
            ..REC
        };
        let walked = run(b, &[b"."], &REC, &Filter::default());
        // Between the walk and the checksums: the parent becomes a symlink out of the
        // base, and a file becomes a FIFO.
        fs::rename(b.join("uploads/d"), b.join("uploads/d.old")).unwrap();
        symlink(outside.path(), b.join("uploads/d")).unwrap();
        fs::remove_file(b.join("uploads/g")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            b.join("uploads/g"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let mut w = walked.clone();
        checksum_all(&Source::open(b).unwrap(), &mut w);
        let names: Vec<&[u8]> = w.entries.iter().map(|e| e.path.as_slice()).collect();
        assert!(!names.contains(&&b"uploads/d/f"[..]), "{names:?}");
        assert!(!names.contains(&&b"uploads/g"[..]), "{names:?}");
        let ok = w.entries.iter().find(|e| e.path == b"ok").unwrap();
        assert_eq!(ok.checksum, Some(crate::proto::storage::md5_of(b"fine")));
        let skipped: Vec<&[u8]> = w.skipped.iter().map(|(p, _)| p.as_slice()).collect();
        assert!(skipped.contains(&&b"uploads/d/f"[..]), "{:?}", w.skipped);
        assert!(skipped.contains(&&b"uploads/g"[..]), "{:?}", w.skipped);
        // A fresh walk through the swapped tree: the symlink is an entry of its own, and
        // nothing behind it is listed, stat'ed or hashed.
        let w = run(b, &[b"."], &sums, &Filter::default());
        assert!(
            !w.entries.iter().any(|e| e.path.starts_with(b"uploads/d/")),
            "{:?}",
            w.entries.iter().map(|e| show(&e.path)).collect::<Vec<_>>()
        );
    }

    /// The walk's own reads go through the confined parent too: metadata, link text and
    /// files through a parent swapped for a symlink are refused.
    #[test]
    fn the_walks_reads_never_pass_a_symlinked_parent() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let b = d.path();
        fs::write(outside.path().join("f"), b"x").unwrap();
        symlink("/etc/passwd", outside.path().join("l")).unwrap();
        symlink(outside.path(), b.join("d")).unwrap();
        touch(b, b"e/f", b"y");
        symlink("f", b.join("e/l")).unwrap();
        let mut src = Source::open(b).unwrap();
        for rel in [&b"d/f"[..], b"d/l"] {
            let e = src.metadata(rel).unwrap_err();
            assert!(is_refused(&e), "{e}");
        }
        assert!(is_refused(&src.read_link(b"d/l").unwrap_err()));
        assert!(is_refused(&src.open_file(b"d/f").unwrap_err()));
        assert!(src.metadata(b"e/f").unwrap().is_file());
        assert!(src.metadata(b"e/l").unwrap().file_type().is_symlink());
        assert_eq!(src.read_link(b"e/l").unwrap(), b"f");
        // A symlink, a directory or a FIFO is never opened as a file.
        assert!(src.open_file(b"e/l").is_err());
        assert!(src.open_file(b"e").is_err());
        assert!(src.metadata(b"d").unwrap().file_type().is_symlink());
    }

    fn show(p: &[u8]) -> String {
        String::from_utf8_lossy(p).into_owned()
    }
}
