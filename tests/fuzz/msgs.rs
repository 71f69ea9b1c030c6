//! Structured messages and transfers.

use super::lan::header;
use super::*;

pub(crate) const SENDERS: [u64; 3] = [
    0xa11c_e000_0000_0001,
    0xb0b0_0000_0000_0002,
    0xe5e5_0000_0000_0003,
];

pub(crate) fn encode(m: &Msg<'_>, node: u64, seq: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 70_000];
    let n = m.encode(&header(node, seq), &mut buf);
    buf.truncate(n);
    // A transfer's datagrams are all held at once: not 70 kB each.
    buf.shrink_to_fit();
    buf
}

/// Paths a hostile sender would try: through pre-planted symlinks (`escape`, `abs`), through
/// a symlink it creates itself (`lnk`), over the base itself, odd bytes, over-long names.
pub(crate) fn hostile_path(rng: &mut Rng) -> Vec<u8> {
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

pub(crate) fn hostile_manifest(rng: &mut Rng, outside: &Path) -> Manifest {
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
pub(crate) fn hostile_table(rng: &mut Rng) -> FilterTable {
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
pub(crate) fn stream_datagrams(
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
pub(crate) fn structured_transfer(
    rng: &mut Rng,
    victim: u64,
    outside: &Path,
    seq: &mut u64,
) -> Vec<Vec<u8>> {
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
pub(crate) fn regressions(rng: &mut Rng, victim: u64, seq: &mut u64) -> Vec<Vec<Vec<u8>>> {
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
pub(crate) fn random_message(rng: &mut Rng, victim: u64, xfers: &[u32], seq: &mut u64) -> Vec<u8> {
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
pub(crate) fn xfer_of(d: &[u8]) -> Option<u32> {
    match d.get(3).copied()? {
        wire::kind::HEARTBEAT | wire::kind::LEAVE => None,
        _ => Some(u32::from_be_bytes(d.get(24..28)?.try_into().ok()?)),
    }
}
