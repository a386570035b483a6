//! The few vector loops on the training hot path, compiled for AVX-512 and AVX2 as well as the
//! baseline and picked at run time (`multiversion`): the release build targets baseline x86-64
//! (4-wide SSE) so that the binary runs anywhere, and these loops are where that costs most.

use multiversion::multiversion;

/// Asks the CPU to start loading `data` into cache: a hint with no effect on results, for loops
/// that know which scattered rows they will read next (graph search, hashed weights).
#[inline(always)]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = data.as_ptr().cast::<u8>();
        for offset in (0..std::mem::size_of_val(data)).step_by(64) {
            // SAFETY: a prefetch is a hint that never faults, whatever the address (`wrapping_add`
            // keeps the pointer arithmetic defined); SSE, which it needs, is part of every x86-64
            // CPU.
            #[allow(unsafe_code)]
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    start.wrapping_add(offset).cast(),
                );
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// `y += a · x`.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `Σ aᵢ·bᵢ`, with eight partial sums so that it vectorises (a single running sum must be added
/// in order and stays scalar).
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut partial = [0.0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..8 {
            partial[i] += x[i] * y[i];
        }
    }
    partial.iter().sum::<f32>() + tail
}

/// `Σ x²`, with eight partial sums so that it vectorises.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub fn sum_of_squares(x: &[f32]) -> f32 {
    let mut partial = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for chunk in chunks {
        for (p, v) in partial.iter_mut().zip(chunk) {
            *p += v * v;
        }
    }
    partial.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_plain_loops() {
        let x: Vec<f32> = (0..37).map(|i| i as f32 * 0.25 - 4.0).collect();
        let mut y: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.5).collect();
        let expected: Vec<f32> = y.iter().zip(&x).map(|(y, x)| y + 2.0 * x).collect();
        axpy(2.0, &x, &mut y);
        assert_eq!(y, expected);
        let plain: f32 = x.iter().map(|v| v * v).sum();
        assert!((sum_of_squares(&x) - plain).abs() < 1e-3);
        let products: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert!((dot(&x, &y) - products).abs() < 1e-3);
    }
}
