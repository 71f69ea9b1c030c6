//! The release switch's part of a manifest (`--release NAME`, `makuo rollback NAME`): the
//! name and options as they travel (extension section 5, `ext.rs` frames it), the checks a
//! receiver makes of a name it is sent, and where a release push lands under the base
//! (`releases/<push-id>/`): a receiver moves every entry of such a manifest there before
//! anything looks at it ([`Manifest::into_release`]). No file system here: the disk side is
//! `apply/release.rs`.

use super::{EntryKind, Manifest, MAX_PATH};
use crate::proto::storage::XferKey;
use crate::proto::wire::{Reader, WireError, Writer};

/// The directory under the base that holds the releases (makuo's own).
pub const RELEASES_DIR: &[u8] = b"releases";
/// Releases kept when `--keep-releases` is not given (the current one and the one before it
/// are always kept, whatever the count).
pub const DEFAULT_KEEP: u32 = 5;
/// Most releases `--keep-releases` may ask to keep.
pub const MAX_KEEP: u32 = 10_000;
/// Longest release name (bytes).
pub const MAX_NAME: usize = 255;

const F_ROLLBACK: u8 = 1;

/// A push into a release, or a rollback, as carried in the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The link's name: one safe path component under the base ([`check_name`]).
    pub name: String,
    /// Releases to keep (`--keep-releases`); at least the current and the previous one stay.
    pub keep: u32,
    /// `makuo rollback NAME`: flip the link back to the release before the current one; the
    /// manifest then has no entries.
    pub rollback: bool,
}

/// Why a release name is refused (the text is shown to the operator).
pub fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err("a release name is 1 to 255 bytes");
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err("a release name is one path component (no '/')");
    }
    if name.starts_with(b".") {
        // `.` and `..`, and makuo's hidden names (temp links, release records).
        return Err("a release name does not start with '.'");
    }
    if name == RELEASES_DIR {
        return Err("'releases' holds the releases; name the link otherwise");
    }
    if name.iter().any(|b| b.is_ascii_control()) {
        return Err("a release name has no control characters");
    }
    Ok(())
}

/// The directory name of the release a push makes: its push id (sender node id, transfer
/// id), the same on every member.
pub fn release_id(key: XferKey) -> String {
    format!("{:016x}-{:08x}", key.origin, key.xfer)
}

/// `releases/<push-id>`: where a release push's entries land, relative to the base.
pub fn release_path(key: XferKey) -> Vec<u8> {
    let mut p = RELEASES_DIR.to_vec();
    p.push(b'/');
    p.extend_from_slice(release_id(key).as_bytes());
    p
}

pub(super) fn encode(r: &Release, b: &mut Writer) {
    // The count every section starts with: one record.
    b.varint(1);
    b.u8(if r.rollback { F_ROLLBACK } else { 0 });
    b.varint(u64::from(r.keep));
    b.bytes_v(r.name.as_bytes());
}

pub(super) fn decode(b: &mut Reader<'_>, count: usize) -> Result<Release, WireError> {
    if count != 1 {
        return Err(WireError::BadValue("release section"));
    }
    let flags = b.u8()?;
    if flags & !F_ROLLBACK != 0 {
        return Err(WireError::BadValue("release flags"));
    }
    let keep = u32::try_from(b.varint()?)
        .ok()
        .filter(|k| (1..=MAX_KEEP).contains(k))
        .ok_or(WireError::BadValue("release keep"))?;
    let name = b.bytes_v(MAX_NAME)?;
    check_name(name).map_err(|_| WireError::BadValue("release name"))?;
    let name = String::from_utf8(name.to_vec()).map_err(|_| WireError::BadValue("release name"))?;
    Ok(Release {
        name,
        keep,
        rollback: flags & F_ROLLBACK != 0,
    })
}

impl Manifest {
    /// The release this manifest pushes into or rolls back, if any.
    pub fn release(&self) -> Option<&Release> {
        self.options.release.as_deref()
    }

    /// Receiver side, once decoded: moves a release push's entries under
    /// `releases/<push-id>/` (the base `.` becomes that directory; roots, hard-link targets
    /// and per-directory rule directories move alike; symlink targets are the link's own
    /// text and stay). Fails when a path would grow past the path limit, or for a rollback
    /// that carries entries.
    pub fn into_release(&mut self, key: XferKey) -> Result<(), WireError> {
        let Some(r) = &self.options.release else {
            return Ok(());
        };
        if r.rollback {
            if !self.entries.is_empty() || !self.roots.is_empty() {
                return Err(WireError::BadValue("rollback with entries"));
            }
            return Ok(());
        }
        let prefix = release_path(key);
        let under = |p: &[u8]| -> Result<Vec<u8>, WireError> {
            let mut out = prefix.clone();
            if p != b"." {
                out.push(b'/');
                out.extend_from_slice(p);
            }
            if out.len() > MAX_PATH {
                return Err(WireError::TooLarge("path under releases/"));
            }
            Ok(out)
        };
        for e in &mut self.entries {
            e.path = under(&e.path)?;
            if e.kind == EntryKind::HardLink {
                e.target = under(&e.target)?;
            }
        }
        for r in &mut self.roots {
            *r = under(r)?;
        }
        if let Some(t) = &mut self.filter {
            for d in &mut t.dirs {
                d.dir = under(&d.dir)?;
            }
        }
        Ok(())
    }
}

impl Manifest {
    /// A path of this manifest as the sender named it: for a release push (moved under
    /// `releases/<push-id>/` by [`Manifest::into_release`]) without that prefix, `.` for the
    /// release directory itself; otherwise as it is. Filter rules and the daemon's
    /// `--protect` patterns are matched against this.
    pub fn sender_path<'a>(&self, path: &'a [u8]) -> &'a [u8] {
        if self.release().is_none_or(|r| r.rollback) {
            return path;
        }
        let Some(rest) = path
            .strip_prefix(RELEASES_DIR)
            .and_then(|r| r.strip_prefix(b"/"))
        else {
            return path;
        };
        match rest.iter().position(|&b| b == b'/') {
            Some(i) => &rest[i + 1..],
            None => b".",
        }
    }
}

/// For a path of a release push as the receiver applies it (`releases/<id>/P`), `P` as the
/// sender named it (`.` for the release directory itself); other paths as they are.
pub fn strip_release<'a>(path: &'a [u8], prefix: &[u8]) -> &'a [u8] {
    match path.strip_prefix(prefix) {
        Some([]) => b".",
        Some([b'/', rest @ ..]) => rest,
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_safe_component() {
        for ok in ["current", "web-1", "a.b", "x y"] {
            assert_eq!(check_name(ok.as_bytes()), Ok(()), "{ok}");
        }
        for bad in [
            "", ".", "..", "a/b", "/x", "releases", ".hidden", "a\0b", "a\nb",
        ] {
            assert!(check_name(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(check_name(&[b'a'; 256]).is_err());
    }

    #[test]
    fn a_release_push_moves_under_its_directory() {
        let key = XferKey {
            origin: 0xab,
            xfer: 7,
        };
        let mut m = Manifest::default();
        m.options.release = Some(Box::new(Release {
            name: "current".into(),
            keep: 5,
            rollback: false,
        }));
        m.roots = vec![b".".to_vec()];
        for p in [".", "a", "a/b"] {
            m.entries.push(super::super::Entry {
                path: p.as_bytes().to_vec(),
                kind: EntryKind::File,
                ..Default::default()
            });
        }
        m.into_release(key).unwrap();
        let want = "releases/00000000000000ab-00000007";
        assert_eq!(m.roots, vec![want.as_bytes().to_vec()]);
        assert_eq!(m.entries[0].path, want.as_bytes());
        assert_eq!(m.entries[2].path, format!("{want}/a/b").as_bytes());
        assert_eq!(strip_release(&m.entries[2].path, want.as_bytes()), b"a/b");
        assert_eq!(strip_release(&m.entries[0].path, want.as_bytes()), b".");
        assert_eq!(strip_release(b"other", want.as_bytes()), b"other");
    }

    #[test]
    fn the_section_round_trips_and_refuses_hostile_names() {
        let mut m = Manifest::default();
        m.options.release = Some(Box::new(Release {
            name: "current".into(),
            keep: 3,
            rollback: true,
        }));
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        for bad in ["..", "releases", "a/b"] {
            m.options.release.as_mut().unwrap().name = bad.into();
            assert!(Manifest::decode(&m.encode()).is_err(), "{bad}");
        }
        // A rollback carries no entries.
        let mut m = Manifest::default();
        m.options.release = Some(Box::new(Release {
            name: "current".into(),
            keep: 3,
            rollback: true,
        }));
        m.entries.push(Default::default());
        assert!(m.into_release(XferKey { origin: 1, xfer: 1 }).is_err());
    }
}
