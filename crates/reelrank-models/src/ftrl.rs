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
//! grows with the event log), a lookup is one read from an array (a map would be a chain of
//! them), and the rare collisions act as a little extra regularisation.

use std::ops::Range;

use reelrank_features::kernels::prefetch;
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
/// `n`, so a step takes one square root instead of three), read and written together by a step.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    z: f32,
    root_n: f32,
}

/// Hashed binary-feature weights for `heads` outputs, learned with FTRL-Proximal.
///
/// At 2^20 coordinates the table is far bigger than the cache, so its layout is set by misses:
/// the weights (derived from the state after every step, so that scoring only adds) sit apart
/// from the state, a coordinate's heads together, so that a lookup reads one line (32 bytes at
/// eight heads) and a step one more; three arrays (`z`, `n`, `w`) made each step three misses.
#[derive(Debug, Clone)]
pub struct Ftrl {
    config: FtrlConfig,
    heads: usize,
    /// Per coordinate and head.
    weights: Vec<f32>,
    /// Per coordinate and head.
    states: Vec<State>,
}

/// A batch's keys as table coordinates ([`Ftrl::locate`]): every example's, one after another.
#[derive(Debug, Clone, Default)]
pub struct Located {
    coordinates: Vec<u32>,
    /// Where each example's coordinates end.
    ends: Vec<usize>,
}

impl Located {
    /// Each example's range of coordinates, with the range to prefetch as it is reached: those
    /// [`PREFETCH_AHEAD`] further on that earlier examples have not asked for (the first example
    /// asks for its own too).
    fn examples(&self) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
        let len = self.coordinates.len();
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).enumerate().map(move |(i, (start, &end))| {
            let from = if i == 0 { 0 } else { (start + PREFETCH_AHEAD).min(len) };
            (start..end, from..(end + PREFETCH_AHEAD).min(len))
        })
    }
}

/// How many coordinates ahead [`Ftrl`] asks for the weights and states it will read (about the
/// misses a core keeps in flight).
const PREFETCH_AHEAD: usize = 32;

impl Ftrl {
    /// All weights zero.
    pub fn new(config: FtrlConfig, heads: usize) -> Ftrl {
        let len = (1usize << config.bits.clamp(1, 30)) * heads;
        Ftrl { config, heads, weights: vec![0.0; len], states: vec![State::default(); len] }
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

    /// Where the keys of a batch of examples (binary features, value 1) sit in the table.
    pub fn locate<'a>(&self, examples: impl IntoIterator<Item = &'a [u64]>) -> Located {
        let examples: Vec<&[u64]> = examples.into_iter().collect();
        let mut located = Located {
            coordinates: Vec::with_capacity(examples.iter().map(|keys| keys.len()).sum()),
            ends: Vec::with_capacity(examples.len()),
        };
        for keys in examples {
            located.coordinates.extend(keys.iter().map(|&key| self.coordinate(key)));
            located.ends.push(located.coordinates.len());
        }
        located
    }

    /// Adds each example's weights to its row of `logits` (`[examples × heads]`).
    pub fn add_logits(&self, at: &Located, logits: &mut [f32]) {
        for ((keys, ahead), row) in at.examples().zip(logits.chunks_exact_mut(self.heads)) {
            for &coordinate in &at.coordinates[ahead] {
                prefetch(self.heads_of(&self.weights, coordinate));
            }
            for &coordinate in &at.coordinates[keys] {
                for (logit, w) in row.iter_mut().zip(self.heads_of(&self.weights, coordinate)) {
                    *logit += w;
                }
            }
        }
    }

    /// One FTRL step per example, in order (as FTRL is meant), given `dL/dlogit` of each head
    /// (`grads`: `[examples × heads]`; a head whose gradient is exactly 0, such as one without a
    /// label, is left alone).
    pub fn update(&mut self, at: &Located, grads: &[f32]) {
        let (alpha, heads) = (self.config.alpha, self.heads);
        for ((keys, ahead), grads) in at.examples().zip(grads.chunks_exact(heads)) {
            for &coordinate in &at.coordinates[ahead] {
                prefetch(self.heads_of(&self.weights, coordinate));
                prefetch(self.heads_of(&self.states, coordinate));
            }
            for &coordinate in &at.coordinates[keys] {
                let span = coordinate as usize * heads..(coordinate as usize + 1) * heads;
                let cells = self.weights[span.clone()].iter_mut().zip(&mut self.states[span]);
                for ((w, state), &g) in cells.zip(grads) {
                    if g == 0.0 {
                        continue;
                    }
                    let root = state.root_n;
                    let new_root = (root * root + g * g).sqrt();
                    let sigma = (new_root - root) / alpha;
                    state.z += g - sigma * *w;
                    state.root_n = new_root;
                    *w = Ftrl::weight(&self.config, state.z, new_root);
                }
            }
        }
    }

    /// The heads' entries of `coordinate` in `table` (the weights or the states).
    fn heads_of<'a, T>(&self, table: &'a [T], coordinate: u32) -> &'a [T] {
        &table[coordinate as usize * self.heads..][..self.heads]
    }

    /// The touched coordinates and their `z` and `n` (`[coordinates × heads]`), for saving.
    pub fn state(&self) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
        let touched: Vec<u32> = (0..(self.states.len() / self.heads) as u32)
            .filter(|&c| self.heads_of(&self.states, c).iter().any(|state| state.root_n > 0.0))
            .collect();
        let gather = |value: fn(&State) -> f32| -> Vec<f32> {
            touched.iter().flat_map(|&c| self.heads_of(&self.states, c)).map(value).collect()
        };
        (touched.clone(), gather(|state| state.z), gather(|state| state.root_n * state.root_n))
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
            let span = c as usize * heads..(c as usize + 1) * heads;
            let (weights, states) = (ftrl.weights.get_mut(span.clone())?, ftrl.states.get_mut(span)?);
            for (((w, state), &z), &n) in weights.iter_mut().zip(states).zip(z).zip(n) {
                *state = State { z, root_n: n.sqrt() };
                *w = Ftrl::weight(&config, z, state.root_n);
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
        let at = ftrl.locate([&[7][..]]);
        ftrl.update(&at, &[0.8]);
        // w = −(0.8 − 0.1) / ((1 + 0.8)/0.5 + 0.2) = −0.7 / 3.8.
        let w1 = -0.7 / 3.8;
        let mut logit = [0.0];
        ftrl.add_logits(&at, &mut logit);
        assert!((logit[0] - w1).abs() < 1e-6, "{logit:?}");
        // Step 2: g = −0.6: σ = (√1.0 − √0.64)/0.5 = 0.4, z = 0.8 − 0.6 − 0.4·w1, n = 1.0.
        ftrl.update(&at, &[-0.6]);
        let z: f32 = 0.8 - 0.6 - 0.4 * w1;
        let w2 = -(z - 0.1) / ((1.0 + 1.0) / 0.5 + 0.2);
        let mut logit = [0.0];
        ftrl.add_logits(&at, &mut logit);
        assert!((logit[0] - w2).abs() < 1e-6, "{logit:?} vs {w2}");
    }

    /// A batch is the same as its examples one by one, in order, also when they share keys and
    /// are longer than the prefetch distance.
    #[test]
    fn a_batch_steps_like_its_examples_in_turn() {
        let config = FtrlConfig { l1: 0.01, bits: 12, ..FtrlConfig::default() };
        let examples: Vec<Vec<u64>> =
            (0..40u64).map(|i| (0..(i % 7) * 10).map(|k| (k * 31 + i) % 50).collect()).collect();
        let grads: Vec<f32> = (0..examples.len() * 2).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut batched = Ftrl::new(config, 2);
        let at = batched.locate(examples.iter().map(Vec::as_slice));
        batched.update(&at, &grads);
        let mut single = Ftrl::new(config, 2);
        for (keys, g) in examples.iter().zip(grads.chunks_exact(2)) {
            let at = single.locate([keys.as_slice()]);
            single.update(&at, g);
        }
        let (mut from_batch, mut from_single) =
            (vec![0.0; examples.len() * 2], vec![0.0; examples.len() * 2]);
        batched.add_logits(&at, &mut from_batch);
        single.add_logits(&at, &mut from_single);
        assert_eq!(from_batch, from_single);
        assert!(from_batch.iter().any(|&l| l != 0.0), "the steps moved some weights");
    }

    #[test]
    fn l1_keeps_weak_coordinates_at_zero_and_heads_apart() {
        let mut ftrl = Ftrl::new(FtrlConfig { l1: 1.0, ..FtrlConfig::default() }, 2);
        let at = ftrl.locate([&[1][..]]);
        ftrl.update(&at, &[0.5, 0.0]);
        let mut logits = [0.0, 0.0];
        ftrl.add_logits(&at, &mut logits);
        assert_eq!(logits, [0.0, 0.0], "|z| = 0.5 ≤ λ₁");
        for _ in 0..10 {
            ftrl.update(&at, &[0.5, 0.0]);
        }
        ftrl.add_logits(&at, &mut logits);
        assert!(logits[0] < 0.0 && logits[1] == 0.0, "a positive gradient lowers the weight: {logits:?}");
        let mut untouched = [0.0, 0.0];
        ftrl.add_logits(&ftrl.locate([&[2][..]]), &mut untouched);
        assert_eq!(untouched, [0.0, 0.0]);
        let (coordinates, z, n) = ftrl.state();
        assert_eq!(coordinates.len(), 1, "only the touched coordinate is saved");
        let back = Ftrl::from_state(ftrl.config, 2, &coordinates, &z, &n).unwrap();
        let mut again = [0.0, 0.0];
        back.add_logits(&at, &mut again);
        assert_eq!(again, logits);
    }
}
