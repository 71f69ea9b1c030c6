//! Integration tests of the release switch (issue 17): `makuo sync --release NAME` pushes into
//! `releases/<push-id>/` on every member (unchanged files hard-linked from the release
//! before), switches the link `NAME` everywhere or nowhere, and `makuo rollback NAME` switches
//! it back. Real `makuo` binaries on loopback (distinct bases), through the shared fixtures in
//! `tests/common/mod.rs`; every wait is bounded.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Where link `name` in `base` points (`releases/<push-id>`), asserting it is a relative
/// release link.
fn link_of(base: &Path, name: &str) -> String {
    let t = fs::read_link(base.join(name))
        .unwrap_or_else(|e| panic!("{}/{name} is not a link: {e}", base.display()));
    let t = t.to_string_lossy().into_owned();
    assert!(
        t.starts_with("releases/") && !t[9..].contains('/'),
        "{name} -> {t} is not a relative release link"
    );
    t
}

fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .ino()
}

/// Must show: "`makuo sync --release current -r .` twice with a change between: on every
/// member `current` points at the second release, unchanged files share inodes between the
/// two releases, and `makuo rollback current` makes every member point at the first." Also:
/// the release holds the whole tree, `check` and a later `--delete` push leave `releases/`
/// and the link alone, and a NAME that is a real directory is refused, not replaced.
#[test]
fn two_releases_share_unchanged_inodes_and_rollback_switches_everywhere() {
    let c = Cluster::start(3);
    let r = c.sync("--release current -r .");
    assert_eq!(r.code, 0, "{r}");
    let first: Vec<String> = c
        .receivers()
        .iter()
        .map(|d| link_of(&d.base, "current"))
        .collect();
    assert!(
        first.iter().all(|l| *l == first[0]),
        "same push id: {first:?}"
    );
    for d in c.receivers() {
        assert_same(
            &fingerprint(&c.src),
            &fingerprint(&d.base.join("current/")),
            &d.name,
        );
    }

    // A change between: one file changed, one added, one removed (with --delete).
    let old_index = fs::read(c.src.join("index.php")).unwrap();
    write(&c.src, "index.php", "<?php echo 'v2';\n");
    write(&c.src, "added.txt", "new in the second release\n");
    fs::remove_file(c.src.join("a.txt")).unwrap();
    let r = c.sync("--release current --delete -r .");
    assert_eq!(r.code, 0, "{r}");
    for d in c.receivers() {
        let second = link_of(&d.base, "current");
        assert_ne!(second, first[0], "{}: current did not move", d.name);
        let (r1, r2) = (d.base.join(&first[0]), d.base.join(&second));
        assert_same(&fingerprint(&c.src), &fingerprint(&r2), &d.name);
        // Unchanged files are the same inodes in both releases; changed ones are not.
        let mut shared = 0;
        for rel in paths(&c.src) {
            let rel = rel.as_path();
            let (a, b) = (r1.join(rel), r2.join(rel));
            let md = fs::symlink_metadata(c.src.join(rel)).unwrap();
            if !md.is_file() || !a.exists() {
                continue;
            }
            if rel == Path::new("index.php") {
                assert_ne!(
                    ino(&a),
                    ino(&b),
                    "{}: changed file shares its inode",
                    d.name
                );
                assert_eq!(
                    fs::read(&a).unwrap(),
                    old_index,
                    "{}: the first release's index.php was written",
                    d.name
                );
            } else {
                assert_eq!(
                    ino(&a),
                    ino(&b),
                    "{}: {} not hard-linked",
                    d.name,
                    rel.display()
                );
                shared += 1;
            }
        }
        assert!(shared >= 5, "{}: only {shared} shared files", d.name);
        // The first release is untouched: a.txt is still there, added.txt is not.
        assert!(r1.join("a.txt").exists() && !r1.join("added.txt").exists());
    }

    // check does not report releases/ (makuo's), though the source has none. (It does report
    // the top-level paths: the members hold them under the release, not at the top.)
    let chk = c.check("-r .");
    assert!(
        chk.stdout.contains("index.php") && !chk.stdout.contains("releases"),
        "{chk}"
    );

    // makuo rollback current: every member back on the first release.
    let rb = c.direct("rollback", &["current"]);
    assert_eq!(rb.code, 0, "{rb}");
    for d in c.receivers() {
        assert_eq!(link_of(&d.base, "current"), first[0], "{}", d.name);
    }
    // Nothing before the first release: a second rollback fails everywhere, changes nothing.
    let rb = c.direct("rollback", &["current"]);
    assert_eq!(rb.code, 23, "{rb}");
    assert!(
        format!("{rb}").contains("not committed on any member"),
        "{rb}"
    );
    for d in c.receivers() {
        assert_eq!(link_of(&d.base, "current"), first[0], "{}", d.name);
    }

    // A plain --delete push of the whole base leaves releases/ and the link alone, though
    // the source has a symlink `current` of its own (-> lib): the result names it protected.
    let r = c.sync("--delete -r .");
    assert_eq!(r.code, 0, "{r}");
    assert!(r.result_of("m1").contains("protected: current"), "{r}");
    for d in c.receivers() {
        assert_eq!(link_of(&d.base, "current"), first[0], "{}", d.name);
        assert!(
            d.base.join("releases/.makuo-releases").exists(),
            "{}",
            d.name
        );
    }

    // A NAME that is a real directory is refused (exit 23, nothing switched), not replaced.
    fs::create_dir(c.base("m2").join("live")).unwrap();
    write(c.base("m2"), "live/keep.txt", "operator's own\n");
    let r = c.sync("--release live -r .");
    assert_eq!(r.code, 23, "{r}");
    assert!(r.result_of("m2").contains("not a release link"), "{r}");
    assert_eq!(
        fs::read_to_string(c.base("m2").join("live/keep.txt")).unwrap(),
        "operator's own\n"
    );
    for m in ["m1", "m3"] {
        assert!(!c.base(m).join("live").exists(), "{m} switched alone");
    }
}

/// Through a daemon's console (`sync --release`, and `rollback NAME` as a console word via
/// `makuo rollback --console`), with `--keep-releases 2` pruning old releases but never the
/// current one nor the one before it; m1's `--after-push` hook gets `MAKUO_RELEASE`.
#[test]
fn release_and_rollback_through_the_console_with_pruning() {
    let mut c = Cluster::new();
    small_site(&c.src);
    c.add(
        "m1",
        &[
            "--no-fsync",
            "--after-push",
            r#"printf '%s' "$MAKUO_RELEASE" > "$MAKUO_BASE/../release-env""#,
        ],
    );
    c.add("m2", &["--no-fsync"]);
    let env_file = c.base("m1").parent().unwrap().join("release-env");
    let src = c.src.clone();
    let s = c.add_sender("s", &src, &["--no-fsync", "--no-receive"]);
    c.wait_converged(s);
    let mut links = Vec::new();
    for gen in 0..4 {
        write(&c.src, "gen.txt", format!("{gen}\n"));
        let r = c.daemons[s].sync(&["--release", "web", "--keep-releases", "2"]);
        assert_eq!(r.code, 0, "{r}");
        links.push(link_of(c.base("m1"), "web"));
        assert_eq!(link_of(c.base("m2"), "web"), links[gen]);
        assert_eq!(
            fs::read_to_string(&env_file).unwrap(),
            links[gen],
            "MAKUO_RELEASE"
        );
    }
    for d in c.receivers() {
        let mut kept: Vec<String> = fs::read_dir(d.base.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .map(|n| format!("releases/{n}"))
            .collect();
        kept.sort();
        let mut want = vec![links[2].clone(), links[3].clone()];
        want.sort();
        assert_eq!(kept, want, "{}: kept releases", d.name);
    }
    let addr = c.daemons[s].console_addr();
    let rb = run(
        &mut c.daemons[s].command(&["rollback", "--console", &addr, "web"]),
        Duration::from_secs(60),
    );
    assert_eq!(rb.code, 0, "{rb}");
    assert_eq!(
        fs::read_to_string(&env_file).unwrap(),
        links[2],
        "MAKUO_RELEASE"
    );
    for d in c.receivers() {
        assert_eq!(link_of(&d.base, "web"), links[2], "{}", d.name);
        assert_eq!(
            fs::read_to_string(d.base.join("web/gen.txt")).unwrap(),
            "2\n"
        );
    }
    // A hostile name never reaches a member: refused by the front end and the console.
    let bad = run(
        &mut c.daemons[s].command(&["rollback", "--console", &addr, "../x"]),
        Duration::from_secs(30),
    );
    assert_ne!(bad.code, 0, "{bad}");
    let (_, last) = c.daemons[s].cmd("sync -r --release releases .");
    assert!(last.starts_with("error:"), "{last}");
}

/// Must show (failure case): one member cannot stage (its `releases/` made unwritable even
/// for root) → exit 23 `not committed on any member`, `current` unchanged everywhere, and
/// the others drop their staged release.
#[test]
fn a_member_that_cannot_stage_means_no_member_switches() {
    let c = Cluster::start(3);
    let r = c.sync("--release current -r .");
    assert_eq!(r.code, 0, "{r}");
    let first = link_of(c.base("m1"), "current");
    let listing = |b: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(b.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let before: Vec<Vec<PathBuf>> = c.receivers().iter().map(|d| listing(&d.base)).collect();
    write(&c.src, "index.php", "<?php echo 'v2';\n");
    let guard = Unwritable::new(&c.base("m2").join("releases"));
    let r = c.sync("--release current -r .");
    assert_eq!(r.code, 23, "{r}");
    assert!(
        format!("{r}").contains("not committed on any member"),
        "{r}"
    );
    assert!(r.result_of("m2").starts_with("failed: "), "{r}");
    for d in c.receivers() {
        assert_eq!(link_of(&d.base, "current"), first, "{} switched", d.name);
    }
    // Every member drops its staged release (bounded wait: the ABORT is on its way).
    wait_for("staged releases dropped", Duration::from_secs(10), || {
        let now: Vec<Vec<PathBuf>> = c.receivers().iter().map(|d| listing(&d.base)).collect();
        (now == before).then_some(())
    });
    drop(guard);
    let r = c.sync("--release current -r .");
    assert_eq!(r.code, 0, "{r}");
    for d in c.receivers() {
        assert_ne!(link_of(&d.base, "current"), first, "{}", d.name);
    }
}

/// Files of each generation: `N` files all holding the same generation line.
const FILES: usize = 8;

fn write_generation(src: &Path, gen: u64) {
    for i in 0..FILES {
        // Padding makes each file several blocks, so an in-place update would be visible
        // half done too; the first line is the generation.
        let body = format!("{gen}\n{}", "x".repeat(8192 + i * 100));
        write(src, &format!("gen/f{i}.txt"), body);
    }
}

/// Target: "A reader looping over a `--release` tree during pushes never sees a mix of two
/// releases (tens of thousands of reads, zero mixed)."
///
/// The reader does what a web server with PHP's opcache (or any realpath cache) does: it
/// resolves the link once per request (`readlink(current)`), then reads every file of that
/// request under the resolved release directory. Each sweep reads all `FILES` files and
/// counts as mixed when their generations differ. Were files updated in place (or the link
/// switched before the release was complete), a sweep would see two generations: the check
/// fails on the first such sweep. (A reader that resolves `current/` anew for every file
/// can straddle a switch between two files by its own doing; resolving once per request is
/// what the release link is for, and what opcache's realpath cache does.) Only reads made
/// while pushes run are counted.
#[test]
fn a_reader_never_sees_a_mix_of_two_releases() {
    let mut c = Cluster::new();
    for m in ["m1", "m2", "m3"] {
        c.add(m, &["--no-fsync"]);
    }
    write_generation(&c.src, 0);
    let r = c.sync("--release current -r .");
    assert_eq!(r.code, 0, "{r}");
    let base = c.base("m2").to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, reads, base) = (stop.clone(), reads.clone(), base.clone());
        std::thread::spawn(move || {
            let mut sweeps = 0u64;
            let mut mixed = Vec::new();
            let mut gens = std::collections::BTreeSet::new();
            let deadline = Instant::now() + Duration::from_secs(240);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok(target) = fs::read_link(base.join("current")) else {
                    continue;
                };
                let dir = base.join(&target);
                let mut seen = Vec::with_capacity(FILES);
                for i in 0..FILES {
                    let text = fs::read_to_string(dir.join(format!("gen/f{i}.txt")))
                        .unwrap_or_else(|e| panic!("{}: f{i} unreadable: {e}", dir.display()));
                    reads.fetch_add(1, Ordering::Relaxed);
                    let g: u64 = text.lines().next().unwrap().parse().unwrap();
                    seen.push(g);
                }
                sweeps += 1;
                gens.insert(seen[0]);
                if seen.iter().any(|&g| g != seen[0]) {
                    mixed.push(seen);
                }
            }
            (sweeps, mixed, gens)
        })
    };
    let mut pushes = 0;
    for gen in 1..=6u64 {
        write_generation(&c.src, gen);
        let r = c.sync("--release current -r .");
        assert_eq!(r.code, 0, "{r}");
        pushes += 1;
    }
    let n = reads.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let (sweeps, mixed, gens) = reader.join().unwrap();
    eprintln!("{pushes} pushes, {sweeps} sweeps, {n} reads, generations seen {gens:?}");
    assert!(n >= 20_000, "only {n} reads");
    assert!(
        mixed.is_empty(),
        "mixed sweeps: {:?}",
        &mixed[..mixed.len().min(5)]
    );
    assert!(
        gens.len() >= 2,
        "the reader saw only {gens:?}: it did not run during the pushes"
    );
    for d in c.receivers() {
        let t = link_of(&d.base, "current");
        assert_eq!(
            fs::read_to_string(d.base.join(&t).join("gen/f0.txt"))
                .unwrap()
                .lines()
                .next(),
            Some("6")
        );
    }
}
