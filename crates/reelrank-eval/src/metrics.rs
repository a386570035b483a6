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

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting half (the Mann–Whitney statistic over average ranks). `None` without
/// both classes.
pub fn auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut positives) = (0.0f64, 0usize);
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // Ranks start..end (1-based start+1..=end) share their average.
        let average_rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            if labels[i] {
                rank_sum += average_rank;
                positives += 1;
            }
        }
        start = end;
    }
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Group AUC: the per-user AUCs averaged with each user's example count as weight, over users
/// with both classes (`users[i]` is example `i`'s user). It measures what a feed needs, ordering
/// within one user's candidates, which a global AUC mixes with telling active users from idle
/// ones. `None` when no user has both classes.
pub fn gauc(scores: &[f32], labels: &[bool], users: &[u32]) -> Option<f64> {
    let mut by_user: std::collections::HashMap<u32, (Vec<f32>, Vec<bool>)> = Default::default();
    for ((&s, &y), &u) in scores.iter().zip(labels).zip(users) {
        let (s_u, y_u) = by_user.entry(u).or_default();
        s_u.push(s);
        y_u.push(y);
    }
    let (mut weighted, mut weight) = (0.0, 0.0);
    for (s, y) in by_user.values() {
        if let Some(a) = auc(s, y) {
            weighted += a * s.len() as f64;
            weight += s.len() as f64;
        }
    }
    (weight > 0.0).then(|| weighted / weight)
}

/// Mean binary cross-entropy of probabilities, clamped to `[1e-7, 1 − 1e-7]`.
pub fn logloss(probabilities: &[f32], labels: &[bool]) -> f64 {
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = f64::from(p).clamp(1e-7, 1.0 - 1e-7);
            if y {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    total / labels.len().max(1) as f64
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

    #[test]
    fn auc_counts_ordered_pairs_and_half_ties() {
        // Pairs (positive, negative): (0.9, 0.1) ✓, (0.9, 0.5) ✓, (0.5, 0.1) ✓, (0.5, 0.5) tie.
        let scores = [0.9, 0.5, 0.5, 0.1];
        let labels = [true, true, false, false];
        assert_eq!(auc(&scores, &labels), Some(3.5 / 4.0));
        assert_eq!(auc(&[0.1, 0.9], &[true, false]), Some(0.0));
        assert_eq!(auc(&[0.3, 0.4], &[true, true]), None);
        // User 0: AUC 1 over 2 examples; user 1: AUC 0 over 4; user 2 has one class only.
        let users = [0, 0, 1, 1, 1, 1, 2];
        let (scores, labels) =
            ([0.9, 0.1, 0.1, 0.2, 0.9, 0.8, 0.5], [true, false, true, true, false, false, true]);
        assert_eq!(gauc(&scores, &labels, &users), Some(2.0 / 6.0));
        assert_eq!(gauc(&[0.5], &[true], &[0]), None);
        let expected = -(0.8f64.ln() + 0.6f64.ln()) / 2.0;
        assert!((logloss(&[0.8, 0.4], &[true, false]) - expected).abs() < 1e-7);
    }
}
