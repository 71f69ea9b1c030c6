//! Whether the front end may talk to the console that answered: the socket must belong to
//! root, to the front end's own user, or to the daemon's configured user, and this is checked
//! before anything (the password included) is sent.
//!
//! Why: the console's TCP port is not a privileged one. While no daemon holds it (at boot,
//! during a restart, after a crash) any local user can listen there, read the password the
//! front end sends first, and answer with a forged all-ok result. The kernel says who holds
//! the other end ([`crate::peercred`]):
//! - **TCP**: the server end of our connection, once a process has accepted it, belongs to
//!   that process's user; a trusted owner there is enough. A daemon started as root that runs
//!   as `-u USER` accepts as USER, while its listening socket still belongs to root: the
//!   listener found for the address before connecting, if it is the very same socket (same
//!   inode) after connecting, took our connection, and a trusted owner there is enough too
//!   (no other user can listen on a port while that socket holds it). A server on another
//!   host cannot be checked (the README says so: the password then crosses the network).
//! - **Unix socket**: `SO_PEERCRED` on our end names the process that called `listen()`.
//!
//! Trusted: root, the front end's effective uid, and the daemon's user as configured for the
//! front end (`user` in the config file, `MAKUO_USER` or `MAKUOSAN_USER`), since a daemon
//! started by that user (not by root) listens as that user. Anything else is refused with
//! [`Untrusted`], naming the uid that holds the console.
//!
//! Used by the front end only; the daemon uses [`crate::peercred`] directly to name whoever
//! holds a port it cannot bind.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::unistd::User;

use crate::peercred::{self, uid_name, ServerEnd};

/// Longest wait for the kernel's socket table, and for the daemon to accept our connection.
const LOOKUP: Duration = Duration::from_secs(1);

/// The console is held by a user the front end does not trust: nothing was sent.
#[derive(Debug)]
pub struct Untrusted(pub String);

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Untrusted {}

/// Whose console the front end talks to.
#[derive(Clone, Debug)]
pub struct Trust {
    /// The front end's effective uid.
    me: u32,
    /// The daemon's configured user: its name as configured, and its uid.
    daemon_user: Option<(String, u32)>,
}

impl Trust {
    /// Root, this process's effective uid, and `daemon_user` (a name or a uid) if given.
    pub fn new(daemon_user: Option<&str>) -> Result<Trust> {
        let daemon_user = match daemon_user {
            None => None,
            Some(u) => {
                let uid = match u.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => match User::from_name(u) {
                        Ok(Some(pw)) => pw.uid.as_raw(),
                        Ok(None) => bail!("the daemon's user (user = {u}): no such user"),
                        Err(e) => bail!("the daemon's user (user = {u}): {e}"),
                    },
                };
                Some((u.to_string(), uid))
            }
        };
        Ok(Trust {
            me: rustix::process::geteuid().as_raw(),
            daemon_user,
        })
    }

    /// As [`Trust::new`], with the daemon's user from the config file and the environment.
    pub fn from_config() -> Result<Trust> {
        Trust::new(crate::config::front_daemon_user()?.as_deref())
    }

    /// Whether a console held by `uid` may be sent anything.
    pub fn allows(&self, uid: u32) -> bool {
        uid == 0 || uid == self.me || self.daemon_user.as_ref().is_some_and(|(_, u)| *u == uid)
    }

    fn refusal(&self, shown: &str, holder: &str, how: &str) -> Untrusted {
        let user = match &self.daemon_user {
            Some((n, u)) => format!(", nor the daemon's user {n} (uid {u})"),
            None => String::new(),
        };
        Untrusted(format!(
            "console {shown} is held by {holder}{how}, which is not root, not you (uid {}){user}: \
             refusing to send it anything (the password included). A daemon started by root \
             listens as root; another program holds this address. If it is your daemon, running \
             as that user, set user = \"NAME\" in the config file (or MAKUO_USER)",
            self.me
        ))
    }
}

/// Connects to the first address of `addrs` that answers and checks who holds it. `shown`
/// names the console in messages. A console held by an untrusted user is an [`Untrusted`]
/// error (the connection is closed with nothing sent); no address answering is another error.
pub fn connect_tcp(
    shown: &str,
    addrs: &[SocketAddr],
    connect_timeout: Duration,
    trust: &Trust,
) -> Result<TcpStream> {
    for sa in addrs {
        // Best effort: no listener here (a console on another host) or no answer is fine.
        let before = peercred::tcp_listener(*sa, LOOKUP).ok().flatten();
        let Ok(s) = TcpStream::connect_timeout(sa, connect_timeout) else {
            continue;
        };
        check_tcp(shown, &s, before, trust)?;
        return Ok(s);
    }
    bail!("no daemon answers on {shown}")
}

/// Checks who holds the server end of `s`, a connection made just now; `before` is the
/// listener found for its address before connecting.
pub fn check_tcp(
    shown: &str,
    s: &TcpStream,
    before: Option<peercred::Listener>,
    trust: &Trust,
) -> Result<()> {
    let (local, peer) = (s.local_addr()?, s.peer_addr()?);
    let end = Instant::now() + LOOKUP;
    // The daemon accepts at once; until it has, the kernel cannot name the owner.
    let server = loop {
        match peercred::tcp_server_end(local, peer, LOOKUP) {
            Ok(ServerEnd::Pending) if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Ok(r) => break Some(r),
            Err(_) => break None,
        }
    };
    if let Some(ServerEnd::Accepted(uid)) = server {
        if trust.allows(uid) {
            return Ok(());
        }
    }
    let after = peercred::tcp_listener(peer, LOOKUP).ok().flatten();
    let same_listener = matches!((before, after), (Some(b), Some(a)) if b.inode == a.inode);
    if let (true, Some(l)) = (same_listener, after) {
        if trust.allows(l.uid) {
            return Ok(());
        }
    }
    if server == Some(ServerEnd::NotHere) && after.is_none() && !peercred::is_loopback(peer.ip()) {
        // Another host: nothing here can tell who answers.
        return Ok(());
    }
    let err = match (server, after) {
        (Some(ServerEnd::Accepted(uid)), _) => trust.refusal(
            shown,
            &uid_name(uid),
            " (the process that accepted the connection)",
        ),
        (_, Some(l)) => trust.refusal(
            shown,
            &uid_name(l.uid),
            &format!(" (the socket listening on {})", l.bound),
        ),
        _ => Untrusted(format!(
            "console {shown}: cannot tell who holds it (the kernel's socket table names no \
             owner); refusing to send it anything"
        )),
    };
    Err(err.into())
}

/// Checks who listens on the unix socket `s` is connected to (`SO_PEERCRED`: the process
/// that called `listen()`).
pub fn check_unix(path: &Path, s: &UnixStream, trust: &Trust) -> Result<()> {
    let p = peercred::unix_peer(s).map_err(|e| {
        Untrusted(format!(
            "console {}: cannot tell who listens there ({e}); refusing to send it anything",
            path.display()
        ))
    })?;
    if trust.allows(p.uid) {
        return Ok(());
    }
    Err(trust
        .refusal(
            &path.display().to_string(),
            &uid_name(p.uid),
            &format!(" (pid {} listens on it)", p.pid),
        )
        .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn trust_is_root_me_and_the_configured_user() {
        let me = rustix::process::geteuid().as_raw();
        let t = Trust::new(None).unwrap();
        assert!(t.allows(0) && t.allows(me));
        assert_eq!(t.allows(54_321), me == 54_321);
        let t = Trust::new(Some("54321")).unwrap();
        assert!(t.allows(54_321));
        assert!(Trust::new(Some("no-such-user-makuo")).is_err());
        if let Ok(Some(nobody)) = User::from_name("nobody") {
            let t = Trust::new(Some("nobody")).unwrap();
            assert!(t.allows(nobody.uid.as_raw()));
        }
    }

    #[test]
    fn our_own_listener_is_trusted_and_a_stranger_is_named() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let found = peercred::tcp_listener(addr, LOOKUP).unwrap().unwrap();
        assert_eq!(found.uid, rustix::process::geteuid().as_raw());
        assert_eq!(found.bound, addr);
        // Accepted at once (as a daemon does) or not at all: the listener decides.
        let t = std::thread::spawn(move || l.accept().map(|(s, _)| s));
        let s = connect_tcp("test", &[addr], LOOKUP, &Trust::new(None).unwrap()).unwrap();
        let _server = t.join().unwrap().unwrap();
        // The same connection, checked by a front end that trusts nobody but root and a
        // stranger's uid, is refused, naming our uid (unless we are root).
        let me = rustix::process::geteuid().as_raw();
        if me != 0 {
            let strict = Trust {
                me: 54_321,
                daemon_user: None,
            };
            let e = check_tcp("test", &s, Some(found), &strict).unwrap_err();
            assert!(e.is::<Untrusted>(), "{e:#}");
            assert!(e.to_string().contains(&format!("uid {me}")), "{e:#}");
        }
        // No listener: nothing answers.
        drop(s);
        let gone = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = gone.local_addr().unwrap();
        drop(gone);
        assert!(peercred::tcp_listener(a, LOOKUP).unwrap().is_none());
        let e = connect_tcp("gone", &[a], LOOKUP, &Trust::new(None).unwrap()).unwrap_err();
        assert!(!e.is::<Untrusted>(), "{e:#}");
    }

    #[test]
    fn a_listener_that_never_accepts_is_judged_by_its_owner() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // Nobody accepts: the server end stays pending, the listener (ours) decides.
        let s = connect_tcp("test", &[addr], LOOKUP, &Trust::new(None).unwrap()).unwrap();
        drop(s);
        drop(l);
    }
}
