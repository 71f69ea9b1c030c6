//! `msync`'s options, for the binary installed or symlinked under that name
//! ([`crate::dropin`]); part of [`crate::cli`]'s one definition of every flag.

use std::path::PathBuf;

use clap::{ArgAction, Parser, ValueHint};

use super::{ConsoleAddr, VERSION};

/// `msync`: makuosan's client, when the binary is installed or symlinked under that name
/// (see [`crate::dropin`]). Its options, as msync 1.3 spelled them, are turned into the
/// matching `makuo` front-end command against a daemon's console; unlike msync, the exit
/// status says whether every member got everything.
#[derive(Debug, Parser)]
#[command(
    name = "msync",
    version = VERSION,
    about = "makuosan's msync: push, check or list through a makuo daemon's console",
    after_help = "TARGET is tcp:HOST:PORT (default tcp:127.0.0.1:5000, or MSYNC_TARGET), \
                  unix:PATH, or any makuo console address."
)]
pub struct MsyncArgs {
    /// Show the daemon's status.
    #[arg(long, conflicts_with_all = ["members", "check", "delete", "sync"])]
    pub status: bool,

    /// Show the daemon's members.
    #[arg(long, conflicts_with_all = ["check", "delete", "sync"])]
    pub members: bool,

    /// Compare checksums on every member instead of sending (makuo check).
    #[arg(long, conflicts_with_all = ["delete", "sync"])]
    pub check: bool,

    /// Also delete on members what the sender lacks (makuo sync --delete).
    #[arg(long)]
    pub delete: bool,

    /// The same as --delete (makuosan's sync command).
    #[arg(long)]
    pub sync: bool,

    /// Exclude paths matching PATTERN (repeatable).
    #[arg(long, value_name = "PATTERN", action = ArgAction::Append)]
    pub exclude: Vec<String>,

    /// Read exclude patterns from FILE (repeatable).
    #[arg(long, value_name = "FILE", action = ArgAction::Append, value_hint = ValueHint::FilePath)]
    pub exclude_from: Vec<String>,

    /// Verbosity of the output, 0-9 (msync's log level): above 0 prints progress lines.
    #[arg(short = 'l', value_name = "LEVEL", value_parser = clap::value_parser!(u8).range(0..=9))]
    pub loglevel: Option<u8>,

    /// The daemon's console: tcp:HOST:PORT, unix:PATH, HOST:PORT or a socket path.
    #[arg(short = 'c', value_name = "ADDR")]
    pub target: Option<ConsoleAddr>,

    /// Run the console commands in FILE ('-': standard input), one a line.
    #[arg(short = 'f', value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub script: Option<PathBuf>,

    /// Only this member (name or address; repeatable).
    #[arg(short = 't', value_name = "HOST", action = ArgAction::Append)]
    pub targets: Vec<String>,

    /// File holding the console password.
    #[arg(short = 'K', value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub password_file: Option<PathBuf>,

    /// More output (repeatable; msync raised its log level).
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbose: u8,

    /// Dry run: show what would change.
    #[arg(short = 'n')]
    pub dry_run: bool,

    /// Recurse into directories.
    #[arg(short = 'r')]
    pub recursive: bool,

    /// Paths to push or check, relative to the base. Default: the whole base.
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,
}
