//! Files that hold secrets (cluster keys, the console password): the one rule for who may read
//! them, checked on the opened file, and the console password file's format.
//!
//! A secret file must be a regular file that group and others can neither read nor write
//! (`mode & 0o077 == 0`, e.g. 0600 or 0400). The mode is checked on the file already opened, so
//! it cannot be swapped between the check and the read. [`crate::seal::load_key`] uses
//! [`open`] for key files; [`read_password`] uses it for `-K` password files, on the daemon and
//! on the front end alike.
//!
//! A password file holds the console password on its first line (a final `\r` is dropped),
//! 4 to 63 bytes as in makuosan. [`Password::matches`] compares in constant time.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Shortest accepted console password, in bytes (makuosan's rule).
pub const MIN_PASSWORD: usize = 4;
/// Longest accepted console password, in bytes (makuosan's rule).
pub const MAX_PASSWORD: usize = 63;

/// Why a secret file was refused. `what` names the kind of file (`key file`, `password
/// file`) in the message.
#[derive(Debug)]
pub enum SecretFileError {
    /// Opening or reading failed.
    Io {
        /// What kind of file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        err: io::Error,
    },
    /// Group or others may read or write the file.
    Mode {
        /// What kind of file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// Not a regular file.
    NotRegular {
        /// What kind of file.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The contents break the file's format.
    Malformed {
        /// What kind of file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong (never the secret itself).
        reason: String,
    },
}

/// The message for a secret file that group or others may access, with the `chmod` to run.
pub fn too_open(what: &str, path: &Path, mode: u32) -> String {
    format!(
        "{what} {} is accessible by group or others (mode {:04o}); restrict it with: chmod 600 {}",
        path.display(),
        mode & 0o7777,
        path.display()
    )
}

impl fmt::Display for SecretFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, path, err } => write!(f, "{what} {}: {err}", path.display()),
            Self::Mode { what, path, mode } => f.write_str(&too_open(what, path, *mode)),
            Self::NotRegular { what, path } => {
                write!(f, "{what} {} is not a regular file", path.display())
            }
            Self::Malformed { what, path, reason } => {
                write!(f, "{what} {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for SecretFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { err, .. } => Some(err),
            _ => None,
        }
    }
}

/// Opens a secret file for reading, refusing one that is not a regular file or that group or
/// others may read or write. `what` names the kind of file in errors.
pub fn open(path: &Path, what: &'static str) -> Result<File, SecretFileError> {
    let io_err = |err| SecretFileError::Io {
        what,
        path: path.to_path_buf(),
        err,
    };
    let f = File::open(path).map_err(io_err)?;
    let meta = f.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(SecretFileError::NotRegular {
            what,
            path: path.to_path_buf(),
        });
    }
    if meta.mode() & 0o077 != 0 {
        return Err(SecretFileError::Mode {
            what,
            path: path.to_path_buf(),
            mode: meta.mode(),
        });
    }
    Ok(f)
}

/// The console password (`-K`). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Password({} bytes)", self.0.len())
    }
}

impl Password {
    /// A password from its bytes, checked like a file's first line.
    pub fn new(bytes: &[u8]) -> Result<Password, String> {
        if bytes.is_empty() {
            return Err("is empty (the password is its first line)".into());
        }
        if bytes.len() < MIN_PASSWORD || bytes.len() > MAX_PASSWORD {
            return Err(format!(
                "the password (first line) is {} bytes; it must be {MIN_PASSWORD} to \
                 {MAX_PASSWORD}",
                bytes.len()
            ));
        }
        if bytes.iter().any(|b| b.is_ascii_control() && *b != b'\t') {
            return Err("the password (first line) contains a control character".into());
        }
        if std::str::from_utf8(bytes).is_err() {
            return Err("the password (first line) is not UTF-8".into());
        }
        Ok(Password(bytes.to_vec()))
    }

    /// The password itself (to send it).
    pub fn as_str(&self) -> &str {
        // Checked in `new`.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// Whether `attempt` is the password. The time taken does not depend on where the two
    /// differ, nor on the password's length: both are padded to a fixed width first.
    pub fn matches(&self, attempt: &[u8]) -> bool {
        const W: usize = MAX_PASSWORD + 1;
        let pad = |b: &[u8]| {
            let mut a = [0u8; W];
            let n = b.len().min(W);
            a[..n].copy_from_slice(&b[..n]);
            a
        };
        let (a, b) = (pad(&self.0), pad(attempt));
        let mut diff = (self.0.len() ^ attempt.len()) as u64;
        for i in 0..W {
            diff |= u64::from(a[i] ^ b[i]);
        }
        std::hint::black_box(diff) == 0
    }
}

/// Reads a `-K` password file: a secret file ([`open`]) whose first line (without a final
/// `\r`) is the password, 4 to 63 bytes. An empty file is refused.
pub fn read_password(path: &Path) -> Result<Password, SecretFileError> {
    const WHAT: &str = "password file";
    let f = open(path, WHAT)?;
    let mut text = Vec::with_capacity(128);
    f.take(4096)
        .read_to_end(&mut text)
        .map_err(|err| SecretFileError::Io {
            what: WHAT,
            path: path.to_path_buf(),
            err,
        })?;
    let first = text.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    Password::new(first).map_err(|reason| SecretFileError::Malformed {
        what: WHAT,
        path: path.to_path_buf(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, name: &str, text: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn password_file_rules() {
        let d = tempfile::tempdir().unwrap();
        let ok = file(d.path(), "ok", b"s3cret pw\r\nignored\n", 0o600);
        let pw = read_password(&ok).unwrap();
        assert_eq!(pw.as_str(), "s3cret pw");
        assert!(!format!("{pw:?}").contains("s3cret"));
        assert!(read_password(&file(d.path(), "ro", b"abcd", 0o400)).is_ok());

        let empty = read_password(&file(d.path(), "empty", b"", 0o600)).unwrap_err();
        assert!(empty.to_string().contains("is empty"), "{empty}");
        let blank = read_password(&file(d.path(), "blank", b"\nsecond\n", 0o600)).unwrap_err();
        assert!(blank.to_string().contains("is empty"), "{blank}");
        for (name, text) in [("short", &b"abc\n"[..]), ("long", &[b'x'; 64][..])] {
            let e = read_password(&file(d.path(), name, text, 0o600)).unwrap_err();
            assert!(e.to_string().contains("4 to 63"), "{e}");
        }
        let e = read_password(&file(d.path(), "ctl", b"ab\x1bcd\n", 0o600)).unwrap_err();
        assert!(e.to_string().contains("control"), "{e}");
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
            let e = read_password(&file(d.path(), "open", b"password\n", mode)).unwrap_err();
            assert!(matches!(e, SecretFileError::Mode { .. }), "{mode:o}: {e}");
            let s = e.to_string();
            assert!(
                s.starts_with("password file ") && s.contains("chmod 600"),
                "{s}"
            );
        }
        let e = read_password(d.path()).unwrap_err();
        assert!(matches!(e, SecretFileError::NotRegular { .. }), "{e}");
        let e = read_password(&d.path().join("missing")).unwrap_err();
        assert!(matches!(e, SecretFileError::Io { .. }), "{e}");
    }

    #[test]
    fn password_matches_exactly() {
        let pw = Password::new(b"correct horse").unwrap();
        assert!(pw.matches(b"correct horse"));
        for bad in [
            &b""[..],
            b"correct hors",
            b"correct horsee",
            b"Correct horse",
            b"correct horse\0",
            &[b'c'; 200],
        ] {
            assert!(!pw.matches(bad), "{bad:?}");
        }
        let long = Password::new(&[b'z'; MAX_PASSWORD]).unwrap();
        assert!(long.matches(&[b'z'; MAX_PASSWORD]));
        assert!(!long.matches(&[b'z'; MAX_PASSWORD + 1]));
        assert!(!long.matches(&[b'z'; MAX_PASSWORD + 50]));
    }
}
