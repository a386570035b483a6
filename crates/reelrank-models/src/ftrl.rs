//! FTRL-Proximal on hashed sparse weights (McMahan et al., "Ad Click Prediction: a View from the
//! Trenches", 2013): the learner of the Wide&Deep model's wide part.
//!
//! Each coordinate keeps two numbers, `z` and `n`; its weight is zero while `|z| ≤ λ₁` (so a
//! cross seen a few times stays exactly zero) and `−(z − sign(z)·λ₁) / ((β + √n)/α + λ₂)`
//! otherwise. The per-coordinate rate `α / (β + √n)` lets rare crosses learn fast and frequent
//! ones settle.
//!
//! Keys map to `2^bits` coordinates by hashing (the "hashing trick"), not through a map: memory
//! stays fixed however many crosses a platform produces (a map of every history × candidate pair
//! grows with the event log), a lookup is one read from an array that fits the cache at the
//! default size, and the rare collisions act as a little extra regularisation.

use serde::{Deserialize, Serialize};

/// FTRL-Proximal hyper-parameters and the table size.
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
    /// `2^bits` coordinates per head.
    pub bits: u32,
}

impl Default for FtrlConfig {
    fn default() -> FtrlConfig {
        FtrlConfig { alpha: 0.05, beta: 1.0, l1: 1.0, l2: 1.0, bits: 20 }
    }
}

/// The FTRL state of one coordinate and head: `z` and `√n` (the square root kept rather than
/// `n`, so a step takes one square root instead of three), and the weight derived from them after
/// every update, so that scoring only adds. Kept together because a step reads and writes all
/// three: at 2^20 coordinates the table is far bigger than the cache, and three arrays made each
/// step three cache misses instead of one.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    z: f32,
    root_n: f32,
    w: f32,
}

/// Hashed binary-feature weights for `heads` outputs, learned with FTRL-Proximal.
#[derive(Debug, Clone)]
pub struct Ftrl {
    config: FtrlConfig,
    heads: usize,
    /// Per coordinate and head; a coordinate's heads are contiguous.
    cells: Vec<Cell>,
}

impl Ftrl {
    /// All weights zero.
    pub fn new(config: FtrlConfig, heads: usize) -> Ftrl {
        let len = (1usize << config.bits.clamp(1, 30)) * heads;
        Ftrl { config, heads, cells: vec![Cell::default(); len] }
    }

    /// The coordinate of `key`: the top bits of a multiplicative hash (keys are hashes already;
    /// the multiplication spreads whichever of their bits vary).
    fn coordinate(&self, key: u64) -> u32 {
        let bits = self.config.bits.clamp(1, 30);
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as u32
    }

    /// The weight of state `(z, √n)`.
    fn weight(config: &FtrlConfig, z: f32, root_n: f32) -> f32 {
        let FtrlConfig { alpha, beta, l1, l2, .. } = *config;
        if z.abs() <= l1 {
            0.0
        } else {
            -(z - z.signum() * l1) / ((beta + root_n) / alpha + l2)
        }
    }

    /// Adds the weights of `keys` (binary features, value 1) to `logits` (one per head).
    pub fn add_logits(&self, keys: &[u64], logits: &mut [f32]) {
        for &key in keys {
            self.add_coordinate(self.coordinate(key), logits);
        }
    }

    fn add_coordinate(&self, coordinate: u32, logits: &mut [f32]) {
        let base = coordinate as usize * self.heads;
        for (logit, cell) in logits.iter_mut().zip(&self.cells[base..base + self.heads]) {
            *logit += cell.w;
        }
    }

    /// Training's forward pass: adds the weights of `keys` to `logits` and appends their
    /// coordinates to `coordinates`, for [`Ftrl::update`] (a batch's examples share one buffer).
    pub fn admit(&self, keys: &[u64], logits: &mut [f32], coordinates: &mut Vec<u32>) {
        for &key in keys {
            let coordinate = self.coordinate(key);
            self.add_coordinate(coordinate, logits);
            coordinates.push(coordinate);
        }
    }

    /// One FTRL step for an example whose features sit at `coordinates` (from [`Ftrl::admit`]),
    /// given `dL/dlogit` of each head (a head whose gradient is exactly 0, such as one without a
    /// label, is left alone).
    pub fn update(&mut self, coordinates: &[u32], grads: &[f32]) {
        let alpha = self.config.alpha;
        for &coordinate in coordinates {
            let base = coordinate as usize * self.heads;
            for (cell, &g) in self.cells[base..base + self.heads].iter_mut().zip(grads) {
                if g == 0.0 {
                    continue;
                }
                let root = cell.root_n;
                let new_root = (root * root + g * g).sqrt();
                let sigma = (new_root - root) / alpha;
                cell.z += g - sigma * cell.w;
                cell.root_n = new_root;
                cell.w = Ftrl::weight(&self.config, cell.z, new_root);
            }
        }
    }

    /// The touched coordinates and their `z` and `n` (`[coordinates × heads]`), for saving.
    pub fn state(&self) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
        let heads = self.heads;
        let touched: Vec<u32> = (0..self.cells.len() / heads)
            .filter(|&c| self.cells[c * heads..(c + 1) * heads].iter().any(|cell| cell.root_n > 0.0))
            .map(|c| c as u32)
            .collect();
        let gather = |value: fn(&Cell) -> f32| -> Vec<f32> {
            touched
                .iter()
                .flat_map(|&c| &self.cells[c as usize * heads..(c as usize + 1) * heads])
                .map(value)
                .collect()
        };
        (touched.clone(), gather(|cell| cell.z), gather(|cell| cell.root_n * cell.root_n))
    }

    /// Rebuilds from [`Ftrl::state`]'s arrays; `None` when they do not fit the configuration.
    pub fn from_state(
        config: FtrlConfig,
        heads: usize,
        coordinates: &[u32],
        z: &[f32],
        n: &[f32],
    ) -> Option<Ftrl> {
        let mut ftrl = Ftrl::new(config, heads);
        if z.len() != coordinates.len() * heads || n.len() != z.len() {
            return None;
        }
        for ((&c, z), n) in coordinates.iter().zip(z.chunks_exact(heads)).zip(n.chunks_exact(heads)) {
            let base = c as usize * heads;
            let cells = ftrl.cells.get_mut(base..base + heads)?;
            for ((cell, &z), &n) in cells.iter_mut().zip(z).zip(n) {
                *cell = Cell { z, root_n: n.sqrt(), w: Ftrl::weight(&config, z, n.sqrt()) };
            }
        }
        Some(ftrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps on one coordinate, against the update rule worked by hand.
    #[test]
    fn updates_match_hand_computed_values() {
        let config = FtrlConfig { alpha: 0.5, beta: 1.0, l1: 0.1, l2: 0.2, bits: 8 };
        let mut ftrl = Ftrl::new(config, 1);
        // Step 1: w = 0 (z = 0), g = 0.8: σ = (√0.64 − 0)/0.5 = 1.6, z = 0.8 − 1.6·0 = 0.8, n = 0.64.
        let mut at = Vec::new();
        ftrl.admit(&[7], &mut [0.0], &mut at);
        ftrl.update(&at, &[0.8]);
        // w = −(0.8 − 0.1) / ((1 + 0.8)/0.5 + 0.2) = −0.7 / 3.8.
        let w1 = -0.7 / 3.8;
        let mut logit = [0.0];
        ftrl.add_logits(&[7], &mut logit);
        assert!((logit[0] - w1).abs() < 1e-6, "{logit:?}");
        // Step 2: g = −0.6: σ = (√1.0 − √0.64)/0.5 = 0.4, z = 0.8 − 0.6 − 0.4·w1, n = 1.0.
        ftrl.update(&at, &[-0.6]);
        let z: f32 = 0.8 - 0.6 - 0.4 * w1;
        let w2 = -(z - 0.1) / ((1.0 + 1.0) / 0.5 + 0.2);
        let mut logit = [0.0];
        ftrl.add_logits(&[7], &mut logit);
        assert!((logit[0] - w2).abs() < 1e-6, "{logit:?} vs {w2}");
    }

    #[test]
    fn l1_keeps_weak_coordinates_at_zero_and_heads_apart() {
        let mut ftrl = Ftrl::new(FtrlConfig { l1: 1.0, ..FtrlConfig::default() }, 2);
        let mut at = Vec::new();
        ftrl.admit(&[1], &mut [0.0, 0.0], &mut at);
        ftrl.update(&at, &[0.5, 0.0]);
        let mut logits = [0.0, 0.0];
        ftrl.add_logits(&[1], &mut logits);
        assert_eq!(logits, [0.0, 0.0], "|z| = 0.5 ≤ λ₁");
        for _ in 0..10 {
            ftrl.update(&at, &[0.5, 0.0]);
        }
        ftrl.add_logits(&[1], &mut logits);
        assert!(logits[0] < 0.0 && logits[1] == 0.0, "a positive gradient lowers the weight: {logits:?}");
        let mut untouched = [0.0, 0.0];
        ftrl.add_logits(&[2], &mut untouched);
        assert_eq!(untouched, [0.0, 0.0]);
        let (coordinates, z, n) = ftrl.state();
        assert_eq!(coordinates.len(), 1, "only the touched coordinate is saved");
        let back = Ftrl::from_state(ftrl.config, 2, &coordinates, &z, &n).unwrap();
        let mut again = [0.0, 0.0];
        back.add_logits(&[1], &mut again);
        assert_eq!(again, logits);
    }
}
