//! The front end end to end: `makuo sync|check|members` against real daemons on loopback.
//!
//! Every test starts its own cluster of receiving daemons (`makuo daemon -n`) on 127.0.0.1,
//! with a random group in 239.255.0.0/16 and a free port, so tests running in parallel never
//! hear each other and nothing leaves the host. Unless a test says otherwise there is no
//! daemon on the sending side: `makuo sync --direct -b SRC` walks SRC itself, discovers the
//! members and multicasts to them. The cluster's `Drop` resumes (SIGCONT) and stops (SIGTERM)
//! every daemon and reaps it, also when a test panics.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tempfile::TempDir;

const MAKUO: &str = env!("CARGO_BIN_EXE_makuo");

/// Longest any single `makuo` run may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Running makuo
// ---------------------------------------------------------------------------------------------

/// A finished `makuo` run.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    /// Non-empty stdout lines.
    fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The per-member table at the end of stdout: `(name, address, files, bytes, result)` rows,
    /// after checking the header. `n` is the number of member rows expected.
    fn table(&self, n: usize) -> Vec<Row> {
        let lines = self.lines();
        assert!(lines.len() > n, "no table of {n} rows in:\n{self}");
        let start = lines.len() - n - 1;
        let header: Vec<&str> = lines[start].split_whitespace().collect();
        assert_eq!(
            header,
            ["MEMBER", "ADDRESS", "FILES", "BYTES", "RESULT"],
            "table header not where expected in:\n{self}"
        );
        lines[start + 1..]
            .iter()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                assert!(w.len() >= 5, "short table row {l:?} in:\n{self}");
                Row {
                    name: w[0].to_string(),
                    address: w[1].to_string(),
                    files: w[2].parse().expect("FILES is a number"),
                    bytes: w[3].parse().expect("BYTES is a number"),
                    result: w[4..].join(" "),
                }
            })
            .collect()
    }

    /// The stdout lines before the table of `n` rows.
    fn before_table(&self, n: usize) -> Vec<&str> {
        let lines = self.lines();
        lines[..lines.len() - n - 1].to_vec()
    }

    /// stdout parsed as exactly one JSON document.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {} after {:.2}s\n--- stdout\n{}--- stderr\n{}---",
            self.code,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    name: String,
    address: String,
    files: u64,
    bytes: u64,
    result: String,
}

/// Runs `makuo ARGS`, with a time limit.
fn makuo<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let started = Instant::now();
    let mut child = Command::new(MAKUO)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run makuo");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for makuo") {
            break s;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "makuo {:?} still running after {RUN_LIMIT:?}",
                args.iter().map(|a| a.as_ref()).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
        elapsed: started.elapsed(),
    }
}

/// `makuo CMD --console ADDR ARGS` (ARGS split at whitespace): through a daemon.
fn via(console: &str, cmd: &str, args: &str) -> Run {
    let mut a = vec![cmd, "--console", console];
    a.extend(args.split_whitespace());
    makuo(&a)
}

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

fn random() -> u64 {
    makuo::node::random_node_id()
}

/// A TCP port nobody listens on right now.
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port nobody uses right now.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A random administratively scoped group, 239.255.X.Y.
fn random_group() -> String {
    let r = random();
    format!("239.255.{}.{}", r as u8, 1 + (r >> 8) as u8 % 254)
}

struct Daemon {
    name: String,
    base: PathBuf,
    console: u16,
    log: PathBuf,
    child: Child,
}

impl Daemon {
    fn signal(&self, sig: libc::c_int) {
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }
}

/// Receiving daemons on loopback plus a source tree, all in one temporary directory.
struct Cluster {
    daemons: Vec<Daemon>,
    group: String,
    port: u16,
    src: PathBuf,
    dir: TempDir,
}

impl Cluster {
    /// Starts `n` receiving daemons `m1..mN`, each with an empty base, and fills SRC with
    /// [`make_tree`]. Returns once every daemon's console answers.
    fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        make_tree(&src);
        let mut c = Cluster {
            daemons: Vec::new(),
            group: random_group(),
            port: free_udp_port(),
            src,
            dir,
        };
        for i in 1..=n {
            let base = c.dir.path().join(format!("m{i}"));
            fs::create_dir(&base).unwrap();
            c.add_daemon(&format!("m{i}"), &base);
        }
        c
    }

    /// Starts one more daemon named `name` on `base` and waits for its console.
    fn add_daemon(&mut self, name: &str, base: &Path) -> &Daemon {
        let console = free_tcp_port();
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new(MAKUO)
            .args(["daemon", "-n", "-i", "127.0.0.1", "-m", &self.group])
            .args(["-p", &self.port.to_string()])
            .arg("-b")
            .arg(base)
            .arg("--state-dir")
            .arg(self.dir.path().join(format!("state-{name}")))
            .args(["--name", name, "-P", &console.to_string(), "--no-fsync"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start makuo daemon");
        self.daemons.push(Daemon {
            name: name.to_string(),
            base: base.to_path_buf(),
            console,
            log,
            child,
        });
        let d = self.daemons.last_mut().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", console)).is_err() {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!(
                    "daemon {name} exited ({st}):\n{}",
                    fs::read_to_string(&d.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < end,
                "daemon {name}'s console never answered"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.daemons.last().unwrap()
    }

    fn daemon(&self, name: &str) -> &Daemon {
        self.daemons.iter().find(|d| d.name == name).unwrap()
    }

    /// Base directory of member `name`.
    fn base(&self, name: &str) -> &Path {
        &self.daemon(name).base
    }

    /// The receiving members `m1..mN` (not a sending daemon added later).
    fn receivers(&self) -> Vec<&Daemon> {
        self.daemons
            .iter()
            .filter(|d| d.name.starts_with('m'))
            .collect()
    }

    fn receiver_names(&self) -> BTreeSet<String> {
        self.receivers().iter().map(|d| d.name.clone()).collect()
    }

    /// `-m GROUP -p PORT -i 127.0.0.1`.
    fn net(&self) -> Vec<String> {
        vec![
            "-m".into(),
            self.group.clone(),
            "-p".into(),
            self.port.to_string(),
            "-i".into(),
            "127.0.0.1".into(),
        ]
    }

    /// `makuo CMD --direct -b SRC -m GROUP -p PORT -i 127.0.0.1 ARGS...`.
    fn direct(&self, cmd: &str, args: &[&str]) -> Run {
        let mut a: Vec<String> = vec![cmd.into(), "--direct".into(), "-b".into()];
        a.push(self.src.to_str().unwrap().into());
        a.extend(self.net());
        a.extend(args.iter().map(|s| s.to_string()));
        makuo(&a)
    }

    /// `makuo sync --direct -b SRC -m GROUP -p PORT -i 127.0.0.1 ARGS` (ARGS split at
    /// whitespace, never through a shell).
    fn sync(&self, args: &str) -> Run {
        self.direct("sync", &args.split_whitespace().collect::<Vec<_>>())
    }

    /// `makuo check --direct -b SRC -m GROUP -p PORT -i 127.0.0.1 ARGS`.
    fn check(&self, args: &str) -> Run {
        self.direct("check", &args.split_whitespace().collect::<Vec<_>>())
    }

    /// A first full sync, checked: every receiver ends identical to SRC.
    fn initial_sync(&self) {
        let r = self.sync("-r .");
        assert_eq!(r.code, 0, "initial sync failed:\n{r}");
        self.assert_all_identical();
    }

    fn assert_all_identical(&self) {
        let want = snapshot(&self.src);
        for d in self.receivers() {
            assert_same(&want, &snapshot(&d.base), &d.name);
        }
    }

    /// Snapshots of every receiver, by name.
    fn snapshots(&self) -> BTreeMap<String, Tree> {
        self.receivers()
            .iter()
            .map(|d| (d.name.clone(), snapshot(&d.base)))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for d in &self.daemons {
            d.signal(libc::SIGCONT);
            d.signal(libc::SIGTERM);
        }
        for d in &mut self.daemons {
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                if let Ok(Some(_)) = d.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Trees
// ---------------------------------------------------------------------------------------------

fn write(base: &Path, rel: &str, data: impl AsRef<[u8]>) {
    let p = base.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// Sets a file's mtime to `secs` after the epoch.
fn set_mtime(p: &Path, secs: u64) {
    fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// A small docroot: PHP and text files at several depths, logs, a cache dir, an empty dir, a
/// symlink and one file big enough to span many datagrams.
fn make_tree(src: &Path) {
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
    symlink("lib", src.join("current")).unwrap();
}

/// What must match between SRC and a member for one path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    File {
        mode: u32,
        mtime: i64,
        data: Vec<u8>,
    },
    /// Directory mtimes are not compared (adding an entry changes them on any copy).
    Dir {
        mode: u32,
    },
    Link(PathBuf),
}

type Tree = BTreeMap<String, Node>;

/// Every path under `base` (not `base` itself), relative and `/`-separated.
fn snapshot(base: &Path) -> Tree {
    let mut t = Tree::new();
    for e in walkdir::WalkDir::new(base).min_depth(1) {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(base)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let md = fs::symlink_metadata(e.path()).unwrap();
        let node = if md.file_type().is_symlink() {
            Node::Link(fs::read_link(e.path()).unwrap())
        } else if md.is_dir() {
            Node::Dir {
                mode: md.mode() & 0o7777,
            }
        } else {
            Node::File {
                mode: md.mode() & 0o7777,
                mtime: md.mtime(),
                data: fs::read(e.path()).unwrap(),
            }
        };
        t.insert(rel, node);
    }
    t
}

/// Paths that differ between two snapshots (added, removed or changed).
fn changed(before: &Tree, after: &Tree) -> BTreeSet<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

fn assert_same(want: &Tree, got: &Tree, who: &str) {
    let diff = changed(want, got);
    assert!(
        diff.is_empty(),
        "{who} differs from SRC at {diff:?}\n(SRC has {} paths, {who} has {})",
        want.len(),
        got.len()
    );
}

fn names(rows: &[Row]) -> BTreeSet<String> {
    rows.iter().map(|r| r.name.clone()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// sync --direct
// ---------------------------------------------------------------------------------------------

/// The issue's first point: three receiving daemons, no daemon on the sending side, one
/// `sync --direct -r .` makes every receiver identical to SRC (files, dirs, empty dir, symlink,
/// modes, mtimes, a multi-datagram file) and exits 0; the human output ends with the
/// per-member table.
#[test]
fn direct_sync_makes_every_receiver_identical_and_ends_with_the_table() {
    let c = Cluster::start(3);
    let r = c.sync("-r .");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();

    let rows = r.table(3);
    assert_eq!(names(&rows), c.receiver_names(), "{r}");
    let src_bytes: u64 = snapshot(&c.src)
        .values()
        .map(|n| match n {
            Node::File { data, .. } => data.len() as u64,
            _ => 0,
        })
        .sum();
    for row in &rows {
        assert_eq!(row.address, "127.0.0.1", "{r}");
        assert_eq!(row.result, "ok", "{r}");
        assert!(row.files > 0, "{r}");
        assert_eq!(
            row.bytes, src_bytes,
            "fresh member got every byte once: {r}"
        );
    }
    // Nothing but the table on stdout for a real run.
    assert_eq!(r.before_table(3), Vec::<&str>::new(), "{r}");
}

/// A second identical sync transfers nothing, rewrites nothing and is quick.
#[test]
fn second_identical_sync_is_a_fast_no_op() {
    let c = Cluster::start(3);
    c.initial_sync();
    let before = c.snapshots();
    let inodes: Vec<u64> = c
        .receivers()
        .iter()
        .map(|d| fs::metadata(d.base.join("big.bin")).unwrap().ino())
        .collect();

    let r = c.sync("-r .");
    assert_eq!(r.code, 0, "{r}");
    for row in r.table(3) {
        assert_eq!((row.files, row.bytes), (0, 0), "{r}");
        assert_eq!(row.result, "ok", "{r}");
    }
    assert_eq!(c.snapshots(), before);
    let after: Vec<u64> = c
        .receivers()
        .iter()
        .map(|d| fs::metadata(d.base.join("big.bin")).unwrap().ino())
        .collect();
    assert_eq!(
        inodes, after,
        "an unchanged file was rewritten (renamed into place)"
    );
    // The default discovery is 500 ms; the rest of a no-op must be quick.
    assert!(
        r.elapsed < Duration::from_secs(3),
        "no-op took too long: {r}"
    );
}

/// A path that exists only on a receiver survives a plain sync and is removed by
/// `--delete`, which only reaches under the PATHs given; `--max-delete` counts per member.
#[test]
fn receiver_only_paths_survive_plain_sync_and_go_with_delete() {
    let c = Cluster::start(3);
    c.initial_sync();
    write(c.base("m2"), "extra.txt", "only on m2\n");
    write(c.base("m3"), "olddir/sub/f", "only on m3\n");
    write(c.base("m3"), "lib/stale.php", "only on m3\n");

    let r = c.sync("-r .");
    assert_eq!(r.code, 0, "{r}");
    assert!(c.base("m2").join("extra.txt").exists());
    assert!(c.base("m3").join("olddir/sub/f").exists());
    assert!(c.base("m3").join("lib/stale.php").exists());

    // Deleting under lib/ leaves the rest of the member alone.
    let r = c.sync("-r --delete lib");
    assert_eq!(r.code, 0, "{r}");
    assert!(!c.base("m3").join("lib/stale.php").exists());
    assert!(c.base("m3").join("olddir/sub/f").exists());
    assert!(c.base("m2").join("extra.txt").exists());

    // One deletion on each of two members under a limit of 1: the limit is per member.
    let r = c.sync("-r --delete --max-delete 1 --json .");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    let j = r.json();
    let deleted = |name: &str| {
        j["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {j}"))["deleted"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        (deleted("m1"), deleted("m2"), deleted("m3")),
        (0, 1, 1),
        "{r}"
    );
}

/// `--max-delete 0` with something to delete exits 25 and deletes nothing (the transfer
/// itself still happens, as in rsync).
#[test]
fn max_delete_zero_with_something_to_delete_exits_25_and_deletes_nothing() {
    let c = Cluster::start(3);
    c.initial_sync();
    write(c.base("m1"), "extra.txt", "only on m1\n");
    write(c.base("m2"), "olddir/f", "only on m2\n");
    fs::remove_file(c.src.join("a.txt")).unwrap();
    write(&c.src, "new.txt", "new\n");

    let r = c.sync("-r --delete --max-delete 0 .");
    assert_eq!(r.code, 25, "{r}");
    assert!(r.stderr.contains("--max-delete"), "{r}");
    for d in c.receivers() {
        assert!(d.base.join("a.txt").exists(), "{} lost a.txt", d.name);
        assert_eq!(fs::read(d.base.join("new.txt")).unwrap(), b"new\n");
    }
    assert!(c.base("m1").join("extra.txt").exists());
    assert!(c.base("m2").join("olddir/f").exists());
    assert_eq!(r.table(3).len(), 3, "{r}");
}

/// `-n` changes nothing and prints rsync-style itemized lines; the paths it lists are exactly
/// the paths the real run then changes, member by member.
#[test]
fn dry_run_changes_nothing_and_lists_what_the_real_run_changes() {
    let c = Cluster::start(3);
    c.initial_sync();
    // Content and size change (and a new mtime).
    write(&c.src, "a.txt", "hello, longer\n");
    set_mtime(&c.src.join("a.txt"), 1_600_000_000);
    // Only the mtime changes.
    set_mtime(&c.src.join("lib/notes.txt"), 1_500_000_000);
    // New file, new directory with a file, a file removed from SRC.
    write(&c.src, "new.php", "<?php // new\n");
    write(&c.src, "newdir/x.txt", "x\n");
    fs::remove_file(c.src.join("many/f03.txt")).unwrap();
    // Paths only on one receiver.
    write(c.base("m2"), "extra.txt", "only on m2\n");
    write(c.base("m3"), "olddir/sub/f", "only on m3\n");

    let before = c.snapshots();
    let r = c.sync("-r -n --delete .");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(c.snapshots(), before, "-n changed a receiver");
    let rows = r.table(3);
    assert_eq!(names(&rows), c.receiver_names(), "{r}");

    let listed: BTreeSet<&str> = r.before_table(3).into_iter().collect();
    let want: BTreeSet<&str> = [
        ">f.st...... a.txt",
        ">f..t...... lib/notes.txt",
        ">f+++++++++ new.php",
        "cd+++++++++ newdir/",
        ">f+++++++++ newdir/x.txt",
        "*deleting many/f03.txt",
        "*deleting extra.txt  [m2]",
        "*deleting olddir  [m3]",
    ]
    .into_iter()
    .collect();
    assert_eq!(listed, want, "{r}");

    // What each member would get, from the itemized lines: `[names]` restricts a line.
    let mut per_member: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in &listed {
        let (change, who) = match line.split_once("  [") {
            Some((l, w)) => (l, Some(w.trim_end_matches(']'))),
            None => (*line, None),
        };
        let path = change.split_once(' ').unwrap().1.trim_end_matches('/');
        for d in c.receivers() {
            if who.is_none_or(|w| w.split(',').any(|n| n == d.name)) {
                per_member
                    .entry(d.name.clone())
                    .or_default()
                    .insert(path.to_string());
            }
        }
    }

    let r = c.sync("-r --delete .");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    let after = c.snapshots();
    for (name, b) in &before {
        let did = changed(b, &after[name]);
        let listed = &per_member[name];
        // A deleted directory is listed once; everything under it goes with it.
        let covered = |p: &String| {
            listed.contains(p) || listed.iter().any(|l| p.starts_with(&format!("{l}/")))
        };
        assert!(
            did.iter().all(covered),
            "{name}: changed {did:?}, -n listed {listed:?}"
        );
        assert!(
            listed.iter().all(|l| did.contains(l)),
            "{name}: -n listed {listed:?}, changed {did:?}"
        );
    }
}

/// `--exclude` keeps excluded paths off the receivers, and protects receiver paths that match
/// it from `--delete`.
#[test]
fn exclude_keeps_paths_off_receivers_and_protects_them_from_delete() {
    let c = Cluster::start(3);
    let r = c.sync("-r --exclude *.log --exclude cache/ .");
    assert_eq!(r.code, 0, "{r}");
    let src = snapshot(&c.src);
    let want: Tree = src
        .iter()
        .filter(|(p, _)| !p.ends_with(".log") && !p.starts_with("cache"))
        .map(|(p, n)| (p.clone(), n.clone()))
        .collect();
    assert!(
        want.len() + 5 == src.len(),
        "3 logs, cache/ and its 2 pages"
    );
    for d in c.receivers() {
        assert_same(&want, &snapshot(&d.base), &d.name);
    }

    write(c.base("m1"), "local.log", "m1's own log\n");
    write(c.base("m1"), "cache/local.html", "m1's own cache\n");
    let r = c.sync("-r --delete --exclude *.log --exclude cache/ .");
    assert_eq!(r.code, 0, "{r}");
    assert!(c.base("m1").join("local.log").exists());
    assert!(c.base("m1").join("cache/local.html").exists());
    assert!(!c.base("m1").join("lib/access.log").exists());
}

/// Filter rules apply in command-line order and the first match wins (rsync): include every
/// directory and `*.php`, exclude the rest, sends only PHP files; the same rules in another
/// order send nothing.
#[test]
fn include_exclude_order_matters() {
    let c = Cluster::start(3);
    let r = c.sync("-r --exclude * --include */ --include *.php .");
    assert_eq!(r.code, 0, "{r}");
    for d in c.receivers() {
        assert_eq!(snapshot(&d.base), Tree::new(), "{}: {r}", d.name);
    }

    let r = c.sync("-r --include */ --include *.php --exclude * .");
    assert_eq!(r.code, 0, "{r}");
    let want_files = set(&["index.php", "lib/util.php", "sub/deep/d.php"]);
    for d in c.receivers() {
        let t = snapshot(&d.base);
        let files: BTreeSet<String> = t
            .iter()
            .filter(|(_, n)| !matches!(n, Node::Dir { .. }))
            .map(|(p, _)| p.clone())
            .collect();
        assert_eq!(files, want_files, "{}", d.name);
        assert!(t.contains_key("sub/deep"), "directories are included");
        assert_eq!(
            fs::read(d.base.join("lib/util.php")).unwrap(),
            fs::read(c.src.join("lib/util.php")).unwrap()
        );
    }
}

/// `--exclude-from FILE` reads one rule a line, skips comments and blank lines, and honours
/// rsync's `+ ` prefix for includes.
#[test]
fn exclude_from_file_applies_its_rules() {
    let c = Cluster::start(3);
    let rules = c.dir.path().join("rules.txt");
    fs::write(
        &rules,
        "# keep logs and caches off the members\n\n*.log\n; but this one goes\n+ page2.html\ncache/*\n",
    )
    .unwrap();
    let r = c.direct(
        "sync",
        &["-r", "--exclude-from", rules.to_str().unwrap(), "."],
    );
    assert_eq!(r.code, 0, "{r}");
    for d in c.receivers() {
        let t = snapshot(&d.base);
        assert!(!t.keys().any(|p| p.ends_with(".log")), "{}: {t:?}", d.name);
        assert!(t.contains_key("cache/page2.html"), "{}", d.name);
        assert!(!t.contains_key("cache/page1.html"), "{}", d.name);
        assert!(t.contains_key("index.php") && t.contains_key("big.bin"));
    }

    let missing = c.dir.path().join("no-such-rules.txt");
    let r = c.direct(
        "sync",
        &["-r", "--exclude-from", missing.to_str().unwrap(), "."],
    );
    assert_eq!(r.code, 1, "a missing rules file is an error: {r}");
}

/// `--json`: stdout is exactly one JSON document with one entry per member and the
/// documented fields; its `exit` is the process's exit status.
#[test]
fn json_is_one_document_with_one_entry_per_member() {
    let c = Cluster::start(3);
    let r = c.sync("-r --json .");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    let j = r.json();
    for k in ["files", "bytes", "seconds", "exit"] {
        assert!(j[k].is_number(), "top-level {k} in {j}");
    }
    assert_eq!(j["exit"], 0);
    assert!(j["files"].as_u64().unwrap() > 20, "{j}");
    assert!(j["bytes"].as_u64().unwrap() > 300_000, "{j}");
    let members = j["members"].as_array().expect("members[]");
    assert_eq!(members.len(), 3, "{j}");
    let mut seen = BTreeSet::new();
    for m in members {
        for k in ["name", "address", "result", "files", "bytes", "error"] {
            assert!(m.get(k).is_some(), "member field {k} missing in {m}");
        }
        assert_eq!(m["address"], "127.0.0.1");
        assert_eq!(m["result"], "ok");
        assert!(m["error"].is_null());
        assert_eq!(m["bytes"], j["bytes"], "fresh member gets every byte");
        seen.insert(m["name"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, c.receiver_names());
    assert!(r.stderr.is_empty(), "{r}");
}

/// A receiver stopped (SIGSTOP) before the run makes it exit 23 and name that member as
/// failed, while the others get everything.
#[test]
fn stopped_receiver_fails_with_23_and_the_others_get_everything() {
    let c = Cluster::start(3);
    c.initial_sync();
    write(&c.src, "after-stop.txt", "sent while m3 sleeps\n");
    write(&c.src, "a.txt", "changed while m3 sleeps\n");

    // The others still pass m3 along in their heartbeats for a few seconds, so the sender
    // targets it and must wait the member timeout (5 s) before giving up on it.
    c.daemon("m3").signal(libc::SIGSTOP);
    let r = c.sync("-r .");
    let m3_got_it = c.base("m3").join("after-stop.txt").exists();
    c.daemon("m3").signal(libc::SIGCONT);

    assert_eq!(r.code, 23, "{r}");
    assert!(
        r.stderr.contains("m3"),
        "stderr names the failed member: {r}"
    );
    let rows = r.table(3);
    for row in &rows {
        if row.name == "m3" {
            assert!(row.result.starts_with("failed"), "{r}");
        } else {
            assert_eq!(row.result, "ok", "{r}");
        }
    }
    assert_eq!(names(&rows), c.receiver_names(), "{r}");
    assert!(!m3_got_it, "a stopped process wrote a file");
    let want = snapshot(&c.src);
    assert_same(&want, &snapshot(c.base("m1")), "m1");
    assert_same(&want, &snapshot(c.base("m2")), "m2");
    assert!(r.elapsed < Duration::from_secs(12), "{r}");
}

/// `-t NAME` pushes to that member only.
#[test]
fn target_pushes_to_that_member_only() {
    let c = Cluster::start(3);
    let r = c.sync("-r -t m2 .");
    assert_eq!(r.code, 0, "{r}");
    let rows = r.table(1);
    assert_eq!(rows[0].name, "m2", "{r}");
    assert_same(&snapshot(&c.src), &snapshot(c.base("m2")), "m2");
    assert_eq!(snapshot(c.base("m1")), Tree::new());
    assert_eq!(snapshot(c.base("m3")), Tree::new());
}

/// With no member answering, sync exits 10 (text or JSON) and `members` too.
#[test]
fn no_member_answering_exits_10() {
    let dir = tempfile::tempdir().unwrap();
    let group = random_group();
    let port = free_udp_port().to_string();
    let base = dir.path().to_str().unwrap();
    let net = [
        "-m",
        &group,
        "-p",
        &port,
        "-i",
        "127.0.0.1",
        "--discover",
        "200",
    ];

    let mut a = vec!["sync", "--direct", "-b", base, "-r"];
    a.extend(net);
    a.push(".");
    let r = makuo(&a);
    assert_eq!(r.code, 10, "{r}");
    assert!(r.stderr.contains("no member answered"), "{r}");

    a.insert(1, "--json");
    let r = makuo(&a);
    assert_eq!(r.code, 10, "{r}");
    let j = r.json();
    assert_eq!(j["exit"], 10);
    assert_eq!(j["members"].as_array().map(Vec::len), Some(0), "{j}");

    let mut a = vec!["members", "--direct"];
    a.extend(net);
    let r = makuo(&a);
    assert_eq!(r.code, 10, "{r}");
    assert_eq!(r.stdout, "", "{r}");
}

/// Usage errors exit 1 before anything touches the network.
#[test]
fn usage_errors_exit_1() {
    for args in [
        &["sync"][..],
        &["sync", "--bogus", "."],
        &["sync", "--max-delete", "1", "."],
        &["sync", "--direct", "--console", "127.0.0.1:1", "."],
        &["sync", "--bwlimit", "2Q", "."],
        &["check", "--direct", "--mtu", "100"],
        &["members", "--direct", "--direct"],
    ] {
        let r = makuo(args);
        assert_eq!(r.code, 1, "makuo {args:?}: {r}");
        assert!(!r.stderr.is_empty(), "makuo {args:?} says why: {r}");
    }
}

// ---------------------------------------------------------------------------------------------
// check and members
// ---------------------------------------------------------------------------------------------

/// `check --direct` exits 0 when every receiver matches and 23, naming the member and the
/// path, when one file's contents differ though size and mtime match; a plain sync does not
/// see that difference, `sync -c` repairs it.
#[test]
fn check_exits_0_when_all_match_and_23_naming_member_and_path() {
    let c = Cluster::start(3);
    c.initial_sync();
    let r = c.check("-r .");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.table(3).len(), 3, "{r}");
    assert_eq!(r.before_table(3), Vec::<&str>::new(), "{r}");

    // Same size, same mtime, other contents.
    let p = c.base("m2").join("lib/util.php");
    let md = fs::metadata(&p).unwrap();
    let mut data = fs::read(&p).unwrap();
    data[0] ^= 0x20;
    fs::write(&p, &data).unwrap();
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(md.modified().unwrap())
        .unwrap();

    let r = c.check("-r .");
    assert_eq!(r.code, 23, "{r}");
    assert_eq!(r.before_table(3), ["lib/util.php m2"], "{r}");
    for row in r.table(3) {
        let want = if row.name == "m2" { "differ" } else { "ok" };
        assert_eq!(row.result, want, "{r}");
    }

    let r = c.sync("-r .");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(
        fs::read(&p).unwrap(),
        data,
        "quick check skips same size and mtime"
    );

    let r = c.sync("-r -c .");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    let r = c.check("-r .");
    assert_eq!(r.code, 0, "{r}");
}

/// `members --direct` lists the three daemons, live.
#[test]
fn members_direct_lists_the_daemons() {
    let c = Cluster::start(3);
    let mut a: Vec<String> = vec!["members".into(), "--direct".into()];
    a.extend(c.net());
    let r = makuo(&a);
    assert_eq!(r.code, 0, "{r}");
    let mut seen = BTreeSet::new();
    for l in r.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(&w[1..3], ["127.0.0.1", "live"], "{r}");
        seen.insert(w[0].to_string());
    }
    assert_eq!(seen, c.receiver_names(), "{r}");
    assert_eq!(r.lines().len(), 3, "{r}");
}

// ---------------------------------------------------------------------------------------------
// Through a daemon
// ---------------------------------------------------------------------------------------------

/// With a daemon answering on `--console`, `sync --console ADDR -r .` (no -b/-m/-p/-i) goes
/// through it, and gives the same table and exit codes as direct mode.
#[test]
fn console_mode_goes_through_the_daemon_with_the_same_table_and_exits() {
    let mut c = Cluster::start(3);
    let src = c.src.clone();
    let console = format!("127.0.0.1:{}", c.add_daemon("sender", &src).console);
    // Wait until the sending daemon has heard the three receivers.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let r = via(&console, "members", "");
        assert_eq!(r.code, 0, "{r}");
        let live = r.lines().iter().filter(|l| l.contains(" live ")).count();
        if live == 3 {
            assert!(r.lines()[0].starts_with("sender 127.0.0.1 self"), "{r}");
            break;
        }
        assert!(Instant::now() < end, "sender never saw 3 members: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let r = via(&console, "sync", "-r .");
    assert_eq!(r.code, 0, "{r}");
    let rows = r.table(3);
    assert_eq!(names(&rows), c.receiver_names(), "{r}");
    assert!(
        rows.iter().all(|row| row.result == "ok" && row.files > 0),
        "{r}"
    );
    c.assert_all_identical();

    write(c.base("m2"), "extra.txt", "only on m2\n");
    let r = via(&console, "sync", "-r -n --delete .");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.before_table(3), ["*deleting extra.txt  [m2]"], "{r}");
    assert!(c.base("m2").join("extra.txt").exists());

    let r = via(&console, "sync", "-r --delete --max-delete 0 --json .");
    assert_eq!(r.code, 25, "{r}");
    assert_eq!(r.json()["exit"], 25);
    assert_eq!(r.json()["members"].as_array().unwrap().len(), 3);
    assert!(c.base("m2").join("extra.txt").exists());

    let r = via(&console, "sync", "-r --delete --exclude *.log .");
    assert_eq!(r.code, 0, "{r}");
    assert!(!c.base("m2").join("extra.txt").exists());

    write(&c.src, "new.txt", "new\n");
    let r = via(&console, "sync", "-r -t m2 .");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(names(&r.table(1)), set(&["m2"]), "{r}");
    assert!(c.base("m2").join("new.txt").exists());
    assert!(!c.base("m1").join("new.txt").exists());
    let r = via(&console, "sync", "-r .");
    assert_eq!(r.code, 0, "{r}");

    let r = via(&console, "check", "-r");
    assert_eq!(r.code, 0, "{r}");
    write(c.base("m1"), "a.txt", "not what SRC has\n");
    let r = via(&console, "check", "-r");
    assert_eq!(r.code, 23, "{r}");
    assert_eq!(r.before_table(3), ["a.txt m1"], "{r}");

    // An explicit console nobody answers on is an error, not a silent fallback to direct.
    let dead = format!("127.0.0.1:{}", free_tcp_port());
    let r = makuo(&["sync", "--console", &dead, "-r", "."]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("no daemon answers"), "{r}");
}
