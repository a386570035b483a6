//! Serving's hidden layers in bfloat16, on CPUs with AVX512_BF16.
//!
//! Ranking 500 candidates is 20.5 M multiply-adds in the hidden layers, 0.49 ms at the f32 FMA
//! peak of a 2.6 GHz Zen 4 core, and the GEMMs already run at 85 % of it (`docs/BENCHMARKS.md`).
//! The bfloat16 dot-product instruction (`vdpbf16ps`) does two multiply-adds per f32 lane, so
//! serving rounds a hidden layer's inputs and weights to bfloat16 (8 significant bits) and sums
//! their products in f32, as inference engines do on such CPUs. Scores then differ from the f32
//! path by about 1e-3; training and evaluation (`Mlp::forward`) stay in f32. Elsewhere, or for a
//! layer with an odd number of inputs or a width that is not a multiple of [`COLUMNS`], the f32
//! GEMM runs instead.

use crate::dense::Linear;

/// Outputs a kernel call produces per row: four registers of sixteen.
pub(crate) const COLUMNS: usize = 64;

/// A layer's weights rounded to bfloat16 and laid out for the kernel, with its biases.
#[derive(Debug, Clone)]
pub(crate) struct PackedLayer {
    inputs: usize,
    outputs: usize,
    /// `[⌈inputs / 2⌉ × outputs]` words: word `(p, o)` holds the weights of inputs `2p` (low
    /// half) and `2p + 1` (high half) for output `o`, the pair `vdpbf16ps` multiplies at once.
    words: Vec<u32>,
    bias: Vec<f32>,
}

/// Finite `x` rounded to the nearest bfloat16 (ties to even), as its bits: what the CPU's
/// conversion instruction does.
fn round(x: f32) -> u16 {
    let bits = x.to_bits();
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

impl PackedLayer {
    /// The layer packed for the bfloat16 kernel, or `None` where that kernel cannot run it (the
    /// CPU lacks AVX512_BF16, the inputs are odd, or the width is not a multiple of [`COLUMNS`]).
    pub(crate) fn new(layer: &Linear) -> Option<PackedLayer> {
        let (inputs, outputs) = (layer.inputs, layer.outputs);
        if !available() || inputs % 2 != 0 || outputs % COLUMNS != 0 {
            return None;
        }
        let w = layer.weights();
        let weight = |k: usize, o: usize| u32::from(round(w[k * outputs + o]));
        let words = (0..inputs / 2)
            .flat_map(|p| (0..outputs).map(move |o| weight(2 * p, o) | weight(2 * p + 1, o) << 16))
            .collect();
        Some(PackedLayer { inputs, outputs, words, bias: layer.bias().to_vec() })
    }

    /// `y = x · w + b` for a batch of `rows` (`x`: `[rows × inputs]`, finite).
    pub(crate) fn forward(&self, x: &[f32], rows: usize, y: &mut Vec<f32>) {
        y.clear();
        y.resize(rows * self.outputs, 0.0);
        kernel::forward(self, &x[..rows * self.inputs], rows, y);
    }
}

/// Whether this CPU runs the bfloat16 kernel.
fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod kernel {
    use std::arch::x86_64::*;

    use super::{PackedLayer, COLUMNS};

    /// Rows a kernel call produces together: 4 × 4 registers of sums, each loaded weight
    /// register used by four rows.
    const ROWS: usize = 4;

    /// Fills `y` (`[rows × outputs]`) from `x` (`[rows × inputs]`).
    pub(super) fn forward(layer: &PackedLayer, x: &[f32], rows: usize, y: &mut [f32]) {
        assert!(super::available(), "PackedLayer is only made where the kernel runs");
        assert!(x.len() == rows * layer.inputs && y.len() == rows * layer.outputs);
        // SAFETY: the CPU has AVX-512F and AVX512_BF16 (asserted above).
        let pairs = unsafe { to_pairs(x) };
        let full = rows - rows % ROWS;
        for first in (0..full).step_by(ROWS) {
            // SAFETY: as above; the rows the block reads and writes lie inside `pairs` and `y`
            // (asserted above: `pairs` holds `inputs / 2` words per row) and its columns inside
            // `layer.words` and `layer.bias` (`outputs` a multiple of `COLUMNS`, by construction).
            unsafe { block::<ROWS>(layer, &pairs, first, y) };
        }
        for row in full..rows {
            // SAFETY: as above.
            unsafe { block::<1>(layer, &pairs, row, y) };
        }
    }

    /// `x` rounded to bfloat16, two to a word: word `j` holds `x[2j]` (low half) and `x[2j + 1]`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn to_pairs(x: &[f32]) -> Vec<u32> {
        let mut words = vec![0u32; x.len().div_ceil(2)];
        let chunks = x.chunks_exact(16);
        let tail = chunks.remainder();
        for (chunk, out) in chunks.zip(words.chunks_exact_mut(8)) {
            let halves =
                std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(chunk.as_ptr())));
            _mm256_storeu_si256(out.as_mut_ptr().cast(), halves);
        }
        let done = (x.len() - tail.len()) / 2;
        for (word, pair) in words[done..].iter_mut().zip(tail.chunks(2)) {
            *word = u32::from(super::round(pair[0]))
                | pair.get(1).map_or(0, |&v| u32::from(super::round(v))) << 16;
        }
        words
    }

    /// The same 512 bits read as sixteen pairs of bfloat16.
    #[inline(always)]
    fn as_bf16(bits: __m512i) -> __m512bh {
        // SAFETY: both types are 512 bits of plain data, valid for every bit pattern.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(bits) }
    }

    /// Rows `first..first + R` of `y`, all columns.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn block<const R: usize>(layer: &PackedLayer, x: &[u32], first: usize, y: &mut [f32]) {
        let (pairs, outputs) = (layer.inputs / 2, layer.outputs);
        for column in (0..outputs).step_by(COLUMNS) {
            let bias = layer.bias.as_ptr().add(column);
            let bias = [
                _mm512_loadu_ps(bias),
                _mm512_loadu_ps(bias.add(16)),
                _mm512_loadu_ps(bias.add(32)),
                _mm512_loadu_ps(bias.add(48)),
            ];
            let mut sums = [bias; R];
            for p in 0..pairs {
                let words = layer.words.as_ptr().add(p * outputs + column);
                let w: [__m512bh; 4] = [
                    as_bf16(_mm512_loadu_si512(words.cast())),
                    as_bf16(_mm512_loadu_si512(words.add(16).cast())),
                    as_bf16(_mm512_loadu_si512(words.add(32).cast())),
                    as_bf16(_mm512_loadu_si512(words.add(48).cast())),
                ];
                for (r, row) in sums.iter_mut().enumerate() {
                    let pair = as_bf16(_mm512_set1_epi32(*x.get_unchecked((first + r) * pairs + p) as i32));
                    for (sum, &w) in row.iter_mut().zip(&w) {
                        *sum = _mm512_dpbf16_ps(*sum, pair, w);
                    }
                }
            }
            for (r, row) in sums.iter().enumerate() {
                let out = y.as_mut_ptr().add((first + r) * outputs + column);
                for (c, &sum) in row.iter().enumerate() {
                    _mm512_storeu_ps(out.add(16 * c), sum);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    use super::PackedLayer;

    pub(super) fn forward(_: &PackedLayer, _: &[f32], _: usize, _: &mut [f32]) {
        unreachable!("PackedLayer is only made where the kernel runs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dense::AdamStep;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;

    #[test]
    fn rounds_to_the_nearest_bfloat16() {
        assert_eq!(round(1.0), 0x3f80);
        assert_eq!(round(-2.0), 0xc000);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties go to the even one.
        assert_eq!(round(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(round(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(round(1.0 + 1.5 / 256.0), 0x3f81);
    }

    #[test]
    fn the_kernel_matches_the_f32_layer_to_bfloat16_precision() {
        let mut rng = Pcg64Mcg::seed_from_u64(4);
        // 7 rows: one block of four and three single rows; 38 inputs: a row's pairs straddle
        // the conversion's chunks of sixteen.
        let (rows, inputs, outputs) = (7, 38, 128);
        let mut layer = Linear::new(inputs, outputs, &mut rng);
        let x: Vec<f32> = (0..rows * inputs).map(|_| rng.random_range(0.0..1.0)).collect();
        // One Adam step moves every bias off its initial zero (by about the learning rate).
        let dy: Vec<f32> = (0..rows * outputs).map(|_| rng.random_range(-1.0..1.0)).collect();
        layer.backward(&x, &dy, rows, None);
        layer.step(&AdamStep { t: 1, ..AdamStep::new(0.5) });
        assert!(layer.bias().iter().all(|b| b.abs() > 0.1));
        let mut exact = Vec::new();
        layer.forward(&x, rows, &mut exact);
        let Some(packed) = PackedLayer::new(&layer) else {
            assert!(!available(), "made wherever the CPU runs it");
            return;
        };
        let mut approximate = Vec::new();
        packed.forward(&x, rows, &mut approximate);
        assert_eq!(approximate.len(), exact.len());
        for (a, e) in approximate.iter().zip(&exact) {
            assert!((a - e).abs() < 2e-2, "{a} against {e}");
        }
        assert!(PackedLayer::new(&Linear::new(inputs, 9, &mut rng)).is_none(), "9 outputs: the f32 GEMM");
        assert!(PackedLayer::new(&Linear::new(37, outputs, &mut rng)).is_none(), "odd inputs: the f32 GEMM");
    }
}
