//! Vector indexes for candidate retrieval, knowing nothing of models: they store `(key, vector)`
//! pairs and answer "the `k` keys whose vectors have the largest inner product with this query,
//! among those the filter accepts".
//!
//! Filters run inside the search, so moderation, region and seen-item rules do not cost recall by
//! dropping results after the fact. Exact and approximate indexes share [`VectorIndex`]; the exact
//! [`FlatIndex`] serves small catalogs and is the reference approximate ones are tested against.
//!
//! ```
//! use reelrank_ann::{FlatIndex, VectorIndex};
//! let mut index = FlatIndex::new(2);
//! index.upsert(7, &[1.0, 0.0]).unwrap();
//! index.upsert(9, &[0.0, 1.0]).unwrap();
//! let hits = index.search(&[0.9, 0.1], 1, &|_| true);
//! assert_eq!(hits[0].0, 7);
//! ```
#![warn(missing_docs)]

mod flat;

pub use flat::FlatIndex;

/// A vector of the wrong width was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vector has {got} dimensions, the index {expected}")]
pub struct WrongDimension {
    /// The index's width.
    pub expected: usize,
    /// The vector's width.
    pub got: usize,
}

/// Keyed vectors searchable by inner product.
pub trait VectorIndex: Send + Sync {
    /// Width of the vectors.
    fn dim(&self) -> usize;

    /// Number of stored vectors.
    fn len(&self) -> usize;

    /// Whether the index is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts `key`, or replaces its vector.
    fn upsert(&mut self, key: u64, vector: &[f32]) -> Result<(), WrongDimension>;

    /// Removes `key`; returns whether it was present.
    fn remove(&mut self, key: u64) -> bool;

    /// Up to `k` `(key, inner product)` pairs, best first (ties by ascending key), among keys that
    /// `filter` accepts.
    fn search(&self, query: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)>;
}
