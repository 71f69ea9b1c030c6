//! The AEAD behind sealing, and the only file that names it: AES-256-GCM (`ring`'s assembly,
//! AES-NI and carry-less multiply) under a key per sending node, derived from the cluster key
//! with HKDF-SHA256. Everything else in `seal/` sees two types: [`ClusterKey`] (a cluster key
//! ready to derive) and [`NodeKey`] (one node's datagram key: seal and open). To change the
//! cipher again, change this file, bump `SEAL_FORMAT` and the derivation's salt, and update
//! `docs/protocol.md (Sealing)`.
//!
//! Why a key per node: AES-GCM's nonce is 96 bits, too short for the 64-bit node id and the
//! 64-bit sequence number whole (the pair is what never repeats), and deriving a subkey per
//! datagram (as XChaCha20 does with HChaCha20) is a cost on every datagram. Deriving one key
//! per node id instead moves the node id into the key: the nonce is the sequence number, the
//! key schedule is computed once per sender (and kept with its verified state), and a nonce
//! repeats under a key only if two processes draw the same node id.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hkdf::{Prk, Salt, HKDF_SHA256};

use super::keys::Key;

/// HKDF salt of the datagram keys: names the seal format, so another format's keys differ.
pub const KEY_SALT: &[u8] = b"makuo seal format 2";
/// Length of the authentication tag.
pub const TAG_LEN: usize = 16;

/// A cluster key ready to derive node keys (HKDF-SHA256's extract step done once).
pub(super) struct ClusterKey(Prk);

impl ClusterKey {
    pub(super) fn new(key: &Key) -> Self {
        Self(Salt::new(HKDF_SHA256, KEY_SALT).extract(key.as_bytes()))
    }

    /// The datagram key of node `node`: HKDF-SHA256 expand with `info` = the node id (8 bytes,
    /// big-endian), 32 bytes, as an AES-256-GCM key.
    pub(super) fn node_key(&self, node: u64) -> NodeKey {
        let id = node.to_be_bytes();
        let info: [&[u8]; 1] = [&id];
        let okm = self
            .0
            .expand(&info, &AES_256_GCM)
            .expect("32 bytes is far below HKDF's output limit");
        NodeKey(LessSafeKey::new(UnboundKey::from(okm)))
    }
}

/// One node's datagram key: seals that node's datagrams, opens them at the receivers.
pub(super) struct NodeKey(LessSafeKey);

/// The 96-bit nonce of datagram `seq`: 4 zero bytes, then `seq` (big-endian).
fn nonce(seq: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

impl NodeKey {
    /// Encrypts `in_out` in place under the nonce of `seq`, authenticating `ad` too; returns
    /// the tag. The caller guarantees that `seq` is never used twice with this key.
    pub(super) fn seal(&self, seq: u64, ad: &[u8], in_out: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce(seq), Aad::from(ad), in_out)
            .expect("datagrams are far below AES-GCM's message limit");
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag.as_ref());
        t
    }

    /// Checks and decrypts `in_out` = ciphertext | tag in place (the plaintext is the first
    /// `in_out.len() - TAG_LEN` bytes). On failure `in_out` may have been overwritten: a
    /// caller that tries another key keeps a copy.
    pub(super) fn open(&self, seq: u64, ad: &[u8], in_out: &mut [u8]) -> Result<(), ()> {
        self.0
            .open_in_place(nonce(seq), Aad::from(ad), in_out)
            .map(|_| ())
            .map_err(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the derivation and the cipher against values computed independently (Python's
    /// `cryptography`: HKDF-SHA256, then AESGCM).
    #[test]
    fn seal_aead_known_answer() {
        let k = ClusterKey::new(&Key::from_bytes(std::array::from_fn(|i| i as u8)));
        let nk = k.node_key(0x0123_4567_89ab_cdef);
        let mut m = *b"hello";
        let tag = nk.seal(1, b"ad", &mut m);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(&m), "e37ff368b3");
        assert_eq!(hex(&tag), "3f2eadfb7e60f59b297c72cc063fc12a");
        let mut ct = [&m[..], &tag[..]].concat();
        assert!(nk.open(1, b"ad", &mut ct).is_ok());
        assert_eq!(&ct[..5], b"hello");
        let mut ct = [&m[..], &tag[..]].concat();
        assert!(nk.open(2, b"ad", &mut ct).is_err(), "another nonce");
        let mut ct = [&m[..], &tag[..]].concat();
        assert!(
            k.node_key(2).open(1, b"ad", &mut ct).is_err(),
            "another node"
        );
    }
}
