//! What the man pages say beyond the flags: EXAMPLES, FILES, SIGNALS and ENVIRONMENT per
//! page, and the `makuo-console(7)` page of the console's words. One table here; the flags
//! come from clap, the console's words from [`crate::console::HELP`], the environment
//! variables from the config keys ([`crate::config::keys`]); `generate.rs` renders it all.

/// Examples per page (`makuo`, `makuo-sync`, ...): what it does, then the command.
pub const EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "makuo",
        "Push the tree below /var/www through the local daemon to every member:",
        "makuo sync -r .",
    ),
    (
        "makuo",
        "The same, deleting on members what the source lacks, dry run first:",
        "makuo sync -rn --delete . && makuo sync -r --delete .",
    ),
    (
        "makuo",
        "Compare every member with the source, by checksum:",
        "makuo check",
    ),
    (
        "makuo",
        "Start a daemon on every server (key made once with makuo keygen):",
        "makuo daemon -k /etc/makuo/cluster.key -b /var/www",
    ),
    (
        "makuo-sync",
        "Push htdocs (recursively) to every live member:",
        "makuo sync -r htdocs",
    ),
    (
        "makuo-sync",
        "See what a push with deletions would do, itemized as rsync -i does:",
        "makuo sync -rn --delete .",
    ),
    (
        "makuo-sync",
        "Push to two members only, listing every path sent or deleted:",
        "makuo sync -rv -t web1 -t web2 .",
    ),
    (
        "makuo-sync",
        "Without a daemon: walk /srv/site and multicast directly on eth1:",
        "makuo sync --direct -b /srv/site -k cluster.key --interface eth1 -r .",
    ),
    (
        "makuo-sync",
        "A bar while a large push goes out, giving up after 30 s of silence:",
        "makuo sync -r --progress --timeout 30 .",
    ),
    (
        "makuo-check",
        "List every path that differs on any member (exit 23 when one does):",
        "makuo check",
    ),
    (
        "makuo-check",
        "Say how each path differs:",
        "makuo check -v",
    ),
    (
        "makuo-members",
        "The members, as one JSON document:",
        "makuo members --json",
    ),
    (
        "makuo-members",
        "Stop naming a decommissioned server failed:",
        "makuo members --forget web9",
    ),
    ("makuo-status", "The daemon's state:", "makuo status"),
    (
        "makuo-exclude-add",
        "Never push editor backups:",
        "makuo exclude add '*~' '*.swp'",
    ),
    (
        "makuo-daemon",
        "In the foreground, logging members coming and going:",
        "makuo daemon -n -d 2 -k /etc/makuo/cluster.key -b /var/www",
    ),
    (
        "makuo-daemon",
        "A sender only (it receives nothing), console on a unix socket:",
        "makuo daemon -r -U /run/makuo/console.sock -k cluster.key -b /srv/site",
    ),
    (
        "makuo-keygen",
        "Make a cluster key, then copy it to every member:",
        "makuo keygen /etc/makuo/cluster.key",
    ),
    (
        "makuo-watch",
        "Push changes under htdocs as they happen:",
        "makuo watch -r htdocs",
    ),
];

/// FILES per page: path, what it is.
pub const FILES: &[(&str, &str, &str)] = &[
    (
        "makuo-daemon",
        crate::config::DEFAULT_FILE,
        "Settings (TOML), read when it exists; every long option is a key.",
    ),
    (
        "makuo-daemon",
        "/var/lib/makuo/NAME",
        "The state directory (--state-dir): remembered members, the last push, the standing \
         excludes (file excludes), the log of a detached daemon (makuo.log).",
    ),
    (
        "makuo-daemon",
        "STATE_DIR/makuo.log",
        "The log of a detached daemon (--log-file); SIGHUP reopens it.",
    ),
    (
        "makuo-daemon",
        "127.0.0.1:5000",
        "The console (TCP, -P), or a unix socket (-U); see makuo-console(7).",
    ),
    (
        "makuo",
        crate::config::DEFAULT_FILE,
        "The daemon's settings; the front end reads its console address and cluster flags.",
    ),
    (
        "makuo",
        "/var/lib/makuo/NAME",
        "A daemon's state directory: members, the last push, the standing excludes.",
    ),
];

/// SIGNALS of the daemon: signal, what it does.
pub const SIGNALS: &[(&str, &str)] = &[
    ("SIGTERM, SIGINT", "Leave the cluster and stop."),
    (
        "SIGHUP",
        "Reopen the log file (for logrotate) and reload the config file.",
    ),
    ("SIGUSR1", "Raise the log level by one."),
    ("SIGUSR2", "Lower the log level by one."),
];

/// Pages that get SIGNALS and ENVIRONMENT.
pub const SERVICE_PAGES: &[&str] = &["makuo", "makuo-daemon"];

/// ENVIRONMENT entries beyond the config keys: variable, what it is.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "MAKUO_CONFIG",
        "The config file to read instead of /etc/makuo/makuo.conf.",
    ),
    (
        "MSYNC_TARGET",
        "The console address, as makuosan's msync read it (when MAKUO_CONSOLE is unset).",
    ),
    (
        "MAKUO_PUSH_ID, MAKUO_ORIGIN, MAKUO_BASE, MAKUO_HOOK, MAKUO_CHANGES, MAKUO_RELEASE",
        "Set for --before-commit and --after-push commands: the push, who sent it, the base, \
         which hook, the changed paths, the release directory.",
    ),
];

/// The console's replies, for makuo-console(7).
pub const CONSOLE_REPLIES: &[(&str, &str)] = &[
    (
        "ok",
        "The last line of a command that succeeded. Every command ends with exactly one final \
         line.",
    ),
    ("error: REASON", "The last line of a command that failed."),
    (
        "PATH MEMBER",
        "A difference found by md5/check: PATH differs on MEMBER (content, kind, missing there \
         or only there).",
    ),
    (
        "YXcstpoguax PATH, *deleting PATH",
        "Itemized changes of a dry run (send -n) or of send -i, as rsync -i prints them; a line \
         that applies to some members only ends with [NAME,...].",
    ),
    (
        "MEMBER ADDRESS FILES BYTES DELETED RESULT",
        "The per-member table ending a push; a dry run's RESULT says (dry run).",
    ),
    (
        "progress DONE TOTAL PATH",
        "With --progress: bytes of contents sent of the total, and the path going out now.",
    ),
    (
        "result {JSON}",
        "With --json: the outcome as one JSON document, before the final line.",
    ),
];

/// The description of makuo-console(7).
pub const CONSOLE_ABOUT: &str = "Each makuo daemon serves a console, makuosan's: one command a \
line, over TCP (127.0.0.1:5000 by default, so telnet works) or a unix socket, open to root, the \
user who started the daemon and members of its --console-group (and with -K only after \
'password SECRET'). Words are case-insensitive; double quotes group words and a backslash \
escapes. A line that is not a console command ends the session; a command used wrongly gets \
one error line. Names from the network are printed with rsync's \\#ooo escapes. The front end \
(makuo sync, check, members, status, exclude, loglevel) speaks this protocol.";
