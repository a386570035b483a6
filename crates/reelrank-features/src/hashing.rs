//! Stable feature keys.

/// FNV-1a over `field`, a separator and `value`: the same key on every platform and release, so
/// saved tables stay valid. Fields keep equal values of different features apart
/// (`creator=7` is not `item=7`).
pub fn feature_key(field: &str, value: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in field.bytes().chain(std::iter::once(0xff)).chain(value.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// SplitMix64: a cheap, well-mixed function of a key, used to initialise rows deterministically
/// and wherever a key's bits must be uniform (FNV-1a's high bits are not, for short similar
/// strings).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_field_scoped() {
        // FNV-1a of [0xff] alone; this value must never change, or saved tables break.
        assert_eq!(
            feature_key("", ""),
            (0xcbf2_9ce4_8422_2325u64 ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3)
        );
        assert_ne!(feature_key("item", "7"), feature_key("creator", "7"));
        assert_ne!(feature_key("ab", "c"), feature_key("a", "bc"));
    }
}
