//! The byte-level codec under every message: a bounds-checked [`Reader`] over untrusted
//! bytes, a growable [`Writer`] and a fixed-capacity [`Cursor`], with LEB128 varints.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Known, WireError};

/// Bounds-checked reader over untrusted bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Takes `n` raw bytes.
    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// Takes everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.raw(1)?[0])
    }
    /// Big-endian u16.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.raw(2)?.try_into().unwrap()))
    }
    /// Big-endian u32.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.raw(4)?.try_into().unwrap()))
    }
    /// Big-endian u64.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.raw(8)?.try_into().unwrap()))
    }
    /// LEB128 varint, at most 10 bytes, no overflow.
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(WireError::BadValue("varint"));
            }
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::BadValue("varint"))
    }
    /// A varint count of items that each take at least `min_item` bytes; refuses counts the
    /// remaining input cannot hold (so callers may allocate `count` items safely).
    pub fn count(&mut self, min_item: usize) -> Result<usize, WireError> {
        let n = self.varint()?;
        if n > (self.remaining() / min_item.max(1)) as u64 {
            return Err(WireError::TooLarge("count"));
        }
        Ok(n as usize)
    }
    /// Varint-length-prefixed bytes of at most `max` bytes.
    pub fn bytes_v(&mut self, max: usize) -> Result<&'a [u8], WireError> {
        let n = self.varint()?;
        if n > max as u64 {
            return Err(WireError::TooLarge("string"));
        }
        self.raw(n as usize)
    }
    /// u8-length-prefixed bytes.
    pub fn bytes8(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u8()? as usize;
        self.raw(n)
    }
    /// u16-length-prefixed bytes.
    pub fn bytes16(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u16()? as usize;
        self.raw(n)
    }
    /// Fails if bytes remain.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(WireError::Trailing)
        }
    }
}

/// Growable writer (for manifests and reports, which span many datagrams).
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Empty writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// The bytes written.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
    /// Appends raw bytes.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// LEB128 varint.
    pub fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(b);
                return;
            }
            self.buf.push(b | 0x80);
        }
    }
    /// Varint-length-prefixed bytes.
    pub fn bytes_v(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.raw(b);
    }
}

/// Fixed-capacity writer into a caller's datagram buffer.
pub struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Writes into `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    /// Bytes written.
    pub fn len(&self) -> usize {
        self.pos
    }
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }
    /// Room left.
    pub fn room(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Appends raw bytes; panics if the caller's buffer is too small (a programming error:
    /// callers size messages from [`super::block_size`] and the MTU).
    pub fn raw(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.raw(&[v]);
    }
    /// Big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.raw(&v.to_be_bytes());
    }
    /// Big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.raw(&v.to_be_bytes());
    }
    /// Big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.raw(&v.to_be_bytes());
    }
    /// LEB128 varint.
    pub fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.u8(b);
                return;
            }
            self.u8(b | 0x80);
        }
    }
    /// u8-length-prefixed bytes (truncated to 255).
    pub fn bytes8(&mut self, b: &[u8]) {
        let b = &b[..b.len().min(255)];
        self.u8(b.len() as u8);
        self.raw(b);
    }
    /// u16-length-prefixed bytes (truncated to 65535).
    pub fn bytes16(&mut self, b: &[u8]) {
        let b = &b[..b.len().min(65535)];
        self.u16(b.len() as u16);
        self.raw(b);
    }
}

/// Bytes a varint takes.
pub fn varint_len(v: u64) -> usize {
    (64 - v.max(1).leading_zeros() as usize).div_ceil(7)
}

/// Reads a socket address (family byte, address, port).
pub(super) fn read_addr(r: &mut Reader<'_>) -> Result<SocketAddr, WireError> {
    let ip = match r.u8()? {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(r.raw(4)?).unwrap())),
        6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(r.raw(16)?).unwrap())),
        _ => return Err(WireError::BadValue("address family")),
    };
    Ok(SocketAddr::new(ip, r.u16()?))
}

/// Writes a socket address (family byte, address, port).
pub fn write_addr(c: &mut Cursor<'_>, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(v4) => {
            c.u8(4);
            c.raw(&v4.octets());
        }
        IpAddr::V6(v6) => {
            c.u8(6);
            c.raw(&v6.octets());
        }
    }
    c.u16(a.port());
}

/// Encoded size of one known-member entry.
pub fn known_len(k: &Known<'_>) -> usize {
    8 + if k.addr.is_ipv4() { 5 } else { 17 } + 2 + 4 + 1 + 1 + k.name.len().min(255)
}
