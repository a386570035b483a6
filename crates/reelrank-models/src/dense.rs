//! Dense layers with hand-written backward passes, on `matrixmultiply`'s SIMD GEMM.
//!
//! Why not a tensor library with autodiff: the towers are small MLPs where per-op allocation and
//! graph bookkeeping cost more than the arithmetic, and such libraries differentiate an embedding
//! lookup into a dense gradient over the whole table. A linear layer's backward pass is three GEMMs,
//! checked here against finite differences.
//!
//! Shapes are row-major: a batch `x` is `[batch × in]`, a layer's weight `w` is `[in × out]` and
//! `y = x · w + b`. Row `k` of `w` is what input `k` adds to every output, which is what serving
//! reads: a cached share of the first layer is a sum of such rows, read in order. Saved files keep
//! PyTorch's `[out × in]`.

use std::path::Path;
use std::sync::OnceLock;

use multiversion::multiversion;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use reelrank_features::kernels::axpy;
use reelrank_features::{PersistError, TensorReader, TensorWriter};

use crate::bf16::PackedLayer;

/// `c = a' · b' (+ c when accumulate)`, where `a'` is `a` (`[m × k]`) or, if `a_transposed`, the
/// transpose of `a` stored as `[k × m]`; likewise `b'` (`[k × n]`, or `[n × k]` stored).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    c: &mut [f32],
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "matmul shapes");
    let (rsa, csa) = if a_transposed { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if b_transposed { (1, k as isize) } else { (n as isize, 1) };
    let beta = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: the assertion above guarantees every index the strides reach lies inside the
    // slices: a' spans m·k elements of `a`, b' k·n of `b`, c m·n of `c`; `c` does not alias them.
    #[allow(unsafe_code)]
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Adam moments of one parameter array.
#[derive(Debug, Clone, Default)]
pub(crate) struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Adam hyper-parameters and step count, shared by all dense parameters of a model.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub t: i32,
}

impl AdamStep {
    pub fn new(lr: f32) -> AdamStep {
        AdamStep { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, t: 0 }
    }
}

impl Adam {
    pub fn update(&mut self, params: &mut [f32], grads: &[f32], step: &AdamStep) {
        if self.m.len() != params.len() {
            self.m = vec![0.0; params.len()];
            self.v = vec![0.0; params.len()];
        }
        let c1 = 1.0 - step.beta1.powi(step.t);
        let c2 = 1.0 - step.beta2.powi(step.t);
        let lr = step.lr * c2.sqrt() / c1;
        for (((p, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            *m = step.beta1 * *m + (1.0 - step.beta1) * g;
            *v = step.beta2 * *v + (1.0 - step.beta2) * g * g;
            *p -= lr * *m / (v.sqrt() + step.eps);
        }
    }
}

/// A fully connected layer `y = x · w + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    w: Vec<f32>,
    b: Vec<f32>,
    grad_w: Vec<f32>,
    grad_b: Vec<f32>,
    adam_w: Adam,
    adam_b: Adam,
}

impl Linear {
    /// He-uniform initialisation from `rng`.
    pub(crate) fn new(inputs: usize, outputs: usize, rng: &mut Pcg64Mcg) -> Linear {
        let bound = (6.0 / inputs as f32).sqrt();
        // Drawn in the saved `[out × in]` order, so that a seed names the same initial weights
        // as a file would hold them.
        let drawn: Vec<f32> = (0..inputs * outputs).map(|_| rng.random_range(-bound..bound)).collect();
        Linear {
            inputs,
            outputs,
            w: transpose(&drawn, outputs, inputs),
            b: vec![0.0; outputs],
            grad_w: vec![0.0; inputs * outputs],
            grad_b: vec![0.0; outputs],
            adam_w: Adam::default(),
            adam_b: Adam::default(),
        }
    }

    /// The weights, `[in × out]`: row `k` is input `k`'s weight for every output.
    pub(crate) fn weights(&self) -> &[f32] {
        &self.w
    }

    /// The biases, `[out]`.
    pub(crate) fn bias(&self) -> &[f32] {
        &self.b
    }

    /// `y = x · w + b` for a batch of `rows`.
    pub(crate) fn forward(&self, x: &[f32], rows: usize, y: &mut Vec<f32>) {
        y.clear();
        y.reserve(rows * self.outputs);
        for _ in 0..rows {
            y.extend_from_slice(&self.b);
        }
        matmul(x, false, &self.w, false, y, (rows, self.inputs, self.outputs), true);
    }

    /// Accumulates the weight gradients from `dy` and writes `dx` (when asked for).
    pub(crate) fn backward(&mut self, x: &[f32], dy: &[f32], rows: usize, dx: Option<&mut Vec<f32>>) {
        matmul(x, true, dy, false, &mut self.grad_w, (self.inputs, rows, self.outputs), true);
        for row in dy.chunks_exact(self.outputs) {
            axpy(1.0, row, &mut self.grad_b);
        }
        if let Some(dx) = dx {
            dx.clear();
            dx.resize(rows * self.inputs, 0.0);
            matmul(dy, false, &self.w, true, dx, (rows, self.outputs, self.inputs), false);
        }
    }

    pub(crate) fn step(&mut self, adam: &AdamStep) {
        self.adam_w.update(&mut self.w, &self.grad_w, adam);
        self.adam_b.update(&mut self.b, &self.grad_b, adam);
        self.grad_w.fill(0.0);
        self.grad_b.fill(0.0);
    }
}

/// Layers with ReLU between them (none after the last), with optional dropout after each ReLU
/// in training.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub(crate) layers: Vec<Linear>,
    /// Inputs of each layer from the last forward pass (post-ReLU), kept for backward, then the
    /// last layer's output. These and the gradient buffers are reused from batch to batch: fresh
    /// ones (hundreds of KB each) would be new pages to fault in at every step.
    activations: Vec<Vec<f32>>,
    /// The gradient flowing back through the layers, and the next one being computed.
    gradients: [Vec<f32>; 2],
    rows: usize,
    /// Share of hidden units zeroed in each training pass (kept ones are scaled by `1/(1 − p)`).
    dropout: f32,
    rng: Pcg64Mcg,
    /// Layers `1..` packed for serving's bfloat16 kernel where it runs (`bf16.rs`), made on first
    /// use and dropped whenever the weights change.
    packed: OnceLock<Vec<Option<PackedLayer>>>,
}

impl Mlp {
    /// An MLP through `sizes` (`[input, hidden..., output]`).
    pub(crate) fn new(sizes: &[usize], seed: u64) -> Mlp {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let layers = sizes.windows(2).map(|w| Linear::new(w[0], w[1], &mut rng)).collect::<Vec<_>>();
        Mlp {
            activations: vec![Vec::new(); layers.len() + 1],
            gradients: Default::default(),
            layers,
            rows: 0,
            dropout: 0.0,
            rng,
            packed: OnceLock::new(),
        }
    }

    /// Sets the dropout rate of training passes (`0 ≤ p < 1`).
    pub(crate) fn with_dropout(self, p: f32) -> Mlp {
        Mlp { dropout: p.clamp(0.0, 0.99), ..self }
    }

    /// Output width.
    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// Forward pass keeping what backward needs; returns the output `[rows × outputs]`.
    pub(crate) fn forward_train(&mut self, x: &[f32], rows: usize) -> &[f32] {
        self.rows = rows;
        self.activations[0].clear();
        self.activations[0].extend_from_slice(x);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let mut out = std::mem::take(&mut self.activations[i + 1]);
            layer.forward(&self.activations[i], rows, &mut out);
            if i < last {
                relu(&mut out);
                if self.dropout > 0.0 {
                    let (p, keep) = (self.dropout, 1.0 / (1.0 - self.dropout));
                    out.iter_mut().for_each(|v| *v *= if self.rng.random::<f32>() < p { 0.0 } else { keep });
                }
            }
            self.activations[i + 1] = out;
        }
        &self.activations[self.layers.len()]
    }

    /// Forward pass without keeping activations (serving).
    pub(crate) fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut first = Vec::new();
        self.layers[0].forward(x, rows, &mut first);
        self.hidden(first, rows, &[])
    }

    /// The rest of a forward pass from the first layer's output (before its ReLU), for serving,
    /// which assembles that output from cached parts: the hidden layers in bfloat16 where the
    /// CPU has the instructions for it (`bf16.rs`; probabilities within a few thousandths of the
    /// f32 pass), in f32 elsewhere.
    pub(crate) fn serve_from_first(&self, first: Vec<f32>, rows: usize) -> Vec<f32> {
        let packed = self.packed.get_or_init(|| self.layers[1..].iter().map(PackedLayer::new).collect());
        self.hidden(first, rows, packed)
    }

    /// Layers `1..` after a ReLU each, layer `1 + i` through `packed[i]` where that is a packed
    /// layer and in f32 otherwise.
    fn hidden(&self, first: Vec<f32>, rows: usize, packed: &[Option<PackedLayer>]) -> Vec<f32> {
        let mut input = first;
        let mut out = Vec::new();
        for (i, layer) in self.layers[1..].iter().enumerate() {
            relu(&mut input);
            match packed.get(i).and_then(Option::as_ref) {
                Some(packed) => packed.forward(&input, rows, &mut out),
                None => layer.forward(&input, rows, &mut out),
            }
            std::mem::swap(&mut input, &mut out);
        }
        input
    }

    /// Backward pass from the output gradient; accumulates weight gradients and returns the input
    /// gradient `[rows × inputs]`.
    pub(crate) fn backward(&mut self, dy: &[f32]) -> &[f32] {
        let rows = self.rows;
        let [mut grad, mut dx] = std::mem::take(&mut self.gradients);
        grad.clear();
        grad.extend_from_slice(dy);
        for i in (0..self.layers.len()).rev() {
            self.layers[i].backward(&self.activations[i], &grad, rows, Some(&mut dx));
            if i > 0 {
                // Zero where the unit was off (ReLU or dropout), `1/(1 − p)` where it was kept.
                relu_backward(&mut dx, &self.activations[i]);
                if self.dropout > 0.0 {
                    let keep = 1.0 / (1.0 - self.dropout);
                    dx.iter_mut().for_each(|g| *g *= keep);
                }
            }
            std::mem::swap(&mut grad, &mut dx);
        }
        self.gradients = [grad, dx];
        &self.gradients[0]
    }

    /// Applies and clears the accumulated gradients.
    pub(crate) fn step(&mut self, adam: &AdamStep) {
        for layer in &mut self.layers {
            layer.step(adam);
        }
        self.packed = OnceLock::new();
    }

    /// Drops the gradients accumulated since the last step, leaving the weights as they are.
    pub(crate) fn discard_gradients(&mut self) {
        for layer in &mut self.layers {
            layer.grad_w.fill(0.0);
            layer.grad_b.fill(0.0);
        }
    }

    /// Adds each layer's weights (`{prefix}.{i}.w`, `[out × in]`) and biases (`{prefix}.{i}.b`).
    pub(crate) fn write(&self, arrays: &mut TensorWriter, prefix: &str) {
        for (i, layer) in self.layers.iter().enumerate() {
            let w = transpose(&layer.w, layer.inputs, layer.outputs);
            arrays.add(&format!("{prefix}.{i}.w"), vec![layer.outputs, layer.inputs], &w);
            arrays.add(&format!("{prefix}.{i}.b"), vec![layer.outputs], &layer.b);
        }
    }

    /// Reads what [`Mlp::write`] wrote into this MLP, whose shape must match; `path` names the
    /// file in errors.
    pub(crate) fn read(
        &mut self,
        arrays: &TensorReader,
        prefix: &str,
        path: &Path,
    ) -> Result<(), PersistError> {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let (shape, w) = arrays.read::<f32>(&format!("{prefix}.{i}.w"))?;
            let b: Vec<f32> = arrays.values(&format!("{prefix}.{i}.b"))?;
            if shape != [layer.outputs, layer.inputs] || b.len() != layer.outputs {
                return Err(PersistError::Format {
                    path: path.to_path_buf(),
                    message: format!(
                        "{prefix}.{i} is {shape:?} with {} biases, the model's layer is [{}, {}]",
                        b.len(),
                        layer.outputs,
                        layer.inputs
                    ),
                });
            }
            (layer.w, layer.b) = (transpose(&w, layer.outputs, layer.inputs), b);
        }
        self.packed = OnceLock::new();
        Ok(())
    }
}

/// The transpose of `a` (`[rows × columns]`), as `[columns × rows]`.
fn transpose(a: &[f32], rows: usize, columns: usize) -> Vec<f32> {
    (0..columns).flat_map(|c| (0..rows).map(move |r| a[r * columns + c])).collect()
}

/// `x = max(x, 0)`.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// Zeroes the gradient where the ReLU's output (the next layer's input) was not positive.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
fn relu_backward(grad: &mut [f32], output: &[f32]) {
    for (d, a) in grad.iter_mut().zip(output) {
        *d = if *a > 0.0 { *d } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_transposes() {
        // a = [[1,2],[3,4]], b = [[5,6],[7,8]]
        let (a, b) = ([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]);
        let mut c = [0.0; 4];
        matmul(&a, false, &b, false, &mut c, (2, 2, 2), false);
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
        matmul(&a, true, &b, false, &mut c, (2, 2, 2), false);
        assert_eq!(c, [26.0, 30.0, 38.0, 44.0]);
        matmul(&a, false, &b, true, &mut c, (2, 2, 2), true);
        assert_eq!(c, [26.0 + 17.0, 30.0 + 23.0, 38.0 + 39.0, 44.0 + 53.0]);
    }

    /// Loss = Σ y ⊙ r for a fixed random r, so dL/dy = r; compare analytic and numeric gradients.
    #[test]
    fn mlp_gradients_match_finite_differences() {
        let (rows, sizes) = (3, [5, 7, 4]);
        let mut mlp = Mlp::new(&sizes, 3);
        let mut rng = Pcg64Mcg::seed_from_u64(9);
        let x: Vec<f32> = (0..rows * 5).map(|_| rng.random_range(-1.0..1.0)).collect();
        let r: Vec<f32> = (0..rows * 4).map(|_| rng.random_range(-1.0..1.0)).collect();
        let loss = |m: &Mlp, x: &[f32]| -> f64 {
            m.forward(x, rows).iter().zip(&r).map(|(y, r)| f64::from(y * r)).sum()
        };
        mlp.forward_train(&x, rows);
        let dx = mlp.backward(&r).to_vec();
        assert_input_gradient(&x, &dx, |x| loss(&mlp, x));
        let eps = 1e-2f32;
        for layer in 0..2 {
            for i in (0..mlp.layers[layer].w.len()).step_by(3) {
                let analytic = mlp.layers[layer].grad_w[i];
                let mut probe = mlp.clone();
                probe.layers[layer].w[i] += eps;
                let up = loss(&probe, &x);
                probe.layers[layer].w[i] -= 2.0 * eps;
                let numeric = (up - loss(&probe, &x)) / (2.0 * f64::from(eps));
                assert!(
                    (numeric - f64::from(analytic)).abs() < 2e-3,
                    "w{layer}[{i}]: {numeric} vs {analytic}"
                );
            }
        }
    }

    /// Under one dropout mask (a clone of the MLP draws the same one), the input gradient is the
    /// finite difference of the training pass; about half the hidden units are off.
    #[test]
    fn dropout_gradients_match_finite_differences_under_the_same_mask() {
        let (rows, sizes) = (4, [5, 32, 3]);
        let before = Mlp::new(&sizes, 3).with_dropout(0.5);
        let mut rng = Pcg64Mcg::seed_from_u64(9);
        let x: Vec<f32> = (0..rows * 5).map(|_| rng.random_range(-1.0..1.0)).collect();
        let r: Vec<f32> = (0..rows * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let loss = |x: &[f32]| -> f64 {
            let mut mlp = before.clone();
            let y = mlp.forward_train(x, rows);
            y.iter().zip(&r).map(|(y, r)| f64::from(y * r)).sum()
        };
        let mut mlp = before.clone();
        mlp.forward_train(&x, rows);
        let hidden = &mlp.activations[1];
        let off = hidden.iter().filter(|&&h| h == 0.0).count() as f64 / hidden.len() as f64;
        assert!(off > 0.6 && off < 0.9, "ReLU and dropout switch off ~3/4 of the units: {off}");
        let dx = mlp.backward(&r).to_vec();
        assert_input_gradient(&x, &dx, loss);
    }

    /// `dx` against central finite differences of `loss` around `x`.
    fn assert_input_gradient(x: &[f32], dx: &[f32], loss: impl Fn(&[f32]) -> f64) {
        let eps = 1e-2f32;
        for i in 0..x.len() {
            let (mut plus, mut minus) = (x.to_vec(), x.to_vec());
            plus[i] += eps;
            minus[i] -= eps;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * f64::from(eps));
            assert!((numeric - f64::from(dx[i])).abs() < 2e-3, "dx[{i}]: {numeric} vs {}", dx[i]);
        }
    }

    #[test]
    fn adam_moves_against_the_gradient() {
        let mut p = vec![1.0f32, -1.0];
        let mut adam = Adam::default();
        let mut step = AdamStep::new(0.1);
        step.t = 1;
        adam.update(&mut p, &[2.0, -0.5], &step);
        // First Adam step moves each coordinate by lr in the gradient's opposite direction.
        assert!((p[0] - 0.9).abs() < 1e-5 && (p[1] + 0.9).abs() < 1e-5, "{p:?}");
    }
}
