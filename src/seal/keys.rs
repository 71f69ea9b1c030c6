//! Cluster keys: the key file (64 hex digits and a newline, refused when group or others may
//! read or write it), `makuo keygen` (never overwrites), and the one-byte key id that tells a
//! receiver holding two keys which to try. See `docs/protocol.md` (*Key file*, *Key id*).

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

use super::SealError;

/// Length of a cluster key in bytes.
pub const KEY_LEN: usize = 32;

/// Last 8 bytes of the XChaCha20-Poly1305 nonce that derives a key's id (datagrams are sealed
/// with another cipher under derived keys, see `aead.rs`; the id stays what it always was).
const KEY_ID_SUFFIX: [u8; 8] = *b"MKkeyid1";

/// A 32-byte cluster key. Its `Debug` shows only the key id.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(id {:#04x})", self.id())
    }
}

impl Key {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh random key from the operating system.
    pub fn generate() -> Result<Self, SealError> {
        let mut k = [0u8; KEY_LEN];
        getrandom::getrandom(&mut k).map_err(|e| SealError::Io {
            path: PathBuf::from("<getrandom>"),
            err: io::Error::other(e.to_string()),
        })?;
        Ok(Self(k))
    }

    /// Parses the key file format: 64 hex digits, optionally followed by one newline.
    pub fn from_hex(text: &str) -> Result<Self, SealError> {
        parse_hex(text.as_bytes(), Path::new(""))
    }

    /// The key as 64 lowercase hex digits (no newline).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key id carried in sealed headers: the first byte of a tag computed with the key
    /// under a nonce no datagram uses (`[0; 16] ++ "MKkeyid1"`) over the associated data
    /// `"makuo key id"`. It is a public, one-way function of the key: it reveals nothing
    /// usable about the key, and two keys share an id with probability 1/256 (receivers then
    /// simply try both).
    pub fn id(&self) -> u8 {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let mut nonce = [0u8; 24];
        nonce[16..].copy_from_slice(&KEY_ID_SUFFIX);
        let tag = cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"makuo key id", &mut [])
            .expect("empty message always seals");
        tag[0]
    }
}

fn parse_hex(text: &[u8], path: &Path) -> Result<Key, SealError> {
    let bad = |reason| SealError::KeyFileMalformed {
        path: path.to_path_buf(),
        reason,
    };
    let digits = text.strip_suffix(b"\n").unwrap_or(text);
    if digits.len() != 2 * KEY_LEN {
        return Err(bad(
            "expected exactly 64 hex digits and a newline (make one with `makuo keygen`)",
        ));
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut k = [0u8; KEY_LEN];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => k[i] = (h << 4) | l,
            _ => return Err(bad("contains a character that is not a hex digit")),
        }
    }
    Ok(Key(k))
}

/// Loads a key file, refusing one that group or others may read or write (`mode & 0o077`),
/// one that is not a regular file, and malformed contents. Permissions are checked on the
/// opened file itself, so the file cannot be swapped between the check and the read.
pub fn load_key(path: impl AsRef<Path>) -> Result<Key, SealError> {
    use crate::secret_file::{self, SecretFileError};
    let path = path.as_ref();
    let io_err = |err| SealError::Io {
        path: path.to_path_buf(),
        err,
    };
    let f = secret_file::open(path, "key file").map_err(|e| match e {
        SecretFileError::Mode { path, mode, .. } => SealError::KeyFileMode { path, mode },
        SecretFileError::NotRegular { path, .. } => SealError::KeyFileType(path),
        SecretFileError::Io { path, err, .. } => SealError::Io { path, err },
        other => io_err(io::Error::other(other.to_string())),
    })?;
    // A key file is 65 bytes; read a little more so an oversized file is reported as such.
    let mut text = Vec::with_capacity(80);
    f.take(2 * KEY_LEN as u64 + 8)
        .read_to_end(&mut text)
        .map_err(io_err)?;
    parse_hex(&text, path)
}

/// Writes `key` to a new file at `path` with mode 0600, using `O_EXCL`: an existing file (or
/// symlink) is never overwritten. A partly written file is removed.
pub fn write_key_file(path: impl AsRef<Path>, key: &Key) -> Result<(), SealError> {
    let path = path.as_ref();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| {
            if err.kind() == io::ErrorKind::AlreadyExists {
                SealError::KeyFileExists(path.to_path_buf())
            } else {
                SealError::Io {
                    path: path.to_path_buf(),
                    err,
                }
            }
        })?;
    let text = format!("{}\n", key.to_hex());
    if let Err(err) = f.write_all(text.as_bytes()).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(SealError::Io {
            path: path.to_path_buf(),
            err,
        });
    }
    Ok(())
}

/// `makuo keygen`: makes a new random key and prints it to stdout (`dest` is `-`) or writes it
/// to a new file (see [`write_key_file`]). Returns the key.
pub fn keygen(dest: &str) -> Result<Key, SealError> {
    let key = Key::generate()?;
    if dest == "-" {
        let mut out = io::stdout().lock();
        writeln!(out, "{}", key.to_hex())
            .and_then(|()| out.flush())
            .map_err(|err| SealError::Io {
                path: PathBuf::from("<stdout>"),
                err,
            })?;
    } else {
        write_key_file(dest, &key)?;
    }
    Ok(key)
}

impl Key {
    /// The key's bytes (for deriving the datagram keys).
    pub(super) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; KEY_LEN])
    }

    #[test]
    fn seal_key_hex_round_trip() {
        let k = Key::generate().unwrap();
        assert_eq!(Key::from_hex(&k.to_hex()).unwrap(), k);
        assert_eq!(Key::from_hex(&format!("{}\n", k.to_hex())).unwrap(), k);
        assert_eq!(
            Key::from_hex(&k.to_hex().to_uppercase()).unwrap(),
            k,
            "upper case hex is fine"
        );
        for bad in [
            "",
            "abc\n",
            &"0".repeat(63),
            &"0".repeat(65),
            &format!("{}\n\n", "0".repeat(64)),
            &format!("{} \n", "0".repeat(64)),
            &format!("{}g", "0".repeat(63)),
        ] {
            assert!(
                matches!(Key::from_hex(bad), Err(SealError::KeyFileMalformed { .. })),
                "{bad:?}"
            );
        }
        assert!(!format!("{k:?}").contains(&k.to_hex()[..8]));
    }

    #[test]
    fn seal_key_ids_differ_and_are_stable() {
        assert_eq!(key(1).id(), key(1).id());
        let ids: std::collections::HashSet<u8> = (0..32).map(|b| key(b).id()).collect();
        assert!(ids.len() > 20, "ids spread over the byte: {ids:?}");
    }

    #[test]
    fn seal_load_key_checks_mode_and_contents() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        let k = key(7);
        write_key_file(&p, &k).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(load_key(&p).unwrap(), k);

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_key(&p).unwrap_err();
        assert!(matches!(e, SealError::KeyFileMode { mode, .. } if mode & 0o777 == 0o644));
        let msg = e.to_string();
        assert!(msg.contains("0644") && msg.contains("chmod 600"), "{msg}");
        for mode in [0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(matches!(load_key(&p), Err(SealError::KeyFileMode { .. })));
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(load_key(&p).unwrap(), k);

        let q = dir.path().join("bad");
        std::fs::write(&q, "not a key\n").unwrap();
        std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_key(&q).unwrap_err();
        assert!(matches!(e, SealError::KeyFileMalformed { .. }));
        assert!(e.to_string().contains("64 hex digits"));
        std::fs::write(&q, "0".repeat(10_000)).unwrap();
        assert!(matches!(
            load_key(&q),
            Err(SealError::KeyFileMalformed { .. })
        ));

        assert!(matches!(
            load_key(dir.path()),
            Err(SealError::KeyFileType(_)) | Err(SealError::KeyFileMode { .. })
        ));
        assert!(matches!(
            load_key(dir.path().join("missing")),
            Err(SealError::Io { .. })
        ));
    }

    #[test]
    fn seal_keygen_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        let k = keygen(p.to_str().unwrap()).unwrap();
        assert_eq!(load_key(&p).unwrap(), k);
        let e = keygen(p.to_str().unwrap()).unwrap_err();
        assert!(matches!(e, SealError::KeyFileExists(_)));
        assert!(e.to_string().contains("already exists"));
        assert_eq!(load_key(&p).unwrap(), k, "the first key is intact");

        // Not through a symlink either, even a dangling one.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert!(matches!(
            write_key_file(&link, &key(1)),
            Err(SealError::KeyFileExists(_))
        ));
        assert!(!dir.path().join("nowhere").exists());
    }
}
