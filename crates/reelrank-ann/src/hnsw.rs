//! Approximate search on a hierarchical navigable small-world graph: built by the `usearch`
//! crate, searched by our own loop (`graph.rs`).
//!
//! Why usearch builds: concurrent insertion with HNSW's neighbour-selection heuristic, on every
//! core, behind a public API that exposes each node's links. hnsw_rs built slowly and faiss needs
//! a system library. Its search is not used: at a million vectors it is 1.7 – 2.3x slower than
//! hnswlib's (no prefetch of neighbours' vectors; `docs/BENCHMARKS.md`), so the built graph is
//! copied into [`Graph`]'s flat arrays and searched there.
//!
//! The graph is immutable once built. Later inserts go to a small exact index beside it
//! (searched with it, results merged), removals leave a tombstone that searches walk through but
//! never return, and an insert that finds the two together outgrowing an eighth of the graph
//! rebuilds it from the live vectors, synchronously. Serving never pays for that on a request:
//! it builds the graph once per model, inserts only while loading, and keeps items that change
//! while serving in its own exact index beside the shared graph (`reelrank-serving`'s
//! `Retrieval`, which needs that copy-on-write rather than this in-place update).

use std::path::Path;

use rayon::prelude::*;
use reelrank_features::{PersistError, TensorReader, TensorWriter};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::graph::Graph;
use crate::{check_dim, FlatIndex, IndexError, Result, VectorIndex};

/// Graph settings; saved with the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HnswConfig {
    /// Neighbours per node (HNSW's `M`; the base layer links `2M`): more gives better recall,
    /// slower builds and more memory.
    pub connectivity: usize,
    /// Candidate list size while inserting (`efConstruction`).
    pub expansion_add: usize,
    /// Candidate list size while searching (`ef`): the recall/latency knob, changeable after build.
    pub expansion_search: usize,
    /// Candidate list size of unfiltered searches ([`VectorIndex::search_all`]), which build
    /// items' short neighbour lists: at 1M clustered vectors and k = 21, 64 gives recall 0.91 in
    /// 0.12 ms where 160 gives 0.97 in 0.20 ms (`reelrank bench ann --k 21`). A feed asks for the
    /// neighbours of several recent positives per request and wants them cheap more than exact.
    pub expansion_neighbours: usize,
}

impl Default for HnswConfig {
    /// Chosen with `reelrank bench ann` on 1M clustered 64-dimensional vectors (docs/BENCHMARKS.md):
    /// recall@100 of 0.955 there at a p50 of 0.21 ms, in 478 bytes per vector.
    fn default() -> HnswConfig {
        HnswConfig { connectivity: 32, expansion_add: 200, expansion_search: 160, expansion_neighbours: 64 }
    }
}

/// Fewest inserts and removals since the build that trigger a rebuild (a small graph is rebuilt
/// at this count rather than at an eighth of its size).
const REBUILD_AT_LEAST: usize = 1024;

/// An HNSW graph over inner product, with the inserts and removals made since it was built.
#[derive(Debug)]
pub struct HnswIndex {
    config: HnswConfig,
    graph: Graph,
    /// Slot → key of the graph's nodes.
    keys: Vec<u64>,
    /// Key → slot of the graph's live nodes.
    slots: FxHashMap<u64, u32>,
    /// Slots removed since the build (walked through, never returned).
    removed: Vec<bool>,
    /// Vectors inserted since the build.
    fresh: FlatIndex,
}

fn native(e: cxx::Exception) -> IndexError {
    IndexError::Native(e.what().to_owned())
}

impl HnswIndex {
    /// An empty graph of `dim`-wide vectors.
    pub fn new(dim: usize, config: HnswConfig) -> HnswIndex {
        HnswIndex::with_graph(config, Graph::empty(dim), Vec::new())
    }

    /// A graph of many vectors at once (`vectors` is `[keys.len() × dim]`, keys distinct),
    /// inserted on every thread of the current rayon pool.
    pub fn build(dim: usize, config: HnswConfig, keys: &[u64], vectors: &[f32]) -> Result<HnswIndex> {
        assert_eq!(vectors.len(), dim * keys.len(), "one {dim}-wide vector per key");
        let options = IndexOptions {
            dimensions: dim,
            metric: MetricKind::IP,
            quantization: ScalarKind::F32,
            connectivity: config.connectivity,
            expansion_add: config.expansion_add,
            expansion_search: config.expansion_search,
            multi: false,
        };
        let builder = Index::new(&options).map_err(native)?;
        builder
            .reserve_capacity_and_threads(keys.len().max(1), rayon::current_num_threads())
            .map_err(native)?;
        keys.par_iter()
            .zip(vectors.par_chunks_exact(dim.max(1)))
            .try_for_each(|(&key, vector)| builder.add(key, vector).map_err(native))?;
        let graph = Graph::from_usearch(&builder, keys, vectors);
        drop(builder); // before the renumbered copy: it holds several hundred MB at a million vectors
        let (graph, order) = graph.renumbered();
        let keys = order.iter().map(|&old| keys[old as usize]).collect();
        Ok(HnswIndex::with_graph(config, graph, keys))
    }

    fn with_graph(config: HnswConfig, graph: Graph, keys: Vec<u64>) -> HnswIndex {
        let slots = keys.iter().enumerate().map(|(slot, &key)| (key, slot as u32)).collect();
        let removed = vec![false; keys.len()];
        let fresh = FlatIndex::new(graph.dim());
        HnswIndex { config, graph, keys, slots, removed, fresh }
    }

    /// The settings the graph was built with.
    pub fn config(&self) -> &HnswConfig {
        &self.config
    }

    /// Changes the search candidate list size (recall against latency) without a rebuild.
    pub fn set_expansion_search(&mut self, expansion: usize) {
        self.config.expansion_search = expansion;
    }

    /// [`VectorIndex::search`] with a candidate list of at least `expansion`.
    fn search_expanding(
        &self,
        query: &[f32],
        k: usize,
        expansion: usize,
        filter: &dyn Fn(u64) -> bool,
    ) -> Vec<(u64, f32)> {
        if k == 0 || query.len() != self.dim() {
            return Vec::new();
        }
        let accept = |slot: u32| !self.removed[slot as usize] && filter(self.keys[slot as usize]);
        // The graph walks on approximate scores and scores its results again exactly: keeping a
        // quarter more results than asked leaves room for that second scoring to change which
        // ones make the cut (at exactly `k`, recall@100 falls from 0.911 to 0.890).
        let mut hits: Vec<(u64, f32)> = self
            .graph
            .search(query, expansion.max(k + k / 4), &accept)
            .into_iter()
            .map(|(score, slot)| (self.keys[slot as usize], score))
            .collect();
        if !self.fresh.is_empty() {
            hits.extend(self.fresh.search(query, k, filter));
        }
        reelrank_core::top_k(&mut hits, k);
        hits
    }

    /// Bytes held by the graph, the vectors and the updates beside them.
    pub fn memory_bytes(&self) -> usize {
        // Per graph node: its key, its tombstone and its entry in the key → slot map; per fresh
        // vector: its floats and its key with map overhead.
        self.graph.memory_bytes() + self.keys.len() * (8 + 1 + 16) + self.fresh.len() * (self.dim() * 4 + 24)
    }

    /// Rebuilds the graph from the live vectors once the updates since the last build are many.
    fn rebuild_if_stale(&mut self) -> Result<()> {
        let stale = self.fresh.len() + (self.keys.len() - self.slots.len());
        if stale <= REBUILD_AT_LEAST.max(self.keys.len() / 8) {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(self.len());
        let mut vectors = Vec::with_capacity(self.len() * self.dim());
        for (slot, &key) in self.keys.iter().enumerate() {
            if !self.removed[slot] {
                keys.push(key);
                vectors.extend(self.graph.vector(slot as u32));
            }
        }
        for (key, vector) in self.fresh.iter() {
            keys.push(key);
            vectors.extend_from_slice(vector);
        }
        *self = HnswIndex::build(self.dim(), self.config.clone(), &keys, &vectors)?;
        Ok(())
    }

    /// Writes the graph and the updates since its build as one safetensors file.
    pub fn save(&self, path: &Path) -> std::result::Result<(), PersistError> {
        let removed: Vec<u32> = (0..self.keys.len() as u32).filter(|&s| self.removed[s as usize]).collect();
        let fresh: Vec<(u64, &[f32])> = self.fresh.iter().collect();
        let fresh_vectors: Vec<f32> = fresh.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let mut out = TensorWriter::new();
        self.graph.write(&mut out);
        out.add("keys", vec![self.keys.len()], &self.keys)
            .add("removed", vec![removed.len()], &removed)
            .add("fresh.keys", vec![fresh.len()], &fresh.iter().map(|f| f.0).collect::<Vec<_>>())
            .add("fresh.vectors", vec![fresh.len(), self.dim()], &fresh_vectors)
            .write(path)
    }

    /// Reads a file written by [`HnswIndex::save`], searched with `config`'s expansion.
    pub fn load(path: &Path, config: HnswConfig) -> std::result::Result<HnswIndex, PersistError> {
        let format = |message: String| PersistError::Format { path: path.to_owned(), message };
        let arrays = TensorReader::open(path)?;
        let graph = Graph::read(&arrays, path)?;
        let keys: Vec<u64> = arrays.values("keys")?;
        if keys.len() != graph.len() {
            return Err(format(format!("{} keys for {} graph nodes", keys.len(), graph.len())));
        }
        let mut index = HnswIndex::with_graph(config, graph, keys);
        if index.slots.len() != index.keys.len() {
            return Err(format("a key is stored twice".into()));
        }
        for slot in arrays.values::<u32>("removed")? {
            let key = *index
                .keys
                .get(slot as usize)
                .ok_or_else(|| format(format!("removed slot {slot} is past the graph")))?;
            index.remove(key);
        }
        let fresh_keys: Vec<u64> = arrays.values("fresh.keys")?;
        let fresh_vectors: Vec<f32> = arrays.values("fresh.vectors")?;
        if fresh_vectors.len() != fresh_keys.len() * index.dim() {
            return Err(format(format!(
                "{} fresh keys for {} values",
                fresh_keys.len(),
                fresh_vectors.len()
            )));
        }
        for (&key, vector) in fresh_keys.iter().zip(fresh_vectors.chunks_exact(index.dim().max(1))) {
            if index.slots.contains_key(&key) || index.fresh.get(key).is_some() {
                return Err(format(format!("key {key} is stored twice")));
            }
            index.fresh.upsert(key, vector).map_err(|e| format(e.to_string()))?;
        }
        Ok(index)
    }
}

impl VectorIndex for HnswIndex {
    fn dim(&self) -> usize {
        self.graph.dim()
    }

    fn len(&self) -> usize {
        self.slots.len() + self.fresh.len()
    }

    fn upsert(&mut self, key: u64, vector: &[f32]) -> Result<()> {
        check_dim(self.dim(), vector)?;
        if let Some(slot) = self.slots.remove(&key) {
            self.removed[slot as usize] = true;
        }
        self.fresh.upsert(key, vector)?;
        self.rebuild_if_stale()
    }

    fn remove(&mut self, key: u64) -> bool {
        // The tombstone stays until an insert finds the graph stale and rebuilds it.
        match self.slots.remove(&key) {
            Some(slot) => {
                self.removed[slot as usize] = true;
                true
            }
            None => self.fresh.remove(key),
        }
    }

    fn vector(&self, key: u64) -> Option<Vec<f32>> {
        match self.slots.get(&key) {
            Some(&slot) => Some(self.graph.vector(slot)),
            None => self.fresh.vector(key),
        }
    }

    fn contains(&self, key: u64) -> bool {
        self.slots.contains_key(&key) || self.fresh.contains(key)
    }

    fn search(&self, query: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)> {
        self.search_expanding(query, k, self.config.expansion_search, filter)
    }

    fn search_all(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        self.search_expanding(query, k, self.config.expansion_neighbours, &|_| true)
    }
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
        // Scores are inner products, like the exact index's (of vectors stored in half precision).
        let q = &queries[..32];
        let (exact, approximate) = (flat.search(q, 1, &|_| true), hnsw.search(q, 1, &|_| true));
        assert_eq!(exact[0].0, approximate[0].0);
        assert!((exact[0].1 - approximate[0].1).abs() < 2e-3);
    }

    #[test]
    fn neighbour_lists_search_with_their_own_effort() {
        let (flat, mut hnsw, queries) = both(20_000, 32);
        let dim = flat.dim();
        let neighbour_recall = |hnsw: &HnswIndex| {
            let total: f64 = queries
                .chunks_exact(dim)
                .map(|q| recall(&flat.search_all(q, 21), &hnsw.search_all(q, 21)))
                .sum();
            total / (queries.len() / dim) as f64
        };
        let cheap = neighbour_recall(&hnsw);
        assert!(cheap >= 0.85, "recall@21 {cheap} at the neighbour lists' default");
        // `expansion_search` does not reach them; their own setting does.
        hnsw.set_expansion_search(1);
        assert_eq!(neighbour_recall(&hnsw), cheap);
        hnsw.config.expansion_neighbours = 400;
        let thorough = neighbour_recall(&hnsw);
        assert!(thorough > cheap && thorough >= 0.97, "recall@21 {thorough} at 400, {cheap} at the default");
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
        let mut hnsw = HnswIndex::new(2, HnswConfig::default());
        for (key, v) in [(1, [1.0, 0.0]), (2, [0.8, 0.6]), (3, [0.0, 1.0])] {
            hnsw.upsert(key, &v).unwrap();
        }
        hnsw.upsert(3, &[0.6, 0.8]).unwrap();
        assert_eq!(hnsw.len(), 3, "an upsert of a stored key replaces it");
        assert_eq!(hnsw.vector(3), Some(vec![0.6, 0.8]));
        assert_eq!(hnsw.similar(2, 2, &|_| true).iter().map(|h| h.0).collect::<Vec<_>>(), [3, 1]);
        assert!(hnsw.contains(2));
        assert!(hnsw.remove(2));
        assert!(!hnsw.remove(2));
        assert!(!hnsw.contains(2) && hnsw.contains(3));
        assert_eq!(hnsw.len(), 2);
        assert_eq!(hnsw.search(&[0.8, 0.6], 3, &|_| true).iter().map(|h| h.0).collect::<Vec<_>>(), [3, 1]);
        assert!(matches!(hnsw.upsert(4, &[1.0]), Err(IndexError::WrongDimension { expected: 2, got: 1 })));
    }

    #[test]
    fn inserts_one_at_a_time_are_rebuilt_into_the_graph() {
        let vectors = ClusteredVectors::new(16, 20, 1).sample(3_000, 2);
        let mut hnsw = HnswIndex::new(16, HnswConfig::default());
        for (key, v) in vectors.chunks_exact(16).enumerate() {
            hnsw.upsert(key as u64, v).unwrap();
        }
        assert_eq!(hnsw.len(), 3_000);
        assert!(hnsw.graph.len() > 2_000 && hnsw.fresh.len() < 1_000, "{} in the graph", hnsw.graph.len());
        for key in [0, 1_500, 2_999] {
            let found = hnsw.search(&vectors[key * 16..(key + 1) * 16], 5, &|_| true);
            assert!(found.iter().any(|h| h.0 == key as u64), "{key} is among its own nearest five");
        }
    }

    #[test]
    fn removed_and_replaced_nodes_of_the_graph_are_not_returned() {
        let (_, mut hnsw, queries) = both(5_000, 16);
        let query = &queries[..16];
        let before: Vec<u64> = hnsw.search(query, 6, &|_| true).iter().map(|h| h.0).collect();
        assert!(hnsw.remove(before[0]));
        let opposite: Vec<f32> = query.iter().map(|x| -x).collect();
        hnsw.upsert(before[1], &opposite).unwrap();
        assert_eq!(hnsw.len(), 4_999);
        let after: Vec<u64> = hnsw.search(query, 4, &|_| true).iter().map(|h| h.0).collect();
        assert_eq!(after, before[2..], "the rest are still found, in order");
        assert_eq!(hnsw.search(&opposite, 1, &|_| true)[0].0, before[1], "found by its new vector");
        assert_eq!(hnsw.vector(before[0]), None);
        assert!(!hnsw.contains(before[0]) && hnsw.contains(before[1]) && hnsw.contains(before[2]));
    }

    #[test]
    fn save_then_load_answers_the_same() {
        let (_, hnsw, queries) = both(3_000, 16);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph.safetensors");
        let mut hnsw = hnsw;
        hnsw.remove(3);
        hnsw.upsert(10, &queries[16..32]).unwrap();
        hnsw.upsert(5_000_000, &queries[32..48]).unwrap();
        hnsw.save(&path).unwrap();
        let mut loaded = HnswIndex::load(&path, hnsw.config().clone()).unwrap();
        assert_eq!(loaded.len(), hnsw.len());
        for q in queries.chunks_exact(16).take(10) {
            assert_eq!(loaded.search(q, 10, &|_| true), hnsw.search(q, 10, &|_| true));
        }
        assert_eq!(loaded.vector(10).as_deref(), Some(&queries[16..32]), "updates since the build are kept");
        assert_eq!(loaded.vector(3), None, "and so are removals");
        loaded.upsert(1, &queries[..16]).unwrap();
        assert_eq!(loaded.search(&queries[..16], 1, &|_| true)[0].0, 1, "a loaded graph takes inserts");
        std::fs::write(&path, b"not a graph").unwrap();
        assert!(HnswIndex::load(&path, HnswConfig::default()).is_err());
    }
}
