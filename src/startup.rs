//! A daemon's start-up steps, in the order that keeps them safe: lock the base and the state
//! directory (a second daemon stops here, before touching anything), bind the console's unix
//! socket (replacing only a stale socket, never anything else), and, once everything the
//! daemon needs is open, give up root: chroot, supplementary groups, group, user.
//!
//! Knows nothing of the protocol or the console's language; used only by `daemon`.

use std::ffi::CString;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::unistd::{Gid, Group, Uid, User};
use rustix::fs::{self as rfs, AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::peercred;

/// An exclusive lock on a directory itself (`flock` on a descriptor of it: nothing is
/// created inside), held for as long as this value lives.
#[derive(Debug)]
pub struct DirLock {
    fd: OwnedFd,
}

impl DirLock {
    /// The locked directory's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether two paths name the same directory.
pub fn same_dir(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => false,
    }
}

/// Locks directory `path` (`what` names it in messages) for this daemon, or says that another
/// daemon holds it.
pub fn lock_dir(path: &Path, what: &str) -> Result<DirLock> {
    let fd = rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
    .with_context(|| format!("{what} {}", path.display()))?;
    match rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(DirLock { fd }),
        Err(Errno::WOULDBLOCK) => bail!(
            "{what} {} is in use by another makuo daemon (it holds the lock on it); \
             stop that one first or choose another",
            path.display()
        ),
        Err(e) => {
            Err(io::Error::from(e)).with_context(|| format!("lock {what} {}", path.display()))
        }
    }
}

/// The console's unix socket, removed when the daemon ends only if the path still holds the
/// socket this daemon made (by a descriptor of its directory, so also inside a chroot).
#[derive(Debug)]
pub struct SocketPath {
    parent: OwnedFd,
    name: Vec<u8>,
    id: (u64, u64),
}

fn split_socket_path(p: &Path) -> Result<(PathBuf, Vec<u8>)> {
    let name = p
        .file_name()
        .with_context(|| format!("console socket {}: not a file path", p.display()))?;
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name.as_bytes().to_vec()))
}

fn stat_id(st: &rfs::Stat) -> (u64, u64) {
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    (st.st_dev as u64, st.st_ino as u64)
}

/// Who the console's unix socket is for.
#[derive(Clone, Debug, Default)]
pub struct SocketShare {
    /// `--console-group`: the socket is made group GROUP, mode 0660 (else mode 0600).
    pub group: Option<u32>,
    /// Who may own the socket's directory: root and the daemon's user (`-u`, else the user
    /// who started it). Nobody else may write in it either.
    pub dir_owners: Vec<u32>,
}

/// Checks the console socket's directory (open as `parent`): it must be a directory that
/// belongs to one of `owners` and that group and others cannot write, so nobody else can
/// swap what is bound there for something else (a symlink to a file whose owner or mode a
/// daemon would then set, a socket of theirs).
fn check_socket_dir(parent: &OwnedFd, dir: &Path, owners: &[u32]) -> Result<()> {
    let st = rfs::fstat(parent).map_err(io::Error::from)?;
    let mode = st.st_mode as u32;
    let rule = "the console socket's directory must belong to root or the daemon's user and \
                be writable by its owner alone (as /run/makuo, mode 0755)";
    if FileType::from_raw_mode(st.st_mode as _) != FileType::Directory {
        bail!(
            "console socket directory {} is not a directory",
            dir.display()
        );
    }
    if !owners.contains(&st.st_uid) {
        bail!(
            "console socket directory {} belongs to {}: {rule}",
            dir.display(),
            peercred::uid_name(st.st_uid)
        );
    }
    if mode & 0o022 != 0 {
        bail!(
            "console socket directory {} is writable by {} (mode {:04o}): {rule}",
            dir.display(),
            if mode & 0o002 != 0 {
                "anyone"
            } else {
                "its group"
            },
            mode & 0o7777
        );
    }
    Ok(())
}

/// Binds the console's unix socket at `p`. Its directory must pass [`check_socket_dir`].
/// Something already at `p` is removed only when it is a socket nobody listens on (left by a
/// daemon that died); a socket in use, a regular file or anything else is left alone and
/// start-up fails.
///
/// The socket is born with its final group and mode (umask and the thread's filesystem gid
/// set around `bind`, and `bind` made through the checked directory's descriptor), so nothing
/// is changed by path afterwards: a name swapped for a symlink in between cannot make the
/// daemon chown or chmod what the symlink points to. Only when the directory imposes another
/// group (set-gid) is the group set, without following symlinks, on what was checked to be
/// the socket just made.
pub fn bind_unix(p: &Path, share: &SocketShare) -> Result<(UnixListener, SocketPath)> {
    let (dir, name) = split_socket_path(p)?;
    let parent = rfs::open(
        &dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
    .with_context(|| format!("console socket directory {}", dir.display()))?;
    check_socket_dir(&parent, &dir, &share.dir_owners)?;
    match rfs::statat(&parent, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => {}
        Err(e) => {
            return Err(io::Error::from(e))
                .with_context(|| format!("console socket {}", p.display()))
        }
        Ok(st) if FileType::from_raw_mode(st.st_mode as _) != FileType::Socket => bail!(
            "console socket {}: something that is not a socket is there; not removing it",
            p.display()
        ),
        Ok(st) => {
            match UnixStream::connect(p) {
                Ok(_) => bail!(
                    "console socket {} is in use by a running daemon",
                    p.display()
                ),
                Err(e) if e.raw_os_error() == Some(Errno::CONNREFUSED.raw_os_error()) => {}
                Err(e) => return Err(e).with_context(|| format!("console socket {}", p.display())),
            }
            // Stale: remove it, if it is still the socket just looked at.
            let again = rfs::statat(&parent, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io::Error::from)?;
            if stat_id(&again) != stat_id(&st) {
                bail!("console socket {} changed while starting", p.display());
            }
            rfs::unlinkat(&parent, name.as_slice(), AtFlags::empty())
                .map_err(io::Error::from)
                .with_context(|| format!("remove stale console socket {}", p.display()))?;
        }
    }
    let want = if share.group.is_some() { 0o660 } else { 0o600 };
    // Through the directory already checked, when /proc is there (and the path fits in a
    // socket address): a directory above it renamed meanwhile cannot redirect the bind.
    let via_fd = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd()));
    let target = if via_fd.is_dir() && via_fd.as_os_str().len() + name.len() < 100 {
        via_fd.join(std::ffi::OsStr::from_bytes(&name))
    } else {
        p.to_path_buf()
    };
    let old = rustix::process::umask(Mode::from_raw_mode(0o777 & !want));
    // Per thread: only the bind below creates a file under this group.
    let old_gid = share.group.map(|g| nix::unistd::setfsgid(Gid::from_raw(g)));
    let l = UnixListener::bind(&target);
    if let Some(g) = old_gid {
        nix::unistd::setfsgid(g);
    }
    rustix::process::umask(old);
    let l = l.with_context(|| format!("console socket {}", p.display()))?;
    let made = |st: &rfs::Stat| {
        FileType::from_raw_mode(st.st_mode as _) == FileType::Socket
            && st.st_uid == rustix::process::geteuid().as_raw()
    };
    let mut st = rfs::statat(&parent, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(io::Error::from)?;
    if !made(&st) {
        bail!("console socket {} changed while starting", p.display());
    }
    if let Some(g) = share.group.filter(|&g| g != st.st_gid) {
        // A set-gid directory gave it the directory's group.
        rfs::chownat(
            &parent,
            name.as_slice(),
            None,
            Some(rfs::Gid::from_raw(g)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)
        .with_context(|| format!("console socket {}: group {g}", p.display()))?;
        let again = rfs::statat(&parent, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io::Error::from)?;
        if stat_id(&again) != stat_id(&st) || !made(&again) || again.st_gid != g {
            bail!("console socket {} changed while starting", p.display());
        }
        st = again;
    }
    if st.st_mode as u32 & 0o7777 != want {
        bail!(
            "console socket {} was made with mode {:04o}, not {want:04o} (a default ACL on \
             its directory?); not changing it by name",
            p.display(),
            st.st_mode as u32 & 0o7777
        );
    }
    Ok((
        l,
        SocketPath {
            parent,
            name,
            id: stat_id(&st),
        },
    ))
}

impl SocketPath {
    /// Removes the socket if the path still holds the one this daemon made.
    pub fn remove(&self) {
        if let Ok(st) = rfs::statat(
            &self.parent,
            self.name.as_slice(),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            if stat_id(&st) == self.id {
                let _ = rfs::unlinkat(&self.parent, self.name.as_slice(), AtFlags::empty());
            }
        }
    }
}

/// Binds the console's TCP port. When something already holds it, the error says who, as
/// far as the kernel's socket table tells: a daemon that cannot bind its console does not
/// start, and the front end refuses to talk to whoever holds the port instead
/// ([`crate::console_trust`]).
pub fn bind_console(addr: SocketAddr) -> Result<TcpListener> {
    match TcpListener::bind(addr) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let holder = match peercred::tcp_listener(addr, Duration::from_secs(1)) {
                Ok(Some(l)) => format!(
                    "{} listens on {} (another makuo daemon, or another program holding \
                     the port)",
                    peercred::uid_name(l.uid),
                    l.bound
                ),
                _ => "something else holds it (the kernel's socket table names no listener)"
                    .to_string(),
            };
            bail!(
                "console port {addr} is in use: {holder}; stop it, or give this daemon another \
                 console port (-P PORT); `ss -ltnpe 'sport = :{}'` shows the process",
                addr.port()
            )
        }
        Err(e) => Err(e).with_context(|| format!("console port {addr}")),
    }
}

/// Raises the soft limit on open files to the hard one: a receiving daemon keeps every staged
/// file open until its commit.
pub fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
}

/// Who the daemon becomes, resolved while the user and group databases are still reachable
/// (before any chroot).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User (`-u`).
    pub uid: Option<u32>,
    /// Primary group: `-g`, else the user's.
    pub gid: Option<u32>,
    /// Supplementary groups: `-G`, else the user's (initgroups), else none once `-g` is given.
    pub groups: Option<Vec<u32>>,
}

fn group_id(g: &str) -> Result<u32> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    match Group::from_name(g) {
        Ok(Some(gr)) => Ok(gr.gid.as_raw()),
        Ok(None) => bail!("no such group {g}"),
        Err(e) => bail!("group {g}: {e}"),
    }
}

/// Resolves `-u USER`, `-g GROUP` and `-G GID,…` (names or numbers).
pub fn resolve_identity(
    user: Option<&str>,
    group: Option<&str>,
    groups: Option<&str>,
) -> Result<Identity> {
    let mut id = Identity::default();
    let user = match user {
        None => None,
        Some(u) => {
            let found = match u.parse::<u32>() {
                Ok(n) => User::from_uid(Uid::from_raw(n)),
                Err(_) => User::from_name(u),
            };
            match found {
                Ok(Some(pw)) => Some(pw),
                // A bare uid with no passwd entry: that uid, its own number as group.
                Ok(None) if u.parse::<u32>().is_ok() => {
                    id.uid = u.parse().ok();
                    id.gid = id.uid;
                    None
                }
                Ok(None) => bail!("-u: no such user {u}"),
                Err(e) => bail!("-u {u}: {e}"),
            }
        }
    };
    if let Some(pw) = &user {
        id.uid = Some(pw.uid.as_raw());
        id.gid = Some(pw.gid.as_raw());
    }
    if let Some(g) = group {
        id.gid = Some(group_id(g).context("-g")?);
    }
    id.groups = match (groups, &user) {
        (Some(list), _) => Some(
            list.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| group_id(s.trim()).context("-G"))
                .collect::<Result<_>>()?,
        ),
        (None, Some(pw)) => {
            let name = CString::new(pw.name.as_str())?;
            let gid = Gid::from_raw(id.gid.unwrap_or(pw.gid.as_raw()));
            let list = nix::unistd::getgrouplist(&name, gid)
                .with_context(|| format!("groups of user {}", pw.name))?;
            Some(list.into_iter().map(Gid::as_raw).collect())
        }
        // -u as a bare uid, or -g alone: no supplementary groups at all.
        (None, None) if id.uid.is_some() || id.gid.is_some() => Some(Vec::new()),
        (None, None) => None,
    };
    Ok(id)
}

/// Hands directory `fd` to `uid` (and `gid`).
pub fn give_dir(fd: BorrowedFd<'_>, uid: u32, gid: Option<u32>) -> Result<()> {
    rfs::fchown(
        fd,
        Some(rfs::Uid::from_raw(uid)),
        gid.map(rfs::Gid::from_raw),
    )
    .map_err(io::Error::from)
    .context("chown state directory")
}

/// Chroots to `dir` and moves into its root.
pub fn enter_chroot(dir: &Path) -> Result<()> {
    nix::unistd::chroot(dir).with_context(|| format!("chroot {}", dir.display()))?;
    std::env::set_current_dir("/").context("chdir / after chroot")?;
    Ok(())
}

/// Where `path` (canonical) is seen from inside a chroot to `root` (canonical).
pub fn inside(root: &Path, path: &Path) -> Result<PathBuf> {
    let rest = path.strip_prefix(root).with_context(|| {
        format!(
            "{} is outside the chroot directory {}",
            path.display(),
            root.display()
        )
    })?;
    Ok(Path::new("/").join(rest))
}

/// Becomes `id`: supplementary groups, then group, then user (the order in which each step
/// is still allowed), and checks that root cannot be regained.
pub fn become_identity(id: &Identity) -> Result<()> {
    if let Some(groups) = &id.groups {
        let gids: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
        nix::unistd::setgroups(&gids).context("setgroups")?;
    }
    if let Some(gid) = id.gid {
        nix::unistd::setgid(Gid::from_raw(gid)).with_context(|| format!("setgid {gid}"))?;
    }
    if let Some(uid) = id.uid {
        nix::unistd::setuid(Uid::from_raw(uid)).with_context(|| format!("setuid {uid}"))?;
        if uid != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            bail!("setuid {uid}: root could be regained");
        }
    }
    Ok(())
}

/// A key's fingerprint for logs: 16 hex digits of a Poly1305 tag computed with the key under
/// a nonce no datagram uses, over the associated data `"makuo key fingerprint"`. One-way:
/// it tells operators whether two members hold the same key without revealing the key.
pub fn key_fingerprint(key: &crate::seal::Key) -> String {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    let hex = key.to_hex();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    let Ok(cipher) = XChaCha20Poly1305::new_from_slice(&bytes) else {
        return "?".into();
    };
    let mut nonce = [0u8; 24];
    nonce[16..].copy_from_slice(b"MKfprnt1");
    match cipher.encrypt_in_place_detached(
        XNonce::from_slice(&nonce),
        b"makuo key fingerprint",
        &mut [],
    ) {
        Ok(tag) => tag[..8].iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_with_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let first = lock_dir(d.path(), "base directory").unwrap();
        let err = lock_dir(d.path(), "base directory").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("in use by another makuo daemon"), "{msg}");
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "nothing made in it"
        );
        let other = tempfile::tempdir().unwrap();
        let _second = lock_dir(other.path(), "state directory").unwrap();
        assert!(!same_dir(d.path(), other.path()) && same_dir(d.path(), d.path()));
        drop(first);
        lock_dir(d.path(), "base directory").unwrap();
    }

    fn mine() -> SocketShare {
        SocketShare {
            group: None,
            dir_owners: vec![0, rustix::process::geteuid().as_raw()],
        }
    }

    #[test]
    fn bind_unix_replaces_only_a_stale_socket() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("console.sock");
        let bind_unix = |p: &Path| bind_unix(p, &mine());
        // A regular file is never removed.
        std::fs::write(&p, b"precious").unwrap();
        let err = format!("{:#}", bind_unix(&p).unwrap_err());
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"precious");
        // Nor a directory, nor a symlink.
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("elsewhere", &p).unwrap();
        assert!(bind_unix(&p).is_err());
        assert!(std::fs::symlink_metadata(&p).unwrap().is_symlink());
        std::fs::remove_file(&p).unwrap();
        // A socket in use is refused; a stale one is replaced.
        let (live, _) = bind_unix(&p).unwrap();
        let err = format!("{:#}", bind_unix(&p).unwrap_err());
        assert!(err.contains("in use"), "{err}");
        drop(live);
        let (a, sp_a) = bind_unix(&p).unwrap();
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert!(md.file_type().is_socket());
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        // While daemon A still listens, its socket path is taken over by B: A's clean-up
        // (its listener still open, as in the daemon) leaves B's socket alone.
        std::fs::remove_file(&p).unwrap();
        let (_b, sp_b) = bind_unix(&p).unwrap();
        sp_a.remove();
        assert!(p.exists());
        drop(a);
        sp_b.remove();
        assert!(!p.exists());
    }

    #[test]
    fn the_socket_directory_must_be_its_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        for (mode, why) in [
            (0o777, "writable by anyone"),
            (0o1777, "writable by anyone"),
        ]
        .into_iter()
        .chain([(0o775, "writable by its group")])
        {
            std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            let e = format!(
                "{:#}",
                bind_unix(&d.path().join("c.sock"), &mine()).unwrap_err()
            );
            assert!(e.contains(why) && e.contains("/run/makuo"), "{mode:o}: {e}");
            assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        }
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // Another user's directory, however closed.
        let stranger = SocketShare {
            group: None,
            dir_owners: vec![54_321],
        };
        let e = format!(
            "{:#}",
            bind_unix(&d.path().join("c.sock"), &stranger).unwrap_err()
        );
        assert!(e.contains("belongs to uid"), "{e}");
        bind_unix(&d.path().join("c.sock"), &mine()).unwrap();
    }

    #[test]
    fn a_shared_socket_is_born_with_its_group_and_mode() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping a_shared_socket_is_born_with_its_group_and_mode: needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let share = SocketShare {
            group: Some(65_534),
            ..mine()
        };
        let p = d.path().join("c.sock");
        let (_l, _) = bind_unix(&p, &share).unwrap();
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!((md.gid(), md.mode() & 0o7777), (65_534, 0o660));
        // A set-gid directory of another group: the group is set on the socket itself.
        let sg = d.path().join("sg");
        std::fs::create_dir(&sg).unwrap();
        std::os::unix::fs::chown(&sg, None, Some(4242)).unwrap();
        std::fs::set_permissions(&sg, std::fs::Permissions::from_mode(0o2755)).unwrap();
        let p = sg.join("c.sock");
        let (_l2, _) = bind_unix(&p, &share).unwrap();
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!((md.gid(), md.mode() & 0o7777), (65_534, 0o660));
        // This thread's files are made with its own group again.
        let f = d.path().join("after");
        std::fs::write(&f, b"").unwrap();
        assert_eq!(
            std::fs::metadata(&f).unwrap().gid(),
            rustix::process::getegid().as_raw()
        );
    }

    #[test]
    fn identity_takes_the_users_groups_unless_told_otherwise() {
        let Ok(Some(nobody)) = User::from_name("nobody") else {
            eprintln!("skipping: no user nobody");
            return;
        };
        let id = resolve_identity(Some("nobody"), None, None).unwrap();
        assert_eq!(id.uid, Some(nobody.uid.as_raw()));
        assert_eq!(id.gid, Some(nobody.gid.as_raw()));
        let groups = id.groups.unwrap();
        assert!(groups.contains(&nobody.gid.as_raw()), "{groups:?}");
        assert!(!groups.contains(&0), "{groups:?}");
        let id = resolve_identity(Some("nobody"), Some("0"), Some("7,8")).unwrap();
        assert_eq!((id.gid, id.groups), (Some(0), Some(vec![7, 8])));
        let id = resolve_identity(None, Some("12"), None).unwrap();
        assert_eq!((id.uid, id.gid, id.groups), (None, Some(12), Some(vec![])));
        assert_eq!(
            resolve_identity(None, None, None).unwrap(),
            Identity::default()
        );
        assert!(resolve_identity(Some("no-such-user-makuo"), None, None).is_err());
        assert!(resolve_identity(None, None, Some("no-such-group-makuo")).is_err());
    }

    #[test]
    fn key_fingerprints_tell_keys_apart_and_hide_them() {
        let a = crate::seal::Key::from_bytes([7; 32]);
        let b = crate::seal::Key::from_bytes([8; 32]);
        let fa = key_fingerprint(&a);
        assert_eq!(fa.len(), 16);
        assert_eq!(fa, key_fingerprint(&a.clone()));
        assert_ne!(fa, key_fingerprint(&b));
        assert!(!a.to_hex().contains(&fa));
    }

    #[test]
    fn paths_inside_a_chroot() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(inside(&p("/srv/www"), &p("/srv/www")).unwrap(), p("/"));
        assert_eq!(inside(&p("/srv"), &p("/srv/www")).unwrap(), p("/www"));
        assert!(inside(&p("/srv/www"), &p("/srv")).is_err());
    }
}
