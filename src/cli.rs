//! Every subcommand and flag of `makuo`, defined once (clap derive).
//!
//! The one-line help (first paragraph of each doc comment) is what `-h` shows; the whole doc
//! comment is what `--help` and the man page show. `makuo generate` ([`generate`]) builds the
//! man pages and shell completions by walking [`Cli::command`], so no flag list is kept
//! anywhere else.
//!
//! This module only checks what the user typed (types, ranges, conflicts, counts). It makes no
//! syscalls: resolving paths, compiling globs, reading `--exclude-from` files, looking up the
//! hostname and opening sockets belong to the second stage, so `--help` and `--version` work
//! even when the base dir or the network is broken.

pub mod daemon;
pub mod generate;
pub mod msync;
pub mod pages;
mod values;

#[cfg(test)]
mod tests;

pub use daemon::DaemonArgs;
pub use msync::MsyncArgs;
pub use values::{
    filter_args_in_order, min_rate_floor, parse_bwlimit, ConsoleAddr, FilterArgKind, PeerAddr,
};

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use clap::{ValueEnum, ValueHint};

use crate::exit;
use crate::proto::wire;

/// What `makuo --version` prints after the name: the crate version and the git commit the
/// binary was built from, `-dirty` when its sources differed from that commit (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MAKUO_GIT_COMMIT"),
    ")"
);

/// Most `-k/--key` files: the first seals what we send, both open what we receive.
pub const MAX_KEYS: usize = 2;

/// Smallest accepted `--mtu`.
const MIN_MTU: i64 = 576;
/// Largest accepted `--mtu`: the biggest datagram plus IPv4 and UDP headers.
const MAX_MTU: i64 = (wire::MAX_DATAGRAM + wire::IP_UDP_OVERHEAD) as i64;

/// Push a file tree to every server of a cluster at once, over UDP multicast.
///
/// makuo is the successor of makuosan. A daemon (makuo daemon) runs on every server of the
/// cluster; the daemons find each other by multicast and a tree pushed at any one of them is
/// written on every live member at the same time, so a push takes about as long for fifty
/// servers as for two.
///
/// Each daemon serves a console on 127.0.0.1:5000 (TCP, or a unix socket with -U), open to root,
/// the user who started the daemon and members of --console-group. The front-end
/// commands (sync, check, members, status, exclude, loglevel) talk to the local daemon through
/// that console when one answers. When none answers (or with --direct), sync, check, members
/// and status walk the tree themselves and multicast directly, as a short-lived sender that
/// joins the cluster for the length of the run.
///
/// Members authenticate and encrypt with the shared key files given by -k; makuo keygen
/// makes one. Without a key the daemon and direct mode refuse to run unless --insecure is
/// given.
#[derive(Debug, Parser)]
#[command(
    name = "makuo",
    version = VERSION,
    after_long_help = exit::help_table(),
    disable_help_subcommand = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: receive pushes into the base dir, send what the console asks for.
    ///
    /// Run one on every server of the cluster. The daemon joins the multicast group, announces
    /// itself with heartbeats, writes what other members push into its base directory, and
    /// serves a line-based console (TCP on 127.0.0.1, and a unix socket if -U is given) through
    /// which the front-end commands submit pushes. It detaches unless -n is given. Stop it with
    /// SIGTERM. The flag letters are makuosan's.
    Daemon(DaemonArgs),
    /// Push paths to every member (rsync-style): send what differs, optionally delete.
    ///
    /// Each PATH (relative to the base directory) is compared with every member, and whatever
    /// differs (size and mtime, or content with -c) is multicast once to all of them. A file is
    /// written to a temporary name, made durable and renamed into place. With --delete, member
    /// paths under each PATH that the sender lacks are deleted. The exit status says whether
    /// every targeted member ended with everything (see EXIT STATUS in makuo(1)).
    #[command(mut_arg("interface", |a| a.short(None)))]
    Sync(SyncArgs),
    /// Compare paths on every member with the sender and list what differs; change nothing.
    ///
    /// Without PATH the whole base directory is compared. Contents are compared by checksum.
    /// Exits 0 only when every targeted member matches.
    Check(CheckArgs),
    /// Switch release link NAME back to its previous release on every member, or on none.
    ///
    /// The counterpart of makuo sync --release NAME: every member checks that NAME is a
    /// release link and that the release it was made from is still there, and reports ready;
    /// only then do all of them switch NAME (one atomic rename each). If any member cannot,
    /// none switches and the command exits 23 with 'not committed on any member'. Rolling back
    /// again goes one release further back, while those releases are kept.
    #[command(mut_arg("interface", |a| a.short(None)))]
    Rollback(RollbackArgs),
    /// Watch paths and push what changes, as it happens (lsyncd's job).
    ///
    /// Watches each PATH (relative to the base) with inotify and pushes changes in batches: a
    /// quiet period (--delay) gathers a burst of writes into one push, a file still open for
    /// writing waits for its close, and deletions propagate with --delete. A first full
    /// compare runs at the start, and again whenever the kernel's event queue overflows or a
    /// per-directory filter file changes. A push that fails is logged and retried with
    /// backoff. With a daemon answering on the console the watch is handed to it (it outlives
    /// this command and shows in makuo status); otherwise (or with --direct) it runs in the
    /// foreground until SIGINT or SIGTERM.
    #[command(mut_arg("interface", |a| a.short(None)))]
    Watch(WatchArgs),
    /// List live members: name, address, version and role.
    ///
    /// It walks no tree: the base and state directory are not listed (scripts that pass the
    /// cluster's common flags may still give them; they are ignored).
    #[command(mut_arg("base", |a| a.hide(true)), mut_arg("state_dir", |a| a.hide(true)))]
    Members(MembersArgs),
    /// How each member is reached: multicast to it and from it, or unicast only.
    ///
    /// Exits 1 when a member is reachable only by unicast (its path is unicast), so that
    /// operators can alert on it; 10 when no member answered.
    Doctor(FrontArgs),
    /// Show daemon state: transfers in flight, members, counters.
    ///
    /// Needs a daemon: there is no direct mode, so only the console and output options apply.
    Status(StatusArgs),
    /// Edit the daemon's standing exclude list (shell globs), which applies to every push.
    ///
    /// The list is kept in the daemon's state directory (file 'excludes'), so it survives
    /// restarts, and applies to every push the daemon sends (console, front end and watches)
    /// after the config file's 'exclude' rules. makuo status shows it. A console session's own
    /// 'exclude add' rules (makuosan's) last only for that session.
    Exclude(ExcludeArgs),
    /// Set the daemon's log level, from 0 (quiet) to 9 (debug).
    Loglevel(LoglevelArgs),
    /// Write a new random cluster key to FILE ('-' prints it to stdout).
    ///
    /// A key is 32 random bytes written as 64 hex digits. FILE is created with mode 0600 and an
    /// existing file is never overwritten. Copy the key to every member (keeping it 0600: a
    /// key file others can read is refused) and pass it with -k. To rotate keys without
    /// downtime, restart every node with '-k OLD -k NEW', then all with '-k NEW -k OLD', then
    /// all with '-k NEW' (finish each step everywhere before the next; docs/protocol.md).
    Keygen(KeygenArgs),
    /// Run a throwaway cluster on loopback and push a generated tree through it.
    ///
    /// Starts N daemons on 127.0.0.1 with private state and base directories under a temporary
    /// directory, pushes a generated tree from the first to the rest, checks every copy and
    /// prints timings. Nothing outside the temporary directory is touched.
    Demo(DemoArgs),
    /// Write the man pages and shell completions (for packagers and the repository).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

impl Command {
    /// The subcommand's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Daemon(_) => "daemon",
            Command::Sync(_) => "sync",
            Command::Check(_) => "check",
            Command::Rollback(_) => "rollback",
            Command::Watch(_) => "watch",
            Command::Members(_) => "members",
            Command::Doctor(_) => "doctor",
            Command::Status(_) => "status",
            Command::Exclude(_) => "exclude",
            Command::Loglevel(_) => "loglevel",
            Command::Keygen(_) => "keygen",
            Command::Demo(_) => "demo",
            Command::Generate(_) => "generate",
        }
    }
}

/// Flags that describe the cluster, the same for the daemon and for the front end's direct
/// mode.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Base directory: the tree that is pushed and received.
    ///
    /// Every path on the wire is relative to it, and nothing is ever written outside it. In the
    /// front end it matters only in direct mode; through a daemon, the daemon's base is used.
    #[arg(short = 'b', long, value_name = "DIR", default_value = ".", value_hint = ValueHint::DirPath)]
    pub base: PathBuf,

    /// Multicast group address, IPv4 or IPv6 (ff02::…, ff05::…, ff15::…).
    #[arg(short = 'm', long, value_name = "GROUP", default_value = "224.0.0.108",
          value_hint = ValueHint::Other)]
    pub group: IpAddr,

    /// UDP port of the multicast group.
    #[arg(short = 'p', long, value_name = "PORT", default_value_t = 5000,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Local interface to send and join multicast on: its name (eth1) or one of its addresses.
    ///
    /// Default: the interface the routing table picks for the group.
    #[arg(short = 'i', long, value_name = "IFACE", value_hint = ValueHint::Other)]
    pub interface: Option<String>,

    /// Multicast hop limit (IPv4 TTL, IPv6 hops); above 1 routed multicast crosses subnets.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=255))]
    pub ttl: u32,

    /// Member reached by unicast, ADDR[:PORT] (repeatable; PORT defaults to -p).
    ///
    /// For networks without multicast: membership and pushes then go by unicast to the
    /// peers and to the members they report, and daemons take unicast on PORT. A node's own
    /// address is skipped, so one list serves every member.
    #[arg(long = "peer", value_name = "ADDR", action = ArgAction::Append)]
    pub peers: Vec<PeerAddr>,

    /// Relay pushes: forward other members' pushes when asked, and push through relays.
    ///
    /// A daemon with --relay offers to forward; a sender with --relay (daemon or direct front
    /// end) sends its push to a few such members, which forward it to the others that multicast
    /// does not reach (every member with --peer), so its link carries about the square root of
    /// their number in copies instead of one each. A relay that hears its own multicast where
    /// the sender's does not reach bridges that subnet.
    #[arg(long)]
    pub relay: bool,

    /// Cluster key file (repeatable, at most 2): the first seals, both open.
    ///
    /// Every datagram is authenticated and encrypted with the first key; datagrams sealed with
    /// either key are accepted. To rotate, restart every node with '-k OLD -k NEW', then all
    /// with '-k NEW -k OLD', then all with '-k NEW', finishing each step everywhere first.
    /// Without -k makuo refuses to run unless --insecure is given. Make a key with makuo keygen.
    #[arg(short = 'k', long = "key", value_name = "KEYFILE", action = ArgAction::Append,
          value_hint = ValueHint::FilePath)]
    pub keys: Vec<PathBuf>,

    /// Run without a cluster key: unauthenticated, anyone on the LAN can push or delete files.
    ///
    /// Without -k, the daemon and direct mode refuse to run unless this is given (make a key
    /// with makuo keygen).
    /// With it, nothing is sealed and anyone who can send to the group can push, overwrite or
    /// delete files on every member; use it only on an isolated test network.
    #[arg(long)]
    pub insecure: bool,

    /// Member name announced to the cluster. Default: the hostname.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Directory for persistent state (member identity, interrupted transfers).
    ///
    /// Default: /var/lib/makuo/NAME.
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub state_dir: Option<PathBuf>,

    /// Path MTU in bytes; datagrams are sized to fit it.
    #[arg(long, value_name = "BYTES", default_value_t = 1500,
          value_parser = clap::value_parser!(u32).range(MIN_MTU..=MAX_MTU))]
    pub mtu: u32,
}

/// Refusal to run a daemon or a direct-mode push without a cluster key (and no `--insecure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoKey;

impl fmt::Display for NoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "no cluster key: give -k KEYFILE (make one with `makuo keygen KEYFILE` and copy it \
             to every member), or --insecure to run an unauthenticated cluster",
        )
    }
}

impl std::error::Error for NoKey {}

impl ClusterArgs {
    /// Secure by default: at least one `-k`, or `--insecure` said out loud.
    pub fn require_key(&self) -> Result<(), NoKey> {
        if self.keys.is_empty() && !self.insecure {
            Err(NoKey)
        } else {
            Ok(())
        }
    }
}

/// Where the front end finds the daemon console.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Daemon console: HOST:PORT, or a unix socket path (anything containing '/').
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:5000",
        help_heading = "Console"
    )]
    pub console: ConsoleAddr,

    /// File holding the console password (the daemon's -K).
    #[arg(short = 'K', long, value_name = "FILE", value_hint = ValueHint::FilePath,
          help_heading = "Console")]
    pub password_file: Option<PathBuf>,
}

/// How much the front end prints, and in what form.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print more (repeat for even more).
    #[arg(short = 'v', long, action = ArgAction::Count, help_heading = "Output")]
    pub verbose: u8,

    /// Print errors only.
    #[arg(short = 'q', long, conflicts_with = "verbose", help_heading = "Output")]
    pub quiet: bool,

    /// Print the result as one JSON document instead of text.
    ///
    /// One document per command on stdout (exact names; a name that is not UTF-8 has its
    /// invalid bytes written as \#ooo, rsync's escape); messages stay on stderr. A usage error
    /// prints {"exit":1,"error":"..."}.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
}

/// Options shared by the front-end commands that can run with or without a daemon.
#[derive(Debug, Args)]
pub struct FrontArgs {
    /// Where the daemon console is.
    #[command(flatten)]
    pub console: ConsoleArgs,

    /// Do not use a daemon: walk the tree and multicast directly.
    ///
    /// Without --direct the local daemon is tried first and direct mode is the fallback.
    #[arg(long, conflicts_with = "console", help_heading = "Direct mode")]
    pub direct: bool,

    /// In direct mode, the longest to listen for members before starting, in milliseconds.
    ///
    /// Members answer a join within tens of milliseconds and pass along everyone they know,
    /// so listening ends early once members have answered and none has appeared for 50 ms
    /// (and, with --state-dir, every remembered member has been heard).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 500,
        help_heading = "Direct mode"
    )]
    pub discover: u64,

    /// Cluster flags, used in direct mode.
    #[command(flatten, next_help_heading = "Direct mode")]
    pub cluster: ClusterArgs,

    /// Output shape.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What `sync` and `check` look at: recursion, members, filters.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Recurse into directories (without it, directories are skipped).
    #[arg(short = 'r', long)]
    pub recursive: bool,

    /// Only this member (name or address; repeatable). Default: every live member.
    ///
    /// A target that does not answer counts as failed.
    #[arg(short = 't', long = "target", value_name = "HOST", action = ArgAction::Append,
          value_hint = ValueHint::Hostname,
          value_hint = ValueHint::Hostname)]
    pub targets: Vec<String>,

    /// Exclude paths matching PATTERN (rsync rules; repeatable).
    ///
    /// --exclude, --include and --exclude-from rules apply in the order given, and the first
    /// rule that matches a path decides. A leading '/' anchors a pattern at the transfer root, a
    /// trailing '/' matches directories only, '*' stops at '/' and '**' does not.
    #[arg(long, value_name = "PATTERN", action = ArgAction::Append, help_heading = "Filter")]
    pub exclude: Vec<String>,

    /// Do not exclude paths matching PATTERN (repeatable; see --exclude for the order).
    #[arg(long, value_name = "PATTERN", action = ArgAction::Append, help_heading = "Filter")]
    pub include: Vec<String>,

    /// Read exclude patterns from FILE, one a line (repeatable; see --exclude for the order).
    ///
    /// Blank lines and lines starting with '#' or ';' are ignored. A line starting with '+ ' is
    /// an include rule and one starting with '- ' an exclude rule, as in rsync.
    #[arg(long, value_name = "FILE", action = ArgAction::Append, value_hint = ValueHint::FilePath,
          help_heading = "Filter")]
    pub exclude_from: Vec<String>,

    /// Read include patterns from FILE, one a line (repeatable; as --exclude-from).
    #[arg(long, value_name = "FILE", action = ArgAction::Append, value_hint = ValueHint::FilePath,
          help_heading = "Filter")]
    pub include_from: Vec<String>,

    /// Add an rsync filter RULE ('- *.o', 'P /keep', 'merge FILE', 'dir-merge NAME', 'clear').
    ///
    /// Full rsync filter-rule syntax, in order with --include/--exclude: + and - (both
    /// sides), H and S (sender only), P and R (protect from / expose to --delete), the '!',
    /// 's' and 'r' modifiers; 'merge FILE' reads FILE's rules in its place (FILE relative to
    /// the current directory); 'dir-merge NAME' reads NAME in every directory pushed, its
    /// rules applying there and below ('dir-merge /NAME' also in the parents of each PATH,
    /// from the base down), with the 'n', 'w', 'e', '-' and '+' modifiers; 'clear' drops the
    /// rules before it. Not supported: the '/', 'x', 'p' and 'C' modifiers.
    #[arg(short = 'f', long = "filter", value_name = "RULE", action = ArgAction::Append,
          help_heading = "Filter")]
    pub filter: Vec<String>,

    /// Same as --filter='dir-merge /.rsync-filter'; repeated, also --filter='- .rsync-filter'.
    ///
    /// Reads the rules in a .rsync-filter file in every directory pushed (and in the
    /// parents of each PATH from the base down); -FF also keeps the .rsync-filter files
    /// themselves from being pushed.
    // Each -F is one value (an empty one), so that its position among the other filter
    // flags is kept (a counted flag keeps only its last position).
    #[arg(short = 'F', action = ArgAction::Append, num_args = 0, default_missing_value = "",
          value_name = "RULE", help_heading = "Filter")]
    pub filter_files: Vec<String>,
}

/// rsync's list input: `--files-from` and `--from0`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Push exactly the paths listed in FILE ('-': standard input), with their parents.
    ///
    /// As rsync: each line is a path relative to the base (a leading '/' is dropped; blank
    /// lines and lines starting with '#' or ';' are ignored); the path and its parent
    /// directories are pushed; a listed directory is pushed with its contents only with -r
    /// (-a does not imply -r here), or one level deep when listed with a trailing '/'. A
    /// listed path that does not exist is reported and makes the exit status 23. The PATH
    /// arguments must be left out (or be '.'). With --delete, only directories walked with
    /// -r are cleaned.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, help_heading = "Filter")]
    pub files_from: Option<PathBuf>,

    /// The --files-from list is separated by NUL bytes, not lines.
    #[arg(short = '0', long, requires = "files_from", help_heading = "Filter")]
    pub from0: bool,
}

/// `makuo sync`: rsync spellings.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Paths to push, relative to the base directory.
    #[arg(value_name = "PATH", value_hint = ValueHint::AnyPath, required_unless_present = "files_from",
          value_hint = ValueHint::AnyPath)]
    pub paths: Vec<PathBuf>,

    /// Recursion, targets and filters.
    #[command(flatten)]
    pub select: SelectArgs,

    /// --files-from and --from0.
    #[command(flatten)]
    pub list: ListArgs,

    /// Archive mode, rsync's -rlptgoD: recurse, and keep what makuo keeps.
    ///
    /// makuo always keeps symlinks as symlinks (l), permissions (p) and modification times
    /// (t). Owner and group (o, g) are kept when the sender runs as root and the members run
    /// with --preserve-owner (as root). D is -D: FIFOs and sockets are made on every member,
    /// device nodes only on members with --allow-devices running as root (elsewhere each is
    /// refused and the push ends 23, as rsync's mknod would fail). -a implies -r, except with
    /// --files-from (as in rsync).
    #[arg(short = 'a', long)]
    pub archive: bool,

    /// Print a line per changed path, rsync's itemized format (YXcstpoguax PATH).
    ///
    /// A change that not every member needed is followed by the members that needed it.
    /// Deletions of a real run are counted, not listed (-n lists them).
    #[arg(short = 'i', long)]
    pub itemize_changes: bool,

    /// Print rsync's transfer statistics at the end.
    #[arg(long)]
    pub stats: bool,

    /// Accepted for rsync compatibility; does nothing.
    ///
    /// makuo sends every file once for all members and does not compress.
    #[arg(short = 'z', long)]
    pub compress: bool,

    /// Show what would change; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Delete member paths under each PATH that the sender does not have.
    ///
    /// Excluded paths are protected from deletion, as in rsync.
    #[arg(long)]
    pub delete: bool,

    /// Delete at most N paths per member; stop deleting (exit 25) beyond that.
    #[arg(long, value_name = "N", requires = "delete")]
    pub max_delete: Option<u64>,

    /// All or none: commit only when every member has staged the whole push.
    ///
    /// Each member stages everything (files and deletes) and reports ready; only then are
    /// they told to commit. If any member fails or goes silent first, nobody commits, every
    /// member drops what it staged, and the push exits 23 with 'not committed on any member'.
    #[arg(long)]
    pub atomic: bool,

    /// Push into a new release and switch the link NAME to it on every member (implies --atomic).
    ///
    /// The push goes into releases/<push-id>/ under each member's base: entries unchanged
    /// since the current release (NAME's target) are hard-linked from it, so only changes
    /// move and take space, and the rest of the current release carries over (pushing a
    /// sub-path still makes a complete release; --delete deletes inside the new release).
    /// Once every member has staged it, each replaces the symlink NAME (relative:
    /// NAME -> releases/<push-id>) with one atomic rename: readers see the old tree or the
    /// new one, never a mix. The first release (no NAME yet) holds only what the push
    /// carries; a NAME that exists and is not a release link is refused, never replaced.
    /// NAME is one path component (no '/', not 'releases', not starting with '.').
    /// releases/ and release links are makuo's: check does not report them and --delete of
    /// a parent path leaves them. Hooks get MAKUO_RELEASE. See makuo rollback.
    #[arg(long, value_name = "NAME", value_parser = release_name)]
    pub release: Option<String>,

    /// With --release: keep the newest N releases on each member (default 5).
    ///
    /// Older releases are removed after a switch; the current release and the one it was
    /// made from (what makuo rollback goes back to) always stay.
    #[arg(long, value_name = "N", requires = "release",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub keep_releases: Option<u32>,

    /// Compare file contents by checksum, not size and mtime.
    #[arg(short = 'c', long)]
    pub checksum: bool,

    /// What to keep of the file kinds beyond files, directories and symlinks.
    #[command(flatten)]
    pub kinds: KindArgs,

    /// Cap the send rate; RATE is KiB/s unless suffixed (1.5M, 10MB: rsync units).
    ///
    /// As rsync: a plain number is KiB/s; suffixes K, M, G, T, P (or KiB, MiB, ...) multiply
    /// by powers of 1024, KB, MB, ... by powers of 1000, and B means bytes. Fractions are
    /// allowed (1.5M). 0 means no cap. Nonzero rates below 512 bytes/s are refused. Below the
    /// cap the rate adapts to the members' feedback.
    #[arg(long, value_name = "RATE", value_parser = parse_bwlimit)]
    pub bwlimit: Option<u64>,

    /// Lowest rate a member must take to stay in the push's pace (units as --bwlimit).
    ///
    /// A member that cannot receive this fast while most others can leaves the group's pace
    /// (the others go on at theirs), is served after them with only what it lacks, and is
    /// failed as "too slow" if that takes more than twice what RATE allows for the whole
    /// push, plus a second. Either way it is named. 0: no member ever leaves the pace.
    /// Default: 10M (10 MiB/s, about 84 Mbit/s, so a member on a 100 Mbit/s link keeps the
    /// pace of faster ones). Direct mode; through a daemon, the daemon's --min-rate applies.
    #[arg(long, value_name = "RATE", value_parser = parse_bwlimit)]
    pub min_rate: Option<u64>,

    /// Give up when nothing progresses for SECONDS (exit 30); 0 means never (the default).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// Show progress while transferring.
    #[arg(long)]
    pub progress: bool,

    /// Let members skip the durability step (fsync before rename) for this push.
    ///
    /// Faster on slow disks; a power cut right after the push may then lose what it wrote.
    #[arg(long)]
    pub no_fsync: bool,

    /// Console, direct mode and output.
    #[command(flatten)]
    pub front: FrontArgs,
}

/// rsync's `-H -S -D -X -A`: hard links, holes, devices and specials, attributes.
#[derive(Debug, Args)]
pub struct KindArgs {
    /// Keep hard links: files linked within the push travel once and arrive linked.
    #[arg(short = 'H', long, help_heading = "File kinds")]
    pub hard_links: bool,

    /// Keep holes: only the data of sparse files travels, and they arrive sparse.
    #[arg(short = 'S', long, help_heading = "File kinds")]
    pub sparse: bool,

    /// Same as --devices --specials.
    #[arg(short = 'D', help_heading = "File kinds")]
    pub devices_specials: bool,

    /// Send block and character device nodes.
    ///
    /// Members create them only when started with --allow-devices and running as root;
    /// elsewhere each is refused with its reason.
    #[arg(long, help_heading = "File kinds")]
    pub devices: bool,

    /// Send FIFOs and named sockets.
    #[arg(long, help_heading = "File kinds")]
    pub specials: bool,

    /// Keep extended attributes.
    ///
    /// user.* ones on every member; trusted.* and security.* ones only from a sender running
    /// as root, and only on members that keep owners (--preserve-owner, as root), like
    /// set-id bits. At most 128 attributes and 256 KiB per path, 64 KiB per value; attributes
    /// beyond that are not sent and the path is reported.
    #[arg(short = 'X', long, help_heading = "File kinds")]
    pub xattrs: bool,

    /// Keep POSIX ACLs (access ACLs, and default ACLs of directories; numeric ids).
    #[arg(short = 'A', long, help_heading = "File kinds")]
    pub acls: bool,
}

impl KindArgs {
    /// These switches in a push's options.
    pub fn apply(&self, o: &mut crate::proto::manifest::PushOptions) {
        o.hard_links = self.hard_links;
        o.sparse = self.sparse;
        o.devices = self.devices || self.devices_specials;
        o.specials = self.specials || self.devices_specials;
        o.xattrs = self.xattrs;
        o.acls = self.acls;
    }
}

/// `makuo check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Paths to compare, relative to the base directory. Default: all of it.
    #[arg(value_name = "PATH", value_hint = ValueHint::AnyPath)]
    pub paths: Vec<PathBuf>,

    /// Recursion, targets and filters.
    #[command(flatten)]
    pub select: SelectArgs,

    /// --files-from and --from0.
    #[command(flatten)]
    pub list: ListArgs,

    /// Console, direct mode and output.
    #[command(flatten)]
    pub front: FrontArgs,
}

/// `makuo rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The release link to switch back (as given to makuo sync --release).
    #[arg(value_name = "NAME", value_parser = release_name)]
    pub name: String,

    /// Only this member (name or address; repeatable). Default: every live member.
    #[arg(short = 't', long = "target", value_name = "HOST", action = ArgAction::Append,
          value_hint = ValueHint::Hostname)]
    pub targets: Vec<String>,

    /// Give up when the daemon says nothing for this many seconds (exit 30).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// Console, direct mode and output.
    #[command(flatten)]
    pub front: FrontArgs,
}

/// A release name: one safe path component (`proto::manifest::release::check_name`).
fn release_name(s: &str) -> Result<String, String> {
    crate::proto::manifest::release::check_name(s.as_bytes())
        .map(|()| s.to_string())
        .map_err(str::to_string)
}

/// `makuo watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Paths to watch, relative to the base directory.
    #[arg(value_name = "PATH", value_hint = ValueHint::AnyPath, required_unless_present = "list",
          value_hint = ValueHint::AnyPath)]
    pub paths: Vec<PathBuf>,

    /// Recursion, targets and filters.
    #[command(flatten)]
    pub select: SelectArgs,

    /// Archive mode: as makuo sync -a (implies -r).
    #[arg(short = 'a', long)]
    pub archive: bool,

    /// Propagate deletions: member paths under each PATH that the sender lacks are deleted.
    #[arg(long)]
    pub delete: bool,

    /// Quiet period in milliseconds: changes are pushed once nothing changed for this long.
    ///
    /// A burst of writes becomes one push. While changes keep coming, a push still goes out
    /// at the latest after 8 x MS (at least 4 s) since the first unpushed change.
    #[arg(long, value_name = "MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub delay: u64,

    /// Compare file contents by checksum, not size and mtime.
    #[arg(short = 'c', long)]
    pub checksum: bool,

    /// Let members skip the durability step (fsync before rename) for these pushes.
    #[arg(long)]
    pub no_fsync: bool,

    /// Print a line per changed path of each push (rsync's itemized format).
    #[arg(short = 'i', long)]
    pub itemize_changes: bool,

    /// Accepted for rsync compatibility; does nothing.
    #[arg(short = 'z', long)]
    pub compress: bool,

    /// List the daemon's watches (with their last push and lag) and exit.
    #[arg(long, conflicts_with_all = ["stop", "direct"])]
    pub list: bool,

    /// Remove the daemon's watches on PATH... and exit.
    #[arg(long, conflicts_with = "direct")]
    pub stop: bool,

    /// Console, direct mode and output.
    #[command(flatten)]
    pub front: FrontArgs,
}

/// `makuo members`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// Stop remembering member NAME (a server taken out of the cluster).
    ///
    /// A daemon names a remembered member that stopped answering failed in every push for up
    /// to a day; after --forget it no longer does. Needs a daemon (console words 'members
    /// forget NAME').
    #[arg(long, value_name = "NAME")]
    pub forget: Option<String>,

    /// Console, direct mode and output.
    #[command(flatten)]
    pub front: FrontArgs,
}

/// `makuo exclude`: the daemon's standing excludes. Needs a daemon; there is no direct mode.
#[derive(Debug, Args)]
pub struct ExcludeArgs {
    /// The edit to make.
    #[command(subcommand)]
    pub action: ExcludeAction,

    /// Where the daemon console is.
    #[command(flatten)]
    pub console: ConsoleArgs,

    /// Output shape.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `makuo status`: a question to the daemon only (no direct mode, no tree).
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Where the daemon console is.
    #[command(flatten)]
    pub console: ConsoleArgs,

    /// Output shape.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// An edit of the standing exclude list.
#[derive(Debug, Subcommand)]
pub enum ExcludeAction {
    /// Add patterns to the standing exclude list.
    Add(ExcludePatterns),
    /// Remove patterns from the standing exclude list.
    Del(ExcludePatterns),
    /// Print the standing exclude list.
    List,
    /// Empty the standing exclude list.
    Clear,
}

/// Patterns for `exclude add` and `exclude del`.
#[derive(Debug, Args)]
pub struct ExcludePatterns {
    /// Shell glob patterns, matched like --exclude.
    #[arg(value_name = "PATTERN", required = true)]
    pub patterns: Vec<String>,
}

/// `makuo loglevel`. Needs a daemon; there is no direct mode.
#[derive(Debug, Args)]
pub struct LoglevelArgs {
    /// New log level, 0 (quiet) to 9 (debug).
    #[arg(value_name = "LEVEL", value_parser = clap::value_parser!(u8).range(0..=9))]
    pub level: u8,

    /// Where the daemon console is.
    #[command(flatten)]
    pub console: ConsoleArgs,

    /// Output shape.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `makuo keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key; '-' prints it to stdout.
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
}

/// `makuo demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of daemons to start.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(2..=64))]
    pub members: u16,

    /// Number of files in the generated tree.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub files: u32,

    /// Keep the temporary directory and print its path.
    #[arg(long)]
    pub keep: bool,
}

/// `makuo generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write.
    #[arg(value_name = "WHAT")]
    pub what: GenerateWhat,

    /// Directory to write man/ and completions/ under.
    #[arg(long, value_name = "DIR", default_value = ".", value_hint = ValueHint::DirPath)]
    pub out: PathBuf,
}

/// Which generated files `makuo generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GenerateWhat {
    /// man/makuo.1 and man/makuo-SUBCOMMAND.1.
    Man,
    /// completions/makuo.bash.
    Bash,
    /// completions/_makuo.
    Zsh,
    /// completions/makuo.fish.
    Fish,
    /// All of the above.
    All,
}

impl Cli {
    /// Parses `args` (program name first) into the typed [`Cli`] and the raw matches, which
    /// [`filter_args_in_order`] needs. Runs [`Cli::check`] too.
    pub fn parse_with_matches<I, T>(args: I) -> Result<(Cli, ArgMatches), clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        let cli = Cli::from_arg_matches(&matches)?;
        cli.check()?;
        Ok((cli, matches))
    }

    /// Checks what clap's derive cannot express (at most [`MAX_KEYS`] `-k`). No syscalls.
    pub fn check(&self) -> Result<(), clap::Error> {
        let cluster = match &self.command {
            Command::Daemon(a) => &a.cluster,
            Command::Sync(a) => &a.front.cluster,
            Command::Check(a) => &a.front.cluster,
            Command::Rollback(a) => &a.front.cluster,
            Command::Watch(a) => &a.front.cluster,
            Command::Members(a) => &a.front.cluster,
            Command::Doctor(a) => &a.cluster,
            _ => return Ok(()),
        };
        if cluster.keys.len() > MAX_KEYS {
            let mut cmd = Cli::command();
            return Err(cmd.error(
                clap::error::ErrorKind::TooManyValues,
                format!(
                    "-k/--key was given {} times; at most {MAX_KEYS} keys (the first seals, both open)",
                    cluster.keys.len()
                ),
            ));
        }
        Ok(())
    }
}
