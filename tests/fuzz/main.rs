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

#[path = "../sim/lan.rs"]
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
use makuo::proto::wire::{self, Msg, Stream};
use makuo::proto::{Engine, Event, MAX_INBOUND, MAX_MEMBERS};
use makuo::seal::{Key, Opened, SealError, SealStats, Sealer};

mod alloc;
mod console;
mod corpus;
mod decoder;
mod engine;
mod fs;
mod kinds;
mod msgs;
mod mutate;
mod params;
mod roundtrip;
mod seal;

#[allow(unused_imports)]
use alloc::*;
#[allow(unused_imports)]
use console::*;
#[allow(unused_imports)]
use corpus::*;
#[allow(unused_imports)]
use decoder::*;
#[allow(unused_imports)]
use engine::*;
#[allow(unused_imports)]
use fs::*;
#[allow(unused_imports)]
use kinds::*;
#[allow(unused_imports)]
use msgs::*;
#[allow(unused_imports)]
use mutate::*;
#[allow(unused_imports)]
use params::*;
#[allow(unused_imports)]
use roundtrip::*;
#[allow(unused_imports)]
use seal::*;
