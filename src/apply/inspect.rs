//! Inspection: what differs between a manifest entry and what is on disk (change flags), and
//! the checksum of a file on disk. A hard link is up to date when its path is the same inode
//! as its target's and that is up to date; a device node when its type and number match;
//! with `-X`/`-A`, a file or directory when its managed attributes match too.

use std::fs::File;
use std::io;

use std::os::fd::{AsFd, BorrowedFd};

use super::dirs::DirCache;
use super::sys::{lstat_at, open_at, readlink_at, READ_NOFOLLOW};
use super::xattrs::{xattr_changes, XattrPolicy};
use super::{checked_split, FsStorage, Protect};
use crate::proto::manifest::change::Flags;
use crate::proto::manifest::{change, needs_data, Entry, EntryKind, Manifest};
use crate::proto::storage::Inspection;

impl FsStorage {
    /// Change flags of one entry against what is on disk.
    pub(super) fn compare(&self, e: &Entry, m: &Manifest, dirs: &mut DirCache) -> Flags {
        let Ok((dir, name)) = checked_split(&e.path, e.kind) else {
            // Reported (and refused) at commit rather than silently called up to date.
            return change::MISSING;
        };
        let Ok(dfd) = dirs.get(&self.base_fd, dir, None) else {
            return change::MISSING;
        };
        let dfd = dfd.as_fd();
        let Ok(st) = lstat_at(dfd, name) else {
            return change::MISSING;
        };
        if e.kind == EntryKind::HardLink {
            // The rest is settled against its target (`hard_link_flags`).
            return if st.kind == Some(EntryKind::File) {
                0
            } else {
                change::TYPE
            };
        }
        if st.kind != Some(e.kind) {
            return change::TYPE;
        }
        let owners = self.owners(m);
        let mut f = 0;
        if e.kind == EntryKind::File {
            if st.size != e.size {
                f |= change::SIZE;
            }
            if m.options.checksum {
                if let Some(sum) = e.checksum {
                    // A different size is a different checksum; no need to read the file.
                    if f & change::SIZE != 0 || md5_at(dfd, name).map_or(true, |s| s != sum) {
                        f |= change::SUM;
                    }
                }
            }
        }
        // Directories too (rsync's `.d..t......`): `finish_dirs` sets them after their
        // contents.
        if st.mtime != e.mtime || st.mtime_nsec != i64::from(e.mtime_nsec) {
            f |= change::TIME;
        }
        // The base directory's own owner and mode are the operator's, never a push's.
        let base = e.path == b".";
        if e.kind != EntryKind::Symlink && !base && st.perm != self.want_mode(e, owners) {
            f |= change::PERM;
        }
        if owners && !base && (st.uid != e.uid || st.gid != e.gid) {
            f |= change::OWNER;
        }
        if e.kind == EntryKind::Symlink && readlink_at(dfd, name).map_or(true, |t| t != e.target) {
            f |= change::LINK;
        }
        if e.kind == EntryKind::Device && st.dev_num != e.device() {
            f |= change::SUM;
        }
        let xattrs = XattrPolicy::of(m, self.owners(m));
        if xattrs.active() && matches!(e.kind, EntryKind::File | EntryKind::Dir) {
            // Unreadable attributes count as different: the commit then says why.
            f |= open_at(dfd, name, READ_NOFOLLOW, 0)
                .and_then(|fd| xattr_changes(fd, e, &xattrs))
                .unwrap_or(change::XATTR | change::ACL);
        }
        f
    }

    /// Settles the flags of the hard links in `flags`: one whose path is not its target's
    /// inode needs linking (`LINK`); one that is shares its target's flags (the target's
    /// changes show on it, and a target replaced by a new file takes it along).
    ///
    /// When any link of a target must be made, the target is written afresh too (`RELINK`):
    /// links are made only from the file the commit wrote (see `special`), never from
    /// whatever is at the target's path (a writer of the target's directory could have put
    /// a file of its own there, same size, mode and time, to get it linked into a directory
    /// it cannot write).
    fn hard_link_flags(&self, m: &Manifest, flags: &mut [Flags], dirs: &mut DirCache) {
        let leaders = m.hard_link_leaders();
        let mut inode = |path: &[u8]| {
            let (dir, name) = checked_split(path, EntryKind::File).ok()?;
            let dfd = dirs.get(&self.base_fd, dir, None).ok()?;
            lstat_at(dfd.as_fd(), name).ok().map(|s| (s.dev, s.ino))
        };
        // Per link: `Some(leader)` when its path is its target's inode.
        let mut same: Vec<(usize, Option<usize>)> = Vec::new();
        for (i, e) in m.entries.iter().enumerate() {
            if e.kind != EntryKind::HardLink {
                continue;
            }
            let Some(&l) = leaders.get(&(i as u32)) else {
                flags[i] = change::MISSING;
                continue;
            };
            if flags[i] != 0 {
                same.push((i, None));
                continue;
            }
            let l = l as usize;
            let is_same = inode(&m.entries[l].path).is_some_and(|t| inode(&e.path) == Some(t));
            same.push((i, is_same.then_some(l)));
            if !is_same {
                flags[i] = change::LINK;
            }
        }
        for &(i, s) in &same {
            if s.is_none() && flags[i] & (change::MISSING | change::TYPE | change::LINK) != 0 {
                if let Some(&l) = leaders.get(&(i as u32)) {
                    let l = l as usize;
                    if !needs_data(EntryKind::File, flags[l], m.options.checksum) {
                        flags[l] |= change::RELINK;
                    }
                }
            }
        }
        for (i, s) in same {
            if let Some(l) = s {
                flags[i] = flags[l];
            }
        }
    }

    pub(super) fn inspect_with(&self, m: &Manifest, protect: Protect<'_>) -> Inspection {
        let mut dirs = DirCache::default();
        // A directory found missing: everything under it is missing too (a first push of a
        // big tree would otherwise try to open it once per entry).
        let mut gone: Option<&[u8]> = None;
        let mut flags: Vec<Flags> = m
            .entries
            .iter()
            .map(|e| {
                if let Some(g) = gone {
                    if e.path.starts_with(g) && e.path.get(g.len()) == Some(&b'/') {
                        return change::MISSING;
                    }
                    gone = None;
                }
                let f = self.compare(e, m, &mut dirs);
                if f == change::MISSING && e.kind == EntryKind::Dir {
                    gone = Some(&e.path);
                }
                f
            })
            .collect();
        if m.entries.iter().any(|e| e.kind == EntryKind::HardLink) {
            self.hard_link_flags(m, &mut flags, &mut dirs);
        }
        let deletions = if m.options.delete || m.options.delete_only {
            self.list_deletions(m, protect)
        } else {
            Vec::new()
        };
        Inspection {
            flags,
            deletions,
            refused: None,
        }
    }
}

/// MD5 of a regular file, opened without following a symlink.
pub(super) fn md5_at(dfd: BorrowedFd<'_>, name: &[u8]) -> io::Result<[u8; 16]> {
    super::source::md5_of_file(&File::from(open_at(dfd, name, READ_NOFOLLOW, 0)?))
}
