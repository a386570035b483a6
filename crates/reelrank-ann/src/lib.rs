//! Vector indexes for candidate retrieval, knowing nothing of models: they store `(key, vector)`
//! pairs and answer "the `k` keys whose vectors have the largest inner product with this query,
//! among those the filter accepts".
//!
//! Filters run inside the search, so moderation, region and seen-item rules do not cost recall by
//! dropping results after the fact. Exact and approximate indexes share [`VectorIndex`]:
//!
//! - [`FlatIndex`] scans every vector: exact, cheap to update, right for small catalogs, and the
//!   reference the approximate index is tested against;
//! - [`HnswIndex`] is a graph index (HNSW, built by the `usearch` crate, searched by our own loop):
//!   logarithmic search for large catalogs, with incremental insert and delete;
//! - [`AdaptiveIndex`] is what callers hold: exact below a size threshold, HNSW above it, saved and
//!   loaded with a manifest that carries its config and a format version.
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

mod adaptive;
mod bytes;
mod flat;
mod graph;
mod half;
mod hnsw;
pub mod synthetic;

pub use adaptive::{AdaptiveIndex, IndexConfig, INDEX_FORMAT_VERSION};
pub use flat::FlatIndex;
pub use hnsw::{HnswConfig, HnswIndex};
use reelrank_features::PersistError;

/// What can go wrong with an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A vector of the wrong width was given.
    #[error("vector has {got} dimensions, the index {expected}")]
    WrongDimension {
        /// The index's width.
        expected: usize,
        /// The vector's width.
        got: usize,
    },
    /// The graph builder refused an operation (out of memory, a duplicate key).
    #[error("vector index: {0}")]
    Native(String),
    /// Saving or loading failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
}

/// The result type of index operations.
pub type Result<T> = std::result::Result<T, IndexError>;

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
    fn upsert(&mut self, key: u64, vector: &[f32]) -> Result<()>;

    /// Removes `key`; returns whether it was present.
    fn remove(&mut self, key: u64) -> bool;

    /// The stored vector of `key` (for approximate indexes, as stored: possibly quantised).
    fn vector(&self, key: u64) -> Option<Vec<f32>>;

    /// Whether `key` is stored: [`VectorIndex::vector`] without decoding or copying the vector.
    fn contains(&self, key: u64) -> bool;

    /// Up to `k` `(key, inner product)` pairs, best first (ties by ascending key), among keys that
    /// `filter` accepts.
    fn search(&self, query: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)>;

    /// Up to `k` `(key, inner product)` pairs, best first, over every key: what callers that
    /// filter afterwards use, since a filter inside a graph search costs a call per visited node.
    /// An approximate index may search with less effort than [`VectorIndex::search`] (a graph's
    /// [`HnswConfig::expansion_neighbours`]): these are items' short neighbour lists.
    fn search_all(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        self.search(query, k, &|_| true)
    }

    /// The `k` keys most similar to `key` (by its stored vector), itself excluded; empty when
    /// `key` is not stored.
    fn similar(&self, key: u64, k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)> {
        match self.vector(key) {
            Some(v) => self.search(&v, k, &|other| other != key && filter(other)),
            None => Vec::new(),
        }
    }
}

/// `Σ queryᵢ · decode(storedᵢ)` over vectors stored in a compact form (half floats, one-byte
/// codes), with sixteen partial sums so that it vectorises: inlined into each stored form's
/// multiversioned `dot`, so that every CPU target gets its own copy of the loop.
#[inline(always)]
fn decoded_dot<T: Copy>(query: &[f32], stored: &[T], decode: impl Fn(T) -> f32) -> f32 {
    let mut partial = [0.0f32; 16];
    let (q_chunks, s_chunks) = (query.chunks_exact(16), stored.chunks_exact(16));
    let tail: f32 = q_chunks.remainder().iter().zip(s_chunks.remainder()).map(|(q, &s)| q * decode(s)).sum();
    for (q, s) in q_chunks.zip(s_chunks) {
        for i in 0..16 {
            partial[i] += q[i] * decode(s[i]);
        }
    }
    partial.iter().sum::<f32>() + tail
}

/// Checks a vector's width against the index's.
fn check_dim(expected: usize, vector: &[f32]) -> Result<()> {
    if vector.len() == expected {
        Ok(())
    } else {
        Err(IndexError::WrongDimension { expected, got: vector.len() })
    }
}
