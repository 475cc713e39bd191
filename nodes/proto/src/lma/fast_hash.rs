//! The hasher of the LMA's per-MN tables: rustc's FxHash (the
//! `rustc-hash` crate), several times cheaper than the default SipHash on
//! the short MN-IDs looked up a few times per PBU. It does not resist
//! chosen collisions; that is safe here because the keys of these tables
//! are the MN-IDs of configured policies (an MN-ID read from the wire is
//! only looked up, never inserted), so no sender can fill a bucket.

pub(crate) type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    /// The load's MN-IDs, which differ in a digit or two, spread over the
    /// buckets: no two of 100,000 share a hash, so the map stays flat.
    #[test]
    fn close_mn_ids_hash_apart() {
        let b = rustc_hash::FxBuildHasher;
        let hashes: std::collections::BTreeSet<u64> =
            (0..100_000u32).map(|i| b.hash_one(crate::load::mn_id(i).as_str())).collect();
        assert_eq!(hashes.len(), 100_000);
        // The top bits pick the bucket group: they must vary too.
        let top: std::collections::BTreeSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(top.len() > 64, "only {} top-7-bit values", top.len());
    }
}
