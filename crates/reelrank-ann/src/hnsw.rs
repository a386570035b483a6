//! Approximate search on a hierarchical navigable small-world graph, from the `usearch` crate.
//!
//! Why usearch: filtered search with the predicate inside the graph traversal (rejected nodes are
//! still walked through, so a filter costs no connectivity), deletion with slot reuse, optional
//! f16/i8 storage, concurrent inserts, and a single-file format that loads without a rebuild.
//! hnsw_rs has no delete; faiss needs a system library. Its sharp edges are handled here:
//! capacity is reserved before inserts (it does not grow by itself), an update is remove + add
//! (duplicate keys are refused), and a panic in the caller's filter is carried across the C++
//! frames and resumed on this side instead of aborting the process.

use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::Path;

use rayon::prelude::*;
use reelrank_features::PersistError;
use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::{check_dim, IndexError, Result, VectorIndex};

/// How vectors are stored in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// Full precision.
    F32,
    /// Half precision: half the memory, negligible loss on unit vectors.
    F16,
    /// 8-bit integers: a quarter of the memory, some loss of recall.
    I8,
}

impl Quantization {
    fn scalar_kind(self) -> ScalarKind {
        match self {
            Quantization::F32 => ScalarKind::F32,
            Quantization::F16 => ScalarKind::F16,
            Quantization::I8 => ScalarKind::I8,
        }
    }
}

/// Graph settings; saved with the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HnswConfig {
    /// Neighbours per node (HNSW's `M`): more gives better recall, slower builds and more memory.
    pub connectivity: usize,
    /// Candidate list size while inserting (`efConstruction`).
    pub expansion_add: usize,
    /// Candidate list size while searching (`ef`): the recall/latency knob, changeable after build.
    pub expansion_search: usize,
    /// Storage precision of the vectors.
    pub quantization: Quantization,
}

impl Default for HnswConfig {
    /// Chosen with `reelrank bench ann` on 1M clustered 64-dimensional vectors (docs/BENCHMARKS.md).
    fn default() -> HnswConfig {
        HnswConfig {
            connectivity: 16,
            expansion_add: 200,
            expansion_search: 128,
            quantization: Quantization::F32,
        }
    }
}

/// Most threads that may search or insert at the same moment; each needs a scratch context that
/// the graph allocates up front.
const MAX_CONCURRENCY: usize = 64;

/// An HNSW graph over inner product.
pub struct HnswIndex {
    index: Index,
    config: HnswConfig,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex").field("len", &self.len()).field("config", &self.config).finish()
    }
}

fn native(e: cxx::Exception) -> IndexError {
    IndexError::Native(e.what().to_owned())
}

impl HnswIndex {
    /// An empty graph of `dim`-wide vectors.
    pub fn new(dim: usize, config: HnswConfig) -> Result<HnswIndex> {
        let options = IndexOptions {
            dimensions: dim,
            metric: MetricKind::IP,
            quantization: config.quantization.scalar_kind(),
            connectivity: config.connectivity,
            expansion_add: config.expansion_add,
            expansion_search: config.expansion_search,
            multi: false,
        };
        let index = Index::new(&options).map_err(native)?;
        let hnsw = HnswIndex { index, config };
        hnsw.reserve(0)?;
        Ok(hnsw)
    }

    /// A graph of many vectors at once (`vectors` is `[keys.len() × dim]`), inserted on every
    /// thread of the current rayon pool.
    pub fn build(dim: usize, config: HnswConfig, keys: &[u64], vectors: &[f32]) -> Result<HnswIndex> {
        assert_eq!(vectors.len(), dim * keys.len(), "one {dim}-wide vector per key");
        let hnsw = HnswIndex::new(dim, config)?;
        hnsw.reserve(keys.len())?;
        keys.par_iter()
            .zip(vectors.par_chunks_exact(dim.max(1)))
            .try_for_each(|(&key, vector)| hnsw.index.add(key, vector).map_err(native))?;
        Ok(hnsw)
    }

    /// The settings the graph was built with.
    pub fn config(&self) -> &HnswConfig {
        &self.config
    }

    /// Changes the search candidate list size (recall against latency) without a rebuild.
    pub fn set_expansion_search(&mut self, expansion: usize) {
        self.config.expansion_search = expansion;
        self.index.change_expansion_search(expansion);
    }

    /// The SIMD instruction set distances run on (e.g. `skylake` for AVX-512), for reports.
    pub fn simd(&self) -> String {
        self.index.hardware_acceleration()
    }

    /// Bytes held by the graph and the vectors.
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_usage()
    }

    /// Makes room for `additional` more vectors, doubling so that repeated inserts stay amortised.
    fn reserve(&self, additional: usize) -> Result<()> {
        let needed = self.index.size() + additional;
        if needed <= self.index.capacity() && self.index.capacity() > 0 {
            return Ok(());
        }
        let capacity = needed.max(self.index.capacity() * 2).max(1024);
        self.index.reserve_capacity_and_threads(capacity, MAX_CONCURRENCY).map_err(native)
    }

    /// Writes the graph as one usearch file.
    pub fn save(&self, path: &Path) -> std::result::Result<(), PersistError> {
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        self.index.save(utf8(path)?).map_err(|e| format_error(path, e))
    }

    /// Reads a file written by [`HnswIndex::save`] with the config it was built with.
    pub fn load(path: &Path, config: HnswConfig) -> std::result::Result<HnswIndex, PersistError> {
        let index = Index::restore(utf8(path)?).map_err(|e| format_error(path, e))?;
        index.change_expansion_search(config.expansion_search);
        index.change_expansion_add(config.expansion_add);
        let hnsw = HnswIndex { index, config };
        hnsw.reserve(0)
            .map_err(|e| PersistError::Format { path: path.to_owned(), message: e.to_string() })?;
        Ok(hnsw)
    }
}

fn utf8(path: &Path) -> std::result::Result<&str, PersistError> {
    path.to_str().ok_or_else(|| PersistError::Format {
        path: path.to_owned(),
        message: "the graph library needs a UTF-8 path".into(),
    })
}

fn format_error(path: &Path, e: cxx::Exception) -> PersistError {
    PersistError::Format { path: path.to_owned(), message: e.what().to_owned() }
}

impl VectorIndex for HnswIndex {
    fn dim(&self) -> usize {
        self.index.dimensions()
    }

    fn len(&self) -> usize {
        self.index.size()
    }

    fn upsert(&mut self, key: u64, vector: &[f32]) -> Result<()> {
        check_dim(self.dim(), vector)?;
        if self.index.contains(key) {
            self.index.remove(key).map_err(native)?;
        }
        self.reserve(1)?;
        self.index.add(key, vector).map_err(native)
    }

    fn remove(&mut self, key: u64) -> bool {
        self.index.remove(key).is_ok_and(|removed| removed > 0)
    }

    fn vector(&self, key: u64) -> Option<Vec<f32>> {
        let mut v = Vec::new();
        match self.index.export(key, &mut v) {
            Ok(1) => Some(v),
            _ => None,
        }
    }

    fn search(&self, query: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)> {
        if k == 0 || query.len() != self.dim() || self.is_empty() {
            return Vec::new();
        }
        // The filter is called from C++: a panic must not unwind through those frames.
        let panic: Cell<Option<Box<dyn Any + Send>>> = Cell::new(None);
        let guarded = |key: u64| match catch_unwind(AssertUnwindSafe(|| filter(key))) {
            Ok(accept) => accept,
            Err(payload) => {
                panic.set(Some(payload));
                false
            }
        };
        let matches = self.index.filtered_search(query, k, guarded);
        if let Some(payload) = panic.take() {
            resume_unwind(payload);
        }
        hits(matches, k)
    }

    fn search_all(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        if k == 0 || query.len() != self.dim() || self.is_empty() {
            return Vec::new();
        }
        hits(self.index.search(query, k), k)
    }
}

/// The best `k` of usearch's matches as `(key, inner product)` pairs.
fn hits(matches: std::result::Result<usearch::ffi::Matches, cxx::Exception>, k: usize) -> Vec<(u64, f32)> {
    // Only allocation failure or too many concurrent callers get here.
    let matches = matches.unwrap_or_else(|e| panic!("vector search failed: {}", e.what()));
    // usearch's inner-product distance is `1 − u·v`.
    let mut hits: Vec<(u64, f32)> =
        matches.keys.into_iter().zip(matches.distances).map(|(key, d)| (key, 1.0 - d)).collect();
    reelrank_core::top_k(&mut hits, k);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::ClusteredVectors;
    use crate::FlatIndex;

    fn both(n: usize, dim: usize) -> (FlatIndex, HnswIndex, Vec<f32>) {
        let data = ClusteredVectors::new(dim, 50, 1);
        let vectors = data.sample(n, 2);
        let keys: Vec<u64> = (0..n as u64).map(|k| k * 7 + 3).collect();
        let hnsw = HnswIndex::build(dim, HnswConfig::default(), &keys, &vectors).unwrap();
        let mut flat = FlatIndex::new(dim);
        for (key, v) in keys.iter().zip(vectors.chunks_exact(dim)) {
            flat.upsert(*key, v).unwrap();
        }
        (flat, hnsw, data.sample(100, 3))
    }

    fn recall(exact: &[(u64, f32)], approximate: &[(u64, f32)]) -> f64 {
        let found = approximate.iter().filter(|a| exact.iter().any(|e| e.0 == a.0)).count();
        found as f64 / exact.len().max(1) as f64
    }

    fn mean_recall(
        flat: &FlatIndex,
        hnsw: &HnswIndex,
        queries: &[f32],
        k: usize,
        filter: &dyn Fn(u64) -> bool,
    ) -> f64 {
        let dim = flat.dim();
        let total: f64 = queries
            .chunks_exact(dim)
            .map(|q| recall(&flat.search(q, k, filter), &hnsw.search(q, k, filter)))
            .sum();
        total / (queries.len() / dim) as f64
    }

    #[test]
    fn recall_against_the_exact_index() {
        let (flat, hnsw, queries) = both(20_000, 32);
        assert_eq!(hnsw.len(), 20_000);
        let r = mean_recall(&flat, &hnsw, &queries, 20, &|_| true);
        assert!(r >= 0.95, "recall@20 {r}");
        // Scores are inner products, like the exact index's.
        let q = &queries[..32];
        let (exact, approximate) = (flat.search(q, 1, &|_| true), hnsw.search(q, 1, &|_| true));
        assert_eq!(exact[0].0, approximate[0].0);
        assert!((exact[0].1 - approximate[0].1).abs() < 1e-4);
    }

    #[test]
    fn filtered_search_returns_k_accepted_keys_with_recall() {
        let (flat, hnsw, queries) = both(20_000, 32);
        // A selective filter: one key in ten (as a region or moderation rule might be).
        let filter = |key: u64| key % 10 == 3;
        let hits = hnsw.search(&queries[..32], 20, &filter);
        assert_eq!(hits.len(), 20, "the filter runs inside the search, not after it");
        assert!(hits.iter().all(|h| filter(h.0)));
        let r = mean_recall(&flat, &hnsw, &queries, 20, &filter);
        assert!(r >= 0.9, "filtered recall@20 {r}");
    }

    #[test]
    fn upsert_remove_and_similar() {
        let mut hnsw = HnswIndex::new(2, HnswConfig::default()).unwrap();
        for (key, v) in [(1, [1.0, 0.0]), (2, [0.8, 0.6]), (3, [0.0, 1.0])] {
            hnsw.upsert(key, &v).unwrap();
        }
        hnsw.upsert(3, &[0.6, 0.8]).unwrap();
        assert_eq!(hnsw.len(), 3, "an upsert of a stored key replaces it");
        assert_eq!(hnsw.vector(3), Some(vec![0.6, 0.8]));
        assert_eq!(hnsw.similar(2, 2, &|_| true).iter().map(|h| h.0).collect::<Vec<_>>(), [3, 1]);
        assert!(hnsw.remove(2));
        assert!(!hnsw.remove(2));
        assert_eq!(hnsw.len(), 2);
        assert_eq!(hnsw.search(&[0.8, 0.6], 3, &|_| true).iter().map(|h| h.0).collect::<Vec<_>>(), [3, 1]);
        assert!(matches!(hnsw.upsert(4, &[1.0]), Err(IndexError::WrongDimension { expected: 2, got: 1 })));
        // Growing past the reserved capacity one insert at a time.
        for key in 10..3000u64 {
            let angle = key as f32 * 0.01;
            hnsw.upsert(key, &[angle.cos(), angle.sin()]).unwrap();
        }
        assert_eq!(hnsw.len(), 2992);
    }

    #[test]
    fn save_then_load_answers_the_same() {
        let (_, hnsw, queries) = both(3_000, 16);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph.usearch");
        hnsw.save(&path).unwrap();
        let mut loaded = HnswIndex::load(&path, hnsw.config().clone()).unwrap();
        for q in queries.chunks_exact(16).take(10) {
            assert_eq!(loaded.search(q, 10, &|_| true), hnsw.search(q, 10, &|_| true));
        }
        loaded.upsert(1, &queries[..16]).unwrap();
        assert_eq!(loaded.search(&queries[..16], 1, &|_| true)[0].0, 1, "a loaded graph takes inserts");
        std::fs::write(&path, b"not a graph").unwrap();
        assert!(HnswIndex::load(&path, HnswConfig::default()).is_err());
    }

    #[test]
    #[should_panic(expected = "filter failed")]
    fn a_panicking_filter_unwinds_instead_of_aborting() {
        let (_, hnsw, queries) = both(1_000, 8);
        hnsw.search(&queries[..8], 5, &|_| panic!("filter failed"));
    }
}
