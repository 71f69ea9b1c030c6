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

pub use daemon::DaemonArgs;
pub use msync::MsyncArgs;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

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
    Members(FrontArgs),
    /// Show daemon state: transfers in flight, members, counters.
    Status(FrontArgs),
    /// Edit the daemon's session exclude list (shell globs), which applies to every push.
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
            Command::Watch(_) => "watch",
            Command::Members(_) => "members",
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

    /// Multicast group address.
    #[arg(short = 'm', long, value_name = "GROUP", default_value = "224.0.0.108")]
    pub group: Ipv4Addr,

    /// UDP port of the multicast group.
    #[arg(short = 'p', long, value_name = "PORT", default_value_t = 5000,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Address of the local interface to send and join multicast on.
    ///
    /// Default: the interface the routing table picks for the group.
    #[arg(short = 'i', long, value_name = "ADDR")]
    pub interface: Option<Ipv4Addr>,

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

    /// Print results as JSON lines instead of text.
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
    #[arg(value_name = "PATH", required_unless_present = "files_from",
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

/// `makuo watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Paths to watch, relative to the base directory.
    #[arg(value_name = "PATH", required_unless_present = "list",
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

/// `makuo exclude`: the daemon's session excludes. Needs a daemon; there is no direct mode.
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

/// An edit of the session exclude list.
#[derive(Debug, Subcommand)]
pub enum ExcludeAction {
    /// Add patterns to the session exclude list.
    Add(ExcludePatterns),
    /// Remove patterns from the session exclude list.
    Del(ExcludePatterns),
    /// Print the session exclude list.
    List,
    /// Empty the session exclude list.
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

/// The daemon console address given to `--console`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleAddr {
    /// `HOST:PORT` (host may be a name, an IPv4 address or a bracketed IPv6 address).
    Tcp(String),
    /// A unix socket path.
    Unix(PathBuf),
}

impl FromStr for ConsoleAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // msync's spellings (MSYNC_TARGET, msync -c): tcp:HOST:PORT and unix:PATH.
        if let Some(p) = s.strip_prefix("unix:") {
            return match p {
                "" => Err("'unix:' needs a socket path".into()),
                p => Ok(ConsoleAddr::Unix(PathBuf::from(p))),
            };
        }
        let s = s.strip_prefix("tcp:").unwrap_or(s);
        if s.contains('/') {
            return Ok(ConsoleAddr::Unix(PathBuf::from(s)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(ConsoleAddr::Tcp(s.to_owned()))
            }
            _ => Err(format!(
                "'{s}' is neither HOST:PORT nor a unix socket path (a path must contain '/')"
            )),
        }
    }
}

impl fmt::Display for ConsoleAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleAddr::Tcp(s) => f.write_str(s),
            ConsoleAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The engine's floor for a `--min-rate` as given: `Some(0)` means none, and without the
/// flag the documented default ([`crate::proto::DEFAULT_MIN_RATE`]).
pub fn min_rate_floor(given: Option<u64>) -> Option<u64> {
    match given {
        Some(0) => None,
        Some(r) => Some(r),
        None => Some(crate::proto::DEFAULT_MIN_RATE),
    }
}

/// Parses an rsync `--bwlimit` RATE into bytes per second (0 means no limit).
///
/// A plain number is KiB/s. A suffix sets the unit: `B` bytes; `K`, `M`, `G`, `T`, `P` (alone
/// or followed by `iB`) powers of 1024; `KB`, `MB`, ... powers of 1000. Suffixes are
/// case-insensitive and the number may have a fraction (`1.5M`). As in rsync, a nonzero rate
/// below 512 bytes/s is refused.
pub fn parse_bwlimit(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(format!(
            "invalid rate '{s}': expected a number, e.g. 500, 1.5M"
        ));
    }
    let lower = suffix.to_ascii_lowercase();
    let (letter, rest) = match lower.chars().next() {
        Some(c) => lower.split_at(c.len_utf8()),
        None => ("k", ""),
    };
    let power: i32 = match letter {
        "b" if rest.is_empty() => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(format!("invalid rate '{s}': unknown unit '{suffix}'")),
    };
    let base: f64 = match rest {
        "" | "ib" => 1024.0,
        "b" => 1000.0,
        _ => return Err(format!("invalid rate '{s}': unknown unit '{suffix}'")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid rate '{s}': expected a number"))?;
    let bytes = (n * base.powi(power)).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("invalid rate '{s}': too large"));
    }
    let bytes = bytes as u64;
    if bytes != 0 && bytes < 512 {
        return Err(format!(
            "rate '{s}' is too small (min: 512 bytes/s, or 0 for no limit)"
        ));
    }
    Ok(bytes)
}

/// Which filter flag a rule came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterArgKind {
    /// `--include PATTERN`.
    Include,
    /// `--exclude PATTERN`.
    Exclude,
    /// `--exclude-from FILE` (the value is the file name, not yet read).
    ExcludeFrom,
    /// `--include-from FILE` (the value is the file name, not yet read).
    IncludeFrom,
    /// `--filter RULE` / `-f RULE`.
    Filter,
    /// `-F` (each occurrence; the value is empty).
    FilterFiles,
}

impl FilterArgKind {
    /// The clap argument id of the flag (the field name in [`SelectArgs`]).
    pub const fn id(self) -> &'static str {
        match self {
            FilterArgKind::Include => "include",
            FilterArgKind::Exclude => "exclude",
            FilterArgKind::ExcludeFrom => "exclude_from",
            FilterArgKind::IncludeFrom => "include_from",
            FilterArgKind::Filter => "filter",
            FilterArgKind::FilterFiles => "filter_files",
        }
    }
}

/// The `--include`, `--exclude` and `--exclude-from` values in command-line order.
///
/// clap keeps one `Vec` per flag, which loses how they interleave, yet rsync rules apply in the
/// order given. `matches` should be the `sync` or `check` subcommand's matches; given the
/// top-level matches, this descends into the subcommand. Matches without filter flags give an
/// empty list.
pub fn filter_args_in_order(matches: &ArgMatches) -> Vec<(FilterArgKind, String)> {
    if let Some((_, sub)) = matches.subcommand() {
        return filter_args_in_order(sub);
    }
    let mut found: Vec<(usize, FilterArgKind, String)> = Vec::new();
    for kind in [
        FilterArgKind::FilterFiles,
        FilterArgKind::Include,
        FilterArgKind::Exclude,
        FilterArgKind::ExcludeFrom,
        FilterArgKind::IncludeFrom,
        FilterArgKind::Filter,
    ] {
        // try_get_many rather than get_many: an unknown id panics in debug builds.
        let Ok(Some(values)) = matches.try_get_many::<String>(kind.id()) else {
            continue;
        };
        let Some(indices) = matches.indices_of(kind.id()) else {
            continue;
        };
        found.extend(indices.zip(values).map(|(i, v)| (i, kind, v.clone())));
    }
    found.sort_by_key(|&(i, _, _)| i);
    found.into_iter().map(|(_, k, v)| (k, v)).collect()
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
            Command::Watch(a) => &a.front.cluster,
            Command::Members(a) | Command::Status(a) => &a.cluster,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    /// Every command in the tree, with its path (`makuo sync`, `makuo exclude add`, ...).
    fn all_commands() -> Vec<(String, clap::Command)> {
        fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
            let path = format!("{prefix} {}", cmd.get_name()).trim().to_owned();
            out.push((path.clone(), cmd.clone()));
            for sub in cmd.get_subcommands() {
                walk(&path, sub, out);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut out = Vec::new();
        walk("", &cmd, &mut out);
        out
    }

    fn parse(args: &[&str]) -> Result<(Cli, ArgMatches), clap::Error> {
        Cli::parse_with_matches(std::iter::once("makuo").chain(args.iter().copied()))
    }

    #[test]
    fn debug_assert() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_duplicate_short_or_long_flags() {
        for (path, cmd) in all_commands() {
            let mut shorts: BTreeMap<char, String> = BTreeMap::new();
            let mut longs: BTreeMap<String, String> = BTreeMap::new();
            for arg in cmd.get_arguments() {
                let id = arg.get_id().to_string();
                let aliases = arg.get_short_and_visible_aliases().unwrap_or_default();
                for s in aliases {
                    if let Some(prev) = shorts.insert(s, id.clone()) {
                        panic!("{path}: -{s} is used by both --{prev} and --{id}");
                    }
                }
                let longs_of = arg.get_long_and_visible_aliases().unwrap_or_default();
                for l in longs_of {
                    if let Some(prev) = longs.insert(l.to_owned(), id.clone()) {
                        panic!("{path}: --{l} is used by both {prev} and {id}");
                    }
                }
            }
        }
    }

    /// Value names come from one small vocabulary, so the docs read the same everywhere.
    const VALUE_NAMES: &[&str] = &[
        "ADDR", "BYTES", "DIR", "FILE", "GROUP", "HOST", "KEYFILE", "LEVEL", "MBIT", "MS", "N",
        "RULE", "NAME", "PATH", "PATTERN", "PORT", "RATE", "SECONDS", "USER", "WHAT", "GROUPS",
    ];

    #[test]
    fn every_value_has_a_known_value_name() {
        for (path, cmd) in all_commands() {
            for arg in cmd.get_arguments() {
                if !arg.get_action().takes_values() {
                    continue;
                }
                let id = arg.get_id();
                let names = arg.get_value_names().unwrap_or_default();
                assert!(
                    !names.is_empty(),
                    "{path}: {id} takes a value but has no value name"
                );
                for n in names {
                    assert!(
                        VALUE_NAMES.contains(&n.as_str()),
                        "{path}: {id} has value name {n}, not in VALUE_NAMES"
                    );
                }
            }
        }
    }

    #[test]
    fn every_arg_and_command_has_help() {
        for (path, cmd) in all_commands() {
            assert!(cmd.get_about().is_some(), "{path} has no about");
            for arg in cmd.get_arguments() {
                assert!(
                    arg.get_help()
                        .is_some_and(|h| !h.to_string().trim().is_empty()),
                    "{path}: {} has no help",
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn one_line_helps_fit_one_line() {
        for (path, cmd) in all_commands() {
            for arg in cmd.get_arguments() {
                let h = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(
                    !h.contains('\n'),
                    "{path}: {}: short help spans lines",
                    arg.get_id()
                );
                assert!(
                    h.len() <= 100,
                    "{path}: {}: short help too long",
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn daemon_takes_makuosan_letters() {
        let (cli, _) = parse(&[
            "daemon",
            "-b",
            "/srv",
            "-m",
            "239.1.2.3",
            "-p",
            "6000",
            "-i",
            "10.0.0.1",
            "-l",
            "10.0.0.1",
            "-P",
            "5001",
            "-U",
            "/run/makuo.sock",
            "-K",
            "pw",
            "-n",
            "-d",
            "9",
            "-u",
            "www",
            "-g",
            "www",
            "-G",
            "adm,7",
            "-c",
            "-r",
            "-s",
            "-T",
            "100",
            "-R",
            "1000",
            "-S",
            "2000",
            "-k",
            "a",
            "-k",
            "b",
            "-O",
            "-f",
            "3",
        ])
        .unwrap();
        let Command::Daemon(d) = cli.command else {
            panic!("not daemon")
        };
        assert_eq!(d.cluster.base, PathBuf::from("/srv"));
        assert_eq!(d.cluster.group, Ipv4Addr::new(239, 1, 2, 3));
        assert_eq!(d.cluster.port, 6000);
        assert_eq!(d.cluster.keys.len(), 2);
        assert_eq!(d.console_port(), 5001);
        // makuosan's -l is the console's listen address, -O owner-match, -f parallel sends.
        assert_eq!(d.console_addr, IpAddr::from([10, 0, 0, 1]));
        assert!(d.owner_match && !d.preserve_owner);
        assert_eq!(d.parallel, 3);
        assert_eq!(d.run_group.as_deref(), Some("www"));
        assert_eq!(d.groups.as_deref(), Some("adm,7"));
        assert!(d.chroot && d.chroot_dir.is_none());
        assert!(d.foreground && d.no_receive && d.no_send);
        assert_eq!(
            (d.loglevel, d.rate, d.rcvbuf, d.sndbuf),
            (9, Some(100), Some(1000), Some(2000))
        );
    }

    #[test]
    fn daemon_defaults() {
        let (cli, _) = parse(&["daemon"]).unwrap();
        let Command::Daemon(d) = cli.command else {
            panic!("not daemon")
        };
        assert_eq!(d.cluster.base, PathBuf::from("."));
        assert_eq!(d.cluster.group, Ipv4Addr::new(224, 0, 0, 108));
        assert_eq!(
            (d.cluster.port, d.console_port(), d.cluster.mtu),
            (5000, 5000, 1500)
        );
        assert_eq!(d.console_addr, IpAddr::from([127, 0, 0, 1]));
        assert!(d.console_socket.is_none() && d.cluster.name.is_none());
        assert!(!d.no_console && !d.owner_match && d.parallel == 5 && d.metrics.is_none());
    }

    #[test]
    fn console_port_follows_the_udp_port_as_in_makuosan() {
        let (cli, _) = parse(&["daemon", "-p", "6000"]).unwrap();
        let Command::Daemon(d) = cli.command else {
            panic!("not daemon")
        };
        assert_eq!(d.console_port(), 6000);
        let (cli, _) = parse(&["daemon", "-p", "6000", "-P", "7000"]).unwrap();
        let Command::Daemon(d) = cli.command else {
            panic!("not daemon")
        };
        assert_eq!(d.console_port(), 7000);
        // -o (no console) and -U (a unix console) contradict each other.
        assert!(parse(&["daemon", "-o", "-U", "/run/m.sock"]).is_err());
        let (cli, _) = parse(&["daemon", "-o", "--bind", "239.1.1.1"]).unwrap();
        let Command::Daemon(d) = cli.command else {
            panic!("not daemon")
        };
        assert!(d.no_console && d.bind == Some(IpAddr::from([239, 1, 1, 1])));
    }

    #[test]
    fn group_id_is_an_alias_of_run_group() {
        let (cli, _) = parse(&["daemon", "--group-id", "staff"]).unwrap();
        let Command::Daemon(d) = cli.command else {
            panic!("not daemon")
        };
        assert_eq!(d.run_group.as_deref(), Some("staff"));
    }

    #[test]
    fn at_most_two_keys() {
        let err = parse(&["daemon", "-k", "a", "-k", "b", "-k", "c"]).unwrap_err();
        assert!(err.to_string().contains("at most 2"), "{err}");
        let err = parse(&["sync", "x", "-k", "a", "-k", "b", "-k", "c"]).unwrap_err();
        assert!(err.to_string().contains("at most 2"), "{err}");
    }

    #[test]
    fn value_ranges_are_enforced() {
        assert!(parse(&["daemon", "-d", "10"]).is_err());
        assert!(parse(&["daemon", "--mtu", "100"]).is_err());
        assert!(parse(&["daemon", "-p", "0"]).is_err());
        assert!(parse(&["loglevel", "10"]).is_err());
        assert!(parse(&["loglevel", "3"]).is_ok());
    }

    #[test]
    fn sync_takes_rsync_spellings() {
        let (cli, _) = parse(&[
            "sync",
            "-rnc",
            "-t",
            "web1",
            "--target=10.0.0.2",
            "--delete",
            "--max-delete",
            "5",
            "--bwlimit",
            "1M",
            "--timeout",
            "30",
            "--progress",
            "--no-fsync",
            "--json",
            "-vv",
            "htdocs",
            "lib",
        ])
        .unwrap();
        let Command::Sync(s) = cli.command else {
            panic!("not sync")
        };
        assert_eq!(s.paths, [PathBuf::from("htdocs"), PathBuf::from("lib")]);
        assert!(s.select.recursive && s.dry_run && s.checksum && s.delete);
        assert_eq!(s.select.targets, ["web1", "10.0.0.2"]);
        assert_eq!(
            (s.max_delete, s.bwlimit, s.timeout),
            (Some(5), Some(1 << 20), Some(30))
        );
        assert!(s.progress && s.no_fsync && s.front.output.json);
        assert_eq!(s.front.output.verbose, 2);
        assert_eq!(s.front.discover, 500);
        assert_eq!(
            s.front.console.console,
            ConsoleAddr::Tcp("127.0.0.1:5000".into())
        );
    }

    #[test]
    fn sync_needs_a_path_and_max_delete_needs_delete() {
        assert!(parse(&["sync"]).is_err());
        assert!(parse(&["sync", "x", "--max-delete", "1"]).is_err());
        assert!(parse(&["check"]).is_ok());
    }

    #[test]
    fn direct_conflicts_with_console() {
        assert!(parse(&["members", "--direct"]).is_ok());
        assert!(parse(&["members", "--direct", "--console", "h:1"]).is_err());
    }

    #[test]
    fn exclude_subcommands() {
        let (cli, _) = parse(&["exclude", "add", "*.swp", "*.tmp"]).unwrap();
        let Command::Exclude(e) = cli.command else {
            panic!("not exclude")
        };
        let ExcludeAction::Add(p) = e.action else {
            panic!("not add")
        };
        assert_eq!(p.patterns, ["*.swp", "*.tmp"]);
        assert!(parse(&["exclude", "add"]).is_err());
        assert!(parse(&["exclude", "list"]).is_ok());
        assert!(parse(&["exclude", "clear"]).is_ok());
        assert!(parse(&["exclude", "--direct", "list"]).is_err());
    }

    #[test]
    fn console_addr() {
        assert_eq!(
            "127.0.0.1:5000".parse::<ConsoleAddr>(),
            Ok(ConsoleAddr::Tcp("127.0.0.1:5000".into()))
        );
        assert_eq!(
            "[::1]:5000".parse::<ConsoleAddr>(),
            Ok(ConsoleAddr::Tcp("[::1]:5000".into()))
        );
        assert_eq!(
            "/run/makuo.sock".parse::<ConsoleAddr>(),
            Ok(ConsoleAddr::Unix("/run/makuo.sock".into()))
        );
        assert_eq!(
            "./s".parse::<ConsoleAddr>(),
            Ok(ConsoleAddr::Unix("./s".into()))
        );
        assert_eq!(
            "tcp:127.0.0.1:5000".parse::<ConsoleAddr>(),
            Ok(ConsoleAddr::Tcp("127.0.0.1:5000".into()))
        );
        assert_eq!(
            "unix:makuosan.sock".parse::<ConsoleAddr>(),
            Ok(ConsoleAddr::Unix("makuosan.sock".into()))
        );
        for bad in [
            "localhost",
            ":5000",
            "h:0",
            "h:x",
            "h:70000",
            "",
            "unix:",
            "tcp:h",
        ] {
            assert!(bad.parse::<ConsoleAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bwlimit_units() {
        let ok = [
            ("0", 0),
            ("1", 1024),
            ("100", 100 * 1024),
            ("1k", 1024),
            ("1K", 1024),
            ("1KiB", 1024),
            ("1KB", 1000),
            ("1kb", 1000),
            ("1m", 1 << 20),
            ("1MiB", 1 << 20),
            ("1MB", 1_000_000),
            ("1.5M", 3 << 19),
            ("2G", 2 << 30),
            ("1T", 1 << 40),
            ("1P", 1 << 50),
            ("512b", 512),
            ("600B", 600),
            (" 2k ", 2048),
            ("0.5", 512),
        ];
        for (s, want) in ok {
            assert_eq!(parse_bwlimit(s), Ok(want), "{s}");
        }
        for bad in [
            "",
            "k",
            ".",
            "-1",
            "1x",
            "1kx",
            "1..2",
            "1.2.3",
            "1 k",
            "100b",
            "1bb",
            "0.1",
            "1e3",
            "99999999999999999999P",
        ] {
            assert!(parse_bwlimit(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn min_rate_defaults_and_zero() {
        let (cli, _) = parse(&["sync", "x"]).unwrap();
        let Command::Sync(s) = cli.command else {
            panic!()
        };
        assert_eq!(min_rate_floor(s.min_rate), Some(10 << 20));
        let (cli, _) = parse(&["sync", "--min-rate=0", "x"]).unwrap();
        let Command::Sync(s) = cli.command else {
            panic!()
        };
        assert_eq!(min_rate_floor(s.min_rate), None);
        let (cli, _) = parse(&["sync", "--min-rate=12.5MB", "x"]).unwrap();
        let Command::Sync(s) = cli.command else {
            panic!()
        };
        assert_eq!(min_rate_floor(s.min_rate), Some(12_500_000));
        assert!(parse(&["sync", "--min-rate=fast", "x"]).is_err());
        let (cli, _) = parse(&["daemon", "--min-rate", "50M"]).unwrap();
        let Command::Daemon(d) = cli.command else {
            panic!()
        };
        assert_eq!(d.min_rate, Some(50 << 20));
    }

    #[test]
    fn bwlimit_through_clap() {
        let (cli, _) = parse(&["sync", "--bwlimit=2M", "x"]).unwrap();
        let Command::Sync(s) = cli.command else {
            panic!("not sync")
        };
        assert_eq!(s.bwlimit, Some(2 << 20));
        assert!(parse(&["sync", "--bwlimit=2Q", "x"]).is_err());
    }

    #[test]
    fn filters_keep_command_line_order() {
        use FilterArgKind::*;
        let (_, m) = parse(&[
            "sync",
            "--include",
            "*.php",
            "--exclude=*.tmp",
            "-r",
            "--exclude-from",
            "ex.txt",
            "--include=keep/",
            "src",
            "--exclude",
            "*",
        ])
        .unwrap();
        let want = vec![
            (Include, "*.php".to_owned()),
            (Exclude, "*.tmp".to_owned()),
            (ExcludeFrom, "ex.txt".to_owned()),
            (Include, "keep/".to_owned()),
            (Exclude, "*".to_owned()),
        ];
        let (_, sub) = m.subcommand().unwrap();
        assert_eq!(filter_args_in_order(sub), want);
        // Top-level matches descend into the subcommand.
        assert_eq!(filter_args_in_order(&m), want);

        let (_, m) = parse(&["check", "--exclude", "a", "--include", "b"]).unwrap();
        assert_eq!(
            filter_args_in_order(&m),
            [(Exclude, "a".to_owned()), (Include, "b".to_owned())]
        );
        // Subcommands without filter flags give nothing rather than panicking.
        let (_, m) = parse(&["members"]).unwrap();
        assert!(filter_args_in_order(&m).is_empty());
        let (_, m) = parse(&["sync", "x"]).unwrap();
        assert!(filter_args_in_order(&m).is_empty());
    }

    #[test]
    fn rsync_filter_flags_keep_their_order_and_f_counts() {
        use FilterArgKind::*;
        let (_, m) = parse(&[
            "sync",
            "-F",
            "--exclude=a",
            "-f",
            "P /keep",
            "--include-from",
            "inc.txt",
            "-F",
            "--filter=- b",
            "x",
        ])
        .unwrap();
        assert_eq!(
            filter_args_in_order(&m),
            [
                (FilterFiles, String::new()),
                (Exclude, "a".to_owned()),
                (Filter, "P /keep".to_owned()),
                (IncludeFrom, "inc.txt".to_owned()),
                (FilterFiles, String::new()),
                (Filter, "- b".to_owned()),
            ]
        );
        let (_, m) = parse(&["sync", "-rFF", "x"]).unwrap();
        assert_eq!(filter_args_in_order(&m).len(), 2);
    }

    #[test]
    fn sync_takes_rsync_archive_itemize_stats_and_lists() {
        let (cli, _) = parse(&["sync", "-avzi", "--stats", "."]).unwrap();
        let Command::Sync(s) = cli.command else {
            panic!("not sync")
        };
        assert!(s.archive && s.compress && s.itemize_changes && s.stats);
        assert_eq!(s.front.output.verbose, 1);
        assert!(s.front.cluster.interface.is_none());
        // The interface keeps its long name; -i is itemize here, but still the daemon's -i.
        let (cli, _) = parse(&["sync", "--interface", "10.0.0.1", "x"]).unwrap();
        let Command::Sync(s) = cli.command else {
            panic!("not sync")
        };
        assert_eq!(s.front.cluster.interface, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(parse(&["daemon", "-i", "10.0.0.1"]).is_ok());
        assert!(parse(&["members", "-i", "10.0.0.1"]).is_ok());
        // --files-from stands in for PATH; --from0 needs it.
        let (cli, _) = parse(&["sync", "--files-from", "-", "-0"]).unwrap();
        let Command::Sync(s) = cli.command else {
            panic!("not sync")
        };
        assert_eq!(s.list.files_from, Some(PathBuf::from("-")));
        assert!(s.list.from0 && s.paths.is_empty());
        assert!(parse(&["sync", "--from0", "x"]).is_err());
    }

    #[test]
    fn watch_args() {
        let (cli, _) =
            parse(&["watch", "-a", "--delete", "--delay", "200", "-i", "htdocs"]).unwrap();
        let Command::Watch(w) = cli.command else {
            panic!("not watch")
        };
        assert!(w.archive && w.delete && w.itemize_changes);
        assert_eq!(
            (w.delay, w.paths.clone()),
            (200, vec![PathBuf::from("htdocs")])
        );
        let (cli, _) = parse(&["watch", "x"]).unwrap();
        let Command::Watch(w) = cli.command else {
            panic!("not watch")
        };
        assert_eq!(w.delay, 500);
        assert!(parse(&["watch"]).is_err());
        assert!(parse(&["watch", "--list"]).is_ok());
        assert!(parse(&["watch", "--list", "--direct"]).is_err());
        assert!(parse(&["watch", "--delay", "0", "x"]).is_err());
    }

    #[test]
    fn help_carries_the_exit_table() {
        let help = Cli::command().render_long_help().to_string();
        for e in exit::Exit::ALL {
            assert!(help.contains(e.meaning()), "{help}");
        }
    }
}
