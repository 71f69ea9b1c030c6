//! Trees: generate, fingerprint, compare.

use super::*;

/// Writes `data` to `base/rel`, making parent directories.
pub fn write(base: &Path, rel: &str, data: impl AsRef<[u8]>) {
    let p = base.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// Sets a path's mtime (seconds and nanoseconds) without following a symlink.
pub fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: nsec as _,
        },
    ];
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

/// Writes a file with this mode and mtime, making parent directories.
pub fn write_file(p: &Path, data: &[u8], mode: u32, mtime: (i64, i64)) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(p, mtime.0, mtime.1);
}

/// Deterministic filler bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Writes a large file quickly (a pattern that changes every 4 KiB, so no block repeats).
pub fn write_big(p: &Path, len: usize) {
    let mut f = std::io::BufWriter::new(fs::File::create(p).unwrap());
    let mut block = bytes(0x5eed, 4096);
    let mut left = len;
    let mut n = 0u64;
    while left > 0 {
        block[..8].copy_from_slice(&n.to_le_bytes());
        let k = left.min(block.len());
        f.write_all(&block[..k]).unwrap();
        left -= k;
        n += 1;
    }
    f.flush().unwrap();
}

/// A docroot-like tree: `files` regular files of varied size, mode and mtime (with
/// nanoseconds) in nested dirs, empty dirs, a private dir, symlinks (relative, absolute,
/// dangling, to a dir), odd names, and optionally one big file `big.bin`.
pub fn docroot(dir: &Path, files: usize, big: Option<usize>) {
    let base_time = 1_600_000_000i64;
    for i in 0..files {
        let size = match i % 10 {
            0 => 0,
            1..=6 => (i * 397) % 4096,
            7..=8 => 4096 + (i * 7919) % 20000,
            _ => 30000 + (i * 104729) % 150_000,
        };
        let mode = match i % 5 {
            0 => 0o755,
            1 => 0o600,
            2 => 0o640,
            _ => 0o644,
        };
        let p = dir.join(format!("site/d{}/s{}/f{i}.txt", i % 7, i % 3));
        let mtime = (
            base_time + i as i64 * 17,
            (i as i64 * 7_919_117) % 1_000_000_000,
        );
        write_file(&p, &bytes(i as u64 + 1, size), mode, mtime);
    }
    write_file(
        &dir.join("with space & quote\".txt"),
        b"odd name\n",
        0o644,
        (base_time, 0),
    );
    write_file(
        &dir.join("ünïcødé.txt"),
        b"unicode\n",
        0o644,
        (base_time, 1),
    );
    write_file(&dir.join("README"), b"readme\n", 0o444, (base_time, 2));
    fs::create_dir_all(dir.join("empty")).unwrap();
    fs::create_dir_all(dir.join("deep/er/empty")).unwrap();
    fs::create_dir_all(dir.join("private")).unwrap();
    write_file(
        &dir.join("private/secret"),
        b"s3cret\n",
        0o600,
        (base_time, 3),
    );
    fs::set_permissions(dir.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(dir.join("deep/er"), fs::Permissions::from_mode(0o750)).unwrap();
    let links: [(&str, &str); 4] = [
        ("current", "site/d1"),
        ("dangling", "nowhere/at/all"),
        ("site/up", "../README"),
        ("abs", "/nonexistent/makuo/abs"),
    ];
    for (i, (l, t)) in links.iter().enumerate() {
        std::os::unix::fs::symlink(t, dir.join(l)).unwrap();
        set_mtime(&dir.join(l), base_time + 100 + i as i64, 500);
    }
    if let Some(len) = big {
        let p = dir.join("big.bin");
        write_big(&p, len);
        set_mtime(&p, base_time + 1000, 42);
    }
}

/// A small site: PHP and text files at several depths, logs, a cache dir, an empty dir, a
/// symlink and one file (`big.bin`, 300,000 bytes) big enough to span many datagrams.
pub fn small_site(src: &Path) {
    write(src, "index.php", "<?php echo 'hello';\n");
    write(src, "a.txt", "hello\n");
    write(src, "lib/util.php", "<?php function f() {}\n");
    write(src, "lib/notes.txt", "notes\n");
    write(src, "lib/access.log", "GET /\n");
    write(src, "sub/deep/d.php", "<?php // deep\n");
    write(src, "sub/deep/e.txt", "e\n");
    write(src, "sub/deep/error.log", "oops\n");
    write(src, "cache/page1.html", "<html>1</html>\n");
    write(src, "cache/page2.html", "<html>2</html>\n");
    for i in 0..20 {
        write(
            src,
            &format!("many/f{i:02}.txt"),
            format!("file {i}\n").repeat(i + 1),
        );
    }
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(src, "big.bin", big);
    fs::create_dir(src.join("emptydir")).unwrap();
    std::os::unix::fs::symlink("lib", src.join("current")).unwrap();
}

/// Everything that must match between the source and a member, per path: kind, permission
/// bits, mtime (not for directories: adding an entry changes a directory's mtime on any
/// copy), a content hash and size for files, the target for symlinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        mtime: (i64, i64),
        size: u64,
        hash: u64,
    },
    Symlink {
        target: PathBuf,
        mtime: (i64, i64),
    },
    Other,
}

/// A fingerprint of a tree: relative `/`-separated path (lossy for names that are not
/// UTF-8) to [`Node`].
pub type Tree = BTreeMap<String, Node>;

/// A file that went away between the walk and the read (a member's staged file renamed into
/// place while a test polls its tree) hashes to 0: that tree differs and the poll goes on,
/// where a panic would end the test.
pub fn hash_file(p: &Path) -> u64 {
    let Ok(mut f) = fs::File::open(p) else {
        return 0;
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let Ok(n) = f.read(&mut buf) else {
            return 0;
        };
        if n == 0 {
            break;
        }
        buf[..n].hash(&mut h);
    }
    h.finish()
}

/// Every path under `base` (not `base` itself).
pub fn fingerprint(base: &Path) -> Tree {
    fn walk(base: &Path, rel: &Path, out: &mut Tree) {
        // A directory that vanishes while walking (staging dropped) lists as empty.
        let Ok(dir) = fs::read_dir(base.join(rel)) else {
            return;
        };
        let mut names: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let p = base.join(&r);
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue; // vanished while walking (a staged file being renamed)
            };
            let ft = md.file_type();
            let mtime = (md.mtime(), md.mtime_nsec());
            let node = if ft.is_dir() {
                walk(base, &r, out);
                Node::Dir {
                    mode: md.mode() & 0o7777,
                }
            } else if ft.is_file() {
                Node::File {
                    mode: md.mode() & 0o7777,
                    mtime,
                    size: md.len(),
                    hash: hash_file(&p),
                }
            } else if ft.is_symlink() {
                Node::Symlink {
                    target: fs::read_link(&p).unwrap_or_default(),
                    mtime,
                }
            } else {
                Node::Other
            };
            out.insert(r.to_string_lossy().into_owned(), node);
        }
    }
    let mut out = Tree::new();
    walk(base, Path::new(""), &mut out);
    out
}

/// Differences between two fingerprints, one line each (empty when identical).
pub fn diff(want: &Tree, got: &Tree) -> Vec<String> {
    let mut d = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => d.push(format!("missing {p}")),
            Some(g) if g != w => d.push(format!("{p}: want {w:?}, got {g:?}")),
            _ => {}
        }
    }
    for p in got.keys().filter(|p| !want.contains_key(*p)) {
        d.push(format!("extra {p}"));
    }
    d
}

/// Paths that differ between two fingerprints (added, removed or changed).
pub fn changed(before: &Tree, after: &Tree) -> BTreeSet<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// Fails naming up to 20 differences unless `got` matches `want`.
pub fn assert_same(want: &Tree, got: &Tree, who: &str) {
    let d = diff(want, got);
    assert!(
        d.is_empty(),
        "{who} differs from the source in {} place(s):\n  {}",
        d.len(),
        d.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

/// Fails unless the tree under `member` matches the one under `src`.
pub fn assert_identical(src: &Path, member: &Path, who: &str) {
    assert_same(&fingerprint(src), &fingerprint(member), who);
}

/// Every path under `base` (relative), without reading contents.
pub fn paths(base: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(base.join(rel)) else {
            return;
        };
        for e in rd.flatten() {
            let r = rel.join(e.file_name());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &r, out);
            }
            out.push(r);
        }
    }
    let mut out = Vec::new();
    walk(base, Path::new(""), &mut out);
    out.sort();
    out
}

/// makuo's staged files (`.NAME.makuo-XXXXXX`) anywhere under `base`.
pub fn temp_files(base: &Path) -> Vec<PathBuf> {
    paths(base)
        .into_iter()
        .filter(|p| is_temp_name(&p.file_name().unwrap().to_string_lossy()))
        .collect()
}

/// `.NAME.makuo-XXXXXX`: hidden, a non-empty NAME, six alphanumerics.
pub fn is_temp_name(n: &str) -> bool {
    let Some(stem) = n.strip_prefix('.') else {
        return false;
    };
    match stem.rsplit_once(".makuo-") {
        Some((name, suffix)) => {
            !name.is_empty()
                && suffix.len() == 6
                && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// Fails if anything of makuo's is in `base`: staged files or state/log files.
pub fn assert_nothing_of_makuo(base: &Path, who: &str) {
    let bad: Vec<PathBuf> = paths(base)
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.contains(".makuo-") || ["members", "last-push", "makuo.log"].contains(&n.as_ref())
        })
        .collect();
    assert!(bad.is_empty(), "{who}'s base holds makuo files: {bad:?}");
}
