//! The decoder's own property: what decodes re-encodes to the same bytes.

use super::*;

pub(crate) fn check_decode(d: &[u8], scratch: &mut [u8]) -> bool {
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
