//! The exit-status table: every code `makuo` can end with, in one place.
//!
//! Codes follow rsync where the meaning matches (23, 24, 25, 30), so scripts written for rsync
//! keep working. `main` is the only place that turns an [`Exit`] into a process status; the
//! rest of the crate reports outcomes and lets `main` fold them into one code. The same table is
//! printed by `makuo --help` (see [`help_table`]) and rendered as the EXIT STATUS section of
//! `makuo(1)` by [`crate::cli::generate`]. This module does no I/O.

use std::process::ExitCode;

/// How a `makuo` run ended. The discriminant is the process exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Exit {
    /// Success: every targeted member got everything (or, for `check`, everything matched).
    Ok = 0,
    /// Usage error (bad flag or argument) or internal error (I/O on the sender, a bug).
    Error = 1,
    /// No member answered: nothing was delivered anywhere.
    NoMember = 10,
    /// Some member failed, went silent or is only partly updated (rsync: partial transfer).
    Partial = 23,
    /// Some source files vanished while the tree was being sent (rsync: vanished source files).
    Vanished = 24,
    /// `--max-delete` stopped deletions (rsync: the --max-delete limit stopped deletions).
    MaxDelete = 25,
    /// `--timeout` ran out before every member finished (rsync: timeout in data send/receive).
    Timeout = 30,
}

impl Exit {
    /// Every code, in numeric order: the order of the documented table.
    pub const ALL: [Exit; 7] = [
        Exit::Ok,
        Exit::Error,
        Exit::NoMember,
        Exit::Partial,
        Exit::Vanished,
        Exit::MaxDelete,
        Exit::Timeout,
    ];

    /// The process exit status.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The exit for a status code (unknown codes are internal errors).
    pub fn from_code(code: u8) -> Exit {
        Exit::ALL
            .into_iter()
            .find(|e| e.code() == code)
            .unwrap_or(Exit::Error)
    }

    /// One-line meaning, as printed in `--help` and the man page.
    pub const fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "success: every targeted member got everything",
            Exit::Error => "usage error, or internal error",
            Exit::NoMember => "no member answered",
            Exit::Partial => "some member failed, went silent or is only partly updated",
            Exit::Vanished => "some source files vanished before they could be sent",
            Exit::MaxDelete => "--max-delete stopped deletions",
            Exit::Timeout => "--timeout ran out",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// The exit-status table as plain text, for `makuo --help` (`after_long_help`).
pub fn help_table() -> String {
    let mut s = String::from("Exit status:\n");
    for e in Exit::ALL {
        s.push_str(&format!("  {:>2}  {}\n", e.code(), e.meaning()));
    }
    s.pop();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [0, 1, 10, 23, 24, 25, 30]);
    }

    #[test]
    fn table_is_sorted_and_lists_every_code() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted);
        let t = help_table();
        for e in Exit::ALL {
            assert!(
                t.contains(&format!("{:>2}  {}", e.code(), e.meaning())),
                "{t}"
            );
        }
    }
}
