//! The release switch on a member's disk (`--release NAME`, `makuo rollback NAME`; the wire
//! side is `proto/manifest/release.rs`).
//!
//! Layout under the base: `releases/` (makuo's, marked by the file `releases/.makuo-releases`)
//! holds one directory per release, named by its push id (`releases/<push-id>/`), and for each
//! a record `releases/.<push-id>.prev`: a symlink whose text is the release it was made from
//! (`-` for none), written when the release is committed. The link `NAME` in the base
//! (`NAME -> releases/<push-id>`, relative) is the current release.
//!
//! - At inspection (`seed`): `NAME` must be absent or a release link (a real file or
//!   directory there is refused, never replaced). The new release directory is made and
//!   seeded from the current release: its directories are made afresh, its other entries
//!   hard-linked, except entries the push carries that differ from the manifest in any way
//!   the commit would apply in place (type, size, time, mode, owner; attributes with
//!   `-X`/`-A`): those are left out, so they arrive whole and the commit renames new inodes
//!   in. A hard-linked file is therefore never written: the previous release stays as it
//!   was. The first release (no `NAME` yet) starts empty: it holds what the push carries.
//! - The commit (`finish`, after the files of the release are in place) writes the record,
//!   then makes a symlink under a temp name and renames it over `NAME` (one `renameat`: a
//!   reader resolving `NAME` sees the old release or the new one), and prunes: releases
//!   beyond `--keep-releases` (newest kept by their record's age), never the current one nor
//!   the one it was made from. A commit with errors flips nothing and drops the release.
//! - A rollback flips `NAME` to the release the current one was made from (its record), by
//!   the same rename; it fails when there is none.
//! - `abort` drops the release directory of a push that did not commit (no record).
//! - `releases/` and release links are makuo's: a push that is not a release push never
//!   deletes them ([`FsStorage::makuo_owned`]), and senders leave them out of what they walk
//!   ([`drop_owned`]).
//!
//! Everything goes through descriptors of the base and `*at` calls without following
//! symlinks; names from the network were checked by the wire layer and are checked again.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, OFlags, Timespec, Timestamps};

use super::dirs::open_dir;
use super::names::{is_temp_name, with_temp_name};
use super::sys::{
    lstat_at, mkdir_at, open_at, readlink_at, rename_at, symlink_at, unlink_at, Meta, DIR_WALK,
};
use super::walk::MAX_DEPTH;
use super::FsStorage;
use crate::proto::manifest::change;
use crate::proto::manifest::release::{check_name, release_id, release_path, RELEASES_DIR};
use crate::proto::manifest::{Entry, EntryKind, Manifest};
use crate::proto::storage::{CommitOutcome, CommitRequest, Inspection, XferKey};

/// The file that marks `releases/` as makuo's.
const MARKER: &[u8] = b".makuo-releases";
/// A record's text when the release was the first.
const NO_PREV: &[u8] = b"-";

/// What `NAME` is on this member.
enum Current {
    /// Absent: the first release.
    None,
    /// A release link to `releases/<id>`.
    Release(Vec<u8>),
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

/// The record name of release `id`: `.<id>.prev`.
fn record_name(id: &[u8]) -> Vec<u8> {
    let mut n = b".".to_vec();
    n.extend_from_slice(id);
    n.extend_from_slice(b".prev");
    n
}

/// Whether `id` may name a release directory (one component, not hidden).
fn safe_id(id: &[u8]) -> bool {
    check_name(id).is_ok()
}

/// Opens `releases/` when it is makuo's (its marker is a regular file).
fn open_releases(base: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let fd = match open_at(
        base,
        RELEASES_DIR,
        DIR_WALK | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        0,
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match lstat_at(fd.as_fd(), MARKER) {
        Ok(m) if m.kind == Some(EntryKind::File) => Ok(Some(fd)),
        _ => Ok(None),
    }
}

/// What `NAME` is in the base; an error for anything but absent or a release link.
fn current(base: BorrowedFd<'_>, name: &[u8]) -> io::Result<Current> {
    let shown = String::from_utf8_lossy(name);
    let m = match lstat_at(base, name) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Current::None),
        Err(e) => return Err(e),
    };
    if m.kind != Some(EntryKind::Symlink) {
        return Err(refused(format!(
            "{shown} exists here and is not a release link (a real file or directory): \
             makuo does not replace it; move it away first"
        )));
    }
    let target = readlink_at(base, name)?;
    match link_id(&target) {
        Some(id) if open_releases(base)?.is_some() => Ok(Current::Release(id.to_vec())),
        _ => Err(refused(format!(
            "{shown} is a symlink that is not a makuo release link (-> {}): not replacing it",
            String::from_utf8_lossy(&target)
        ))),
    }
}

/// The release a link's text names (`releases/<id>`), if it is one.
fn link_id(target: &[u8]) -> Option<&[u8]> {
    let id = target.strip_prefix(RELEASES_DIR)?.strip_prefix(b"/")?;
    safe_id(id).then_some(id)
}

/// The release `id` was made from, by its record.
fn previous_of(rel: BorrowedFd<'_>, id: &[u8]) -> Option<Vec<u8>> {
    let t = readlink_at(rel, &record_name(id)).ok()?;
    (t != NO_PREV && safe_id(&t)).then_some(t)
}

/// Whether `m` (on disk) is what entry `e` asks for, in everything a commit would change in
/// place: only then may the previous release's inode be shared.
fn same(e: &Entry, m: &Meta, owners: bool, mode: u32, attrs: bool) -> bool {
    e.kind == EntryKind::File
        && m.kind == Some(EntryKind::File)
        && !attrs
        && e.extents().is_none()
        && e.size == m.size
        && e.mtime == m.mtime
        && i64::from(e.mtime_nsec) == m.mtime_nsec
        && m.perm == mode
        && (!owners || (e.uid == m.uid && e.gid == m.gid))
}

impl FsStorage {
    /// At inspection of a release push: checks `NAME`, makes `releases/<push-id>/` and
    /// seeds it from the current release. `Err` is the reason the push is refused here.
    pub(super) fn release_seed(&mut self, key: XferKey, m: &Manifest) -> Result<(), String> {
        let Some(r) = m.release() else {
            return Ok(());
        };
        let base = self.base_fd.clone();
        let base = base.as_fd();
        let cur = current(base, r.name.as_bytes()).map_err(|e| e.to_string())?;
        if r.rollback || m.options.dry_run {
            return Ok(());
        }
        let rel = self
            .releases_dir(base)
            .map_err(|e| format!("releases/: {e}"))?;
        let id = release_id(key).into_bytes();
        if lstat_at(rel.as_fd(), &record_name(&id)).is_ok() {
            return Err(format!(
                "release {} exists here already; not replacing it",
                String::from_utf8_lossy(&id)
            ));
        }
        // A leftover of this very push (no record: never committed) goes first.
        if lstat_at(rel.as_fd(), &id).is_ok() {
            self.drop_release_dir(rel.as_fd(), &id)
                .map_err(|e| format!("releases/{}: {e}", String::from_utf8_lossy(&id)))?;
        }
        let owners = self.owners(m);
        let attrs = m.options.xattrs || m.options.acls;
        let wanted: HashMap<&[u8], &Entry> = m
            .entries
            .iter()
            .map(|e| (m.sender_path(&e.path), e))
            .collect();
        let r = match &cur {
            Current::Release(prev) if lstat_at(rel.as_fd(), prev).is_ok() => {
                let mode = |e: &Entry| self.want_mode(e, owners);
                seed_tree(rel.as_fd(), prev, &id, &|p, meta| {
                    wanted
                        .get(p)
                        .is_none_or(|e| same(e, meta, owners, mode(e), attrs))
                })
            }
            _ => mkdir_at(rel.as_fd(), &id, 0o755),
        };
        r.map_err(|e| {
            let _ = self.drop_release_dir(rel.as_fd(), &id);
            format!("cannot make release {}: {e}", String::from_utf8_lossy(&id))
        })
    }

    /// `releases/`, made (with its marker) when missing; refused when it exists and is not
    /// makuo's but holds something.
    fn releases_dir(&mut self, base: BorrowedFd<'_>) -> io::Result<OwnedFd> {
        if let Some(fd) = open_releases(base)? {
            return Ok(fd);
        }
        match mkdir_at(base, RELEASES_DIR, 0o755) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let fd = open_at(
            base,
            RELEASES_DIR,
            DIR_WALK | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            0,
        )?;
        if !super::sys::list_dir(fd.as_fd())?.is_empty() {
            return Err(refused(
                "exists and is not makuo's (no .makuo-releases in it): not using it".into(),
            ));
        }
        drop(open_at(
            fd.as_fd(),
            MARKER,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
            0o644,
        )?);
        Ok(fd)
    }

    /// Removes release directory `id` (its tree) from `releases/`.
    fn drop_release_dir(&mut self, rel: BorrowedFd<'_>, id: &[u8]) -> io::Result<()> {
        self.dirs.clear();
        match super::delete::remove_tree(rel, id, id, &|_, _| false) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// At `--atomic` PREPARE: what the commit will need is still there (`NAME` is absent or a
    /// release link; for a rollback, the release to go back to).
    pub(super) fn release_ready(&mut self, m: &Manifest) -> Result<(), String> {
        let Some(r) = m.release() else {
            return Ok(());
        };
        let base = self.base_fd.clone();
        let cur = current(base.as_fd(), r.name.as_bytes()).map_err(|e| e.to_string())?;
        if r.rollback {
            self.rollback_target(base.as_fd(), &r.name, &cur)?;
        }
        Ok(())
    }

    /// The release a rollback of `name` goes back to.
    fn rollback_target(
        &self,
        base: BorrowedFd<'_>,
        name: &str,
        cur: &Current,
    ) -> Result<Vec<u8>, String> {
        let Current::Release(id) = cur else {
            return Err(format!(
                "{name} is not a release link here: nothing to roll back"
            ));
        };
        let rel = open_releases(base)
            .map_err(|e| format!("releases/: {e}"))?
            .ok_or("no releases/ here")?;
        let prev = previous_of(rel.as_fd(), id).ok_or_else(|| {
            format!(
                "{name} -> releases/{}: no previous release recorded here",
                String::from_utf8_lossy(id)
            )
        })?;
        match lstat_at(rel.as_fd(), &prev) {
            Ok(m) if m.kind == Some(EntryKind::Dir) => Ok(prev),
            _ => Err(format!(
                "the previous release releases/{} is gone here",
                String::from_utf8_lossy(&prev)
            )),
        }
    }

    /// After the commit of a release push or rollback: records the release, flips `NAME`,
    /// prunes. Failures go into `out.errors` (then `NAME` is left as it was).
    pub(super) fn release_finish(
        &mut self,
        key: XferKey,
        req: &CommitRequest<'_>,
        out: &mut CommitOutcome,
    ) {
        let m = req.manifest;
        let Some(r) = m.release().cloned() else {
            return;
        };
        if m.options.dry_run {
            return;
        }
        let base = self.base_fd.clone();
        let base = base.as_fd();
        let id = release_id(key).into_bytes();
        let r2 = (|| -> Result<(), String> {
            let cur = current(base, r.name.as_bytes()).map_err(|e| e.to_string())?;
            if r.rollback {
                let to = self.rollback_target(base, &r.name, &cur)?;
                return self.flip(base, r.name.as_bytes(), &to);
            }
            if !out.errors.is_empty() {
                return Err("the release is not complete: not switched".into());
            }
            let rel = open_releases(base)
                .map_err(|e| format!("releases/: {e}"))?
                .ok_or("releases/ vanished")?;
            let prev = match &cur {
                Current::Release(p) => p.clone(),
                Current::None => NO_PREV.to_vec(),
            };
            let rec = record_name(&id);
            let _ = unlink_at(rel.as_fd(), &rec);
            symlink_at(&prev, rel.as_fd(), &rec).map_err(|e| format!("release record: {e}"))?;
            if self.opts.durable {
                self.fsync_dir(rel.as_fd())
                    .map_err(|e| format!("fsync releases/: {e}"))?;
            }
            self.flip(base, r.name.as_bytes(), &id)?;
            self.prune(rel.as_fd(), base, r.keep, &id, &prev);
            Ok(())
        })();
        if let Err(e) = r2 {
            out.errors.push(format!("{}: {e}; not switched", r.name));
            if !r.rollback {
                if let Ok(Some(rel)) = open_releases(base) {
                    let _ = unlink_at(rel.as_fd(), &record_name(&id));
                    let _ = self.drop_release_dir(rel.as_fd(), &id);
                }
            }
        }
    }

    /// Points `name` at `releases/<id>` with one rename of a fresh symlink over it.
    fn flip(&mut self, base: BorrowedFd<'_>, name: &[u8], id: &[u8]) -> Result<(), String> {
        let mut target = RELEASES_DIR.to_vec();
        target.push(b'/');
        target.extend_from_slice(id);
        let (tmp, ()) = with_temp_name(name, |t| symlink_at(&target, base, t))
            .map_err(|e| format!("cannot make the new link: {e}"))?;
        if let Err(e) = rename_at(base, &tmp, name) {
            let _ = unlink_at(base, &tmp);
            return Err(format!("cannot switch the link: {e}"));
        }
        if self.opts.durable {
            self.fsync_dir(base)
                .map_err(|e| format!("fsync of the base: {e}"))?;
        }
        Ok(())
    }

    fn fsync_dir(&self, dir: BorrowedFd<'_>) -> io::Result<()> {
        let fd = open_at(dir, b".", OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
        rustix::fs::fsync(&fd)?;
        self.sync_calls.fsync.set(self.sync_calls.fsync.get() + 1);
        Ok(())
    }

    /// Removes releases beyond the newest `keep` (by their record's age), never `current`,
    /// `prev`, a release any link in the base points at, nor one any of those was made from.
    fn prune(
        &mut self,
        rel: BorrowedFd<'_>,
        base: BorrowedFd<'_>,
        keep: u32,
        current: &[u8],
        prev: &[u8],
    ) {
        let Ok(names) = super::sys::list_dir(rel) else {
            return;
        };
        let mut spare: Vec<Vec<u8>> = vec![current.to_vec(), prev.to_vec()];
        // Releases other links point at (and theirs before), so that each can roll back.
        if let Ok(top) = super::sys::list_dir(base) {
            for n in top {
                if let Ok(t) = readlink_at(base, &n) {
                    if let Some(id) = link_id(&t) {
                        spare.push(id.to_vec());
                        spare.extend(previous_of(rel, id));
                    }
                }
            }
        }
        let mut recorded: Vec<(i64, i64, Vec<u8>)> = names
            .iter()
            .filter(|n| safe_id(n))
            .filter_map(|n| {
                let st =
                    rustix::fs::statat(rel, record_name(n).as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                        .ok()?;
                #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
                Some((st.st_ctime as i64, st.st_ctime_nsec as i64, n.clone()))
            })
            .collect();
        recorded.sort_unstable_by(|a, b| b.cmp(a));
        for (_, _, id) in recorded.into_iter().skip(keep as usize) {
            if spare.contains(&id) {
                continue;
            }
            if self.drop_release_dir(rel, &id).is_ok() {
                let _ = unlink_at(rel, &record_name(&id));
            }
        }
    }

    /// What a hook of transfer `key` on link `name` gets as `MAKUO_RELEASE`: this push's
    /// release directory once it exists and is not switched to yet, else where `name` points.
    pub(super) fn release_dir_for(&self, key: XferKey, name: &str) -> String {
        let mine = release_path(key);
        let base = self.base_dir();
        let pending = lstat_at(base, &mine).is_ok();
        let now = readlink_at(base, name.as_bytes())
            .ok()
            .filter(|t| link_id(t).is_some());
        let dir = match now {
            Some(t) if !pending || t == mine => t,
            _ if pending => mine,
            _ => Vec::new(),
        };
        String::from_utf8_lossy(&dir).into_owned()
    }

    /// `abort` of a transfer: its release directory goes unless it was committed.
    pub(super) fn release_abort(&mut self, key: XferKey) {
        let base = self.base_fd.clone();
        let Ok(Some(rel)) = open_releases(base.as_fd()) else {
            return;
        };
        let id = release_id(key).into_bytes();
        if lstat_at(rel.as_fd(), &record_name(&id)).is_err() && lstat_at(rel.as_fd(), &id).is_ok() {
            let _ = self.drop_release_dir(rel.as_fd(), &id);
        }
    }
}

/// At daemon start (after the journal recovery, before any push): removes release
/// directories that were never committed (no record, and no link in the base points at
/// them), left by a crash between seeding and commit. The releases of pushes held in doubt
/// (`in_doubt`: the journal waits for the cluster's answer, and may yet commit them) are
/// spared. Returns how many went.
pub fn sweep_releases(base: BorrowedFd<'_>, in_doubt: &[XferKey]) -> usize {
    let Ok(Some(rel)) = open_releases(base) else {
        return 0;
    };
    let Ok(names) = super::sys::list_dir(rel.as_fd()) else {
        return 0;
    };
    let linked: Vec<Vec<u8>> = super::sys::list_dir(base)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| readlink_at(base, n).ok())
        .filter_map(|t| link_id(&t).map(<[u8]>::to_vec))
        .chain(in_doubt.iter().map(|k| release_id(*k).into_bytes()))
        .collect();
    let mut n = 0;
    for id in names.iter().filter(|id| safe_id(id)) {
        let is_dir = lstat_at(rel.as_fd(), id).is_ok_and(|m| m.kind == Some(EntryKind::Dir));
        if !is_dir || lstat_at(rel.as_fd(), &record_name(id)).is_ok() || linked.contains(id) {
            continue;
        }
        if super::delete::remove_tree(rel.as_fd(), id, id, &|_, _| false).is_ok_and(|gone| gone) {
            n += 1;
        }
    }
    n
}

/// For a push that is not a release push: entries at makuo's own paths (`releases/...`, a
/// release link) that differ are marked protected, so that they are neither written nor
/// deleted (the result names them, as for `--protect`).
pub(super) fn guard_owned(base: BorrowedFd<'_>, m: &Manifest, insp: &mut Inspection) {
    if m.release().is_some() {
        return;
    }
    for (e, f) in m.entries.iter().zip(insp.flags.iter_mut()) {
        if *f == 0 {
            continue;
        }
        let top = e.path.split(|&b| b == b'/').next().unwrap_or_default();
        let owned = if top == RELEASES_DIR {
            makuo_owned(base, top, true)
        } else {
            top == e.path.as_slice() && makuo_owned(base, top, false)
        };
        if owned {
            *f = change::PROTECTED;
        }
    }
}

/// Whether `rel` (a path of a push that is not a release push) is makuo's own: `releases`
/// when marked so, or a release link in the base. Such paths are never deleted.
pub(super) fn makuo_owned(base: BorrowedFd<'_>, rel: &[u8], is_dir: bool) -> bool {
    if rel.contains(&b'/') {
        return false;
    }
    if is_dir {
        return rel == RELEASES_DIR && open_releases(base).ok().flatten().is_some();
    }
    readlink_at(base, rel).is_ok_and(|t| link_id(&t).is_some())
        && open_releases(base).ok().flatten().is_some()
}

/// Makes `releases/<to>` a copy of `releases/<from>` in which directories are new and other
/// entries hard links, leaving out entries `keep` says no to (and makuo's temp names). Times
/// and modes of directories are copied (deepest first, once their contents are in).
fn seed_tree(
    rel: BorrowedFd<'_>,
    from: &[u8],
    to: &[u8],
    keep: &dyn Fn(&[u8], &Meta) -> bool,
) -> io::Result<()> {
    let root = lstat_at(rel, from)?;
    mkdir_at(rel, to, root.perm)?;
    let src_root = open_at(
        rel,
        from,
        DIR_WALK | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        0,
    )?;
    let dst_root = open_at(rel, to, DIR_WALK | OFlags::DIRECTORY | OFlags::NOFOLLOW, 0)?;
    // Directories still to fill (relative to the release), and every directory made with
    // the times to give it at the end.
    let mut todo: Vec<Vec<u8>> = vec![Vec::new()];
    let mut made: Vec<(Vec<u8>, Meta)> = vec![(Vec::new(), root)];
    while let Some(dir) = todo.pop() {
        if dir.iter().filter(|&&b| b == b'/').count() >= MAX_DEPTH {
            return Err(io::Error::other("release tree too deep"));
        }
        let src = open_dir(src_root.as_fd(), &dir, None)?;
        let dst = open_dir(dst_root.as_fd(), &dir, None)?;
        for name in super::sys::list_dir(src.as_fd())? {
            if is_temp_name(&name) {
                continue;
            }
            let meta = match lstat_at(src.as_fd(), &name) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let path = if dir.is_empty() {
                name.clone()
            } else {
                [dir.as_slice(), b"/", name.as_slice()].concat()
            };
            if meta.kind == Some(EntryKind::Dir) {
                mkdir_at(dst.as_fd(), &name, meta.perm)?;
                made.push((path.clone(), meta));
                todo.push(path);
            } else if keep(&path, &meta) {
                super::sys::link_at(src.as_fd(), &name, dst.as_fd(), &name)?;
            }
        }
    }
    made.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    for (dir, meta) in made {
        let (parent, name): (&[u8], &[u8]) = match dir.iter().rposition(|&b| b == b'/') {
            Some(i) => (&dir[..i], &dir[i + 1..]),
            None => (b"", &dir),
        };
        let (pfd, name) = if dir.is_empty() {
            (open_at(rel, b".", DIR_WALK, 0)?, to)
        } else {
            (open_dir(dst_root.as_fd(), parent, None)?, name)
        };
        let t = Timespec {
            tv_sec: meta.mtime,
            tv_nsec: meta.mtime_nsec as _,
        };
        let _ = rustix::fs::utimensat(
            pfd.as_fd(),
            name,
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        );
    }
    Ok(())
}

/// Sender side: leaves makuo's own paths (`releases/` when marked so, release links at the
/// top of the base) out of a walked manifest, so they never travel.
pub(crate) fn drop_owned(base: &std::path::Path, m: &mut Manifest) {
    use std::os::unix::ffi::OsStrExt;
    let marked = std::fs::symlink_metadata(base.join("releases").join(".makuo-releases"))
        .is_ok_and(|md| md.is_file());
    if !marked {
        return;
    }
    m.entries.retain(|e| {
        let p = e.path.as_slice();
        if p == RELEASES_DIR || p.starts_with(b"releases/") {
            return false;
        }
        !(e.kind == EntryKind::Symlink
            && !p.contains(&b'/')
            && link_id(&e.target).is_some()
            && std::fs::read_link(base.join(std::ffi::OsStr::from_bytes(p)))
                .is_ok_and(|t| link_id(t.as_os_str().as_bytes()).is_some()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn base() -> (tempfile::TempDir, OwnedFd) {
        let d = tempfile::tempdir().unwrap();
        let fd = super::super::sys::open_dir_path(d.path(), DIR_WALK).unwrap();
        (d, fd)
    }

    fn mark(d: &std::path::Path) {
        fs::create_dir_all(d.join("releases")).unwrap();
        fs::write(d.join("releases/.makuo-releases"), "").unwrap();
    }

    #[test]
    fn only_release_links_into_a_marked_releases_dir_count() {
        let (d, fd) = base();
        let b = fd.as_fd();
        assert!(matches!(current(b, b"current"), Ok(Current::None)));
        // Unmarked releases/: a link into it is not makuo's.
        fs::create_dir(d.path().join("releases")).unwrap();
        symlink("releases/abc", d.path().join("current")).unwrap();
        assert!(current(b, b"current").is_err());
        assert!(!makuo_owned(b, b"releases", true));
        assert!(!makuo_owned(b, b"current", false));
        mark(d.path());
        assert!(matches!(current(b, b"current"), Ok(Current::Release(id)) if id == b"abc"));
        assert!(makuo_owned(b, b"releases", true) && makuo_owned(b, b"current", false));
        // Hostile or foreign link texts and real directories are refused, never followed.
        for t in [
            "releases/../etc",
            "../releases/abc",
            "/etc",
            "releases/.x",
            "releases/a/b",
        ] {
            fs::remove_file(d.path().join("current")).unwrap();
            symlink(t, d.path().join("current")).unwrap();
            assert!(current(b, b"current").is_err(), "{t}");
            assert!(!makuo_owned(b, b"current", false), "{t}");
        }
        fs::create_dir(d.path().join("live")).unwrap();
        let e = current(b, b"live").err().unwrap().to_string();
        assert!(e.contains("not a release link"), "{e}");
    }

    #[test]
    fn the_start_sweep_drops_only_uncommitted_releases() {
        let (d, fd) = base();
        mark(d.path());
        let r = d.path().join("releases");
        for id in ["done", "linked", "left"] {
            fs::create_dir_all(r.join(id).join("sub")).unwrap();
            fs::write(r.join(id).join("sub/f"), id).unwrap();
        }
        symlink("-", r.join(".done.prev")).unwrap();
        symlink("releases/linked", d.path().join("current")).unwrap();
        assert_eq!(sweep_releases(fd.as_fd(), &[]), 1);
        assert!(r.join("done/sub/f").exists() && r.join("linked/sub/f").exists());
        assert!(!r.join("left").exists());
        // A push held in doubt keeps its release until the cluster answers.
        let key = XferKey { origin: 7, xfer: 9 };
        fs::create_dir_all(r.join(release_id(key))).unwrap();
        assert_eq!(sweep_releases(fd.as_fd(), &[key]), 0);
        assert!(r.join(release_id(key)).exists());
        assert_eq!(sweep_releases(fd.as_fd(), &[]), 1);
        // Unmarked: nothing is makuo's to sweep.
        fs::remove_file(r.join(".makuo-releases")).unwrap();
        fs::create_dir(r.join("other")).unwrap();
        assert_eq!(sweep_releases(fd.as_fd(), &[]), 0);
        assert!(r.join("other").exists());
    }

    #[test]
    fn seeding_links_what_it_may_and_makes_directories_anew() {
        let (d, fd) = base();
        mark(d.path());
        let r = d.path().join("releases");
        fs::create_dir_all(r.join("old/sub")).unwrap();
        fs::write(r.join("old/same.txt"), "same").unwrap();
        fs::write(r.join("old/sub/changed.txt"), "old").unwrap();
        symlink("same.txt", r.join("old/link")).unwrap();
        fs::write(r.join("old/.x.makuo-AbCdEf"), "temp").unwrap();
        let rel = open_releases(fd.as_fd()).unwrap().unwrap();
        seed_tree(rel.as_fd(), b"old", b"new", &|p, _| p != b"sub/changed.txt").unwrap();
        let ino = |p: &str| fs::symlink_metadata(r.join(p)).unwrap().ino();
        assert_eq!(ino("old/same.txt"), ino("new/same.txt"));
        assert_eq!(ino("old/link"), ino("new/link"));
        assert_ne!(ino("old/sub"), ino("new/sub"));
        assert!(r.join("new/sub").is_dir());
        assert!(!r.join("new/sub/changed.txt").exists());
        assert!(!r.join("new/.x.makuo-AbCdEf").exists());
    }
}
