//! The file system around the fuzzed engine.

use super::*;

pub(crate) struct Sandbox {
    pub(crate) _tmp: tempfile::TempDir,
    pub(crate) root: PathBuf,
    pub(crate) base: PathBuf,
    pub(crate) outside: PathBuf,
    pub(crate) sentinel: std::fs::Metadata,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let base = root.join("base");
        let outside = root.join("outside");
        std::fs::create_dir(&base).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("sentinel"), b"untouched\n").unwrap();
        let sentinel = std::fs::symlink_metadata(outside.join("sentinel")).unwrap();
        std::fs::create_dir_all(base.join("site")).unwrap();
        std::fs::write(base.join("site/index.html"), b"<html>\n").unwrap();
        let s = Self {
            _tmp: tmp,
            root,
            base,
            outside,
            sentinel,
        };
        s.plant();
        s
    }

    /// (Re)plants the escape symlinks in the base if a push removed or replaced them.
    pub(crate) fn plant(&self) {
        for (name, target) in [
            ("escape", PathBuf::from("../outside")),
            ("abs", self.outside.clone()),
        ] {
            let p = self.base.join(name);
            if std::fs::symlink_metadata(&p).is_err() {
                std::os::unix::fs::symlink(target, &p).unwrap();
            }
        }
    }

    /// Nothing outside the base changed; reports what the base holds.
    pub(crate) fn check(&self) -> Tally {
        let mut names: Vec<_> = std::fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["base", "outside"],
            "something appeared next to the base"
        );
        let out: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(out, ["sentinel"], "something was written outside the base");
        let s = std::fs::symlink_metadata(self.outside.join("sentinel")).unwrap();
        assert_eq!(
            std::fs::read(self.outside.join("sentinel")).unwrap(),
            b"untouched\n"
        );
        assert_eq!(
            (s.mode(), s.mtime(), s.mtime_nsec(), s.uid(), s.ino()),
            (
                self.sentinel.mode(),
                self.sentinel.mtime(),
                self.sentinel.mtime_nsec(),
                self.sentinel.uid(),
                self.sentinel.ino()
            ),
            "the file outside the base was touched"
        );
        let o = std::fs::symlink_metadata(&self.outside).unwrap();
        assert!(o.is_dir() && !o.file_type().is_symlink());
        let mut t = Tally::default();
        walk(&self.base, &self.base, &mut t);
        t
    }
}

#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) files: u64,
    pub(crate) dirs: u64,
    pub(crate) symlinks: u64,
    pub(crate) symlinks_pointing_out: u64,
    pub(crate) temps: Vec<PathBuf>,
}

/// Walks without following symlinks. Every path must resolve (parents canonicalised) inside
/// the base; no set-id file, device node or file capability may exist (the fuzzed node
/// neither preserves owners nor allows devices).
pub(crate) fn walk(base: &Path, dir: &Path, t: &mut Tally) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let parent = p.parent().unwrap().canonicalize().unwrap();
        assert!(parent.starts_with(base), "{} escapes the base", p.display());
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let name = e.file_name();
        let name = name.as_encoded_bytes();
        if name.starts_with(b".") && name.len() > 14 && name[..name.len() - 6].ends_with(b".makuo-")
        {
            t.temps.push(p.clone());
        }
        if ft.is_symlink() {
            t.symlinks += 1;
            let target = std::fs::read_link(&p).unwrap();
            let resolved = p.parent().unwrap().join(&target);
            if target.is_absolute() || !normalise(&resolved).starts_with(base) {
                t.symlinks_pointing_out += 1;
            }
        } else if ft.is_dir() {
            t.dirs += 1;
            walk(base, &p, t);
        } else if ft.is_file() {
            t.files += 1;
            assert_eq!(
                m.mode() & 0o6000,
                0,
                "{} was created set-id ({:o})",
                p.display(),
                m.mode()
            );
            assert_no_privileged_xattrs(&p);
        } else {
            // FIFOs and sockets are made by any member; device nodes never here.
            assert!(
                !(ft.is_block_device() || ft.is_char_device()),
                "device node {} was created",
                p.display()
            );
        }
    }
}

pub(crate) fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}
