//! Half-precision storage of the graph's vectors.
//!
//! The graph walks on one-byte codes (`bytes.rs`); the vectors themselves, which score the walk's
//! results and which callers read back (item-to-item, diversity), are kept as IEEE half floats:
//! half the memory of f32 for a score error of at most 5e-4 on unit vectors. Only f16's normal
//! range is kept, which is all that embedding coordinates use: magnitudes below 2⁻¹⁴ (6.1e-5)
//! are stored as zero and magnitudes above 65,504 as ±65,504, so that decoding is a few integer
//! operations without branches and vectorises.

use multiversion::multiversion;

/// Smallest normal half's exponent bits, moved to f32's place, minus the bias difference.
const REBIAS: u32 = (127 - 15) << 23;
/// Largest finite half.
const MAX_HALF: u16 = 0x7bff;

/// `x` as half-precision bits, rounded to nearest (ties to even).
pub(crate) fn encode(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    if exponent <= 0 {
        return sign;
    }
    if exponent >= 31 {
        return sign | MAX_HALF;
    }
    let mantissa = bits & 0x7f_ffff;
    let mut half = ((exponent as u32) << 10) | (mantissa >> 13);
    let rest = mantissa & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) {
        // A carry out of the mantissa correctly moves up the exponent.
        half += 1;
    }
    sign | (half.min(u32::from(MAX_HALF)) as u16)
}

/// The value of half-precision bits written by [`encode`].
#[inline(always)]
pub(crate) fn decode(half: u16) -> f32 {
    let half = u32::from(half);
    let magnitude = half & 0x7fff;
    let bits = ((half & 0x8000) << 16) | ((magnitude << 13) + REBIAS);
    f32::from_bits(if magnitude == 0 { 0 } else { bits })
}

/// `Σ queryᵢ · decode(halvesᵢ)`.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub(crate) fn dot(query: &[f32], halves: &[u16]) -> f32 {
    crate::decoded_dot(query, halves, decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_within_half_precision() {
        for x in [1.0f32, -1.0, 0.5, 0.1, -0.123_456, 3.0e-3, 65_504.0, 1.0e-4] {
            let y = decode(encode(x));
            assert!((y - x).abs() <= x.abs() / 2048.0, "{x} came back as {y}");
        }
        assert_eq!(encode(1.0), 0x3c00, "IEEE bits");
        assert_eq!(encode(-2.0), 0xc000);
        assert_eq!(decode(encode(0.0)), 0.0);
        assert_eq!(decode(encode(1.0e-6)), 0.0, "below the normal range: zero");
        assert_eq!(decode(encode(-1.0e9)), -65_504.0, "above it: the largest half");
        // 1 + 2⁻¹¹ is halfway between two halves: ties go to the even one (1.0).
        assert_eq!(encode(1.0 + 1.0 / 2048.0), 0x3c00);
        assert_eq!(encode(1.0 + 3.0 / 2048.0), 0x3c02);
    }

    #[test]
    fn dot_matches_the_full_precision_one() {
        let a: Vec<f32> = (0..67).map(|i| ((i * 37 % 23) as f32 - 11.0) / 40.0).collect();
        let b: Vec<f32> = (0..67).map(|i| ((i * 17 % 19) as f32 - 9.0) / 30.0).collect();
        let halves: Vec<u16> = b.iter().map(|&x| encode(x)).collect();
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &halves) - exact).abs() < 2e-3, "{} against {exact}", dot(&a, &halves));
    }
}
