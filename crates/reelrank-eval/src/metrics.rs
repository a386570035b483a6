//! Ranking metrics, as defined in PROTOCOL.md.

use std::collections::HashSet;

/// `|top_k ∩ relevant| / |relevant|` (not divided by `min(k, |relevant|)`).
pub fn recall_at_k(ranked: &[u32], relevant: &HashSet<u32>, k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    ranked.iter().take(k).filter(|i| relevant.contains(i)).count() as f64 / relevant.len() as f64
}

/// Binary-gain NDCG: `Σ_{hits at rank r} 1/log2(r+1)` over the ideal `Σ_{r ≤ min(k, |relevant|)} 1/log2(r+1)`.
pub fn ndcg_at_k(ranked: &[u32], relevant: &HashSet<u32>, k: usize) -> f64 {
    let gain = |rank: usize| 1.0 / ((rank + 1) as f64).log2();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, i)| relevant.contains(i))
        .map(|(r, _)| gain(r + 1))
        .sum();
    let ideal: f64 = (1..=k.min(relevant.len())).map(gain).sum();
    if ideal == 0.0 {
        0.0
    } else {
        dcg / ideal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        let relevant: HashSet<u32> = [3, 7].into();
        let ranked = [3, 1, 7, 2];
        assert_eq!(recall_at_k(&ranked, &relevant, 2), 0.5);
        assert_eq!(recall_at_k(&ranked, &relevant, 3), 1.0);
        // DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3).
        let expected = 1.5 / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at_k(&ranked, &relevant, 3) - expected).abs() < 1e-12);
        assert_eq!(ndcg_at_k(&[3, 7], &relevant, 20), 1.0);
        assert_eq!(recall_at_k(&ranked, &HashSet::new(), 3), 0.0);
    }
}
