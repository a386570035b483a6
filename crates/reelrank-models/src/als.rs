//! Implicit-feedback matrix factorisation (Hu, Koren & Volinsky, "Collaborative filtering for
//! implicit feedback datasets", 2008), trained by alternating least squares with a few
//! conjugate-gradient steps per row (Takács, Pilászy & Tikk, 2011).
//!
//! Every (user, item) pair is an observation: a positive with confidence `c`, everything else a
//! zero with confidence 1. Minimising `Σ c_ui (p_ui − x_u·y_i)² + λ(‖x_u‖² + ‖y_i‖²)` alternates
//! between users and items; each row solves `(YᵀY + Σ_{i∈u} (c − 1) y_i y_iᵀ + λI) x_u = c Σ_{i∈u} y_i`,
//! where the shared `YᵀY` is one GEMM per half-step and the rest touches only the row's
//! positives, so an iteration costs `O(nnz·k + (users + items)·k²)`. Conjugate gradient warm-started
//! from the previous solution needs no matrix factorisation. It is the collaborative-filtering
//! recall source beside the towers: item factors can be indexed like tower vectors, and a user's
//! factor is one small solve from their history.

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;
use reelrank_features::kernels::dot;
use serde::{Deserialize, Serialize};

use crate::dense::matmul;
use crate::{Interactions, Retriever};

/// Settings of [`ImplicitAls`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlsConfig {
    /// Width of the factors.
    pub factors: usize,
    /// L2 penalty λ on every factor.
    pub regularization: f32,
    /// Confidence `c` of a positive (unobserved pairs have 1).
    pub confidence: f32,
    /// Alternations (users, then items).
    pub iterations: usize,
    /// Conjugate-gradient steps per row and half-step.
    pub cg_steps: usize,
    /// Seed of the initial factors.
    pub seed: u64,
}

impl Default for AlsConfig {
    fn default() -> AlsConfig {
        AlsConfig {
            factors: 128,
            regularization: 30.0,
            confidence: 5.0,
            iterations: 15,
            cg_steps: 3,
            seed: 42,
        }
    }
}

/// User and item factors.
#[derive(Debug, Clone)]
pub struct ImplicitAls {
    config: AlsConfig,
    /// `[users × factors]`.
    user_factors: Vec<f32>,
    /// `[items × factors]`.
    item_factors: Vec<f32>,
}

impl ImplicitAls {
    /// Fits factors to `positives`; rows are solved in parallel.
    pub fn fit(positives: &Interactions, config: &AlsConfig) -> ImplicitAls {
        let k = config.factors;
        let mut rng = Pcg64Mcg::seed_from_u64(config.seed);
        let normal = Normal::new(0.0f32, 0.01).expect("finite");
        let mut random =
            |rows: usize| -> Vec<f32> { (0..rows * k).map(|_| normal.sample(&mut rng)).collect() };
        let mut user_factors = random(positives.num_users());
        let mut item_factors = random(positives.num_items());
        for _ in 0..config.iterations {
            solve_rows(&mut user_factors, &item_factors, |u| positives.items_of(u), config);
            solve_rows(&mut item_factors, &user_factors, |i| positives.users_of(i), config);
        }
        ImplicitAls { config: *config, user_factors, item_factors }
    }

    /// A user's factor from their positive items (most recent last), solved against the fixed item
    /// factors: how a user unseen at training time, or whose history has changed, is scored.
    pub fn user_vector(&self, history: &[u32]) -> Vec<f32> {
        let k = self.config.factors;
        let gram = gram(&self.item_factors, k);
        let mut x = vec![0.0f32; k];
        solve_row(&mut x, &self.item_factors, history, &gram, &AlsConfig { cg_steps: 2 * k, ..self.config });
        x
    }

    /// The item factors, `[items × factors]`.
    pub fn item_factors(&self) -> &[f32] {
        &self.item_factors
    }
}

impl Retriever for ImplicitAls {
    fn score_items(&self, user: u32, _history: &[u32], scores: &mut [f32]) {
        let k = self.config.factors;
        let x = &self.user_factors[user as usize * k..][..k];
        matmul(&self.item_factors, false, x, false, scores, (scores.len(), k, 1), false);
    }
}

/// `AᵀA` of a row-major `[rows × k]` matrix.
fn gram(a: &[f32], k: usize) -> Vec<f32> {
    let mut g = vec![0.0f32; k * k];
    matmul(a, true, a, false, &mut g, (k, a.len() / k, k), false);
    g
}

/// One half-step: every row of `solved` against the fixed `other` factors.
fn solve_rows<'a>(
    solved: &mut [f32],
    other: &[f32],
    positives: impl Fn(u32) -> &'a [u32] + Sync,
    config: &AlsConfig,
) {
    let k = config.factors;
    let gram = gram(other, k);
    solved
        .par_chunks_exact_mut(k)
        .enumerate()
        .for_each(|(row, x)| solve_row(x, other, positives(row as u32), &gram, config));
}

/// Conjugate-gradient steps on `(G + Σ_{i∈P} (c − 1) y_i y_iᵀ + λI) x = c Σ_{i∈P} y_i`, from `x`.
fn solve_row(x: &mut [f32], other: &[f32], positives: &[u32], gram: &[f32], config: &AlsConfig) {
    let k = x.len();
    let row = |i: u32| &other[i as usize * k..][..k];
    let extra = config.confidence - 1.0;
    // A·v without forming A.
    let apply = |v: &[f32], out: &mut [f32]| {
        for (o, g) in out.iter_mut().zip(gram.chunks_exact(k)) {
            *o = dot(g, v);
        }
        for (o, vi) in out.iter_mut().zip(v) {
            *o += config.regularization * vi;
        }
        for &i in positives {
            let y = row(i);
            let scale = extra * dot(y, v);
            out.iter_mut().zip(y).for_each(|(o, yj)| *o += scale * yj);
        }
    };
    let mut residual = vec![0.0f32; k];
    apply(x, &mut residual);
    residual.iter_mut().for_each(|r| *r = -*r);
    for &i in positives {
        residual.iter_mut().zip(row(i)).for_each(|(r, y)| *r += config.confidence * y);
    }
    let mut direction = residual.clone();
    let mut applied = vec![0.0f32; k];
    let mut norm = dot(&residual, &residual);
    for _ in 0..config.cg_steps {
        if norm < 1e-12 {
            break;
        }
        apply(&direction, &mut applied);
        let step = norm / dot(&direction, &applied).max(f32::MIN_POSITIVE);
        x.iter_mut().zip(&direction).for_each(|(xi, d)| *xi += step * d);
        residual.iter_mut().zip(&applied).for_each(|(r, a)| *r -= step * a);
        let next = dot(&residual, &residual);
        direction.iter_mut().zip(&residual).for_each(|(d, r)| *d = r + next / norm * *d);
        norm = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two communities each liking their own half of the items (a third of the pairs held out):
    /// the held-out pairs score above the other community's items.
    #[test]
    fn recovers_held_out_pairs_of_two_communities() {
        let (users, items) = (40u32, 30u32);
        let all: Vec<(u32, u32)> = (0..users)
            .flat_map(|u| (0..items).filter(move |i| i % 2 == u % 2).map(move |i| (u, i)))
            .collect();
        let (train, held): (Vec<_>, Vec<_>) = all.iter().partition(|(u, i)| (u + i) % 3 != 0);
        let positives = Interactions::from_pairs(users as usize, items as usize, &train);
        let model = ImplicitAls::fit(
            &positives,
            &AlsConfig { factors: 8, regularization: 0.1, ..AlsConfig::default() },
        );
        let mut scores = vec![0.0f32; items as usize];
        for &(u, i) in &held {
            model.score_items(u, positives.items_of(u), &mut scores);
            let best_other =
                (0..items).filter(|j| j % 2 != u % 2).map(|j| scores[j as usize]).fold(f32::MIN, f32::max);
            assert!(scores[i as usize] > best_other, "user {u}, item {i}");
        }
        // A newcomer folded in from two items of one side prefers that side's other items.
        let x = model.user_vector(&[0, 2]);
        let score = |i: u32| dot(&x, &model.item_factors()[i as usize * 8..][..8]);
        let (own, other): (f32, f32) =
            ((4..items).step_by(2).map(score).sum(), (1..items).step_by(2).map(score).sum());
        assert!(own > other, "{own} vs {other}");
    }

    /// Conjugate gradient with enough steps solves the row's normal equations exactly: the
    /// gradient of the row's loss vanishes.
    #[test]
    fn row_solve_reaches_the_least_squares_solution() {
        let k = 4;
        let other: Vec<f32> = (0..6 * k).map(|v| ((v * 7 % 11) as f32 - 5.0) / 10.0).collect();
        let config = AlsConfig {
            factors: k,
            regularization: 0.5,
            confidence: 3.0,
            cg_steps: 20,
            ..AlsConfig::default()
        };
        let positives = [1u32, 4];
        let mut x = vec![0.0f32; k];
        solve_row(&mut x, &other, &positives, &gram(&other, k), &config);
        // ∂/∂x [Σ_i c_i (p_i − x·y_i)² + λ‖x‖²] / 2 = Σ_i c_i (x·y_i − p_i) y_i + λ x
        let mut gradient: Vec<f32> = x.iter().map(|v| config.regularization * v).collect();
        for i in 0..6u32 {
            let y = &other[i as usize * k..][..k];
            let (c, p) = if positives.contains(&i) { (config.confidence, 1.0) } else { (1.0, 0.0) };
            let error = c * (dot(&x, y) - p);
            gradient.iter_mut().zip(y).for_each(|(g, yj)| *g += error * yj);
        }
        assert!(gradient.iter().all(|g| g.abs() < 1e-4), "{gradient:?}");
    }
}
