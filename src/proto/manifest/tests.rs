//! Tests of the manifest codec, its bounds, the payload layout and itemized output.

use super::*;

/// Issue 12 review, F1: the filter rules a manifest carries are capped when decoding
/// (simple list, filter table and per-directory lists together), and what they may take
/// compiled is counted when sizing it.
#[test]
fn manifest_filter_rules_are_capped_and_counted() {
    let with_rules = |n: usize, len: usize, table: bool| {
        let mut m = Manifest::default();
        let rules: Vec<WireRule> = (0..n)
            .map(|i| WireRule {
                flags: WireRule::RECEIVER,
                pattern: format!("{i:06}{}", "x".repeat(len.saturating_sub(6))),
            })
            .collect();
        if table {
            // Half the rules in a per-directory list.
            let mut t = FilterTable::default();
            t.rules.push(WireRule {
                flags: WireRule::DIR_MERGE,
                pattern: ".f".into(),
            });
            let (a, b) = rules.split_at(n / 2);
            t.rules.extend_from_slice(a);
            t.dirs.push(DirRules {
                merge: 0,
                dir: b".".to_vec(),
                clear: false,
                rules: b.to_vec(),
            });
            m.filter = Some(t);
        } else {
            m.rules = rules
                .into_iter()
                .map(|w| FilterRule {
                    include: false,
                    pattern: w.pattern,
                })
                .collect();
        }
        m.encode()
    };
    for table in [false, true] {
        // Within the caps (the table's dir-merge rule and list count too).
        let b = with_rules(MAX_FILTER_RULES - 2, 8, table);
        Manifest::decode(&b).unwrap();
        let est = decoded_memory(&b).unwrap();
        assert!(
            est >= (MAX_FILTER_RULES as u64 - 2) * RULE_MEMORY,
            "{table}: {est}"
        );
        let b = with_rules(MAX_FILTER_RULES + 1, 8, table);
        assert!(
            matches!(Manifest::decode(&b), Err(WireError::TooLarge(_))),
            "{table}"
        );
        assert!(matches!(decoded_memory(&b), Err(WireError::TooLarge(_))));
        // The attack's manifest: 400 rules of 3.9 KB.
        let b = with_rules(400, 3900, table);
        assert!(
            matches!(Manifest::decode(&b), Err(WireError::TooLarge(_))),
            "{table}"
        );
        assert!(matches!(decoded_memory(&b), Err(WireError::TooLarge(_))));
    }
}

fn sample() -> Manifest {
    let mut f = Entry::file(b"htdocs/index.html", 1234, 0o644, 1_700_000_000);
    f.mtime_nsec = 5;
    f.uid = 70_000;
    f.gid = 4_000_000_000;
    f.checksum = Some([7; 16]);
    Manifest {
        options: PushOptions {
            delete: true,
            ..Default::default()
        },
        roots: vec![b"htdocs".to_vec()],
        rules: vec![FilterRule {
            include: false,
            pattern: "*.tmp".into(),
        }],
        entries: vec![
            Entry::dir(b"htdocs", 0o755, 1_600_000_000),
            f,
            Entry::symlink(b"htdocs/link", b"../x", -5),
            Entry::file(b"htdocs/\xff\xfe", 0, 0o4755, 0),
        ],
        filter: None,
        started_ms: None,
    }
}

fn with_table() -> Manifest {
    let mut m = sample();
    m.rules.clear();
    m.filter = Some(FilterTable {
        rules: vec![
            WireRule {
                flags: WireRule::RECEIVER | WireRule::NEGATE,
                pattern: "*.php".into(),
            },
            WireRule {
                flags: WireRule::DIR_MERGE | WireRule::NO_INHERIT,
                pattern: ".rsync-filter".into(),
            },
        ],
        dirs: vec![DirRules {
            merge: 1,
            dir: b"htdocs".to_vec(),
            clear: true,
            rules: vec![WireRule {
                flags: WireRule::SENDER | WireRule::RECEIVER,
                pattern: "/x".into(),
            }],
        }],
    });
    m
}

#[test]
fn manifest_filter_table_round_trip_and_old_form_unchanged() {
    let m = with_table();
    let b = m.encode();
    assert_eq!(Manifest::decode(&b).unwrap(), m);
    // Receivers size the manifest before decoding it: the section counts too.
    let mut bare = with_table();
    bare.filter = None;
    assert!(decoded_memory(&b).unwrap() > decoded_memory(&bare.encode()).unwrap());
    for n in 0..b.len() {
        // A cut exactly before the section is the same manifest without it.
        if let Ok(d) = Manifest::decode(&b[..n]) {
            assert!(d.filter.is_none(), "prefix {n} decoded with a table");
        }
    }
    // Without a table the encoding is what it was before tables existed: no section.
    let plain = sample().encode();
    assert_eq!(Manifest::decode(&plain).unwrap().filter, None);
    let mut bad = with_table();
    bad.filter.as_mut().unwrap().dirs[0].merge = 0;
    assert!(
        Manifest::decode(&bad.encode()).is_err(),
        "merge index not a dir-merge"
    );
    let mut bad = with_table();
    bad.filter.as_mut().unwrap().dirs[0].dir = b"../x".to_vec();
    assert!(Manifest::decode(&bad.encode()).is_err());
    let mut bad = with_table();
    bad.filter.as_mut().unwrap().rules[0].flags = 0x80;
    assert!(Manifest::decode(&bad.encode()).is_err());
    // A rule put first lands in the section when there is one (dir-merge indices follow).
    let mut m = with_table();
    m.exclude_first("/x".into());
    let t = m.filter.as_ref().unwrap();
    assert_eq!(t.rules[0].pattern, "/x");
    assert_eq!(t.dirs[0].merge, 2);
    assert!(m.rules.is_empty());
    assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    let mut extra = plain.clone();
    extra.push(9);
    assert!(Manifest::decode(&extra).is_err(), "unknown section");
}

#[test]
fn manifest_round_trip() {
    let m = sample();
    let b = m.encode();
    assert_eq!(Manifest::decode(&b).unwrap(), m);
}

#[test]
fn decoded_memory_is_estimated_without_decoding() {
    let m = sample();
    let b = m.encode();
    let est = decoded_memory(&b).unwrap();
    let paths: usize = m
        .entries
        .iter()
        .map(|e| e.path.len() + e.target.len())
        .sum();
    assert!(est >= paths as u64 + 4 * ENTRY_MEMORY, "{est}");
    // 100,000 entries sharing a 4 KiB prefix: about 1.2 MB encoded, 400 MB decoded.
    let prefix = "p/".repeat(2040);
    let mut w = Writer::new();
    w.u8(0);
    w.varint(0);
    w.varint(0);
    w.varint(100_000);
    for i in 0..100_000u32 {
        let name = format!("{i:06}");
        if i == 0 {
            w.varint(0);
            w.bytes_v(format!("{prefix}{name}").as_bytes());
        } else {
            w.varint(prefix.len() as u64);
            w.bytes_v(name.as_bytes());
        }
        w.u8(1); // kind: file
        w.u8(0); // entry flags
        for v in [0, 0o644, 0, 0, 0] {
            w.varint(v); // size, mode, mtime, uid, gid
        }
    }
    let b = w.into_vec();
    assert!(b.len() < 2_000_000, "{}", b.len());
    let est = decoded_memory(&b).unwrap();
    assert!(est > 400_000_000, "{est}");
    for n in 0..100 {
        assert!(decoded_memory(&b[..n]).is_err());
    }
}

#[test]
fn manifest_truncations_are_errors_not_panics() {
    let b = sample().encode();
    for n in 0..b.len() {
        assert!(Manifest::decode(&b[..n]).is_err(), "prefix {n} accepted");
    }
}

#[test]
fn hostile_paths_are_refused() {
    for bad in [
        &b"/etc/passwd"[..],
        b"a/../../x",
        b"a/./b",
        b"a//b",
        b"a\0b",
        b"",
    ] {
        assert!(check_rel_path(bad).is_err(), "{bad:?}");
    }
    assert!(check_rel_path(b"a/b.c/..d").is_ok());
    let mut m = sample();
    m.entries[1].path = b"htdocs/../../etc/shadow".to_vec();
    assert!(Manifest::decode(&m.encode()).is_err());
}

#[test]
fn layout_finds_overlaps() {
    let m = Manifest {
        entries: vec![
            Entry::file(b"a", 10, 0o644, 0),
            Entry::file(b"b", 0, 0o644, 0),
            Entry::file(b"c", 5, 0o644, 0),
            Entry::file(b"d", 20, 0o644, 0),
        ],
        ..Default::default()
    };
    let l = Layout::new(&m, &[0b1101]);
    assert_eq!(l.spans, vec![(0, 0, 10), (2, 10, 5), (3, 15, 20)]);
    assert_eq!(l.len, 35);
    assert_eq!(l.overlapping(0, 10), 0..1);
    assert_eq!(l.overlapping(9, 11), 0..2);
    assert_eq!(l.overlapping(15, 16), 2..3);
    assert_eq!(l.overlapping(35, 40), 3..3);
}

/// A manifest with every kind and every extension section.
fn every_kind() -> Manifest {
    let mut m = sample();
    m.options.xattrs = true;
    m.options.acls = true;
    let mut dev = Entry {
        kind: EntryKind::Device,
        ..Entry::file(b"htdocs/null", 0, 0o666, 1)
    };
    dev.extra.get_mut().device = Some(DevNum {
        block: false,
        major: 1,
        minor: 3,
    });
    let mut sparse = Entry::file(b"htdocs/s.img", 1 << 40, 0o644, 2);
    sparse.extra.get_mut().extents =
        Some(Extents::new(vec![(0, 10), (1 << 30, 4096)], 1 << 40).unwrap());
    let acl = [
        2u32.to_le_bytes().to_vec(),
        vec![1, 0, 6, 0, 255, 255, 255, 255],
    ]
    .concat();
    m.entries[1].extra.get_mut().xattrs = vec![
        Xattr {
            name: ext::ACL_ACCESS.to_vec(),
            value: acl,
        },
        Xattr {
            name: b"user.x".to_vec(),
            value: b"\0\xff".to_vec(),
        },
    ];
    m.entries.extend([
        Entry {
            kind: EntryKind::HardLink,
            target: b"htdocs/index.html".to_vec(),
            ..Entry::file(b"htdocs/index2.html", 0, 0o644, 0)
        },
        dev,
        Entry {
            kind: EntryKind::Fifo,
            ..Entry::file(b"htdocs/pipe", 0, 0o600, 0)
        },
        sparse,
        Entry {
            kind: EntryKind::Socket,
            ..Entry::file(b"htdocs/sock", 0, 0o600, 0)
        },
    ]);
    m
}

#[test]
fn every_kind_round_trips_and_truncations_fail() {
    let m = every_kind();
    let b = m.encode();
    assert_eq!(Manifest::decode(&b).unwrap(), m);
    for n in 0..b.len() {
        assert!(Manifest::decode(&b[..n]).is_err(), "prefix {n} accepted");
    }
    // Without them, a manifest ends with its last entry, as before the sections existed:
    // one more byte is refused.
    let plain = sample().encode();
    assert_eq!(plain[0] & (OPT_XATTRS | OPT_ACLS), 0);
    let mut trailing = plain.clone();
    trailing.push(0);
    assert!(Manifest::decode(&trailing).is_err());
}

#[test]
fn malformed_extensions_are_refused() {
    let bad = |f: &dyn Fn(&mut Manifest)| {
        let mut m = every_kind();
        f(&mut m);
        Manifest::decode(&m.encode()).is_err()
    };
    // A hard link to a path that is not an earlier file of the push.
    assert!(bad(&|m| m.entries[4].target = b"htdocs/elsewhere".to_vec()));
    assert!(bad(&|m| m.entries[4].target = b"htdocs".to_vec()));
    assert!(bad(&|m| m.entries[4].target = b"htdocs/link".to_vec()));
    assert!(bad(&|m| m.entries[4].target = b"../../etc/passwd".to_vec()));
    assert!(bad(&|m| {
        let l = m.entries.remove(4);
        m.entries.insert(1, l);
    }));
    // A device without its number; a number on something else.
    assert!(bad(&|m| m.entries[5].extra.get_mut().device = None));
    assert!(bad(
        &|m| m.entries[6].extra.get_mut().device = m.entries[5].device()
    ));
    // Extents on a non-file; attributes on a symlink or without -X/-A.
    assert!(bad(
        &|m| m.entries[0].extra.get_mut().extents = Some(Extents::default())
    ));
    assert!(bad(&|m| m.entries[2].extra = m.entries[1].extra.clone()));
    assert!(bad(&|m| m.options.acls = false));
    assert!(bad(&|m| m.options.xattrs = false));
    assert!(bad(&|m| m.entries[1].extra.get_mut().xattrs.reverse()));
    assert!(bad(
        &|m| m.entries[1].extra.get_mut().xattrs[1].name = b"system.nfs4_acl".to_vec()
    ));
    assert!(bad(&|m| m.entries[1].extra.get_mut().xattrs[0]
        .value
        .push(0)));
    // With -X/-A and no attribute anywhere, the (empty) section is still there.
    let mut m = sample();
    m.options.xattrs = true;
    let b = m.encode();
    assert_eq!(Manifest::decode(&b).unwrap(), m);
    assert!(b.len() > sample().encode().len() + 2);
    // Hand-made sections: unknown tag, out of order, repeated, index past the end.
    let base = sample().encode();
    for tail in [
        &[9u8, 1, 0][..],
        &[4, 1, 0, 2, 1, 0],
        &[2, 5, 1, 0, b'c', 1, 3, 2, 5, 1, 0, b'c', 1, 3],
        &[2, 5, 1, 9, b'c', 1, 3],
        &[2, 5, 1, 0, b'x', 1, 3],
        &[2, 1, 0],
    ] {
        let mut b = base.clone();
        b.extend_from_slice(tail);
        assert!(Manifest::decode(&b).is_err(), "{tail:?} accepted");
    }
}

#[test]
fn memory_estimate_counts_the_extras() {
    let m = every_kind();
    let with = decoded_memory(&m.encode()).unwrap();
    let mut plain = m.clone();
    plain.options.xattrs = false;
    plain.options.acls = false;
    for e in &mut plain.entries {
        e.extra = Extra::default();
        if e.kind == EntryKind::Device {
            e.kind = EntryKind::Fifo;
        }
    }
    let without = decoded_memory(&plain.encode()).unwrap();
    // Two extents (24 bytes each), two attributes with their names and values, three
    // entries' boxed extras.
    let attrs: usize = m.entries[1]
        .xattrs()
        .iter()
        .map(|x| x.name.len() + x.value.len())
        .sum();
    assert!(
        with >= without + 2 * 24 + attrs as u64 + 3 * 80,
        "{with} vs {without}"
    );
}

#[test]
fn extras_cost_an_entry_one_pointer() {
    // ENTRY_MEMORY (what a receiver accounts per entry) was set for the entry without
    // extras; they are boxed so that it still holds.
    assert!(
        std::mem::size_of::<Entry>() <= 112,
        "{}",
        std::mem::size_of::<Entry>()
    );
    assert!(std::mem::size_of::<Entry>() as u64 + 64 <= ENTRY_MEMORY);
}

#[test]
fn payload_of_a_sparse_file_is_its_data() {
    let m = every_kind();
    let l = Layout::new(&m, &[0xff, 0xff]);
    let sizes: Vec<u64> = l.spans.iter().map(|s| s.2).collect();
    assert_eq!(sizes, [1234, 4106]);
    let s = &m.entries[7];
    assert_eq!(s.file_ranges(5, 10), [(5, 5), (1 << 30, 5)]);
    assert_eq!(m.entries[1].file_ranges(5, 10), [(5, 10)]);
}

#[test]
fn itemize_every_kind_like_rsync() {
    let m = every_kind();
    let e = |i: usize| &m.entries[i];
    use change::*;
    assert_eq!(itemize(e(4), MISSING), "hf+++++++++");
    assert_eq!(
        itemize_suffix(e(4), MISSING),
        Some((" => ", &b"htdocs/index.html"[..]))
    );
    assert_eq!(itemize(e(4), LINK), "hf         ");
    assert_eq!(itemize(e(4), SIZE | TIME), "hf.st......");
    assert_eq!(itemize_suffix(e(4), SIZE | TIME), None);
    assert_eq!(itemize(e(5), MISSING), "cD+++++++++");
    assert_eq!(itemize(e(5), SUM | TIME), "cDc.t......");
    assert_eq!(itemize(e(6), TYPE), "cS+++++++++");
    assert_eq!(itemize(e(8), MISSING), "cS+++++++++");
    assert_eq!(itemize(e(1), ACL), ".f.......a.");
    assert_eq!(itemize(e(1), XATTR), ".f........x");
    assert_eq!(itemize(e(0), ACL | PERM), ".d...p...a.");
    assert_eq!(itemize(e(2), LINK | TIME), "cLc.t......");
    assert_eq!(itemize_suffix(e(2), 0), Some((" -> ", &b"../x"[..])));
}

#[test]
fn itemize_like_rsync() {
    let f = Entry::file(b"x", 1, 0o644, 0);
    assert_eq!(itemize(&f, change::MISSING), ">f+++++++++");
    assert_eq!(itemize(&f, change::SIZE | change::TIME), ">f.st......");
    assert_eq!(
        itemize(&Entry::dir(b"d", 0o755, 0), change::MISSING),
        "cd+++++++++"
    );
}

#[test]
fn the_push_start_travels_in_its_own_section() {
    let mut m = sample();
    let plain = m.encode();
    m.started_ms = Some(1_790_000_000_123);
    let b = m.encode();
    assert!(b.starts_with(&plain), "the section follows everything else");
    assert_eq!(m.tree_digest(&b), crate::proto::storage::md5_of(&plain));
    assert_eq!(Manifest::decode(&b).unwrap(), m);
    // Tag 5, length 9, count 1, the u64: a count other than 1 is refused.
    let mut bad = b.clone();
    let at = plain.len() + 2;
    assert_eq!(bad[at], 1);
    bad[at] = 2;
    assert!(Manifest::decode(&bad).is_err());
}
