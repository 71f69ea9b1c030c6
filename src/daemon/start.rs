//! Start-up pieces of the daemon: the base directory, the lines logged at start, the
//! cluster keys, and going to the background.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::*;
use crate::config::Resolved;
use crate::logging;
use crate::node::Node;
use crate::startup;

/// The canonical base directory. It must be given (`-b`, `base` in the config file or an
/// environment variable) and may be `/` only when given as `/`.
pub(super) fn base_dir(conf: &Resolved) -> Result<PathBuf> {
    if !conf.base_given() {
        bail!(
            "no base directory: give -b DIR (or base = \"DIR\" in {})",
            conf.file
                .as_deref()
                .unwrap_or(Path::new(crate::config::DEFAULT_FILE))
                .display()
        );
    }
    let given = &conf.args.cluster.base;
    let base = given
        .canonicalize()
        .with_context(|| format!("base directory {}", given.display()))?;
    if base == Path::new("/") && given != Path::new("/") {
        bail!(
            "base directory {} is /: give -b / to serve the whole file system",
            given.display()
        );
    }
    Ok(base)
}
/// The start-up lines, logged at every level: what this daemon serves, where, and with which
/// key (by fingerprint).
pub(super) fn startup_lines(
    conf: &Resolved,
    node: &Node,
    base: &Path,
    root: Option<&Path>,
    keys: &[crate::seal::Key],
    state_dir: &Path,
    swept: usize,
) {
    let a = &conf.args;
    let console = match (a.no_console, &a.console_socket) {
        (true, _) => "off (-o)".to_string(),
        (false, None) => format!("{}:{}", a.console_addr, a.console_port()),
        (false, Some(s)) => format!(
            "{}:{} and {}",
            a.console_addr,
            a.console_port(),
            s.display()
        ),
    };
    let keyed = if keys.is_empty() {
        "NONE (UNAUTHENTICATED)".to_string()
    } else {
        keys.iter()
            .map(startup::key_fingerprint)
            .collect::<Vec<_>>()
            .join(" ")
    };
    logging::notice(format_args!(
        "makuo {} starting: config {}, log level {}",
        crate::cli::VERSION,
        conf.file
            .as_deref()
            .map_or("none".into(), |p| p.display().to_string()),
        logging::level()
    ));
    logging::notice(format_args!(
        "{} up: node {:016x}, base {}{}, group {}, interface {}, reply {}, console {}, \
         key {keyed}, state {}{}",
        node.engine.config().name,
        node.engine.config().node_id,
        base.display(),
        root.map(|r| format!(" (chroot {})", r.display()))
            .unwrap_or_default(),
        SocketAddr::new(a.cluster.group, a.cluster.port),
        a.cluster.interface.as_deref().unwrap_or("default route"),
        node.local_addr(),
        console,
        state_dir.display(),
        a.metrics
            .map(|m| format!(", metrics http://{m}/metrics"))
            .unwrap_or_default()
    ));
    if keys.is_empty() {
        logging::warn("no cluster key (-k): this cluster is UNAUTHENTICATED; anyone on the LAN can push or delete files");
    }
    if swept > 0 {
        log(
            1,
            format_args!(
                "removed {swept} leftover staged file(s) under {}",
                base.display()
            ),
        );
    }
}

pub(super) fn load_keys(paths: &[PathBuf]) -> Result<Vec<crate::seal::Key>> {
    paths
        .iter()
        .map(|p| crate::seal::load_key(p).map_err(|e| anyhow::anyhow!("{e}")))
        .collect()
}

/// Goes to the background (the parent exits) with stdout and stderr on the log.
pub(super) fn daemonize(logf: &std::fs::File) -> Result<()> {
    nix::unistd::daemon(true, true).context("daemon")?;
    nix::unistd::dup2_stderr(logf).context("log to stderr")?;
    nix::unistd::dup2_stdout(logf).context("log to stdout")?;
    Ok(())
}
