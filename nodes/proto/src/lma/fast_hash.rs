//! The hasher of the LMA's per-MN tables: the multiply-rotate hash of
//! rustc's FxHash, several times cheaper than the default SipHash on the
//! short MN-IDs looked up a few times per PBU. It does not resist chosen
//! collisions; that is safe here because the keys of these tables are the
//! MN-IDs of configured policies (an MN-ID read from the wire is only
//! looked up, never inserted), so no sender can fill a bucket.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const K: u64 = 0x517c_c1b7_2722_0a95;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A map keyed by MN-ID (or another key no sender chooses).
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// The load's MN-IDs, which differ in a digit or two, spread over the
    /// buckets: no two of 100,000 share a hash, so the map stays flat.
    #[test]
    fn close_mn_ids_hash_apart() {
        let b = BuildHasherDefault::<FxHasher>::default();
        let hashes: std::collections::BTreeSet<u64> =
            (0..100_000u32).map(|i| b.hash_one(crate::load::mn_id(i).as_str())).collect();
        assert_eq!(hashes.len(), 100_000);
        // The low bits pick the bucket group: they must vary too.
        let low: std::collections::BTreeSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(low.len() > 64, "only {} top-7-bit values", low.len());
    }
}
