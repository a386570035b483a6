//! Streaming estimate of how often each item appears among training positives, for the logQ
//! correction of in-batch sampled softmax (Yi et al., "Sampling-bias-corrected neural modeling for
//! large corpus item recommendations", RecSys 2019): every item keeps the step it was last seen at
//! and a moving average of the gap between sightings; its sampling probability is `1 / gap`. The
//! first sighting sets the gap to the steps elapsed so far rather than averaging it with a prior:
//! a prior decays too slowly for rare items, whose correction would stay far too large.

/// Per-item moving average of steps between sightings.
#[derive(Debug, Clone)]
pub struct FrequencyEstimator {
    last_step: Vec<f32>,
    gap: Vec<f32>,
    decay: f32,
    step: f32,
}

impl FrequencyEstimator {
    /// An estimator for `num_items` items; `decay` weighs the newest gap (0.05 is typical).
    pub fn new(num_items: usize, decay: f32) -> FrequencyEstimator {
        FrequencyEstimator { last_step: vec![0.0; num_items], gap: vec![0.0; num_items], decay, step: 0.0 }
    }

    /// Number of items tracked.
    pub fn num_items(&self) -> usize {
        self.gap.len()
    }

    /// Tracks `num_items` items (more than before: items added to a catalog start unseen).
    pub fn grow(&mut self, num_items: usize) {
        if num_items > self.gap.len() {
            self.last_step.resize(num_items, 0.0);
            self.gap.resize(num_items, 0.0);
        }
    }

    /// Records one batch: every occurrence of an item updates its gap estimate.
    pub fn observe_batch(&mut self, items: &[u32]) {
        self.step += 1.0;
        for &item in items {
            let i = item as usize;
            let gap = self.step - self.last_step[i];
            self.gap[i] =
                if self.gap[i] == 0.0 { gap } else { (1.0 - self.decay) * self.gap[i] + self.decay * gap };
            self.last_step[i] = self.step;
        }
    }

    /// `log q(item)`, the log of the expected number of times a batch holds the item (above 0 for
    /// items that occur several times per batch: clipping them at 1 would flatten the correction
    /// exactly where popularity bias is strongest); an item never seen counts as seen once so far.
    pub fn log_probability(&self, item: u32) -> f32 {
        let gap = self.gap[item as usize];
        -(if gap == 0.0 { self.step + 1.0 } else { gap }).max(1e-3).ln()
    }

    /// `log q(item)` for a batch that also holds `uniform` items drawn uniformly from the
    /// catalog: the log of the item's expected occurrences among its positives and its draws.
    pub fn log_probability_with_uniform(&self, item: u32, uniform: usize) -> f32 {
        let in_batch = self.log_probability(item);
        if uniform == 0 {
            return in_batch;
        }
        (in_batch.exp() + uniform as f32 / self.num_items().max(1) as f32).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_items_get_higher_probability() {
        let mut est = FrequencyEstimator::new(3, 0.1);
        for step in 0..400 {
            let mut batch = vec![0];
            if step % 4 == 0 {
                batch.push(1);
            }
            est.observe_batch(&batch);
        }
        // Item 0 every batch (gap 1), item 1 every fourth (gap 4); item 2, never seen, counts as
        // seen once in the 400 batches.
        assert!(est.log_probability(0).abs() < 0.05);
        assert!((est.log_probability(1) + 4f32.ln()).abs() < 0.1);
        assert!((est.log_probability(2) + 401f32.ln()).abs() < 1e-4);
    }
}
