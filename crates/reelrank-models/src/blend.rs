//! Several retrievers combined into one ranking.
//!
//! Scores of different models live on different scales (cosines, random-walk mass), so each part's
//! scores are standardised per user (`(s − mean) / std` over the catalog) before the weighted sum.

use crate::Retriever;

/// A weighted sum of standardised retriever scores.
pub struct Blend<'a> {
    parts: Vec<(&'a dyn Retriever, f32)>,
}

impl<'a> Blend<'a> {
    /// Blends `parts` with their weights.
    pub fn new(parts: Vec<(&'a dyn Retriever, f32)>) -> Blend<'a> {
        Blend { parts }
    }
}

impl Retriever for Blend<'_> {
    fn score_items(&self, user: u32, history: &[u32], scores: &mut [f32]) {
        scores.fill(0.0);
        let mut part_scores = vec![0.0f32; scores.len()];
        for (part, weight) in &self.parts {
            part.score_items(user, history, &mut part_scores);
            let n = part_scores.len().max(1) as f32;
            let mean = part_scores.iter().sum::<f32>() / n;
            let var = part_scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f32>() / n;
            let scale = weight / var.sqrt().max(1e-12);
            for (total, s) in scores.iter_mut().zip(&part_scores) {
                *total += (s - mean) * scale;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<f32>);
    impl Retriever for Fixed {
        fn score_items(&self, _user: u32, _history: &[u32], scores: &mut [f32]) {
            scores.copy_from_slice(&self.0);
        }
    }

    #[test]
    fn parts_on_different_scales_weigh_by_their_weights() {
        // Part a prefers item 0, part b (on a 1000x larger scale) prefers item 2.
        let a = Fixed(vec![1.0, 0.0, -1.0]);
        let b = Fixed(vec![-1000.0, 0.0, 1000.0]);
        let mut scores = vec![0.0; 3];
        Blend::new(vec![(&a, 2.0), (&b, 1.0)]).score_items(0, &[], &mut scores);
        assert!(scores[0] > scores[1] && scores[1] > scores[2], "the heavier weight wins: {scores:?}");
        Blend::new(vec![(&a, 1.0), (&b, 1.0)]).score_items(0, &[], &mut scores);
        assert!(scores.iter().all(|s| s.abs() < 1e-5), "equal weights cancel: {scores:?}");
    }
}
