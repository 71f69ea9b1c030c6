//! The file kinds beyond files, directories and symlinks (-H -S -D -X -A): hostile device
//! numbers, sparse extents, attributes and hard link targets, in every manifest above, and a
//! decoder run of their own.

use super::*;

/// Attribute names a hostile push may carry: the namespaces makuo carries and others, the
/// ones only a privileged member applies, over-long names.
pub(crate) fn hostile_xattr(rng: &mut Rng) -> Xattr {
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
pub(crate) fn hostile_kinds(rng: &mut Rng, m: &mut Manifest) {
    if rng.chance(0.5) {
        decorate_kinds(rng, m);
    }
}

pub(crate) fn decorate_kinds(rng: &mut Rng, m: &mut Manifest) {
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
pub(crate) fn assert_no_privileged_xattrs(p: &Path) {
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
pub(crate) fn check_kinds_invariants(d: &Manifest) {
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
pub(crate) fn fuzz_manifest_kinds() {
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
