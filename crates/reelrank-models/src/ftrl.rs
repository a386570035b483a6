//! FTRL-Proximal on sparse weights (McMahan et al., "Ad Click Prediction: a View from the
//! Trenches", 2013): the learner of the Wide&Deep model's wide part.
//!
//! Each (feature key, head) coordinate keeps two numbers, `z` and `n`; its weight is derived from
//! them on demand: zero while `|z| ≤ λ₁` (so a cross seen a few times stays exactly zero and costs
//! nothing at serving), else `−(z − sign(z)·λ₁) / ((β + √n)/α + λ₂)`. The per-coordinate rate
//! `α / (β + √n)` lets rare crosses learn fast and frequent ones settle.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// FTRL-Proximal hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FtrlConfig {
    /// Learning-rate scale α.
    pub alpha: f32,
    /// Learning-rate smoothing β.
    pub beta: f32,
    /// L1 strength λ₁ (sparsity).
    pub l1: f32,
    /// L2 strength λ₂.
    pub l2: f32,
}

impl Default for FtrlConfig {
    fn default() -> FtrlConfig {
        FtrlConfig { alpha: 0.05, beta: 1.0, l1: 1.0, l2: 1.0 }
    }
}

/// Sparse binary-feature weights for `heads` outputs, learned with FTRL-Proximal.
#[derive(Debug, Clone)]
pub struct Ftrl {
    config: FtrlConfig,
    heads: usize,
    /// Slot of each key; a key's heads are contiguous in `z`, `n` and `w`. Keys are already
    /// hashes, so the map uses the cheap Fx hasher.
    slots: FxHashMap<u64, u32>,
    z: Vec<f32>,
    n: Vec<f32>,
    /// The weights, derived from `z` and `n` after every update so that scoring only adds.
    w: Vec<f32>,
}

impl Ftrl {
    /// No weights yet.
    pub fn new(config: FtrlConfig, heads: usize) -> Ftrl {
        Ftrl { config, heads, slots: FxHashMap::default(), z: Vec::new(), n: Vec::new(), w: Vec::new() }
    }

    /// Number of keys with state.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no key has been seen.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The weight of state `(z, n)`.
    fn weight(config: &FtrlConfig, z: f32, n: f32) -> f32 {
        let FtrlConfig { alpha, beta, l1, l2 } = *config;
        if z.abs() <= l1 {
            0.0
        } else {
            -(z - z.signum() * l1) / ((beta + n.sqrt()) / alpha + l2)
        }
    }

    /// Adds the weights of `keys` (binary features, value 1) to `logits` (one per head); keys
    /// never trained weigh nothing.
    pub fn add_logits(&self, keys: &[u64], logits: &mut [f32]) {
        for key in keys {
            if let Some(&slot) = self.slots.get(key) {
                self.add_slot(slot, logits);
            }
        }
    }

    fn add_slot(&self, slot: u32, logits: &mut [f32]) {
        let base = slot as usize * self.heads;
        for (logit, w) in logits.iter_mut().zip(&self.w[base..base + self.heads]) {
            *logit += w;
        }
    }

    /// Training's forward pass: the slots of `keys` (created at weight 0 for new keys), for
    /// [`Ftrl::update`], with their weights added to `logits`. One hash lookup per key serves both.
    pub fn admit(&mut self, keys: &[u64], logits: &mut [f32]) -> Vec<u32> {
        let slots: Vec<u32> = keys
            .iter()
            .map(|&key| {
                let next = self.slots.len() as u32;
                let slot = *self.slots.entry(key).or_insert(next);
                if slot == next {
                    let len = self.z.len() + self.heads;
                    self.z.resize(len, 0.0);
                    self.n.resize(len, 0.0);
                    self.w.resize(len, 0.0);
                }
                slot
            })
            .collect();
        for &slot in &slots {
            self.add_slot(slot, logits);
        }
        slots
    }

    /// One FTRL step for an example whose features were admitted as `slots`, given `dL/dlogit`
    /// of each head (a head whose gradient is exactly 0, such as one without a label, is left
    /// alone).
    pub fn update(&mut self, slots: &[u32], grads: &[f32]) {
        let alpha = self.config.alpha;
        for &slot in slots {
            let base = slot as usize * self.heads;
            for (h, &g) in grads.iter().enumerate() {
                if g == 0.0 {
                    continue;
                }
                let i = base + h;
                let n = self.n[i];
                let sigma = ((n + g * g).sqrt() - n.sqrt()) / alpha;
                self.z[i] += g - sigma * self.w[i];
                self.n[i] = n + g * g;
                self.w[i] = Ftrl::weight(&self.config, self.z[i], self.n[i]);
            }
        }
    }

    /// The state as arrays: keys, then `z` and `n` (`[keys × heads]`), for saving.
    pub fn state(&self) -> (Vec<u64>, Vec<f32>, Vec<f32>) {
        let mut keys = vec![0u64; self.slots.len()];
        for (&key, &slot) in &self.slots {
            keys[slot as usize] = key;
        }
        (keys, self.z.clone(), self.n.clone())
    }

    /// Rebuilds from [`Ftrl::state`]'s arrays; `None` when their lengths disagree.
    pub fn from_state(
        config: FtrlConfig,
        heads: usize,
        keys: &[u64],
        z: Vec<f32>,
        n: Vec<f32>,
    ) -> Option<Ftrl> {
        if z.len() != keys.len() * heads || n.len() != z.len() {
            return None;
        }
        let slots = keys.iter().enumerate().map(|(i, &k)| (k, i as u32)).collect();
        let w = z.iter().zip(&n).map(|(&z, &n)| Ftrl::weight(&config, z, n)).collect();
        Some(Ftrl { config, heads, slots, z, n, w })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps on one coordinate, against the update rule worked by hand.
    #[test]
    fn updates_match_hand_computed_values() {
        let config = FtrlConfig { alpha: 0.5, beta: 1.0, l1: 0.1, l2: 0.2 };
        let mut ftrl = Ftrl::new(config, 1);
        // Step 1: w = 0 (z = 0), g = 0.8: σ = (√0.64 − 0)/0.5 = 1.6, z = 0.8 − 1.6·0 = 0.8, n = 0.64.
        let slots = ftrl.admit(&[7], &mut [0.0]);
        ftrl.update(&slots, &[0.8]);
        // w = −(0.8 − 0.1) / ((1 + 0.8)/0.5 + 0.2) = −0.7 / 3.8.
        let w1 = -0.7 / 3.8;
        let mut logit = [0.0];
        ftrl.add_logits(&[7, 9], &mut logit);
        assert!((logit[0] - w1).abs() < 1e-6, "{logit:?}");
        // Step 2: g = −0.6: σ = (√1.0 − √0.64)/0.5 = 0.4, z = 0.8 − 0.6 − 0.4·w1, n = 1.0.
        ftrl.update(&slots, &[-0.6]);
        let z: f32 = 0.8 - 0.6 - 0.4 * w1;
        let w2 = -(z - 0.1) / ((1.0 + 1.0) / 0.5 + 0.2);
        let mut logit = [0.0];
        ftrl.add_logits(&[7], &mut logit);
        assert!((logit[0] - w2).abs() < 1e-6, "{logit:?} vs {w2}");
    }

    #[test]
    fn l1_keeps_weak_coordinates_at_zero_and_heads_apart() {
        let mut ftrl = Ftrl::new(FtrlConfig { l1: 1.0, ..FtrlConfig::default() }, 2);
        let slots = ftrl.admit(&[1], &mut [0.0, 0.0]);
        ftrl.update(&slots, &[0.5, 0.0]);
        let mut logits = [0.0, 0.0];
        ftrl.add_logits(&[1], &mut logits);
        assert_eq!(logits, [0.0, 0.0], "|z| = 0.5 ≤ λ₁");
        for _ in 0..10 {
            ftrl.update(&slots, &[0.5, 0.0]);
        }
        ftrl.add_logits(&[1], &mut logits);
        assert!(logits[0] < 0.0 && logits[1] == 0.0, "a positive gradient lowers the weight: {logits:?}");
        let (keys, z, n) = ftrl.state();
        let back = Ftrl::from_state(ftrl.config, 2, &keys, z, n).unwrap();
        let mut again = [0.0, 0.0];
        back.add_logits(&[1], &mut again);
        assert_eq!(again, logits);
    }
}
