//! `makuo demo`: the main job end to end on this one machine.
//!
//! Starts N receiving daemons on loopback (each with its own base, state dir, console port
//! and name; a random group in 239.255.0.0/16 and `-i 127.0.0.1`, so nothing leaves the
//! host; a cluster key made for the run, as `makuo keygen` would), generates a docroot-like tree, pushes it with `makuo sync --direct`, prints the
//! per-member result, verifies every member byte for byte, and cleans up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::DemoArgs;
use crate::exit::Exit;
use crate::filter::Filter;
use crate::tree::{walk, WalkOptions};

struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &mut self.0 {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for c in &mut self.0 {
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rand_u64() -> u64 {
    crate::node::random_node_id()
}

fn gen_tree(dir: &Path, files: u32) -> Result<u64> {
    let mut x = rand_u64();
    let mut total = 0u64;
    for i in 0..files {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = match x % 10 {
            0 => 0,
            1..=6 => (x >> 8) % 4096,
            7..=8 => 4096 + (x >> 8) % 32768,
            _ => 32768 + (x >> 8) % 300_000,
        } as usize;
        let p = dir.join(format!("site/d{}/s{}/page{i}.php", i % 13, i % 4));
        std::fs::create_dir_all(p.parent().unwrap())?;
        let body: Vec<u8> = (0..size)
            .map(|k| (k as u64 ^ x.rotate_left((k % 64) as u32)) as u8)
            .collect();
        std::fs::write(&p, &body)?;
        total += size as u64;
    }
    std::fs::create_dir_all(dir.join("site/empty"))?;
    std::os::unix::fs::symlink("d1", dir.join("site/current"))?;
    Ok(total)
}

/// What must match between source and member: path, kind, size, mode, mtime, MD5, link.
type Print = (Vec<u8>, u8, u64, u32, i64, Option<[u8; 16]>, Vec<u8>);

fn fingerprint(base: &Path) -> Result<Vec<Print>> {
    let w = walk(
        base,
        &[b".".to_vec()],
        &WalkOptions {
            recursive: true,
            checksum: true,
            kinds: crate::kinds::KindOptions::NONE,
        },
        &mut Filter::default(),
    )?;
    Ok(w.entries
        .into_iter()
        .map(|e| {
            let mtime = if e.kind == crate::proto::manifest::EntryKind::Dir {
                0
            } else {
                e.mtime
            };
            (
                e.path,
                e.kind as u8,
                e.size,
                e.mode,
                mtime,
                e.checksum,
                e.target,
            )
        })
        .collect())
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> Result<Exit> {
    let exe = std::env::current_exe().context("cannot find the makuo binary")?;
    let tmp = tempdir()?;
    let r = rand_u64();
    let group = format!("239.255.{}.{}", (r >> 8) as u8, (r as u8).max(1));
    let port = 20000 + (r >> 16) as u16 % 20000;
    let src = tmp.join("src");
    std::fs::create_dir_all(&src)?;
    let bytes = gen_tree(&src, args.files)?;
    // Keyed, as a real cluster is: a fresh key for this run only.
    let key = tmp.join("cluster.key");
    crate::seal::write_key_file(&key, &crate::seal::Key::generate()?)?;
    println!(
        "demo: {} files, {bytes} bytes in {}",
        args.files,
        src.display()
    );
    println!(
        "demo: {} daemons on loopback, group {group}:{port}, -i 127.0.0.1, keyed (-k {})",
        args.members,
        key.display()
    );
    let mut daemons = Daemons(Vec::new());
    let mut bases = Vec::new();
    for i in 1..=args.members {
        let base = tmp.join(format!("member{i}"));
        std::fs::create_dir_all(&base)?;
        let console = port.wrapping_add(1000 + i).max(1024);
        let child = Command::new(&exe)
            .args([
                "daemon",
                "-n",
                "-i",
                "127.0.0.1",
                "-m",
                &group,
                "-p",
                &port.to_string(),
            ])
            .arg("-b")
            .arg(&base)
            .arg("-k")
            .arg(&key)
            .arg("--state-dir")
            .arg(tmp.join(format!("state{i}")))
            .args([
                "--name",
                &format!("member{i}"),
                "-P",
                &console.to_string(),
                "--no-fsync",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start a daemon")?;
        daemons.0.push(child);
        bases.push(base);
    }
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let status = Command::new(&exe)
        .args([
            "sync",
            "--direct",
            "--interface",
            "127.0.0.1",
            "-m",
            &group,
            "-p",
            &port.to_string(),
            "-r",
        ])
        .arg("-b")
        .arg(&src)
        .arg("-k")
        .arg(&key)
        .arg("--discover")
        .arg("700")
        .arg(".")
        .status()
        .context("cannot run makuo sync")?;
    println!(
        "demo: sync exited {} after {:.2}s",
        status.code().unwrap_or(-1),
        started.elapsed().as_secs_f64()
    );
    let want = fingerprint(&src)?;
    let mut ok = status.success();
    for (i, b) in bases.iter().enumerate() {
        let got = fingerprint(b)?;
        if got == want {
            println!(
                "demo: member{} identical to the source ({} entries)",
                i + 1,
                got.len()
            );
        } else {
            ok = false;
            let diff = want.iter().filter(|e| !got.contains(e)).count()
                + got.iter().filter(|e| !want.contains(e)).count();
            println!(
                "demo: member{} DIFFERS from the source ({diff} entries)",
                i + 1
            );
        }
    }
    drop(daemons);
    if args.keep {
        println!("demo: kept {}", tmp.display());
    } else {
        std::fs::remove_dir_all(&tmp)?;
    }
    if ok {
        println!("demo: ok");
        Ok(Exit::Ok)
    } else {
        bail!("demo failed")
    }
}

fn tempdir() -> Result<PathBuf> {
    let base = std::env::temp_dir().join(format!("makuo-demo-{:x}", rand_u64()));
    std::fs::create_dir_all(&base)?;
    Ok(base)
}
