//! Seeding and weighted sampling.
//!
//! Every random decision draws from a generator seeded by hashing the run seed with a stream name and
//! the indices of what is being generated (day, user, ...). Work can then be split across threads in
//! any way and still produce the same numbers.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// The generator used everywhere: small, fast and of good statistical quality.
pub(crate) type SimRng = Pcg64Mcg;

/// Independent random streams, so that e.g. adding a user attribute does not reshuffle behaviour.
#[derive(Clone, Copy)]
pub(crate) enum Stream {
    Catalog = 1,
    Users = 2,
    Drift = 3,
    Behaviour = 4,
}

/// A generator for one `(stream, a, b)` of the run seeded with `seed`.
pub(crate) fn rng(seed: u64, stream: Stream, a: u64, b: u64) -> SimRng {
    let mixed = [stream as u64, a, b].into_iter().fold(splitmix(seed), |h, x| splitmix(h ^ x));
    SimRng::seed_from_u64(mixed)
}

/// SplitMix64's finaliser: a bijective mix in which every input bit affects every output bit.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A discrete distribution over `0..len` from non-negative weights, sampled by binary search.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cdf(Vec<f64>);

impl Cdf {
    pub(crate) fn new(weights: impl IntoIterator<Item = f64>) -> Cdf {
        let mut total = 0.0;
        Cdf(weights
            .into_iter()
            .map(|w| {
                total += w.max(0.0);
                total
            })
            .collect())
    }

    /// An index drawn in proportion to its weight; `None` when all weights are zero.
    pub(crate) fn sample(&self, rng: &mut SimRng) -> Option<usize> {
        let total = *self.0.last()?;
        if total <= 0.0 {
            return None;
        }
        let x = rng.random::<f64>() * total;
        Some(self.0.partition_point(|&c| c <= x).min(self.0.len() - 1))
    }
}

/// Draws from a small static table of `(value, weight)` pairs.
pub(crate) fn pick<T: Copy>(rng: &mut SimRng, table: &[(T, f64)]) -> T {
    let total: f64 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for &(value, weight) in table {
        if x < weight {
            return value;
        }
        x -= weight;
    }
    table.last().expect("non-empty table").0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draw = |s, a, b| rng(7, s, a, b).random::<u64>();
        assert_eq!(draw(Stream::Users, 1, 2), draw(Stream::Users, 1, 2));
        assert_ne!(draw(Stream::Users, 1, 2), draw(Stream::Users, 2, 1));
        assert_ne!(draw(Stream::Users, 1, 2), draw(Stream::Drift, 1, 2));
    }

    #[test]
    fn cdf_follows_weights() {
        let cdf = Cdf::new([0.0, 1.0, 3.0]);
        let mut r = rng(1, Stream::Catalog, 0, 0);
        let mut counts = [0; 3];
        for _ in 0..4000 {
            counts[cdf.sample(&mut r).unwrap()] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!((2700..3300).contains(&counts[2]), "{counts:?}");
        assert_eq!(Cdf::new([0.0]).sample(&mut r), None);
        assert_eq!(Cdf::default().sample(&mut r), None);
    }
}
