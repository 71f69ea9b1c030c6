//! `--progress`: an indicatif bar on stderr (bytes of contents sent of the total, rate, ETA,
//! and the file going out now), fed by the engine in direct mode and by the daemon's
//! `progress DONE TOTAL PATH` lines through the console. Drawn only on a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar, or nothing (no `--progress`, or stderr is not a terminal).
pub(crate) struct Bar(Option<ProgressBar>);

impl Bar {
    /// A bar when `wanted` and stderr is a terminal.
    pub(crate) fn new(wanted: bool) -> Bar {
        if !wanted || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
        b.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(Duration::from_millis(100));
        Bar(Some(b))
    }

    /// Contents sent: `done` of `total` bytes, `path` going out now.
    pub(crate) fn bytes(&self, done: u64, total: u64, path: &str) {
        let Some(b) = &self.0 else { return };
        if b.length() != Some(total) {
            b.set_length(total);
            b.set_style(
                ProgressStyle::with_template(
                    "[{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        }
        b.set_position(done);
        b.set_message(path.to_string());
    }

    /// A line of what the push is doing: shown until the contents start going out.
    pub(crate) fn line(&self, l: &str) {
        if let Some(b) = self.0.as_ref().filter(|b| b.length().is_none()) {
            b.set_message(l.to_string());
        }
    }

    /// Whether a bar is drawn.
    pub(crate) fn on(&self) -> bool {
        self.0.is_some()
    }

    /// A `progress DONE TOTAL PATH` line from the daemon: drawn; `false` when `l` is not one.
    pub(crate) fn console_line(&self, l: &str) -> bool {
        let Some(rest) = l.strip_prefix("progress ") else {
            return false;
        };
        let mut w = rest.splitn(3, ' ');
        let (Some(d), Some(t)) = (w.next(), w.next()) else {
            return false;
        };
        let (Ok(d), Ok(t)) = (d.parse(), t.parse()) else {
            return false;
        };
        let path = w.next().unwrap_or("-");
        self.bytes(d, t, if path == "-" { "" } else { path });
        true
    }

    /// Clears the bar.
    pub(crate) fn finish(self) {
        if let Some(b) = self.0 {
            b.finish_and_clear();
        }
    }
}
