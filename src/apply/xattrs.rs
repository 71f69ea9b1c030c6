//! Extended attributes and POSIX ACLs on the receiving side (`-X`/`-A`): which ones this
//! daemon manages, how they differ from a manifest entry's, and making them match, always
//! through a descriptor of the inode that was checked (a staged file before its rename, a
//! directory opened without following a symlink).
//!
//! Policy: `user.*` for any daemon; `trusted.*` and `security.*` only as root, and like
//! set-id bits only where owners are reproduced (`--preserve-owner`, for a push that carries
//! owners): a file capability (`security.capability`) or a security label from the network
//! is as powerful as a setuid bit. ACLs travel as their `system.posix_acl_access` and
//! `system.posix_acl_default` attributes with `-A` (numeric ids, as the kernel stores them).
//! Attributes outside that set are left alone, and `security.*` ones (security labels, file
//! capabilities) are set from the push but never removed: the system may put its own there.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{
    fgetxattr, fgetxattr_query, flistxattr, flistxattr_query, fremovexattr, fsetxattr, XattrFlags,
};
use rustix::io::Errno;

use super::attrs::open_for_attrs;
use crate::proto::manifest::change::{self, Flags};
use crate::proto::manifest::ext::{xattr_class, XattrClass};
use crate::proto::manifest::{Entry, Manifest, Xattr};

/// Which attributes a commit makes match the manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct XattrPolicy {
    /// The push carries extended attributes (`-X`).
    pub(super) xattrs: bool,
    /// The push carries ACLs (`-A`).
    pub(super) acls: bool,
    /// This daemon reproduces owners (as root, `--preserve-owner`, a push carrying owners):
    /// `trusted.*` and `security.*` too.
    pub(super) privileged: bool,
}

impl XattrPolicy {
    /// The policy for manifest `m` on a daemon that reproduces owners for it or not.
    pub(super) fn of(m: &Manifest, privileged: bool) -> Self {
        Self {
            xattrs: m.options.xattrs,
            acls: m.options.acls,
            privileged,
        }
    }

    /// Whether anything is to be compared or applied at all.
    pub(super) fn active(&self) -> bool {
        self.xattrs || self.acls
    }

    fn manages(&self, name: &[u8]) -> bool {
        match xattr_class(name) {
            Some(XattrClass::User) => self.xattrs,
            Some(XattrClass::Privileged) => self.xattrs && self.privileged,
            Some(XattrClass::Acl) => self.acls,
            None => false,
        }
    }

    fn removable(&self, name: &[u8]) -> bool {
        self.manages(name) && !name.starts_with(b"security.")
    }

    fn flag(name: &[u8]) -> Flags {
        if xattr_class(name) == Some(XattrClass::Acl) {
            change::ACL
        } else {
            change::XATTR
        }
    }
}

/// Calls `get` with a buffer of the size `query` says, again if the attribute grew meanwhile.
fn sized(
    mut query: impl FnMut() -> rustix::io::Result<usize>,
    mut get: impl FnMut(&mut Vec<u8>) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    for _ in 0..4 {
        let n = query()?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; n];
        match get(&mut buf) {
            Ok(k) => {
                buf.truncate(k);
                return Ok(buf);
            }
            Err(Errno::RANGE) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

/// The attributes of an open file that `keep` selects, sorted by name. A file system
/// without attributes has none.
pub(super) fn read_xattrs(fd: impl AsFd, keep: impl Fn(&[u8]) -> bool) -> io::Result<Vec<Xattr>> {
    let fd = fd.as_fd();
    let names = match sized(|| flistxattr_query(fd), |b| flistxattr(fd, b)) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !keep(name) {
            continue;
        }
        match sized(|| fgetxattr_query(fd, name), |b| fgetxattr(fd, name, b)) {
            Ok(value) => out.push(Xattr {
                name: name.to_vec(),
                value,
            }),
            // Removed since it was listed.
            Err(Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort();
    Ok(out)
}

/// The ACL and XATTR change flags of an open file against entry `e`.
pub(super) fn xattr_changes(fd: impl AsFd, e: &Entry, p: &XattrPolicy) -> io::Result<Flags> {
    let have = read_xattrs(fd, |n| p.manages(n))?;
    let want = e.xattrs().iter().filter(|x| p.manages(&x.name));
    let mut f = 0;
    for x in want.clone() {
        if !have.iter().any(|h| h == x) {
            f |= XattrPolicy::flag(&x.name);
        }
    }
    for h in &have {
        if p.removable(&h.name) && !want.clone().any(|x| x.name == h.name) {
            f |= XattrPolicy::flag(&h.name);
        }
    }
    Ok(f)
}

/// Makes the attributes of existing entry `name` in `dfd` (a file or directory, opened
/// without following a symlink and checked to be of `e`'s kind) match entry `e`.
pub(super) fn sync_xattrs_at(
    dfd: BorrowedFd<'_>,
    name: &[u8],
    e: &Entry,
    p: &XattrPolicy,
) -> io::Result<()> {
    let f = open_for_attrs(dfd, name, e.kind)?;
    sync_xattrs(&f, e, p)
}

/// Makes the attributes of an open file match entry `e`: sets what differs, removes what the
/// entry lacks (among the removable ones). Each failure names the attribute.
pub(super) fn sync_xattrs(fd: impl AsFd, e: &Entry, p: &XattrPolicy) -> io::Result<()> {
    let fd = fd.as_fd();
    let have = read_xattrs(fd, |n| p.manages(n))?;
    let named = |name: &[u8], err: Errno| {
        io::Error::new(
            io::Error::from(err).kind(),
            format!(
                "extended attribute {}: {}",
                crate::escape::exact(name),
                io::Error::from(err)
            ),
        )
    };
    for x in e.xattrs().iter().filter(|x| p.manages(&x.name)) {
        if !have.iter().any(|h| h == x) {
            fsetxattr(fd, x.name.as_slice(), &x.value, XattrFlags::empty())
                .map_err(|err| named(&x.name, err))?;
        }
    }
    for h in have.iter().filter(|h| p.removable(&h.name)) {
        if !e.xattrs().iter().any(|x| x.name == h.name) {
            match fremovexattr(fd, h.name.as_slice()) {
                Ok(()) | Err(Errno::NODATA) => {}
                Err(err) => return Err(named(&h.name, err)),
            }
        }
    }
    Ok(())
}
