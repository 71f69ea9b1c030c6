//! `makuo daemon`'s flags (makuosan's letters), part of [`crate::cli`]'s one definition of
//! every flag. Resolved with the environment and the config file by [`crate::config`].

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, ValueHint};

use super::ClusterArgs;

/// `makuo daemon`: makuosan's flag letters.
///
/// Every flag also has a key in the config file (`--config`), named after the long option with
/// `-` written `_`, and an environment variable `MAKUO_` + that name in upper case; flags win
/// over the environment, which wins over the file (see [`crate::config`]).
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Cluster flags shared with direct mode.
    #[command(flatten, next_help_heading = "Cluster")]
    pub cluster: ClusterArgs,

    /// Address to bind the UDP group socket to. Default: the group address.
    ///
    /// makuosan had no such option (its -l is the console's address).
    #[arg(long, value_name = "ADDR", help_heading = "Cluster")]
    pub bind: Option<IpAddr>,

    /// Fixed UDP port for unicast replies (for firewalls). Default: an ephemeral port.
    ///
    /// Members answer a push on the sender's reply port; a firewall between members must let
    /// it through, so give every member the same fixed port here.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..),
          help_heading = "Cluster")]
    pub reply_port: Option<u16>,

    /// Read settings from FILE (TOML). Default: /etc/makuo/makuo.conf when it exists.
    ///
    /// Every long option is a key, with '-' written '_' (base, group, port, interface,
    /// console_port, name, state_dir, key = a list of key files, ...), plus exclude = a list
    /// of rsync patterns applied to every push this daemon sends. Flags win over the
    /// environment (MAKUO_ + the key in upper case, e.g. MAKUO_CONSOLE_PORT), which wins over
    /// the file. An unknown key is an error naming its line. SIGHUP reads the file again.
    /// Also MAKUO_CONFIG. As root (as sshd does) the file must be a regular file owned by root
    /// or the user running makuo and writable by its owner alone; otherwise it is refused.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, help_heading = "Process")]
    pub config: Option<PathBuf>,

    /// Print the effective settings and where each came from, then exit.
    ///
    /// The output is itself a valid config file: one 'key = value' line per setting, each
    /// followed by its source (flag, environment variable, file and line, or default).
    #[arg(long, help_heading = "Process")]
    pub print_config: bool,

    /// TCP port of the console. Default: the same as -p, as in makuosan.
    #[arg(short = 'P', long, value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..), help_heading = "Console")]
    pub console_port: Option<u16>,

    /// Address to bind the TCP console to (makuosan's -l).
    ///
    /// Anything but loopback exposes the console to the network, so the daemon refuses to start
    /// with one unless -K is given with a password of at least 16 bytes; connections from other
    /// hosts must then send the password before anything else, within 10 s, and at most 4 of
    /// them wait for it at a time.
    #[arg(
        short = 'l',
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1",
        help_heading = "Console"
    )]
    pub console_addr: IpAddr,

    /// No console at all: neither TCP nor the unix socket (makuosan's -o).
    ///
    /// The daemon still receives pushes; it cannot send any, since pushes are submitted
    /// through the console.
    #[arg(
        short = 'o',
        long,
        conflicts_with = "console_socket",
        help_heading = "Console"
    )]
    pub no_console: bool,

    /// Also serve the console on this unix socket (created only when given).
    ///
    /// The socket's directory must belong to root or to the daemon's user (-u, else the user
    /// who starts it) and be writable by its owner alone, as /run/makuo (mode 0755) is:
    /// whoever else could write there could swap the socket for something else. The daemon
    /// refuses to start otherwise. The socket is made mode 0600 (0660 and group GROUP with
    /// --console-group) as it is bound; a stale socket nobody listens on is replaced, anything
    /// else at PATH makes start-up fail.
    #[arg(short = 'U', long, value_name = "PATH", value_hint = ValueHint::FilePath,
          help_heading = "Console")]
    pub console_socket: Option<PathBuf>,

    /// File holding the console password; clients must send it before any command.
    ///
    /// The password is the file's first line, 4 to 63 bytes. Like a key file, the file must be
    /// a regular file that group and others can neither read nor write (chmod 600). A session
    /// gets at most 3 tries, each failure answered after a growing delay (1 s, 2 s, 3 s); the
    /// third closes the connection. A peer (uid, or address) with 3 wrong passwords waits 10 s
    /// before it may try again, twice as long after each further one (at most 10 min); root
    /// and the daemon's user never wait. Local connections must also pass the user check (see
    /// --console-group).
    #[arg(short = 'K', long, value_name = "FILE", value_hint = ValueHint::FilePath,
          help_heading = "Console")]
    pub password_file: Option<PathBuf>,

    /// Also let members of GROUP use the console (name or gid).
    ///
    /// The console runs pushes as the daemon's user, so only root, the user who started the
    /// daemon, and (with this flag) members of GROUP may use it: their primary group or
    /// supplementary groups in the group database. The peer's uid comes from SO_PEERCRED on the
    /// unix socket and from the kernel's socket table on TCP; anyone else gets 'error:
    /// permission denied'. The kernel names the connection's creator: a connection an allowed
    /// user hands to another process (SCM_RIGHTS) is accepted as that user's. With -U the
    /// socket is made group GROUP, mode 0660, as it is bound
    /// (see -U for its directory). With -c
    /// (chroot) the members are read once at start, before the chroot, from the group
    /// database and /etc/passwd: inside the chroot those files would be under the base, where
    /// a push can write. Limits per daemon: lines of 4096 bytes, 16 sessions at a time (4 kept for
    /// root and the daemon's user), a session closed after 300 s without a complete line.
    /// Refusals are logged once per uid and minute, the rest counted.
    #[arg(long, value_name = "GROUP", help_heading = "Console")]
    pub console_group: Option<String>,

    /// Stay in the foreground and log to stderr.
    ///
    /// Without -n the daemon detaches and logs to --log-file (default STATE_DIR/makuo.log).
    /// Under systemd (JOURNAL_STREAM set) each line carries a journald priority prefix.
    #[arg(short = 'n', long, help_heading = "Process")]
    pub foreground: bool,

    /// Log level, 0 (quiet) to 9 (debug); SIGUSR1 raises it, SIGUSR2 lowers it.
    ///
    /// The start-up lines (base, group, interface, console, key fingerprint) and errors are
    /// logged at every level; 1 adds one line per push sent or applied, 2 members coming and
    /// going, 5 each path written or deleted.
    #[arg(short = 'd', long, value_name = "LEVEL", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(0..=9), help_heading = "Process")]
    pub loglevel: u8,

    /// Log file of a detached daemon. Default: STATE_DIR/makuo.log.
    ///
    /// Lines start with an RFC 3339 time. SIGHUP reopens it (recreating a file that was moved
    /// away, for logrotate). With -n the log goes to stderr unless this is given.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, help_heading = "Process")]
    pub log_file: Option<PathBuf>,

    /// Write the daemon's process id to FILE once it has detached; removed when it stops.
    ///
    /// Opened before the daemon gives up root or enters a chroot, without following a
    /// symlink; a file owned by another user is refused. When the daemon cannot remove it at
    /// exit (after -u in a directory only root may write, or under chroot) it empties it.
    /// Not needed under systemd (Type=notify tracks the main process).
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, help_heading = "Process")]
    pub pid_file: Option<PathBuf>,

    /// Log to syslog (facility daemon) instead of stderr or the log file.
    #[arg(long, help_heading = "Process")]
    pub syslog: bool,

    /// The syslog socket --syslog writes to.
    #[arg(long, value_name = "PATH", default_value = "/dev/log", value_hint = ValueHint::FilePath,
          help_heading = "Process")]
    pub syslog_socket: PathBuf,

    /// Serve Prometheus metrics on http://ADDR/metrics (ADDR is IP:PORT). Default: off.
    ///
    /// Read-only counters and gauges (docs/metrics.md); the endpoint answers GET /metrics and
    /// nothing else. An address beyond loopback must be given explicitly; the metrics then tell
    /// anyone who can reach it the member names, addresses and push times.
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics::parse_addr,
          help_heading = "Process")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Run as this user (name or uid) once the sockets are open.
    ///
    /// Also takes the user's primary group (unless -g) and its supplementary groups
    /// (unless -G), as login does; root's groups are all given up. Use a user of makuo's own
    /// (useradd --system makuo): any other process of the same user may signal the daemon
    /// (stop or kill it) or read its memory, so a shared user such as nobody lets every
    /// program that runs as nobody stop makuo.
    #[arg(short = 'u', long, value_name = "USER", help_heading = "Process")]
    pub user: Option<String>,

    /// Run as this group (name or gid) once the sockets are open.
    #[arg(
        short = 'g',
        long = "run-group",
        visible_alias = "group-id",
        value_name = "GROUP",
        help_heading = "Process"
    )]
    pub run_group: Option<String>,

    /// Supplementary groups (names or gids, comma-separated) once the sockets are open.
    ///
    /// Replaces the user's own supplementary groups (-u) or, without -u, root's.
    #[arg(
        short = 'G',
        long = "groups",
        value_name = "GROUPS",
        help_heading = "Process"
    )]
    pub groups: Option<String>,

    /// Chroot into the base directory once the base, state directory, sockets and log are open.
    ///
    /// Console pushes, state and logging keep working inside it. makuosan's -c.
    #[arg(short = 'c', long, help_heading = "Process")]
    pub chroot: bool,

    /// Chroot into DIR instead (it must contain the base directory).
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath, conflicts_with = "chroot",
          help_heading = "Process")]
    pub chroot_dir: Option<PathBuf>,

    /// Never receive: do not write what other members push.
    #[arg(short = 'r', long, help_heading = "Transfer")]
    pub no_receive: bool,

    /// Never send: refuse pushes submitted through the console.
    #[arg(short = 's', long, help_heading = "Transfer")]
    pub no_send: bool,

    /// Send at most N pushes at once; more wait their turn (makuosan's -f).
    ///
    /// makuosan sent N files at a time; makuo sends all the files of a push in one stream, so
    /// N counts pushes submitted through the console at the same time.
    #[arg(short = 'f', long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..=64), help_heading = "Transfer")]
    pub parallel: u16,

    /// Cap the send rate, in Mbit/s. Default: no cap.
    ///
    /// Without a cap the rate adapts to the slowest member in the group's pace, from the
    /// members' feedback (loss, receive-buffer overflow, round-trip time).
    #[arg(short = 'T', long, value_name = "MBIT",
          value_parser = clap::value_parser!(u32).range(1..), help_heading = "Transfer")]
    pub rate: Option<u32>,

    /// Lowest rate a member must take to stay in a push's pace (rsync units, as --bwlimit).
    ///
    /// A member that cannot receive this fast while most others can leaves the group's pace
    /// (the others go on at theirs), is served after them with only what it lacks, and is
    /// failed as "too slow" if that takes more than twice what RATE allows for the whole
    /// push, plus a second. Either way it is named. 0: no member ever leaves the pace.
    /// Default: 10M (10 MiB/s, about 84 Mbit/s, so a member on a 100 Mbit/s link keeps the
    /// pace of faster ones).
    #[arg(long, value_name = "RATE", value_parser = super::parse_bwlimit, help_heading = "Transfer")]
    pub min_rate: Option<u64>,

    /// UDP receive buffer size (SO_RCVBUF). Default: 32 MiB.
    ///
    /// A limit, not an allocation: room for a receiver that falls behind for a moment (a
    /// burst of file creations, a busy CPU) to catch up without dropping. Set with
    /// SO_RCVBUFFORCE when running as root; otherwise net.core.rmem_max caps it.
    #[arg(short = 'R', long, value_name = "BYTES", help_heading = "Transfer")]
    pub rcvbuf: Option<usize>,

    /// UDP send buffer size (SO_SNDBUF). Default: 8 MiB.
    ///
    /// Set with SO_SNDBUFFORCE when running as root; otherwise net.core.wmem_max caps it.
    #[arg(short = 'S', long, value_name = "BYTES", help_heading = "Transfer")]
    pub sndbuf: Option<usize>,

    /// Skip the durability step (fsync before rename) when receiving.
    ///
    /// Faster, but a power cut may leave renamed files empty or torn.
    #[arg(long, help_heading = "Transfer")]
    pub no_fsync: bool,

    /// Heartbeat interval in milliseconds [default: 1000].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..),
          help_heading = "Transfer")]
    pub heartbeat: Option<u64>,

    /// Silence after which a push target has failed, in milliseconds [default: 5000].
    ///
    /// A member dropped in the middle of a transfer counts as failed for that transfer.
    /// SIGHUP applies a new value from the config file.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..),
          help_heading = "Transfer")]
    pub member_timeout: Option<u64>,

    /// Silence after which a member is dropped from the member table, in milliseconds.
    ///
    /// [default: 5000, and at least 3 heartbeats] SIGHUP applies a new value from the config
    /// file.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..),
          help_heading = "Transfer")]
    pub member_expiry: Option<u64>,

    /// Create the block and character device nodes pushes carry (needs root).
    ///
    /// Without it, or when not running as root, each device node of a push is refused with
    /// its reason in the result. FIFOs and sockets are always created.
    #[arg(long, help_heading = "Transfer")]
    pub allow_devices: bool,

    /// Owner-match mode: send only files owned by the daemon's user (makuosan's -O).
    ///
    /// Console pushes skip every file, symlink and special file not owned by the user the
    /// daemon runs as ('skipping PATH: owner unmatch'); with --delete, members keep their
    /// copies of the skipped paths.
    #[arg(short = 'O', long, help_heading = "Transfer")]
    pub owner_match: bool,

    /// Keep the owner, group and set-id bits pushed by the sender (needs root).
    ///
    /// Without it received files belong to the daemon's user, and setuid, setgid and sticky
    /// bits are stripped. Either way a push never changes the base directory's own owner or
    /// mode.
    #[arg(long, help_heading = "Transfer")]
    pub preserve_owner: bool,

    /// Never let a push write or delete paths matching PATTERN here (repeatable).
    ///
    /// rsync pattern syntax ('config/**', '*.local', '/secrets/'); a pattern matching a
    /// directory protects all it holds. The sender cannot override it: such paths are left
    /// as they are even by 'sync --delete', 'check' lists them as protected rather than
    /// different, and the push's result names them.
    #[arg(long, value_name = "PATTERN", help_heading = "Protection")]
    pub protect: Vec<String>,

    /// Refuse a push that would delete more than N paths here (exit 25 at the sender).
    ///
    /// Counted as the sender's --max-delete counts: paths --delete would remove, a directory
    /// with all it holds counting once. The push is refused before anything is staged; the
    /// other members are not affected.
    #[arg(long, value_name = "N", help_heading = "Protection")]
    pub max_delete: Option<u64>,

    /// Run CMD (with /bin/sh -c) on this member after each push it commits.
    ///
    /// Environment: MAKUO_PUSH_ID, MAKUO_ORIGIN (the sender), MAKUO_BASE, MAKUO_HOOK,
    /// MAKUO_RELEASE (with --release) and MAKUO_CHANGES (a file listing the changed paths,
    /// one a line). Runs as the daemon's user with the base as working directory (inside the
    /// chroot with -c: /bin/sh must exist there), off the network loop, bounded by
    /// --hook-timeout. A non-zero exit reaches the sender as 'hook failed: exit N' for this
    /// member, and the push exits 23.
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    pub after_push: Option<String>,

    /// Run CMD on this member once a push is staged, before its commit; non-zero vetoes it.
    ///
    /// Same environment as --after-push (MAKUO_CHANGES lists what the commit would change).
    /// A veto drops the staged push on this member, which fails with the hook's status.
    #[arg(long, value_name = "CMD", help_heading = "Hooks")]
    pub before_commit: Option<String>,

    /// Longest a hook may run, in seconds; it is then killed and fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=110), help_heading = "Hooks")]
    pub hook_timeout: u64,
}

impl DaemonArgs {
    /// The console's TCP port: `-P`, else the UDP port (`-p`), as in makuosan.
    pub fn console_port(&self) -> u16 {
        self.console_port.unwrap_or(self.cluster.port)
    }
}
