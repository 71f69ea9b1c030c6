//! makuo's temp names: `.{name}.makuo-XXXXXX` (random suffix, at most NAME_MAX bytes), how
//! to recognise one, and making a fresh one that does not exist yet.

use std::io;

/// Marks makuo's temp names: `.{basename}.makuo-XXXXXX`.
pub(super) const TEMP_TAG: &[u8] = b".makuo-";
/// Length of the random part of a temp name.
pub(super) const SUFFIX_LEN: usize = 6;
/// Longest file name most file systems accept.
pub(super) const NAME_MAX: usize = 255;
/// Characters of the random suffix.
pub(super) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Whether a file name is one of makuo's temp names.
pub(super) fn is_temp_name(name: &[u8]) -> bool {
    let n = name.len();
    n > 1 + TEMP_TAG.len() + SUFFIX_LEN
        && name[0] == b'.'
        && &name[n - SUFFIX_LEN - TEMP_TAG.len()..n - SUFFIX_LEN] == TEMP_TAG
        && name[n - SUFFIX_LEN..].iter().all(u8::is_ascii_alphanumeric)
}

/// A fresh temp name for `name`: `.{name}.makuo-XXXXXX`, at most [`NAME_MAX`] bytes.
pub(super) fn temp_name(name: &[u8]) -> io::Result<Vec<u8>> {
    let r = temp_suffix()?;
    let keep = name.len().min(NAME_MAX - 1 - TEMP_TAG.len() - SUFFIX_LEN);
    let mut t = Vec::with_capacity(NAME_MAX);
    t.push(b'.');
    t.extend_from_slice(&name[..keep]);
    t.extend_from_slice(TEMP_TAG);
    t.extend(r.iter().map(|b| ALNUM[*b as usize % ALNUM.len()]));
    Ok(t)
}

/// Random bytes for a temp name: a splitmix64 stream seeded once per thread from the OS
/// (one getrandom per file was a measurable share of a 10,000-file commit). The names
/// need to be hard to guess, not secret: `O_EXCL|O_NOFOLLOW` is what makes them safe.
pub(super) fn temp_suffix() -> io::Result<[u8; SUFFIX_LEN]> {
    thread_local! {
        static STATE: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
    }
    let mut x = match STATE.get() {
        Some(x) => x,
        None => {
            let mut seed = [0u8; 8];
            getrandom::getrandom(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
            u64::from_ne_bytes(seed)
        }
    };
    let mut r = [0u8; SUFFIX_LEN];
    for chunk in r.chunks_mut(8) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_ne_bytes()[..chunk.len()]);
    }
    STATE.set(Some(x));
    Ok(r)
}

/// Runs `make` with fresh temp names until one does not exist yet.
pub(super) fn with_temp_name<T>(
    name: &[u8],
    mut make: impl FnMut(&[u8]) -> io::Result<T>,
) -> io::Result<(Vec<u8>, T)> {
    for _ in 0..16 {
        let t = temp_name(name)?;
        match make(&t) {
            Ok(v) => return Ok((t, v)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temp name",
    ))
}
