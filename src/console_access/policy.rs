//! Who may use the console: root, the daemon's user and `--console-group` members, from
//! the peer's credentials (`SO_PEERCRED`, the kernel's socket table for TCP).

use super::*;

/// The group named by `--console-group`.
#[derive(Clone, Debug)]
pub(super) struct ConsoleGroup {
    pub(super) name: String,
    pub(super) gid: u32,
    /// Its members' uids, read once before a chroot (see [`Policy::freeze_group`]); `None`:
    /// looked up in the group database at every connection.
    pub(super) frozen: Option<std::collections::BTreeSet<u32>>,
}

/// Who may use the console.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The real uid that started the daemon.
    starter: u32,
    pub(super) group: Option<ConsoleGroup>,
    /// `-K` is set: remote peers may try the password.
    pub(super) password: bool,
}

/// Who is at the other end of a new connection, as the kernel says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A local process of this uid.
    Uid(u32),
    /// No such socket on this host: a peer on another host (or network namespace).
    Remote,
    /// Cannot be told; why.
    Unknown(String),
}

/// The verdict on a new connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A local process of an allowed uid.
    Local(u32),
    /// A peer on another host (only with `-K`; the password comes next).
    Remote,
    /// Not allowed; why (for the log, never sent).
    Refused(String),
}

impl Policy {
    /// The policy for `--console-group GROUP` (a name or a gid) and whether `-K` is set.
    pub fn new(group: Option<&str>, password: bool) -> Result<Policy> {
        let group = match group {
            None => None,
            Some(g) => Some(match g.parse::<u32>() {
                Ok(gid) => ConsoleGroup {
                    name: Group::from_gid(Gid::from_raw(gid))
                        .ok()
                        .flatten()
                        .map_or_else(|| gid.to_string(), |gr| gr.name),
                    gid,
                    frozen: None,
                },
                Err(_) => match Group::from_name(g) {
                    Ok(Some(gr)) => ConsoleGroup {
                        name: gr.name,
                        gid: gr.gid.as_raw(),
                        frozen: None,
                    },
                    Ok(None) => bail!("--console-group: no such group {g}"),
                    Err(e) => bail!("--console-group {g}: {e}"),
                },
            }),
        };
        Ok(Policy {
            starter: nix::unistd::getuid().as_raw(),
            group,
            password,
        })
    }

    /// Whether a local process of `uid` may use the console.
    pub fn uid_allowed(&self, uid: u32) -> bool {
        self.privileged(uid)
            || self.group.as_ref().is_some_and(|g| match &g.frozen {
                Some(uids) => uids.contains(&uid),
                None => in_group(uid, g.gid),
            })
    }

    /// Reads the members of `--console-group` once, now, and from then on decides by that
    /// list. Called before a chroot: inside it, `/etc/group` and `/etc/passwd` are files
    /// under the base, which a push may write, so they must not decide who reaches the
    /// console. Members are the group's listed users and every user whose primary group it
    /// is (from `/etc/passwd`, read directly: primary-group members known only to another
    /// name service are not seen). Returns how many uids were found.
    pub fn freeze_group(&mut self) -> Result<usize> {
        let Some(g) = &mut self.group else {
            return Ok(0);
        };
        let mut uids = std::collections::BTreeSet::new();
        if let Ok(Some(gr)) = Group::from_gid(Gid::from_raw(g.gid)) {
            for name in &gr.mem {
                if let Ok(Some(u)) = User::from_name(name) {
                    uids.insert(u.uid.as_raw());
                }
            }
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        uids.extend(primary_members(&passwd, g.gid));
        let n = uids.len();
        g.frozen = Some(uids);
        Ok(n)
    }

    pub(super) fn refusal(&self, uid: u32) -> String {
        match &self.group {
            Some(g) => format!(
                "uid {uid} is not root, not the daemon's user and not in group {}",
                g.name
            ),
            None => {
                format!("uid {uid} is not root and not the daemon's user (see --console-group)")
            }
        }
    }

    fn admit_uid(&self, uid: u32) -> Admission {
        if self.uid_allowed(uid) {
            Admission::Local(uid)
        } else {
            Admission::Refused(self.refusal(uid))
        }
    }

    /// Whether `uid` is let in without looking at the group database: root, or the user who
    /// started the daemon. Such connections skip the connection cap, so refused users holding
    /// connections open cannot lock root out.
    pub fn privileged(&self, uid: u32) -> bool {
        uid == 0 || uid == self.starter
    }

    /// Who is at the other end of a unix-socket connection (its peer credentials).
    pub fn identify_unix(&self, s: &UnixStream) -> Peer {
        match peercred::unix_peer(s) {
            Ok(p) => Peer::Uid(p.uid),
            Err(e) => Peer::Unknown(format!("no peer credentials: {e}")),
        }
    }

    /// Who is at the other end of a TCP connection: the owner of its client socket in the
    /// kernel's socket table, or a remote peer.
    pub fn identify_tcp(&self, s: &TcpStream, lookup: Duration) -> Peer {
        let (Ok(peer), Ok(local)) = (s.peer_addr(), s.local_addr()) else {
            return Peer::Unknown("connection already gone".into());
        };
        match peercred::tcp_owner(peer, local, lookup) {
            Ok(TcpOwner::Local(uid)) => Peer::Uid(uid),
            Ok(TcpOwner::Unknown) => {
                Peer::Unknown("the client socket belongs to no process any more (closed)".into())
            }
            Ok(TcpOwner::NotHere) if peercred::is_loopback(peer.ip()) => {
                Peer::Unknown("the client socket is not in the kernel's socket table".into())
            }
            Ok(TcpOwner::NotHere) => Peer::Remote,
            Err(e) => Peer::Unknown(format!("cannot tell who connected: {e}")),
        }
    }

    /// The verdict on an identified peer (looks up group membership when needed).
    pub fn admit(&self, peer: Peer) -> Admission {
        match peer {
            Peer::Uid(uid) => self.admit_uid(uid),
            Peer::Remote if self.password => Admission::Remote,
            Peer::Remote => Admission::Refused("remote, and no -K password".into()),
            Peer::Unknown(why) => Admission::Refused(why),
        }
    }

    /// The gid of `--console-group`, if given: the `-U` socket is made that group, mode
    /// 0660, so members can connect (its peer check still applies).
    pub fn group_gid(&self) -> Option<u32> {
        self.group.as_ref().map(|g| g.gid)
    }
}

/// The uids of the `/etc/passwd` lines (`name:pw:uid:gid:...`) whose primary group is `gid`.
pub(super) fn primary_members(passwd: &str, gid: u32) -> Vec<u32> {
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let (uid, g) = (
                f.get(2)?.parse::<u32>().ok()?,
                f.get(3)?.parse::<u32>().ok()?,
            );
            (g == gid).then_some(uid)
        })
        .collect()
}

/// Whether the user `uid` has `gid` as primary group or as a supplementary group.
pub(super) fn in_group(uid: u32, gid: u32) -> bool {
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    if user.gid.as_raw() == gid {
        return true;
    }
    let Ok(name) = CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == gid))
}
