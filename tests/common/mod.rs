//! Fixtures shared by every integration test: running the real `makuo` binary with a time
//! limit, clusters of daemons on loopback (or in network namespaces), console sessions,
//! generated trees and their fingerprints.
//!
//! Every cluster lives in its own temporary directory: each daemon has its own base, state
//! dir, console port and name, and the cluster gets a random group in 239.255.0.0/16 and a
//! random port, so tests can run in parallel. On loopback every daemon is started with
//! `-i 127.0.0.1`; the namespace fixture ([`Net`]) builds hosts on a private bridge with
//! addresses in 198.18.0.0/15. Clusters are keyed by default (a fresh key made by
//! `makuo keygen`), as operators run makuo; [`Cluster::unkeyed`] is for what is measured
//! without a key. Daemons are resumed, SIGTERMed and reaped (and namespaces deleted) by Drop
//! guards, so nothing outlives a failing test; on failure the daemons' logs are printed.
//! Every wait is bounded.
//!
//! One file per concern: `util.rs` (ports, groups, waits, root, users), `run.rs` (running
//! commands), `tree.rs` (trees and fingerprints), `console.rs` (a console client, `status`),
//! `cluster.rs` (daemons and clusters), `net.rs` (network namespaces).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const EXE: &str = env!("CARGO_BIN_EXE_makuo");

/// Longest any single front-end command may take before the test gives up.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Daemon flags that make a silent member fail fast.
pub const FAST: [&str; 4] = ["--heartbeat", "200", "--member-timeout", "1500"];

/// [`FAST`] followed by `extra`, as owned flags.
pub fn fast_and(extra: &[&str]) -> Vec<String> {
    FAST.iter().chain(extra).map(|s| s.to_string()).collect()
}

mod cluster;
mod console;
mod net;
mod run;
mod tree;
mod util;

// Each test binary uses some of them: the rest are re-exported unused.
#[allow(unused_imports)]
pub use cluster::*;
#[allow(unused_imports)]
pub use console::*;
#[allow(unused_imports)]
pub use net::*;
#[allow(unused_imports)]
pub use run::*;
#[allow(unused_imports)]
pub use tree::*;
#[allow(unused_imports)]
pub use util::*;
