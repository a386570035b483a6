//! One-byte codes of the graph's vectors, for walking the graph.
//!
//! A graph search at a million vectors waits on memory: each neighbour it scores is a cache miss.
//! Coding each coordinate in one signed byte (scalar quantisation with a scale per dimension)
//! puts a 64-dimensional vector in one cache line instead of two in half precision, so a hop
//! pulls half the lines. The code's score error (about 1e-3 on unit vectors) only steers the
//! walk: the results it keeps are scored again from the half-precision vectors (`graph.rs`).

use multiversion::multiversion;

/// Per-dimension scales: a coordinate `x` of dimension `d` is coded as `round(x / scale[d])`,
/// which the largest magnitude seen in that dimension maps to ±127.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scales(Vec<f32>);

impl Scales {
    /// Scales that code every vector of `vectors` (rows of `dim`) without clipping.
    pub(crate) fn fit(dim: usize, vectors: &[f32]) -> Scales {
        let mut largest = vec![0.0f32; dim];
        for row in vectors.chunks_exact(dim.max(1)) {
            for (top, &x) in largest.iter_mut().zip(row) {
                *top = top.max(x.abs());
            }
        }
        Scales(largest.into_iter().map(|top| if top > 0.0 { top / 127.0 } else { 1.0 }).collect())
    }

    /// The codes of `vector`, clipped to ±127 (a vector outside the fitted range still codes, only
    /// less exactly).
    pub(crate) fn encode<'a>(&'a self, vector: &'a [f32]) -> impl Iterator<Item = i8> + 'a {
        vector.iter().zip(&self.0).map(|(&x, &scale)| (x / scale).round().clamp(-127.0, 127.0) as i8)
    }

    /// `query` with each coordinate multiplied by its dimension's scale, so that
    /// [`dot`]`(scaled, codes)` approximates the inner product of `query` with the coded vector.
    pub(crate) fn scale(&self, query: &[f32]) -> Vec<f32> {
        query.iter().zip(&self.0).map(|(q, s)| q * s).collect()
    }
}

/// `Σ scaledᵢ · codesᵢ`.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub(crate) fn dot(scaled: &[f32], codes: &[i8]) -> f32 {
    crate::decoded_dot(scaled, codes, f32::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_magnitude_of_each_dimension_codes_to_127() {
        let scales = Scales::fit(2, &[0.5, -0.1, -1.0, 0.05, 0.25, 0.0]);
        assert_eq!(scales.encode(&[-1.0, 0.1]).collect::<Vec<i8>>(), vec![-127, 127]);
        assert_eq!(scales.encode(&[0.25, 0.0]).collect::<Vec<i8>>(), vec![32, 0], "0.25 · 127 = 31.75");
        assert_eq!(scales.encode(&[3.0, -3.0]).collect::<Vec<i8>>(), vec![127, -127], "clipped");
        assert_eq!(Scales::fit(1, &[0.0, 0.0]).scale(&[2.0]), vec![2.0], "an all-zero dimension");
    }

    #[test]
    fn dot_approximates_the_full_precision_one() {
        let rows: Vec<f32> = (0..67 * 5).map(|i| ((i * 17 % 19) as f32 - 9.0) / 30.0).collect();
        let scales = Scales::fit(67, &rows);
        let query: Vec<f32> = (0..67).map(|i| ((i * 37 % 23) as f32 - 11.0) / 40.0).collect();
        for row in rows.chunks_exact(67) {
            let codes: Vec<i8> = scales.encode(row).collect();
            let exact: f32 = query.iter().zip(row).map(|(q, x)| q * x).sum();
            let coded = dot(&scales.scale(&query), &codes);
            assert!((coded - exact).abs() < 1e-2, "{coded} against {exact}");
        }
    }
}
