//! Selecting the best-scored entries, the one ordering every ranking in reelrank uses.

use std::cmp::Ordering;

/// Best first: higher score, then the smaller key, so equal scores rank reproducibly.
pub fn by_score<K: Ord>(a: &(K, f32), b: &(K, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0))
}

/// Keeps the `k` best `(key, score)` pairs of `pairs`, sorted best first ([`by_score`]), in
/// `O(n + k log k)`.
pub fn top_k<K: Ord>(pairs: &mut Vec<(K, f32)>, k: usize) {
    if pairs.len() > k {
        pairs.select_nth_unstable_by(k, by_score);
        pairs.truncate(k);
    }
    pairs.sort_unstable_by(by_score);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_with_ties_by_key() {
        let mut pairs = vec![(4, 0.5), (2, 0.9), (9, 0.5), (1, -1.0), (3, 0.5)];
        top_k(&mut pairs, 3);
        assert_eq!(pairs, [(2, 0.9), (3, 0.5), (4, 0.5)]);
        let mut few = vec![(1, 1.0)];
        top_k(&mut few, 5);
        assert_eq!(few, [(1, 1.0)]);
    }
}
