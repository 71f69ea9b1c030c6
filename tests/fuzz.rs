//! Seeded mutation fuzzer for everything that takes bytes from the network, on stable Rust.
//!
//! Corpus: real datagrams captured from an in-process push on the simulated LAN
//! (`tests/sim/lan.rs`), plus structured random messages and whole structured transfers
//! (announce, manifest, plan, payload, parity, poll, commit) built with `wire::Msg::encode`
//! around hostile manifests (symlink tricks, pre-planted escape links, set-id modes, special
//! files, huge sizes). Mutations: bit flips, byte overwrites, truncation, extension, length
//! fields forced to extremes, chunk deletion and duplication, splicing two datagrams, header
//! fields rewritten.
//!
//! Three targets:
//! - **decoder**: `wire::decode` on every input; what decodes must re-encode to the same bytes
//!   (the encoding is canonical), and mutated manifests go through `Manifest::decode`;
//! - **engine + file application**: an `Engine<FsStorage>` whose base is a temp dir, fed
//!   sequences that open, fill and commit transfers (so files really get applied), mutated;
//! - **sealing**: `Sealer::open` of a receiver among live senders that seal corpus datagrams
//!   and answer its challenges (CHALLENGE and RESPONSE, the sealing layer's own messages),
//!   with the fuzzer as their network (loss, duplication, replays, misaddressing, mutation),
//!   a key holder forging handshakes, another key, unsealed and other-format datagrams and
//!   noise, and restarts of receiver and senders: only a genuine datagram opens, once ever, to
//!   exactly what was sealed, and only above its sender's answer to this receiver's challenge.
//!
//! Asserted: no panic; no hang (a watchdog aborts after 60 s without progress); every
//! datagram counted as accepted, dropped or own (`Stats`); the engine's own output always
//! decodes; bounded transfers, members and memory (a counting allocator: no single allocation
//! above 64 MiB, peak below 512 MiB); after the run nothing outside the base changed, no
//! staged file is left, no set-id file or special file was created.
//!
//! Run: `cargo test --release --test fuzz` (200 000 cases, a few seconds).
//! `MAKUO_FUZZ_CASES=N` for a longer run, `MAKUO_FUZZ_SEED=S` (decimal, 0x-hex or `random`)
//! to pick the seed; the seed and the failing case are printed on failure.

#[path = "sim/lan.rs"]
#[allow(dead_code)]
mod lan;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lan::{Faults, Lan, Rng};
use makuo::apply::{ApplyOptions, FsStorage};
use makuo::proto::limits::MAX_INBOUND_MEMORY;
use makuo::proto::manifest::{
    DevNum, DirRules, Entry, EntryKind, Extents, FilterRule, FilterTable, Manifest, PushOptions,
    WireRule, Xattr,
};
use makuo::proto::repair::Code;
use makuo::proto::storage::MemStorage;
use makuo::proto::wire::{self, Header, Msg, Stream};
use makuo::proto::{Engine, Event, MAX_INBOUND, MAX_MEMBERS};
use makuo::seal::{Key, Opened, SealError, SealStats, Sealer};

// ---------------------------------------------------------------------------------------------
// Memory accounting: a counting global allocator.

/// No single allocation may be larger than this.
const MAX_ALLOC: usize = 64 << 20;
/// Live heap may never exceed this.
const MAX_PEAK: usize = 512 << 20;
/// Allocations above this are refused outright (the process aborts with a message) rather
/// than risk taking the shared machine down.
const HARD_ALLOC: usize = 1 << 30;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static BIGGEST: AtomicUsize = AtomicUsize::new(0);

struct Counting;

thread_local! {
    static IN_REPORT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn note_alloc(n: usize) {
    if n > MAX_ALLOC && BIGGEST.load(Relaxed) <= MAX_ALLOC && !IN_REPORT.get() {
        // The first oversized allocation: say where it came from (the report allocates,
        // hence the guard).
        IN_REPORT.set(true);
        let bt = std::backtrace::Backtrace::force_capture();
        eprintln!("fuzz: allocation of {n} bytes at {}:\n{bt}", where_());
        IN_REPORT.set(false);
    }
    BIGGEST.fetch_max(n, Relaxed);
    let live = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(live, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() > HARD_ALLOC {
            BIGGEST.fetch_max(l.size(), Relaxed);
            return std::ptr::null_mut();
        }
        let p = System.alloc(l);
        if !p.is_null() {
            note_alloc(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if l.size() > HARD_ALLOC {
            BIGGEST.fetch_max(l.size(), Relaxed);
            return std::ptr::null_mut();
        }
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            note_alloc(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > HARD_ALLOC {
            BIGGEST.fetch_max(new, Relaxed);
            return std::ptr::null_mut();
        }
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), Relaxed);
            note_alloc(new);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Run parameters, progress and failure reporting.

const DEFAULT_SEED: u64 = 0x6d61_6b75_6f66_757a;
const DEFAULT_CASES: u64 = 200_000;

static CASE: AtomicU64 = AtomicU64::new(0);
static SEED: AtomicU64 = AtomicU64::new(0);
static PHASE: AtomicUsize = AtomicUsize::new(0);
const PHASES: [&str; 4] = ["setup", "engine", "seal", "decode"];

fn params() -> (u64, u64) {
    let seed = match std::env::var("MAKUO_FUZZ_SEED") {
        Ok(s) if s == "random" => {
            let mut b = [0u8; 8];
            getrandom::getrandom(&mut b).unwrap();
            u64::from_le_bytes(b)
        }
        Ok(s) => match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => s.parse(),
        }
        .expect("MAKUO_FUZZ_SEED: a number, 0x-hex, or `random`"),
        Err(_) => DEFAULT_SEED,
    };
    let cases = std::env::var("MAKUO_FUZZ_CASES")
        .map(|s| s.parse().expect("MAKUO_FUZZ_CASES: a number"))
        .unwrap_or(DEFAULT_CASES);
    (seed, cases)
}

fn where_() -> String {
    format!(
        "phase {} case {} (reproduce with MAKUO_FUZZ_SEED={:#x})",
        PHASES[PHASE.load(Relaxed)],
        CASE.load(Relaxed),
        SEED.load(Relaxed)
    )
}

/// Prints the seed and case before the default panic message.
fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("fuzz: PANIC at {}", where_());
        prev(info);
    }));
}

/// Aborts the process (with the seed and case) if no case completes for `limit`.
fn watchdog(limit: Duration) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let mut last = u64::MAX;
        let mut since = Instant::now();
        while !d.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let c = CASE.load(Relaxed) + ((PHASE.load(Relaxed) as u64) << 56);
            if c != last {
                last = c;
                since = Instant::now();
            } else if since.elapsed() > limit {
                eprintln!("fuzz: HANG: no progress for {limit:?} at {}", where_());
                std::process::abort();
            }
        }
    });
    done
}

fn check_memory() {
    let big = BIGGEST.load(Relaxed);
    assert!(
        big <= MAX_ALLOC,
        "an allocation of {big} bytes (limit {MAX_ALLOC}) at or before {}",
        where_()
    );
    let peak = PEAK.load(Relaxed);
    assert!(
        peak <= MAX_PEAK,
        "live heap reached {peak} bytes (limit {MAX_PEAK}) at or before {}",
        where_()
    );
}

// ---------------------------------------------------------------------------------------------
// Mutations.

fn pick<'a, T>(rng: &mut Rng, v: &'a [T]) -> &'a T {
    &v[rng.below(v.len() as u64) as usize]
}

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next() as u8).collect()
}

/// Random bytes of a random length below `max`.
fn noise(rng: &mut Rng, max: u64) -> Vec<u8> {
    let n = rng.below(max) as usize;
    random_bytes(rng, n)
}

/// Applies `n` random mutations to `d`; `other` supplies material for splicing.
fn mutate(rng: &mut Rng, d: &mut Vec<u8>, other: &[u8], n: u64) {
    for _ in 0..n {
        let len = d.len();
        let p = rng.below(len as u64 + 1) as usize;
        match rng.below(11) {
            0 | 1 => {
                if len > 0 {
                    let p = p.min(len - 1);
                    d[p] ^= 1 << rng.below(8);
                }
            }
            2 => {
                if len > 0 {
                    d[p.min(len - 1)] = rng.next() as u8;
                }
            }
            3 => d.truncate(p),
            4 => {
                let extra = noise(rng, 80);
                d.extend_from_slice(&extra);
            }
            5 => {
                // A length or count field forced to an extreme (1, 2, 4 or 8 bytes wide).
                let w = *pick(rng, &[1usize, 2, 4, 8]);
                if len >= w {
                    let p = p.min(len - w);
                    let v = *pick(rng, &[0x00u8, 0xff, 0x7f, 0x80, 0x01]);
                    d[p..p + w].fill(v);
                    if rng.chance(0.5) {
                        d[p + w - 1] = v ^ 0x80;
                    }
                }
            }
            6 => {
                // Splice: our head, another datagram's tail.
                if !other.is_empty() {
                    let q = rng.below(other.len() as u64) as usize;
                    d.truncate(p);
                    d.extend_from_slice(&other[q..]);
                }
            }
            7 => {
                // Delete a chunk.
                let n = rng.below(32) as usize;
                let end = (p + n).min(len);
                d.drain(p..end);
            }
            8 => {
                // Duplicate a chunk in place.
                let n = rng.below(32) as usize;
                let end = (p + n).min(len);
                let chunk = d[p..end].to_vec();
                let at = rng.below(d.len() as u64 + 1) as usize;
                d.splice(at..at, chunk);
            }
            9 => {
                // Header fields: version, kind, flags, key id.
                if len >= 6 {
                    let f = 2 + rng.below(4) as usize;
                    d[f] = match rng.below(3) {
                        0 => rng.below(16) as u8,
                        1 => 0xff,
                        _ => rng.next() as u8,
                    };
                }
            }
            _ => {
                // A varint-looking run: continuation bits everywhere.
                let n = 1 + rng.below(12) as usize;
                let end = (p + n).min(len);
                for b in &mut d[p..end] {
                    *b |= 0x80;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The decoder's own property: what decodes re-encodes to the same bytes.

fn check_decode(d: &[u8], scratch: &mut [u8]) -> bool {
    match wire::decode(d) {
        Ok((h, m)) => {
            let n = m.encode(&h, scratch);
            assert_eq!(
                &scratch[..n],
                d,
                "decode/encode not canonical for {m:?} at {}",
                where_()
            );
            true
        }
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The corpus: real datagrams of a push on the simulated LAN.

fn content(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Captures two pushes (a plain one, then a `--delete -c` one after changes) from node 0 to
/// nodes 1 and 2 under 3% loss, so every message kind appears. Returns the datagrams in send
/// order and the receiving node id the fuzzed engine impersonates (every announce targets it).
fn capture_corpus(seed: u64) -> (Vec<Vec<u8>>, u64) {
    let mut rng = Rng(seed);
    let mut src = MemStorage::new();
    for i in 0..60 {
        let size = match rng.below(8) {
            0 => 0,
            1..=5 => rng.below(3000) as usize,
            _ => 3000 + rng.below(40_000) as usize,
        };
        let path = format!("www/d{}/f{i}.html", i % 7);
        src.add_file(
            path.as_bytes(),
            content(&mut rng, size),
            0o644,
            1_600_000_000 + i,
        );
    }
    let mut lan = Lan::new(seed, Faults::lossy(0.03));
    lan.add("sender", src);
    lan.add("victim", MemStorage::new());
    lan.add("other", MemStorage::new());
    lan.drive(Duration::from_secs(5), |l| (0..3).all(|i| l.known(i) == 2));
    lan.capture = Some(Vec::new());
    let m = lan.nodes[0].engine.storage().manifest();
    let x = lan.push(0, &[1, 2], m);
    lan.drive(Duration::from_secs(30), |l| l.report(0, x).is_some());
    // Change some files, then push again with --delete -c.
    {
        let s = lan.nodes[0].engine.storage_mut();
        s.add_file(b"www/new/added.txt", content(&mut rng, 5000), 0o600, 7);
        s.tree.remove(b"www/d1/f1.html".as_slice());
    }
    let mut m = lan.nodes[0].engine.storage().manifest();
    m.options.delete = true;
    m.options.checksum = true;
    let x = lan.push(0, &[1, 2], m);
    lan.drive(Duration::from_secs(30), |l| l.report(0, x).is_some());
    let victim = lan.node_id(1);
    let corpus = lan.capture.take().unwrap();
    let kinds: HashSet<u8> = corpus.iter().map(|d| d[3]).collect();
    assert!(kinds.len() >= 11, "corpus has only kinds {kinds:?}");
    for k in [wire::kind::NAK, wire::kind::PACE, wire::kind::FEEDBACK] {
        assert!(kinds.contains(&k), "corpus lacks kind {k}: {kinds:?}");
    }
    (corpus, victim)
}

// ---------------------------------------------------------------------------------------------
// Structured messages and transfers.

const SENDERS: [u64; 3] = [
    0xa11c_e000_0000_0001,
    0xb0b0_0000_0000_0002,
    0xe5e5_0000_0000_0003,
];

fn header(node: u64, seq: u64) -> Header {
    Header {
        version: wire::VERSION,
        kind: 0,
        flags: 0,
        key_id: 0,
        cluster: 0,
        node,
        seq,
    }
}

fn encode(m: &Msg<'_>, node: u64, seq: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 70_000];
    let n = m.encode(&header(node, seq), &mut buf);
    buf.truncate(n);
    // A transfer's datagrams are all held at once: not 70 kB each.
    buf.shrink_to_fit();
    buf
}

/// Paths a hostile sender would try: through pre-planted symlinks (`escape`, `abs`), through
/// a symlink it creates itself (`lnk`), over the base itself, odd bytes, over-long names.
fn hostile_path(rng: &mut Rng) -> Vec<u8> {
    let long = |n: usize| format!("new/{}", "n".repeat(n)).into_bytes();
    match rng.below(22) {
        0 => b"new".to_vec(),
        1 => b"new/a.txt".to_vec(),
        2 => b"new/sub/b.bin".to_vec(),
        3 => b"site".to_vec(),
        4 => b"site/index.html".to_vec(),
        5 => b"escape".to_vec(),
        6 => b"escape/pwned".to_vec(),
        7 => b"abs/pwned".to_vec(),
        8 => b"abs/deep/pwned".to_vec(),
        9 => b"lnk".to_vec(),
        10 => b"lnk/pwned".to_vec(),
        11 => b"lnk/sub/pwned".to_vec(),
        12 => b".".to_vec(),
        13 => b"deep/1/2/3/4/5/6/f".to_vec(),
        14 => b"new/caf\xc3\xa9 \xff\xfe\n\r\t".to_vec(),
        15 => long(255),
        16 => long(300),
        17 => long(4090),
        18 => b"new/.f.makuo-AAAAAA".to_vec(),
        19 => b"escape/../pwned".to_vec(), // refused by the decoder
        20 => b"/etc/makuo-pwned".to_vec(), // refused by the decoder
        _ => format!("r{}/f{}", rng.below(4), rng.below(6)).into_bytes(),
    }
}

fn hostile_manifest(rng: &mut Rng, outside: &Path) -> Manifest {
    let outside = outside.as_os_str().as_encoded_bytes().to_vec();
    let mut entries = Vec::new();
    for _ in 0..1 + rng.below(10) {
        let path = hostile_path(rng);
        let kind = match rng.below(20) {
            0..=9 => EntryKind::File,
            10..=13 => EntryKind::Dir,
            14..=16 => EntryKind::Symlink,
            17 => EntryKind::Fifo,
            18 => EntryKind::Device,
            _ => EntryKind::HardLink,
        };
        let size = if kind != EntryKind::File {
            0
        } else {
            match rng.below(40) {
                0 => 1 << 40,
                1 => u64::MAX / 3,
                2 => (1 << 32) + 1,
                3 => 0,
                _ => rng.below(5000),
            }
        };
        let target = match rng.below(7) {
            0 => b"../outside".to_vec(),
            1 => outside.clone(),
            2 => b"/etc".to_vec(),
            3 => b"..".to_vec(),
            4 => b"new".to_vec(),
            5 => b"../../../../../../tmp".to_vec(),
            _ => noise(rng, 20),
        };
        entries.push(Entry {
            path,
            kind,
            size,
            mode: *pick(rng, &[0o644, 0o755, 0o4755, 0o6777, 0o1777, 0, 0o200]),
            mtime: match rng.below(4) {
                0 => i64::MIN,
                1 => i64::MAX,
                _ => 1_600_000_000 + rng.below(1000) as i64,
            },
            mtime_nsec: if rng.chance(0.2) {
                rng.below(1_000_000_000) as u32
            } else {
                0
            },
            uid: *pick(rng, &[0, 1000, u32::MAX]),
            gid: *pick(rng, &[0, 1000, u32::MAX]),
            target: if matches!(kind, EntryKind::Symlink | EntryKind::HardLink) {
                target
            } else {
                Vec::new()
            },
            checksum: if rng.chance(0.2) {
                Some([rng.next() as u8; 16])
            } else {
                None
            },
            ..Entry::default()
        });
    }
    if rng.chance(0.7) {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
    }
    let roots = if rng.chance(0.5) {
        vec![b".".to_vec()]
    } else {
        (0..1 + rng.below(2))
            .map(|_| pick(rng, &[&b"new"[..], b"site", b"escape", b"abs", b"lnk"]).to_vec())
            .collect()
    };
    let rules = (0..rng.below(3))
        .map(|_| FilterRule {
            include: rng.chance(0.3),
            pattern: pick(rng, &["*.tmp", "keep/**", "[", "site/index.html", "**"]).to_string(),
        })
        .collect();
    let mut m = Manifest {
        options: PushOptions {
            checksum: rng.chance(0.2),
            owners: rng.chance(0.3),
            delete: rng.chance(0.3),
            delete_only: rng.chance(0.05),
            dry_run: rng.chance(0.1),
            no_fsync: rng.chance(0.5),
            ..PushOptions::default()
        },
        roots,
        rules,
        entries,
        filter: rng.chance(0.3).then(|| hostile_table(rng)),
        started_ms: None,
    };
    hostile_kinds(rng, &mut m);
    m
}

/// A filter section as a hostile sender might write it: rules for any side, dir-merge lists
/// for odd directories, patterns that do not compile. Receivers must neither panic nor delete
/// outside the roots because of it.
fn hostile_table(rng: &mut Rng) -> FilterTable {
    let pats = [
        "*", "**", "/keep", "[", "r1/", "-! x", "*.tmp", "r0/***", "\\",
    ];
    let mut rules: Vec<WireRule> = (0..rng.below(4))
        .map(|_| WireRule {
            flags: rng.below(16) as u8,
            pattern: pick(rng, &pats).to_string(),
        })
        .collect();
    rules.push(WireRule {
        flags: WireRule::DIR_MERGE
            | if rng.chance(0.5) {
                WireRule::NO_INHERIT
            } else {
                0
            },
        pattern: ".rsync-filter".into(),
    });
    let merge = rules.len() as u32 - 1;
    let dirs = (0..rng.below(4))
        .map(|_| DirRules {
            merge,
            dir: pick(rng, &[&b"."[..], b"r0", b"r1", b"deep/1/2", b"new"]).to_vec(),
            clear: rng.chance(0.3),
            rules: (0..rng.below(3))
                .map(|_| WireRule {
                    flags: rng.below(16) as u8,
                    pattern: pick(rng, &pats).to_string(),
                })
                .collect(),
        })
        .collect();
    FilterTable { rules, dirs }
}

/// Datagrams of one stream: blocks, with some dropped and replaced by real parity.
#[allow(clippy::too_many_arguments)]
fn stream_datagrams(
    rng: &mut Rng,
    out: &mut Vec<Vec<u8>>,
    node: u64,
    seq: &mut u64,
    xfer: u32,
    stream: Stream,
    code: &Code,
    bytes: &[u8],
) {
    let nblocks = bytes.len().div_ceil(code.block);
    // (Making parity costs the encoder memory in proportion to the parity count: only for
    // counts an honest sender uses.)
    let drop_some = code.parity <= 1024 && rng.chance(0.3);
    for g in 0..nblocks.div_ceil(code.k as usize) {
        let first = g * code.k as usize;
        let last = (first + code.k as usize).min(nblocks);
        let mut dropped = 0u16;
        for i in first..last {
            if drop_some && dropped < code.parity && rng.chance(0.2) {
                dropped += 1;
                continue;
            }
            let data = &bytes[i * code.block..((i + 1) * code.block).min(bytes.len())];
            *seq += 1;
            out.push(encode(
                &Msg::Block {
                    xfer,
                    stream,
                    idx: i as u32,
                    data,
                },
                node,
                *seq,
            ));
        }
        if dropped > 0 {
            let sources: Vec<Vec<u8>> = (first..last)
                .map(|i| {
                    let mut b =
                        bytes[i * code.block..((i + 1) * code.block).min(bytes.len())].to_vec();
                    b.resize(code.block, 0);
                    b
                })
                .collect();
            if let Ok(par) = code.encode(&sources, 0..dropped) {
                for (j, p) in par.iter().enumerate() {
                    *seq += 1;
                    out.push(encode(
                        &Msg::Parity {
                            xfer,
                            stream,
                            group: g as u32,
                            index: j as u16,
                            data: p,
                        },
                        node,
                        *seq,
                    ));
                }
            }
        }
    }
}

/// A whole transfer to `victim`: announce, manifest, plan, payload, poll, commit (and
/// sometimes an abort or a repeated commit), as a well-formed sequence.
fn structured_transfer(rng: &mut Rng, victim: u64, outside: &Path, seq: &mut u64) -> Vec<Vec<u8>> {
    let node = *pick(rng, &SENDERS);
    let xfer = rng.next() as u32 | 1;
    let m = hostile_manifest(rng, outside);
    let mbytes = m.encode();
    let block = match rng.below(5) {
        0 => 16,
        1 => 64 + 2 * rng.below(64) as usize,
        2 => 1400,
        3 => 8000,
        _ => 16 + 2 * rng.below(4400) as usize,
    };
    let k = match rng.below(4) {
        0 => 1,
        1 => 4,
        2 => 128,
        _ => 1 + rng.below(1024) as u32,
    };
    let parity = match rng.below(6) {
        0 => 1,
        1 => 1 + rng.below(u16::MAX as u64) as u16,
        _ => k as u16,
    };
    let code = Code { block, k, parity };
    let mut targets = Vec::new();
    let others = rng.below(3);
    let pos = rng.below(others + 1) as usize;
    for i in 0..=others as usize {
        let id = if i == pos { victim } else { rng.next() };
        targets.extend_from_slice(&id.to_be_bytes());
    }
    let bit = |p: usize| {
        let mut v = vec![0u8; p / 8 + 1];
        v[p / 8] |= 1 << (p % 8);
        v
    };
    let pending = bit(pos);
    let mut out = Vec::new();
    *seq += 1;
    out.push(encode(
        &Msg::Announce(wire::Announce {
            xfer,
            block: block as u16,
            group: k as u16,
            parity,
            manifest_len: mbytes.len() as u64,
            total: (targets.len() / 8) as u16,
            first: 0,
            targets_raw: &targets,
            pending: &pending,
        }),
        node,
        *seq,
    ));
    stream_datagrams(
        rng,
        &mut out,
        node,
        seq,
        xfer,
        Stream::Manifest,
        &code,
        &mbytes,
    );
    // Plan: every entry (so whatever the victim needs is sent), or random bits.
    let n = m.entries.len();
    let plan: Vec<u8> = if rng.chance(0.8) {
        vec![0xff; n.div_ceil(8)]
    } else {
        random_bytes(rng, n.div_ceil(8))
    };
    stream_datagrams(rng, &mut out, node, seq, xfer, Stream::Plan, &code, &plan);
    let layout = makuo::proto::manifest::Layout::new(&m, &plan);
    if layout.len <= 1 << 20 {
        let payload = random_bytes(rng, layout.len as usize);
        stream_datagrams(
            rng,
            &mut out,
            node,
            seq,
            xfer,
            Stream::Payload,
            &code,
            &payload,
        );
    } else {
        for _ in 0..3 {
            *seq += 1;
            out.push(encode(
                &Msg::Block {
                    xfer,
                    stream: Stream::Payload,
                    idx: rng.below(1 << 24) as u32,
                    data: &random_bytes(rng, block),
                },
                node,
                *seq,
            ));
        }
    }
    *seq += 1;
    out.push(encode(
        &Msg::Poll {
            xfer,
            round: 1,
            pending: &pending,
        },
        node,
        *seq,
    ));
    if rng.chance(0.1) {
        *seq += 1;
        out.push(encode(
            &Msg::Abort {
                xfer,
                reason: b"fuzz",
            },
            node,
            *seq,
        ));
    }
    let vanished: Vec<u8> = if rng.chance(0.2) {
        (0..rng.below(4))
            .flat_map(|_| (rng.below(n as u64 + 2) as u32).to_be_bytes())
            .collect()
    } else {
        Vec::new()
    };
    for _ in 0..1 + rng.below(2) {
        *seq += 1;
        out.push(encode(
            &Msg::Commit {
                xfer,
                flags: if rng.chance(0.2) {
                    wire::COMMIT_NO_DELETE
                } else {
                    0
                },
                pending: &pending,
                vanished_raw: &vanished,
            },
            node,
            *seq,
        ));
    }
    out
}

/// Hand-made sequences for problems the fuzzer found, so every run covers them whatever the
/// seed: each is a list of datagrams to feed in order.
fn regressions(rng: &mut Rng, victim: u64, seq: &mut u64) -> Vec<Vec<Vec<u8>>> {
    let node = SENDERS[0];
    let me = victim.to_be_bytes();
    let mut next = || {
        *seq += 1;
        *seq
    };
    let announce = |xfer, block: u16, group, parity, manifest_len, seq| {
        encode(
            &Msg::Announce(wire::Announce {
                xfer,
                block,
                group,
                parity,
                manifest_len,
                total: 1,
                first: 0,
                targets_raw: &me,
                pending: &[1],
            }),
            node,
            seq,
        )
    };
    let mut out = Vec::new();
    // 1. A 4 GiB manifest in 16.6 million one-block groups: answering the poll must not list
    //    every missing group (hundreds of MB) when only 16 NAK datagrams are sent.
    out.push(vec![
        announce(0x1001, 258, 1, 1, 1 << 32, next()),
        announce(0x1001, 258, 1, 1, 1 << 32, next()),
    ]);
    // 2. 65535 parity symbols announced, one block of 8000 bytes: decoding must not size its
    //    work area for them (half a gigabyte).
    out.push(vec![
        announce(0x1002, 8000, 1, u16::MAX, 100, next()),
        encode(
            &Msg::Parity {
                xfer: 0x1002,
                stream: Stream::Manifest,
                group: 0,
                index: u16::MAX - 1,
                data: &[7u8; 8000],
            },
            node,
            next(),
        ),
    ]);
    // 3. A manifest whose payload cannot be addressed (a 1 TiB file), plan and a block.
    let m = Manifest {
        roots: vec![b"new".to_vec()],
        entries: vec![Entry::file(b"new/huge", 1 << 40, 0o644, 0)],
        ..Default::default()
    };
    let mut v = vec![announce(0x1003, 16, 1, 1, m.encode().len() as u64, next())];
    let code = Code {
        block: 16,
        k: 1,
        parity: 1,
    };
    stream_datagrams(
        rng,
        &mut v,
        node,
        seq,
        0x1003,
        Stream::Manifest,
        &code,
        &m.encode(),
    );
    stream_datagrams(rng, &mut v, node, seq, 0x1003, Stream::Plan, &code, &[1]);
    *seq += 1;
    v.push(encode(
        &Msg::Block {
            xfer: 0x1003,
            stream: Stream::Payload,
            idx: 5,
            data: &[0; 16],
        },
        node,
        *seq,
    ));
    out.push(v);
    // 4. Commit before the plan, then plan and payload: nothing may be staged after the
    //    commit (the transfer is retired at its commit; once, files staged after it stayed).
    let m = Manifest {
        roots: vec![b"new".to_vec()],
        entries: vec![Entry::file(b"new/late.bin", 3000, 0o644, 0)],
        ..Default::default()
    };
    let code = Code {
        block: 1400,
        k: 4,
        parity: 4,
    };
    *seq += 1;
    let mut v = vec![announce(0x1004, 1400, 4, 4, m.encode().len() as u64, *seq)];
    stream_datagrams(
        rng,
        &mut v,
        node,
        seq,
        0x1004,
        Stream::Manifest,
        &code,
        &m.encode(),
    );
    *seq += 1;
    v.push(encode(
        &Msg::Commit {
            xfer: 0x1004,
            flags: 0,
            pending: &[1],
            vanished_raw: &[],
        },
        node,
        *seq,
    ));
    stream_datagrams(rng, &mut v, node, seq, 0x1004, Stream::Plan, &code, &[1]);
    let payload = random_bytes(rng, 3000);
    stream_datagrams(
        rng,
        &mut v,
        node,
        seq,
        0x1004,
        Stream::Payload,
        &code,
        &payload,
    );
    out.push(v);
    out
}

/// One random message of any kind with random (but encodable) fields.
fn random_message(rng: &mut Rng, victim: u64, xfers: &[u32], seq: &mut u64) -> Vec<u8> {
    let node = if rng.chance(0.8) {
        *pick(rng, &SENDERS)
    } else {
        rng.next()
    };
    let xfer = if !xfers.is_empty() && rng.chance(0.7) {
        *pick(rng, xfers)
    } else {
        rng.next() as u32
    };
    let stream = *pick(rng, &Stream::ALL);
    let data = noise(rng, 1500 + 1);
    let bits = noise(rng, 4);
    *seq += 1;
    // NAK entries: groups with counts and missing-block maps, some oversized or odd.
    let mut nak_raw = wire::Writer::new();
    for _ in 0..rng.below(6) {
        let max = 1 + rng.below(2) * 140;
        let map = noise(rng, max);
        wire::NakEntry {
            stream,
            group: if rng.chance(0.8) {
                rng.below(64) as u32
            } else {
                rng.next() as u32
            },
            need: if rng.chance(0.8) {
                rng.below(200) as u32
            } else {
                rng.next() as u32
            },
            missing: &map[..map.len().min(wire::MAX_MAP)],
        }
        .write(&mut nak_raw);
    }
    let nak_raw = nak_raw.into_vec();
    let m = match rng.below(13) {
        0 => {
            let mut known = vec![0u8; 2000];
            let mut c = wire::Cursor::new(&mut known);
            let count = rng.below(12) as u16;
            for _ in 0..count {
                c.u64(rng.next());
                let a: SocketAddr = if rng.chance(0.8) {
                    format!("127.0.0.{}:{}", rng.below(255), rng.below(65536))
                        .parse()
                        .unwrap()
                } else {
                    "[::1]:5000".parse().unwrap()
                };
                wire::write_addr(&mut c, &a);
                c.u32(rng.next() as u32);
                c.u8(rng.next() as u8);
                c.bytes8(&data[..data.len().min(20)]);
            }
            let kl = c.len();
            return encode(
                &Msg::Heartbeat(wire::Heartbeat {
                    flags: rng.next() as u8,
                    proto_min: 1,
                    proto_max: rng.next() as u8,
                    interval_ms: rng.next() as u32,
                    name: &data[..data.len().min(40)],
                    version: b"fuzz",
                    info: &data[..data.len().min(100)],
                    known_raw: &known[..kl],
                    known_count: count,
                }),
                node,
                *seq,
            );
        }
        1 => Msg::Leave,
        2 => {
            let targets: Vec<u8> = [victim, rng.next()]
                .iter()
                .flat_map(|t| t.to_be_bytes())
                .collect();
            return encode(
                &Msg::Announce(wire::Announce {
                    xfer,
                    block: (16 + 2 * rng.below(32000)) as u16,
                    group: 1 + rng.below(1024) as u16,
                    parity: 1 + rng.below(u16::MAX as u64) as u16,
                    manifest_len: *pick(rng, &[1, 100, 1 << 32, (1 << 32) + 1, u64::MAX]),
                    total: 2,
                    first: 0,
                    targets_raw: &targets,
                    pending: &[0xff],
                }),
                node,
                *seq,
            );
        }
        3 => Msg::Block {
            xfer,
            stream,
            idx: rng.below(1 << 24) as u32,
            data: &data,
        },
        4 => Msg::Parity {
            xfer,
            stream,
            group: rng.next() as u32 % 8,
            index: rng.next() as u16,
            data: &data[..data.len() & !1],
        },
        5 => Msg::Poll {
            xfer,
            round: rng.next() as u32,
            pending: &bits,
        },
        6 => Msg::Report {
            xfer,
            part: 0,
            parts: 1 + rng.below(3) as u16,
            data: &data,
        },
        7 => Msg::Nak {
            xfer,
            round: if rng.chance(0.5) {
                0
            } else {
                rng.next() as u32
            },
            flags: rng.next() as u8,
            seen: if rng.chance(0.5) { *seq } else { rng.next() },
            hold_us: rng.next() as u32,
            entries: &nak_raw,
        },
        11 => Msg::Pace(wire::Pace {
            xfer,
            rate: rng.next() >> rng.below(64),
            rtt_us: rng.next() as u32,
            interval_us: rng.next() as u32,
            clr: if rng.chance(0.5) { victim } else { rng.next() },
            backlog_us: rng.next() as u32,
            uni: rng.next() as u32,
            flags: rng.next() as u8,
            echo: if rng.chance(0.5) { victim } else { rng.next() },
            echo_ts: rng.next() as u32,
            echo_hold_us: rng.next() as u32,
        }),
        12 => Msg::Feedback(wire::Feedback {
            xfer,
            flags: rng.next() as u8,
            seen: if rng.chance(0.5) { *seq } else { rng.next() },
            hold_us: rng.next() as u32,
            loss: rng.next() as u32,
            recv_rate: rng.next() >> rng.below(64),
            overflows: rng.next() as u32,
            ts_us: rng.next() as u32,
        }),
        8 => Msg::Commit {
            xfer,
            flags: rng.next() as u8,
            pending: &bits,
            vanished_raw: &[],
        },
        9 => Msg::Result {
            xfer,
            status: rng.below(4) as u8,
            files: rng.next() as u32,
            bytes: rng.next(),
            deleted: rng.next() as u32,
            message: &data[..data.len().min(100)],
        },
        _ => Msg::Abort {
            xfer,
            reason: &data[..data.len().min(50)],
        },
    };
    if matches!(m, Msg::Parity { data, .. } if data.is_empty()) {
        return encode(&Msg::Leave, node, *seq);
    }
    encode(&m, node, *seq)
}

/// The transfer id of a transfer message (every transfer kind starts its body with it).
fn xfer_of(d: &[u8]) -> Option<u32> {
    match d.get(3).copied()? {
        wire::kind::HEARTBEAT | wire::kind::LEAVE => None,
        _ => Some(u32::from_be_bytes(d.get(24..28)?.try_into().ok()?)),
    }
}

// ---------------------------------------------------------------------------------------------
// The file system around the fuzzed engine.

struct Sandbox {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    base: PathBuf,
    outside: PathBuf,
    sentinel: std::fs::Metadata,
}

impl Sandbox {
    fn new() -> Self {
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
    fn plant(&self) {
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
    fn check(&self) -> Tally {
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
struct Tally {
    files: u64,
    dirs: u64,
    symlinks: u64,
    symlinks_pointing_out: u64,
    temps: Vec<PathBuf>,
}

/// Walks without following symlinks. Every path must resolve (parents canonicalised) inside
/// the base; no set-id file, device node or file capability may exist (the fuzzed node
/// neither preserves owners nor allows devices).
fn walk(base: &Path, dir: &Path, t: &mut Tally) {
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

fn normalise(p: &Path) -> PathBuf {
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

// ---------------------------------------------------------------------------------------------
// The engine target.

struct EngineRun {
    engine: Engine<FsStorage>,
    now: Instant,
    from: SocketAddr,
    out: Vec<u8>,
    scratch: Vec<u8>,
    fed: u64,
    decoded: u64,
    applied_ok: u64,
    applied_failed: u64,
    abandoned: u64,
    sent: u64,
}

impl EngineRun {
    fn feed(&mut self, d: &[u8]) {
        if check_decode(d, &mut self.scratch) {
            self.decoded += 1;
        }
        self.engine.handle_datagram(self.now, self.from, d);
        self.fed += 1;
        self.now += Duration::from_micros(100);
        if self.fed % 16 == 0 {
            self.drain();
        }
    }

    fn drain(&mut self) {
        if self.engine.poll_timeout().is_some_and(|t| t <= self.now) {
            self.engine.handle_timeout(self.now);
        }
        while let Some(t) = self.engine.poll_transmit(self.now, &mut self.out) {
            self.sent += 1;
            // The engine's own output always decodes.
            let d = &self.out[..t.len];
            if let Err(e) = wire::decode(d) {
                panic!(
                    "engine emitted an undecodable datagram ({e}) at {}",
                    where_()
                );
            }
        }
        while let Some(e) = self.engine.poll_event() {
            match e {
                Event::Applied { outcome, .. } if outcome.errors.is_empty() => self.applied_ok += 1,
                Event::Applied { .. } => self.applied_failed += 1,
                Event::Abandoned(..) => self.abandoned += 1,
                _ => {}
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.drain();
    }

    fn check_bounds(&self) {
        let (out, inn) = self.engine.transfers();
        assert_eq!(out, 0, "the fuzzed node never pushes");
        assert!(
            inn <= MAX_INBOUND,
            "{inn} inbound transfers at {}",
            where_()
        );
        let members = self.engine.members().count();
        assert!(members <= MAX_MEMBERS, "{members} members at {}", where_());
        let held = self.engine.inbound_memory();
        assert!(
            held <= MAX_INBOUND_MEMORY,
            "inbound transfers hold {held} bytes at {}",
            where_()
        );
        let s = self.engine.stats();
        assert_eq!(
            s.accepted + s.dropped() + s.own,
            s.received,
            "a datagram neither accepted nor dropped: {s:?}"
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn engine_phase(
    rng: &mut Rng,
    cases: u64,
    corpus: &[Vec<u8>],
    victim: u64,
    sandbox: &Sandbox,
    case0: u64,
) -> EngineRun {
    let mut cfg = lan::test_config(victim, "victim");
    cfg.node_id = victim;
    let storage = FsStorage::new(sandbox.base.clone(), ApplyOptions::default()).unwrap();
    let now = Instant::now();
    let mut r = EngineRun {
        engine: Engine::new(cfg, storage, now),
        now,
        from: "127.0.0.9:4242".parse().unwrap(),
        out: vec![0u8; wire::MAX_DATAGRAM],
        scratch: vec![0u8; 70_000],
        fed: 0,
        decoded: 0,
        applied_ok: 0,
        applied_failed: 0,
        abandoned: 0,
        sent: 0,
    };
    let announces: Vec<usize> = (0..corpus.len())
        .filter(|&i| corpus[i][3] == wire::kind::ANNOUNCE)
        .collect();
    let mut seq = 0u64;
    for (i, r_) in regressions(rng, victim, &mut seq).into_iter().enumerate() {
        for d in r_ {
            r.feed(&d);
            // A commit runs at the next timer, after its BUSY answer: let it run here so
            // that what the case sends after the commit arrives after it.
            if d.get(3) == Some(&wire::kind::COMMIT) {
                r.drain();
            }
        }
        r.drain();
        check_memory();
        if i == 3 {
            // A transfer gives its slot back at its commit: what arrives after it is a
            // straggler, and nothing is staged for it any more.
            assert_eq!(
                r.engine.storage().staged_count(),
                0,
                "regression 4 staged a file after the commit"
            );
            assert_eq!(r.engine.transfers().1, 0, "regression 4 still holds a slot");
        }
    }
    // The sealing layer's own messages (CHALLENGE, RESPONSE) never reach the engine: in the
    // clear they are kinds it does not know, dropped and counted.
    for k in [wire::kind::CHALLENGE, wire::kind::RESPONSE] {
        let before = r.engine.stats().dropped_unknown_kind;
        seq += 1;
        let mut d = encode(&Msg::Leave, SENDERS[0], seq);
        d[3] = k;
        d.extend_from_slice(&[0; 16]);
        r.feed(&d);
        assert_eq!(r.engine.stats().dropped_unknown_kind, before + 1);
    }
    let mut xfers: Vec<u32> = Vec::new();
    let mut next_check = 0;
    while r.fed < cases {
        CASE.store(case0 + r.fed, Relaxed);
        if r.fed >= next_check {
            next_check = r.fed + 2000;
            r.check_bounds();
            check_memory();
            sandbox.plant();
        }
        match rng.below(10) {
            0..=2 => {
                // A run of the captured push, renumbered as a fresh transfer, lightly mutated.
                let start = if rng.chance(0.7) {
                    *pick(rng, &announces)
                } else {
                    rng.below(corpus.len() as u64) as usize
                };
                let len = 50 + rng.below(3000) as usize;
                let p = if rng.chance(0.4) { 0.0 } else { 0.02 };
                let mut renumber: HashMap<u32, u32> = HashMap::new();
                for d in corpus.iter().skip(start).take(len) {
                    let mut d = d.clone();
                    if let Some(x) = xfer_of(&d) {
                        let new = *renumber.entry(x).or_insert_with(|| rng.next() as u32);
                        d[24..28].copy_from_slice(&new.to_be_bytes());
                        xfers.push(new);
                    }
                    if rng.chance(p) {
                        let other = pick(rng, corpus);
                        let n = 1 + rng.below(3);
                        mutate(rng, &mut d, other, n);
                    }
                    r.feed(&d);
                }
            }
            3..=5 => {
                // A structured transfer with a hostile manifest, sometimes mutated.
                let p = if rng.chance(0.5) { 0.0 } else { 0.05 };
                let seqd = structured_transfer(rng, victim, &sandbox.outside, &mut seq);
                for mut d in seqd {
                    if let Some(x) = xfer_of(&d) {
                        xfers.push(x);
                    }
                    if rng.chance(p) {
                        let other = pick(rng, corpus);
                        let n = 1 + rng.below(3);
                        mutate(rng, &mut d, other, n);
                    }
                    r.feed(&d);
                }
            }
            _ => {
                // Single datagrams: mutated corpus, structured random, or noise.
                for _ in 0..1 + rng.below(64) {
                    let mut d = match rng.below(6) {
                        0..=2 => pick(rng, corpus).clone(),
                        3 | 4 => random_message(rng, victim, &xfers, &mut seq),
                        _ => {
                            let mut d = noise(rng, 1600);
                            if d.len() > 4 && rng.chance(0.5) {
                                d[..3].copy_from_slice(&[b'M', b'K', wire::VERSION]);
                                d[3] = rng.below(17) as u8;
                            }
                            d
                        }
                    };
                    let other = pick(rng, corpus);
                    let n = rng.below(5);
                    mutate(rng, &mut d, other, n);
                    if d.len() >= 8 && rng.chance(0.6) {
                        d[6..8].fill(0); // our cluster, so it reaches the state machines
                    }
                    r.feed(&d);
                }
            }
        }
        if xfers.len() > 256 {
            xfers.drain(..128);
        }
        r.drain();
        if rng.chance(0.05) {
            // Let timers run: silent senders' transfers are abandoned, members expire.
            let d = Duration::from_millis(rng.below(12_000));
            r.advance(d);
        }
    }
    // Let everything expire, then look at what is left.
    for _ in 0..3 {
        r.advance(Duration::from_secs(60));
    }
    r.check_bounds();
    r
}

// ---------------------------------------------------------------------------------------------
// The sealing target.

#[derive(Debug, Default)]
struct SealRun {
    opened: u64,
    handshakes: u64,
    refused: u64,
    replay_refused: u64,
    receiver_restarts: u64,
    sender_restarts: u64,
}

fn hash(b: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// One sending process of the sealing target: its sealer and reply address.
struct Tx {
    sealer: Sealer,
    node: u64,
    addr: SocketAddr,
}

/// Node ids of the sealing target's processes: each restart is a new one.
static NEXT_NODE: AtomicU64 = AtomicU64::new(0x5ea1_0000_0000_0001);

fn new_node() -> u64 {
    NEXT_NODE.fetch_add(1, Relaxed)
}

fn new_tx(key: &Key, cluster: u16, i: usize) -> Tx {
    let node = new_node();
    Tx {
        sealer: Sealer::new(key, None, node, cluster),
        node,
        addr: SocketAddr::new([10, 8, 0, i as u8 + 1].into(), 4000 + (node % 1000) as u16),
    }
}

/// The sealing target: a receiving sealer between live senders that seal corpus datagrams
/// and answer its challenges (the fuzzer is their network: it loses, duplicates, replays,
/// reorders, misaddresses and mutates), a key holder forging handshakes, another cluster key,
/// unsealed and old-format datagrams and noise; receivers and senders restart now and then.
/// Asserted: only a genuine datagram opens, once ever (across receiver restarts), to exactly
/// what was sealed, and only above the sequence number of its sender's answer to a challenge
/// of this receiver; every refusal is counted.
fn seal_phase(rng: &mut Rng, cases: u64, corpus: &[Vec<u8>], case0: u64) -> SealRun {
    let key = Key::from_bytes(std::array::from_fn(|_| rng.next() as u8));
    let other = Key::from_bytes(std::array::from_fn(|_| rng.next() as u8));
    let cluster = 0x5ea1_u16;
    let rx_addr: SocketAddr = "10.9.9.9:5000".parse().unwrap();
    let mut rx = Sealer::new(&key, None, new_node(), cluster);
    let mut rx_gen = 0u32;
    let mut txs: Vec<Tx> = (0..4).map(|i| new_tx(&key, cluster, i)).collect();
    let other_node = new_node();
    let mut tx_other = Sealer::new(&other, None, other_node, cluster);
    let forger_node = new_node();
    let mut forger = Sealer::new(&key, None, forger_node, cluster);
    let forger_addr: SocketAddr = "10.7.7.7:6000".parse().unwrap();
    let mut now = Instant::now();
    let wall = 1_700_000_000_000u64;
    // Every datagram sealed with the cluster key, by (node, seq): hashes of its sealed and
    // unsealed forms; which were ever accepted; floors per (receiver run, node); recent
    // datagrams whole (with where they came from) for replays; handshakes in flight to rx.
    let mut genuine: HashMap<(u64, u64), (u64, u64)> = HashMap::new();
    let mut accepted: HashSet<(u64, u64)> = HashSet::new();
    let mut floors: HashMap<(u32, u64), u64> = HashMap::new();
    let mut history: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
    let mut to_rx: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
    let mut buf = vec![0u8; 70_000];
    let mut hs = vec![0u8; 256];
    let mut scratch = vec![0u8; 70_000];
    let mut run = SealRun::default();
    let mut total = SealStats::default();
    for i in 0..cases {
        CASE.store(case0 + i, Relaxed);
        now += Duration::from_micros(rng.below(3000));
        let (input, from): (Vec<u8>, SocketAddr) = match rng.below(20) {
            0..=7 => {
                // Genuine data from a live sender, possibly mutated or from elsewhere.
                let t = rng.below(txs.len() as u64) as usize;
                let tx = &mut txs[t];
                let mut d = pick(rng, corpus).clone();
                d[6..8].copy_from_slice(&cluster.to_be_bytes());
                d[8..16].copy_from_slice(&tx.node.to_be_bytes());
                let plain_len = d.len();
                d.resize(plain_len + wire::SEAL_OVERHEAD, 0);
                let mut plain = d[..plain_len].to_vec();
                let n = tx.sealer.seal(&mut d, plain_len, wall + rng.below(300_000));
                d.truncate(n);
                plain[16..24].copy_from_slice(&d[16..24]);
                let seq = u64::from_be_bytes(d[16..24].try_into().unwrap());
                genuine.insert((tx.node, seq), (hash(&d), hash(&plain)));
                history.push((d.clone(), tx.addr));
                let mut from = tx.addr;
                if rng.chance(0.05) {
                    from = forger_addr;
                }
                if rng.chance(0.2) {
                    let other = pick(rng, corpus);
                    let n = 1 + rng.below(4);
                    mutate(rng, &mut d, other, n);
                }
                (d, from)
            }
            8..=10 => {
                // A handshake datagram on its way to the receiver (or a replay of one).
                if to_rx.is_empty() {
                    continue;
                }
                let k = rng.below(to_rx.len() as u64) as usize;
                let (mut d, mut from) = if rng.chance(0.8) {
                    to_rx.swap_remove(k)
                } else {
                    to_rx[k].clone()
                };
                if rng.chance(0.05) {
                    from = forger_addr;
                }
                if rng.chance(0.1) {
                    let other = pick(rng, corpus);
                    mutate(rng, &mut d, other, 1);
                }
                (d, from)
            }
            11 | 12 => {
                // A replay of anything genuine seen before, possibly mutated.
                if history.is_empty() {
                    continue;
                }
                let (mut d, from) = pick(rng, &history).clone();
                if rng.chance(0.3) {
                    let other = pick(rng, corpus);
                    mutate(rng, &mut d, other, 1);
                }
                (d, from)
            }
            13 => {
                // A key holder's handshakes: challenges and responses with random nonces,
                // and bodies of the wrong length.
                let kind = if rng.chance(0.5) {
                    wire::kind::CHALLENGE
                } else {
                    wire::kind::RESPONSE
                };
                let body = if rng.chance(0.8) {
                    16
                } else {
                    rng.below(40) as usize
                };
                let mut d = vec![0u8; wire::HEADER_LEN + body + wire::SEAL_OVERHEAD];
                d[..3].copy_from_slice(&[b'M', b'K', wire::VERSION]);
                d[3] = kind;
                d[6..8].copy_from_slice(&cluster.to_be_bytes());
                d[8..16].copy_from_slice(&forger_node.to_be_bytes());
                for b in &mut d[wire::HEADER_LEN..wire::HEADER_LEN + body] {
                    *b = rng.next() as u8;
                }
                let n = forger.seal(&mut d, wire::HEADER_LEN + body, wall);
                d.truncate(n);
                (d, forger_addr)
            }
            14 => {
                // Sealed with another key (same layout).
                let mut d = pick(rng, corpus).clone();
                d[6..8].copy_from_slice(&cluster.to_be_bytes());
                d[8..16].copy_from_slice(&other_node.to_be_bytes());
                let l = d.len();
                d.resize(l + wire::SEAL_OVERHEAD, 0);
                let n = tx_other.seal(&mut d, l, wall);
                d.truncate(n);
                (d, txs[0].addr)
            }
            15 => {
                // Unsealed, a forged flag, or a genuine datagram relabelled as another seal
                // format (an older or newer makuo).
                let mut d = pick(rng, corpus).clone();
                d[6..8].copy_from_slice(&cluster.to_be_bytes());
                match rng.below(3) {
                    0 => {}
                    1 => {
                        d[4] |= wire::FLAG_SEALED;
                        d[5] = key.id();
                    }
                    _ => {
                        if let Some((h, _)) = history.last() {
                            d = h.clone();
                            let f = makuo::seal::SEAL_FORMAT;
                            let other = if rng.chance(0.5) { f - 1 } else { f + 1 };
                            d[4] = wire::FLAG_SEALED | (other << 1);
                        }
                    }
                }
                (d, txs[0].addr)
            }
            16 => {
                let mut d = noise(rng, 200);
                if d.len() >= 8 && rng.chance(0.7) {
                    d[..3].copy_from_slice(&[b'M', b'K', wire::VERSION]);
                    d[3] = if rng.chance(0.5) {
                        14 + rng.below(2) as u8
                    } else {
                        d[3]
                    };
                    d[4] = wire::FLAG_SEALED | (makuo::seal::SEAL_FORMAT << 1);
                    d[5] = key.id();
                    d[6..8].copy_from_slice(&cluster.to_be_bytes());
                }
                (d, forger_addr)
            }
            _ => {
                // Events: time passes (tables age), the receiver restarts, a sender restarts.
                match rng.below(100) {
                    0..=2 => {
                        rx = Sealer::new(&key, None, new_node(), cluster);
                        rx_gen += 1;
                        run.receiver_restarts += 1;
                    }
                    3..=9 => {
                        let t = rng.below(txs.len() as u64) as usize;
                        txs[t] = new_tx(&key, cluster, t);
                        run.sender_restarts += 1;
                    }
                    10..=19 => {
                        // Long enough for every table to age out.
                        now += Duration::from_millis(rng.below(90_000));
                        rx.expire(now);
                        for t in &mut txs {
                            t.sealer.expire(now);
                        }
                    }
                    _ => {
                        now += Duration::from_millis(rng.below(2_000));
                        rx.expire(now);
                        for t in &mut txs {
                            t.sealer.expire(now);
                        }
                    }
                }
                continue;
            }
        };
        if history.len() > 10_000 {
            history.drain(..5_000);
        }
        let before = rx.stats();
        buf[..input.len()].copy_from_slice(&input);
        let r = rx.open(&mut buf, input.len(), from, input.len() % 7 == 0, now, wall);
        let node = input
            .get(8..16)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()));
        let seq = input
            .get(16..24)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()));
        match r {
            Ok(Opened::Datagram(n)) => {
                run.opened += 1;
                let (node, seq) = (node.unwrap(), seq.unwrap());
                let g = genuine.get(&(node, seq)).copied();
                assert_eq!(
                    g.map(|g| g.0),
                    Some(hash(&input)),
                    "a datagram that was never sealed opened, at {}",
                    where_()
                );
                assert!(
                    accepted.insert((node, seq)),
                    "a datagram opened twice (across receiver restarts too), at {}",
                    where_()
                );
                let floor = floors.get(&(rx_gen, node)).copied();
                assert!(
                    floor.is_some_and(|f| seq > f),
                    "opened seq {seq} of node {node:016x}, floor {floor:?}, at {}",
                    where_()
                );
                assert_eq!(n, input.len() - wire::SEAL_OVERHEAD);
                assert_eq!(
                    g.map(|g| g.1),
                    Some(hash(&buf[..n])),
                    "opened to other bytes than were sealed, at {}",
                    where_()
                );
                check_decode(&buf[..n], &mut scratch);
            }
            Ok(Opened::Handshake) => {
                run.handshakes += 1;
                assert!(matches!(
                    input[3],
                    wire::kind::CHALLENGE | wire::kind::RESPONSE
                ));
            }
            Err(e) => {
                run.refused += 1;
                if matches!(e, SealError::Replayed { .. }) {
                    run.replay_refused += 1;
                }
                check_decode(&input, &mut scratch);
            }
        }
        // A sender it verified now: that was the response just opened, whose number is the
        // floor.
        while let Some(v) = rx.poll_verified() {
            assert_eq!(
                Some(v),
                node,
                "verified another node than answered, at {}",
                where_()
            );
            assert_eq!(input[3], wire::kind::RESPONSE);
            floors.insert((rx_gen, v), seq.unwrap());
        }
        // The network between: what the receiver sends goes to the sender at that address
        // (mostly), and what senders answer comes back later.
        while let Some((to, n)) = rx.poll_handshake(&mut hs) {
            assert_eq!(n, makuo::seal::HANDSHAKE_LEN);
            let d = hs[..n].to_vec();
            if let Some(tx) = txs.iter_mut().find(|t| t.addr == to) {
                if rng.chance(0.85) {
                    let mut x = d.clone();
                    let _ = tx.sealer.open(&mut x, n, rx_addr, false, now, wall);
                    while tx.sealer.poll_verified().is_some() {}
                    while let Some((back, m)) = tx.sealer.poll_handshake(&mut hs) {
                        assert_eq!(back, rx_addr);
                        to_rx.push((hs[..m].to_vec(), tx.addr));
                        history.push((hs[..m].to_vec(), tx.addr));
                    }
                }
            }
        }
        if to_rx.len() > 64 {
            to_rx.drain(..32);
        }
        add_delta(&mut total, &before, &rx.stats());
    }
    let s = total;
    let refused = s.bad_tag
        + s.unsealed_refused
        + s.unknown_key
        + s.replayed
        + s.malformed
        + s.other_cluster
        + s.format
        + s.unverified
        + s.stale_handshake;
    assert_eq!(s.opened, run.opened);
    assert_eq!(refused, run.refused, "every refusal counted: {s:?}");
    // Every path was taken.
    assert!(
        s.replayed > 0 && s.bad_tag > 0 && s.unverified > 0 && s.stale_handshake > 0,
        "{s:?}"
    );
    assert!(
        s.unknown_key > 0 && s.unsealed_refused > 0 && s.format > 0,
        "{s:?}"
    );
    assert!(
        s.challenges > 0 && s.responses > 0 && s.verified >= txs.len() as u64,
        "{s:?}"
    );
    run
}

/// Adds what one `open` changed in the counters (receivers restart, so totals are summed
/// from differences).
fn add_delta(total: &mut SealStats, before: &SealStats, after: &SealStats) {
    macro_rules! add {
        ($($f:ident),*) => { $( total.$f += after.$f - before.$f; )* };
    }
    add!(
        opened,
        sealed,
        bad_tag,
        unsealed_refused,
        unknown_key,
        replayed,
        malformed,
        other_cluster,
        format,
        unverified,
        stale_handshake,
        challenges,
        responses,
        verified,
        limited
    );
}

// ---------------------------------------------------------------------------------------------
// The decoder target (manifests; datagrams go through it in the other phases too).

fn decode_phase(rng: &mut Rng, cases: u64, corpus: &[Vec<u8>], outside: &Path, case0: u64) -> u64 {
    let mut ok = 0;
    let mut scratch = vec![0u8; 70_000];
    let mut i = 0;
    while i < cases {
        let m = hostile_manifest(rng, outside);
        let bytes = m.encode();
        for _ in 0..8 {
            CASE.store(case0 + i, Relaxed);
            i += 1;
            let mut b = bytes.clone();
            let other = pick(rng, corpus);
            let n = rng.below(4);
            mutate(rng, &mut b, other, n);
            if let Ok(d) = Manifest::decode(&b) {
                ok += 1;
                for e in &d.entries {
                    assert!(
                        makuo::proto::manifest::check_rel_path(&e.path).is_ok(),
                        "decoded a bad path {:?} at {}",
                        String::from_utf8_lossy(&e.path),
                        where_()
                    );
                }
                assert_eq!(Manifest::decode(&d.encode()).as_ref(), Ok(&d));
            }
            let mut d = pick(rng, corpus).clone();
            let n = 1 + rng.below(4);
            mutate(rng, &mut d, other, n);
            check_decode(&d, &mut scratch);
        }
    }
    ok
}

// ---------------------------------------------------------------------------------------------

#[test]
fn fuzz_decoder_engine_apply_and_sealing() {
    let (seed, cases) = params();
    SEED.store(seed, Relaxed);
    install_panic_hook();
    let done = watchdog(Duration::from_secs(60));
    let started = Instant::now();
    eprintln!("fuzz: seed {seed:#x}, {cases} cases (MAKUO_FUZZ_SEED, MAKUO_FUZZ_CASES to change)");
    let mut rng = Rng(seed);
    let (corpus, victim) = capture_corpus(seed);
    let sandbox = Sandbox::new();

    let n_engine = cases * 6 / 10;
    let n_seal = cases * 3 / 10;
    let n_decode = cases - n_engine - n_seal;

    PHASE.store(1, Relaxed);
    let t = Instant::now();
    let r = engine_phase(&mut rng, n_engine, &corpus, victim, &sandbox, 0);
    let engine_time = t.elapsed();
    check_memory();
    let s = r.engine.stats().clone();
    let (_, inn) = r.engine.transfers();
    assert_eq!(inn, 0, "every transfer expired");
    assert_eq!(
        r.engine.storage().staged_count(),
        0,
        "staged files left after every transfer ended"
    );
    let tally = sandbox.check();
    assert!(
        tally.temps.is_empty(),
        "staged temp files left in the base: {:?}",
        tally.temps
    );
    // The run reached deep code: transfers were applied (and some refused).
    assert!(s.accepted > n_engine / 10, "{s:?}");
    assert!(s.dropped() > n_engine / 10, "{s:?}");
    assert!(
        r.applied_ok > 0 && r.applied_failed > 0,
        "applied ok {} failed {}",
        r.applied_ok,
        r.applied_failed
    );
    assert!(
        r.engine.storage().refused() > 0,
        "no hostile path was ever refused"
    );
    eprintln!(
        "fuzz: engine: {} datagrams in {:.1}s ({} decoded, {} accepted, {} dropped, {} own), \
         {} pushes applied, {} failed, {} abandoned, {} paths refused, {} datagrams sent; \
         base holds {} files, {} dirs, {} symlinks ({} pointing outside, as pushed)",
        r.fed,
        engine_time.as_secs_f64(),
        r.decoded,
        s.accepted,
        s.dropped(),
        s.own,
        r.applied_ok,
        r.applied_failed,
        r.abandoned,
        r.engine.storage().refused(),
        r.sent,
        tally.files,
        tally.dirs,
        tally.symlinks,
        tally.symlinks_pointing_out,
    );
    drop(r);

    PHASE.store(2, Relaxed);
    let t = Instant::now();
    let sr = seal_phase(&mut rng, n_seal, &corpus, n_engine);
    eprintln!(
        "fuzz: seal: {n_seal} datagrams in {:.1}s ({} opened, {} handshakes, {} refused, {} of \
         them replays; {} receiver and {} sender restarts)",
        t.elapsed().as_secs_f64(),
        sr.opened,
        sr.handshakes,
        sr.refused,
        sr.replay_refused,
        sr.receiver_restarts,
        sr.sender_restarts
    );
    assert!(sr.opened > n_seal / 20, "{sr:?}");

    PHASE.store(3, Relaxed);
    let t = Instant::now();
    let ok = decode_phase(
        &mut rng,
        n_decode,
        &corpus,
        &sandbox.outside,
        n_engine + n_seal,
    );
    eprintln!(
        "fuzz: decode: {n_decode} manifests in {:.1}s ({ok} decoded)",
        t.elapsed().as_secs_f64()
    );
    check_memory();
    done.store(true, Relaxed);
    eprintln!(
        "fuzz: {cases} cases in {:.1}s; peak heap {} MiB, largest allocation {} KiB",
        started.elapsed().as_secs_f64(),
        PEAK.load(Relaxed) >> 20,
        BIGGEST.load(Relaxed) >> 10
    );
}

// ---------------------------------------------------------------------------------------------
// The console target (its own test, so the message-type cases above can grow independently):
// what a connection sends, through the line framing (`console::read_line`), the strict parser
// (`console::parse_line`) and the session gate (`console_access::Gate`: strictness, password).

use makuo::console::{self, Input, Request};
use makuo::console_access::{Gate, Note, Verdict, MAX_TRIES};
use makuo::secret_file::Password;

/// Longest answer a line may draw from the gate or parser.
const MAX_CONSOLE_ANSWER: usize = 256;

/// Lines a client might send: real commands, near misses, other protocols.
const CONSOLE_CORPUS: &[&str] = &[
    "send -n -r -t web2 htdocs",
    "sync -r .",
    "sync -r --delete --max-delete 10 --json -- a \"b c\" d\\ e",
    "dsync -r x",
    "md5 -r -t \"web 1\" --json",
    "check",
    "members --json",
    "status",
    "exclude add \"*.tmp\"",
    "exclude del *.tmp",
    "include add keep/",
    "exclude list",
    "exclude clear",
    "loglevel 9",
    "loglevel 10",
    "alive",
    "echo hello \"big world\"",
    "help",
    "?",
    "quit",
    "BYE",
    "password s3cret!",
    "password \"s3cret!\"",
    "password wrong",
    "",
    "   \t ",
    "POST / HTTP/1.1",
    "GET /?cmd=sync%20-r%20. HTTP/1.0",
    "Host: 127.0.0.1:5000",
    "User-Agent: curl/8.5.0",
    "Content-Type: application/x-www-form-urlencoded",
    "Content-Length: 11",
    "\u{16}\u{3}\u{1}",
    "SSH-2.0-OpenSSH_9.6",
    "EHLO example.com",
    "send --max-delete",
    "send -t",
    "echo \"open",
    "echo trailing\\",
];

fn console_line(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => noise(rng, 200),
        1 => {
            // Printable words, some of them commands.
            let n = rng.below(12);
            let mut words = Vec::new();
            for _ in 0..n {
                if rng.chance(0.3) {
                    words.push(pick(rng, console::COMMANDS).to_string());
                } else {
                    let len = rng.below(12) as usize;
                    let w: String = (0..len)
                        .map(|_| (b' ' + 1 + rng.below(94) as u8) as char)
                        .collect();
                    words.push(w);
                }
            }
            words.join(" ").into_bytes()
        }
        2 => {
            // Long lines near and beyond the cap.
            let cmd = pick(rng, CONSOLE_CORPUS).as_bytes().to_vec();
            let mut l = cmd;
            let target = console::MAX_LINE - 8 + rng.below(16) as usize;
            while l.len() < target {
                l.push(b'a' + rng.below(26) as u8);
            }
            l
        }
        _ => {
            let mut l = pick(rng, CONSOLE_CORPUS).as_bytes().to_vec();
            let other = pick(rng, CONSOLE_CORPUS).as_bytes().to_vec();
            let n = rng.below(4);
            mutate(rng, &mut l, &other, n);
            l
        }
    }
}

/// The checks on one verdict: answers are single short lines without control characters,
/// delays are bounded, and nothing runs from a line whose first word is not a command.
#[track_caller]
fn check_verdict(v: &Verdict, line: &[u8], what: &str) {
    match v {
        Verdict::Answer { wait, line: a, .. } => {
            assert!(
                a == "ok" || a.starts_with("error: "),
                "{what}: answer {a:?}"
            );
            assert!(
                a.len() <= MAX_CONSOLE_ANSWER,
                "{what}: {} bytes: {a:?}",
                a.len()
            );
            assert!(!a.chars().any(char::is_control), "{what}: {a:?}");
            assert!(*wait <= Duration::from_secs(u64::from(MAX_TRIES)), "{what}");
        }
        Verdict::Run(req) => {
            let text =
                std::str::from_utf8(line).unwrap_or_else(|_| panic!("{what}: ran non-UTF-8"));
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\t'),
                "{what}: ran a line with a control character"
            );
            match text.split_whitespace().next() {
                None => assert_eq!(req, &Request::Nothing, "{what}"),
                Some(first) => assert!(
                    console::COMMANDS
                        .iter()
                        .any(|c| c.eq_ignore_ascii_case(first)),
                    "{what}: ran a line starting with {first:?}"
                ),
            }
            if let Request::Echo(s) = req {
                assert!(s.len() <= line.len(), "{what}");
            }
            if let Request::Send(c) | Request::Check(c) = req {
                assert!(c.paths.len() + c.targets.len() <= line.len() + 1, "{what}");
            }
        }
    }
}

/// Runs `f`, turning a panic into a failure that names the input.
fn no_panic<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!(
            "console fuzz: panic in {what} on {:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

#[derive(Debug, Default)]
struct ConsoleRun {
    lines: u64,
    ran: u64,
    closed_foreign: u64,
    wrong_passwords: u64,
    authed: u64,
    framed: u64,
}

/// Sessions of random and mutated lines through a gate (half of them behind a password).
fn console_sessions(rng: &mut Rng, cases: u64, seed: u64, run: &mut ConsoleRun) {
    let pw = Password::new(b"s3cret!").unwrap();
    let mut case = 0;
    while case < cases {
        let mut gate = Gate::new(rng.chance(0.5).then_some(&pw));
        let mut failures = 0;
        for _ in 0..1 + rng.below(20) {
            let line = console_line(rng);
            case += 1;
            run.lines += 1;
            let what = format!(
                "seed {seed:#x} console case {case} line {:?}",
                String::from_utf8_lossy(&line)
            );
            let was_authed = gate.authed();
            let v = no_panic("Gate::line", &line, || gate.line(&line));
            check_verdict(&v, &line, &what);
            match &v {
                Verdict::Run(req) => {
                    run.ran += 1;
                    assert!(
                        was_authed || *req == Request::Nothing,
                        "{what}: ran {req:?} before the password"
                    );
                }
                Verdict::Answer { close, note, .. } => {
                    match note {
                        Some(Note::NotACommand) => {
                            assert!(*close, "{what}: a foreign line must end the session");
                            run.closed_foreign += 1;
                        }
                        Some(Note::WrongPassword) => {
                            failures += 1;
                            run.wrong_passwords += 1;
                            assert_eq!(*close, failures >= MAX_TRIES, "{what}");
                        }
                        None => {}
                    }
                    if *close {
                        break;
                    }
                }
            }
            if gate.authed() && !was_authed {
                run.authed += 1;
            }
            // The parser alone: same answer on every call (no hidden state), bounded errors.
            let p = no_panic("parse_line", &line, || console::parse_line(&line));
            if let Err(e) = &p {
                let m = e.to_string();
                assert!(m.len() <= MAX_CONSOLE_ANSWER, "{what}: {m:?}");
                assert!(!m.contains('\n'), "{what}");
            }
            assert_eq!(p, console::parse_line(&line), "{what}");
        }
    }
}

/// A reader that hands out what it holds in chunks of random size.
struct Chunks<'a> {
    data: &'a [u8],
    rng: Rng,
}

impl std::io::Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (1 + self.rng.below(40) as usize)
            .min(self.data.len())
            .min(buf.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Byte streams through the line framing with small caps: no line above the cap, and every
/// line returned is exactly the input's next line (without `\r`), until the first over-long one.
fn console_framing(rng: &mut Rng, cases: u64, seed: u64, run: &mut ConsoleRun) {
    for case in 0..cases {
        let mut stream = Vec::new();
        for _ in 0..rng.below(8) {
            let mut l = console_line(rng);
            l.truncate(rng.below(64) as usize);
            stream.extend_from_slice(&l);
            if rng.chance(0.8) {
                stream.extend_from_slice(if rng.chance(0.5) { b"\r\n" } else { b"\n" });
            }
        }
        let max = 1 + rng.below(40) as usize;
        let what = format!("seed {seed:#x} framing case {case} max {max} stream {stream:?}");
        let mut r = std::io::BufReader::with_capacity(
            1 + rng.below(16) as usize,
            Chunks {
                data: &stream,
                rng: Rng(rng.next()),
            },
        );
        let mut want = stream
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let ends_with_newline = stream.last() == Some(&b'\n');
        let mut buf = Vec::new();
        let mut guard = 0;
        loop {
            guard += 1;
            assert!(guard < 10_000, "{what}: no end");
            let got = no_panic("read_line", &stream, || {
                console::read_line(&mut r, max, &mut buf)
            })
            .unwrap();
            match got {
                Input::Line => {
                    assert!(buf.len() <= max, "{what}");
                    let w = want.next().unwrap_or_else(|| panic!("{what}: extra line"));
                    assert_eq!(buf, w, "{what}");
                    run.framed += 1;
                }
                Input::TooLong => {
                    let w = want
                        .next()
                        .unwrap_or_else(|| panic!("{what}: extra too-long"));
                    assert!(w.len() > max, "{what}: {w:?} is not too long");
                    break;
                }
                Input::Eof => {
                    // Only the empty remainder after a final newline may be left.
                    let rest: Vec<&[u8]> = want.collect();
                    assert!(
                        rest.is_empty()
                            || (ends_with_newline && rest == [b""])
                            || stream.is_empty(),
                        "{what}: lines left unread: {rest:?}"
                    );
                    break;
                }
            }
        }
    }
}

#[test]
fn fuzz_console_lines_framing_and_gate() {
    let (seed, cases) = params();
    let started = Instant::now();
    let mut rng = Rng(seed ^ 0xc0_501e);
    let mut run = ConsoleRun::default();
    console_sessions(&mut rng, cases, seed, &mut run);
    console_framing(&mut rng, cases / 4, seed, &mut run);
    eprintln!(
        "fuzz: console: {} lines in {:.1}s ({} ran, {} sessions ended by a foreign line, {} wrong \
         passwords, {} logins), {} framed lines",
        run.lines,
        started.elapsed().as_secs_f64(),
        run.ran,
        run.closed_foreign,
        run.wrong_passwords,
        run.authed,
        run.framed
    );
    // The run reached every branch.
    assert!(run.ran > cases / 20, "{run:?}");
    assert!(run.closed_foreign > cases / 50, "{run:?}");
    assert!(run.wrong_passwords > 0 && run.authed > 0, "{run:?}");
    assert!(run.framed > cases / 10, "{run:?}");
}

// ---------------------------------------------------------------------------------------------
// The file kinds beyond files, directories and symlinks (-H -S -D -X -A): hostile device
// numbers, sparse extents, attributes and hard link targets, in every manifest above, and a
// decoder run of their own.

/// Attribute names a hostile push may carry: the namespaces makuo carries and others, the
/// ones only a privileged member applies, over-long names.
fn hostile_xattr(rng: &mut Rng) -> Xattr {
    let acl = |n: usize| {
        let mut v = 2u32.to_le_bytes().to_vec();
        for i in 0..n {
            v.extend([1 << (i % 6), 0, 6, 0, 0xff, 0xff, 0xff, 0xff]);
        }
        v
    };
    let name: Vec<u8> = match rng.below(12) {
        0..=3 => format!("user.k{}", rng.below(4)).into_bytes(),
        4 => b"trusted.overlay.opaque".to_vec(),
        5 => b"security.capability".to_vec(),
        6 => b"system.posix_acl_access".to_vec(),
        7 => b"system.posix_acl_default".to_vec(),
        8 => b"system.nfs4_acl".to_vec(),
        9 => format!("user.{}", "n".repeat(260)).into_bytes(),
        10 => b"user.".to_vec(),
        _ => noise(rng, 20),
    };
    let value = if name.starts_with(b"system.posix_acl") && rng.chance(0.8) {
        let mut v = acl(rng.below(6) as usize);
        if rng.chance(0.2) {
            v.push(0);
        }
        v
    } else {
        // Values at and over the cap, rarely: the engine holds up to 64 manifests at once.
        match rng.below(100) {
            0 => vec![0; 64 << 10],
            1 => vec![0; (64 << 10) + 1],
            _ => noise(rng, 40),
        }
    };
    Xattr { name, value }
}

/// Decorates a hostile manifest with what the file kinds carry: device numbers (sometimes on
/// the wrong kind, sometimes missing), sparse extents, attributes (sometimes unsorted, in
/// foreign namespaces, over the caps, on kinds that have none), hard link targets (earlier
/// files, directories, later or foreign paths), and the `-X`/`-A` switches.
fn hostile_kinds(rng: &mut Rng, m: &mut Manifest) {
    if rng.chance(0.5) {
        decorate_kinds(rng, m);
    }
}

fn decorate_kinds(rng: &mut Rng, m: &mut Manifest) {
    m.options.xattrs = rng.chance(0.5);
    m.options.acls = rng.chance(0.5);
    let paths: Vec<Vec<u8>> = m.entries.iter().map(|e| e.path.clone()).collect();
    for i in 0..m.entries.len() {
        let e = &mut m.entries[i];
        if (e.kind == EntryKind::Device && rng.chance(0.9)) || rng.chance(0.05) {
            e.extra.get_mut().device = Some(DevNum {
                block: rng.chance(0.5),
                major: *pick(rng, &[0, 1, 7, 8, u32::MAX]),
                minor: *pick(rng, &[0, 3, 5, u32::MAX]),
            });
        }
        if e.kind == EntryKind::File && rng.chance(0.4) {
            let size = e.size;
            let spans = match rng.below(5) {
                0 => vec![],
                1 => vec![(0, size.min(10))],
                2 => vec![(size / 2, size - size / 2)],
                3 => (0..rng.below(64))
                    .map(|k| (k * (size / 64 + 1), 1))
                    .take_while(|&(a, _)| a < size)
                    .collect(),
                _ => vec![(size.saturating_sub(1), 1)],
            };
            e.extra.get_mut().extents = Extents::new(spans, size).ok();
        }
        if rng.chance(0.3) {
            let mut xs: Vec<Xattr> = (0..1 + rng.below(4)).map(|_| hostile_xattr(rng)).collect();
            if rng.chance(0.8) {
                xs.sort();
                xs.dedup_by(|a, b| a.name == b.name);
            }
            e.extra.get_mut().xattrs = xs;
        }
        if e.kind == EntryKind::HardLink {
            e.target = match rng.below(4) {
                0 if i > 0 => paths[rng.below(i as u64) as usize].clone(),
                1 => pick(rng, &paths).clone(),
                2 => b"site/index.html".to_vec(),
                _ => e.target.clone(),
            };
        }
    }
}

/// No file in the base may carry an attribute only a member reproducing owners applies.
fn assert_no_privileged_xattrs(p: &Path) {
    let mut names = vec![0u8; 64 << 10];
    let n = rustix::fs::llistxattr(p, &mut names).unwrap_or(0);
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        assert!(
            !(name.starts_with(b"trusted.") || name.starts_with(b"security.capability")),
            "{} got {} from the network",
            p.display(),
            String::from_utf8_lossy(name)
        );
    }
}

/// What a decoded manifest must satisfy whatever the bytes were.
fn check_kinds_invariants(d: &Manifest) {
    use makuo::proto::manifest::ext::{check_xattrs, MAX_EXTENTS};
    for (i, e) in d.entries.iter().enumerate() {
        assert_eq!(e.kind == EntryKind::Device, e.device().is_some(), "{e:?}");
        if let Some(x) = e.extents() {
            assert_eq!(e.kind, EntryKind::File);
            assert!(x.spans().len() <= MAX_EXTENTS);
            assert!(x.spans().iter().all(|&(a, n)| n > 0 && a + n <= e.size));
            assert!(x.data_len() <= e.size);
        }
        assert!(check_xattrs(e.xattrs(), e.kind, d.options.xattrs, d.options.acls).is_ok());
        if e.kind == EntryKind::HardLink {
            assert!(
                d.entries[..i]
                    .iter()
                    .any(|t| t.kind == EntryKind::File && t.path == e.target),
                "hard link {:?} to {:?}",
                String::from_utf8_lossy(&e.path),
                String::from_utf8_lossy(&e.target)
            );
        }
    }
}

#[test]
fn fuzz_manifest_kinds() {
    let (seed, cases) = params();
    let mut rng = Rng(seed ^ 0x006b_696e_6473);
    let outside = Path::new("/nonexistent-outside");
    let (mut decoded, mut with_kinds) = (0u64, 0u64);
    let mut other = hostile_manifest(&mut rng, outside).encode();
    for _ in 0..cases / 10 {
        let mut m = hostile_manifest(&mut rng, outside);
        decorate_kinds(&mut rng, &mut m);
        let bytes = m.encode();
        for n in 0..3 {
            let mut b = bytes.clone();
            mutate(&mut rng, &mut b, &other, n);
            if let Ok(d) = Manifest::decode(&b) {
                decoded += 1;
                if d.entries.iter().any(|e| {
                    e.device().is_some() || e.extents().is_some() || !e.xattrs().is_empty()
                }) {
                    with_kinds += 1;
                }
                check_kinds_invariants(&d);
                assert_eq!(Manifest::decode(&d.encode()).as_ref(), Ok(&d));
            }
        }
        other = bytes;
    }
    eprintln!(
        "fuzz: kinds: {} manifests, {decoded} decoded, {with_kinds} carrying kinds",
        cases / 10 * 3
    );
    assert!(
        with_kinds > 0,
        "no manifest with the new fields ever decoded"
    );
}
