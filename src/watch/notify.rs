//! inotify on a tree: one watch per directory (directories the filter excludes are not
//! watched), kept up to date as directories appear, move and go, and the kernel's events
//! turned into changed paths relative to the base.
//!
//! Why the `inotify` crate and not `notify`: the watch needs inotify's own event masks
//! (`IN_CLOSE_WRITE` to know a writer is done, `IN_Q_OVERFLOW` to fall back to a full
//! compare, move cookies), which `notify` folds into portable kinds and debounces on its own
//! threads; `inotify` is a small, safe, well-kept wrapper with no runtime (tokio is off).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use crate::filter::Filter;

/// One thing a read of the event queue found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A path changed (written, created, deleted, moved, attributes).
    Changed {
        /// Relative to the base.
        path: Vec<u8>,
        /// Written and not closed yet.
        open: bool,
        /// Closed by a writer, or arrived whole (rename), or gone.
        closed: bool,
        /// A directory appeared (created or moved in).
        new_dir: bool,
    },
    /// The kernel dropped events: only a full compare is safe.
    Overflow,
    /// A per-directory filter file changed: the rules changed.
    RulesChanged,
}

/// The inotify watches of one tree.
pub struct Tree {
    ino: Inotify,
    base: PathBuf,
    recursive: bool,
    /// Per-directory filter file names (a change to one is [`Seen::RulesChanged`]).
    merge_names: Vec<Vec<u8>>,
    dirs: HashMap<WatchDescriptor, Vec<u8>>,
    buf: Vec<u8>,
}

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
        | WatchMask::EXCL_UNLINK
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = dir.to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

impl Tree {
    /// An inotify instance for a tree under `base` (no watch yet).
    pub fn new(base: &Path, recursive: bool, filter: &Filter) -> Result<Self> {
        Ok(Self {
            ino: Inotify::init().context("inotify")?,
            base: base.to_path_buf(),
            recursive,
            merge_names: filter
                .merge_names()
                .map(|n| n.as_bytes().to_vec())
                .collect(),
            dirs: HashMap::new(),
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// The descriptor to wait on for events.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.ino.as_fd()
    }

    /// Number of directories watched.
    pub fn watched(&self) -> usize {
        self.dirs.len()
    }

    /// Watches directory `dir` (relative, `""` for the base) and, when recursive, every
    /// directory below it that the filter does not exclude (reading per-directory filter
    /// files on the way). Adding a directory already watched updates its path (a move).
    pub fn add(&mut self, dir: &[u8], filter: &mut Filter) -> Result<()> {
        let top = if dir.is_empty() {
            self.base.clone()
        } else {
            self.base.join(OsStr::from_bytes(dir))
        };
        let mut it = walkdir::WalkDir::new(&top)
            .follow_links(false)
            .max_depth(if self.recursive { usize::MAX } else { 0 })
            .into_iter();
        while let Some(ent) = it.next() {
            let Ok(ent) = ent else { continue };
            if !ent.file_type().is_dir() {
                continue;
            }
            let rel = ent
                .path()
                .strip_prefix(&self.base)
                .map(|p| p.as_os_str().as_bytes().to_vec())
                .unwrap_or_default();
            if ent.depth() > 0 && filter.excluded(&rel, true) {
                it.skip_current_dir();
                continue;
            }
            match self.ino.watches().add(ent.path(), mask()) {
                Ok(wd) => {
                    self.dirs.insert(wd, rel.clone());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    return Err(e).context(
                        "inotify watch limit reached (raise fs.inotify.max_user_watches)",
                    );
                }
                // Gone meanwhile, or not a directory any more: the event says so.
                Err(_) => {
                    it.skip_current_dir();
                    continue;
                }
            }
            filter.load_dir(&self.base, &rel, false)?;
        }
        Ok(())
    }

    /// Drops the watches of `dir` and everything below it (moved out of the tree).
    fn forget(&mut self, dir: &[u8]) {
        let gone: Vec<WatchDescriptor> = self
            .dirs
            .iter()
            .filter(|(_, p)| {
                p.as_slice() == dir || (p.starts_with(dir) && p.get(dir.len()) == Some(&b'/'))
            })
            .map(|(wd, _)| wd.clone())
            .collect();
        for wd in gone {
            self.dirs.remove(&wd);
            let _ = self.ino.watches().remove(wd);
        }
    }

    /// Reads every event queued now (never blocks) into `out`.
    pub fn read(&mut self, filter: &mut Filter, out: &mut Vec<Seen>) -> Result<()> {
        loop {
            let mut raw = Vec::new();
            match self.ino.read_events(&mut self.buf) {
                Ok(events) => {
                    for e in events {
                        raw.push((
                            e.wd,
                            e.mask,
                            e.cookie,
                            e.name.map(|n| n.as_bytes().to_vec()),
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading inotify events"),
            }
            if raw.is_empty() {
                return Ok(());
            }
            self.handle(raw, filter, out)?;
        }
    }

    fn handle(
        &mut self,
        raw: Vec<(WatchDescriptor, EventMask, u32, Option<Vec<u8>>)>,
        filter: &mut Filter,
        out: &mut Vec<Seen>,
    ) -> Result<()> {
        let mut moved_out: HashMap<u32, Vec<u8>> = HashMap::new();
        for (wd, m, cookie, name) in raw {
            if m.contains(EventMask::Q_OVERFLOW) {
                out.push(Seen::Overflow);
                continue;
            }
            let Some(dir) = self.dirs.get(&wd).cloned() else {
                continue;
            };
            if m.contains(EventMask::IGNORED) {
                self.dirs.remove(&wd);
                continue;
            }
            let changed = |path: Vec<u8>, open, closed, new_dir| Seen::Changed {
                path,
                open,
                closed,
                new_dir,
            };
            let Some(name) = name else {
                // The watched directory itself.
                if m.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF) && !dir.is_empty() {
                    out.push(changed(dir, false, true, false));
                } else if m.contains(EventMask::ATTRIB) {
                    out.push(changed(dir, false, false, false));
                }
                continue;
            };
            let path = join(&dir, &name);
            if self.merge_names.contains(&name) {
                out.push(Seen::RulesChanged);
            }
            if m.contains(EventMask::ISDIR) {
                if m.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                    if m.contains(EventMask::MOVED_TO) {
                        moved_out.remove(&cookie);
                    }
                    if self.recursive {
                        self.add(&path, filter)?;
                    }
                    out.push(changed(path, false, true, true));
                } else if m.contains(EventMask::MOVED_FROM) {
                    moved_out.insert(cookie, path.clone());
                    out.push(changed(path, false, true, false));
                } else {
                    out.push(changed(path, false, false, false));
                }
                continue;
            }
            if m.contains(EventMask::CREATE) {
                // A new regular file is open for writing until its close; a symlink,
                // hard link or special file arrives whole.
                let regular = std::fs::symlink_metadata(self.base.join(OsStr::from_bytes(&path)))
                    .is_ok_and(|md| md.is_file() && md.len() == 0);
                out.push(changed(path, regular, !regular, false));
            } else if m.contains(EventMask::MODIFY) {
                out.push(changed(path, true, false, false));
            } else if m.intersects(
                EventMask::CLOSE_WRITE
                    | EventMask::MOVED_TO
                    | EventMask::MOVED_FROM
                    | EventMask::DELETE,
            ) {
                out.push(changed(path, false, true, false));
            } else if m.contains(EventMask::ATTRIB) {
                out.push(changed(path, false, false, false));
            }
        }
        // Directories moved out of the tree: their watches would report stale paths.
        for (_, dir) in moved_out {
            self.forget(&dir);
        }
        Ok(())
    }
}
