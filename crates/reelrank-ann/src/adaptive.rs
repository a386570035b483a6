//! The index callers hold: exact below a size threshold, a graph above it, saved with a manifest.

use std::path::Path;

use reelrank_features::{read_manifest, write_manifest, PersistError};
use serde::{Deserialize, Serialize};

use crate::{FlatIndex, HnswConfig, HnswIndex, Result, VectorIndex};

/// Version of the on-disk layout (`index.json` + `index.safetensors` or `graph.safetensors`);
/// other versions are refused. Version 1 stored the graph as a usearch file.
pub const INDEX_FORMAT_VERSION: u32 = 2;

/// Settings of an [`AdaptiveIndex`]; saved with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Below this many vectors search is exact: a scan of 20,000 × 64 floats takes about as long
    /// as a graph search and needs no build.
    pub exact_below: usize,
    /// The graph used from `exact_below` vectors on.
    pub hnsw: HnswConfig,
}

impl Default for IndexConfig {
    fn default() -> IndexConfig {
        IndexConfig { exact_below: 20_000, hnsw: HnswConfig::default() }
    }
}

#[derive(Debug)]
enum Inner {
    Flat(FlatIndex),
    Hnsw(Box<HnswIndex>),
}

/// Exact search for small catalogs, HNSW for large ones; switches to the graph when an insert
/// reaches `exact_below` (and stays there when vectors are removed).
#[derive(Debug)]
pub struct AdaptiveIndex {
    config: IndexConfig,
    inner: Inner,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    config: IndexConfig,
    dim: usize,
    len: usize,
    /// `flat` or `hnsw`.
    kind: String,
}

const MANIFEST: &str = "index.json";
const FLAT_FILE: &str = "index.safetensors";
const HNSW_FILE: &str = "graph.safetensors";

impl AdaptiveIndex {
    /// An empty (exact) index.
    pub fn new(dim: usize, config: IndexConfig) -> AdaptiveIndex {
        AdaptiveIndex { config, inner: Inner::Flat(FlatIndex::new(dim)) }
    }

    /// An index of many vectors at once (`vectors` is `[keys.len() × dim]`); a graph is built on
    /// every thread of the current rayon pool.
    pub fn build(dim: usize, config: IndexConfig, keys: &[u64], vectors: &[f32]) -> Result<AdaptiveIndex> {
        let inner = if keys.len() < config.exact_below {
            let mut flat = FlatIndex::new(dim);
            for (&key, v) in keys.iter().zip(vectors.chunks_exact(dim.max(1))) {
                flat.upsert(key, v)?;
            }
            Inner::Flat(flat)
        } else {
            Inner::Hnsw(Box::new(HnswIndex::build(dim, config.hnsw.clone(), keys, vectors)?))
        };
        Ok(AdaptiveIndex { config, inner })
    }

    /// Whether searches are exact (the index is below its threshold).
    pub fn is_exact(&self) -> bool {
        matches!(self.inner, Inner::Flat(_))
    }

    /// Approximate bytes held by vectors and graph.
    pub fn memory_bytes(&self) -> usize {
        match &self.inner {
            Inner::Flat(flat) => flat.len() * (flat.dim() * 4 + 8 + 16),
            Inner::Hnsw(hnsw) => hnsw.memory_bytes(),
        }
    }

    fn index(&self) -> &dyn VectorIndex {
        match &self.inner {
            Inner::Flat(flat) => flat,
            Inner::Hnsw(hnsw) => hnsw.as_ref(),
        }
    }

    /// Writes `dir/index.json` and the vectors (`index.safetensors` or `graph.safetensors`).
    pub fn save(&self, dir: &Path) -> std::result::Result<(), PersistError> {
        let kind = match &self.inner {
            Inner::Flat(flat) => {
                flat.save(&dir.join(FLAT_FILE))?;
                "flat"
            }
            Inner::Hnsw(hnsw) => {
                hnsw.save(&dir.join(HNSW_FILE))?;
                "hnsw"
            }
        };
        let manifest = Manifest {
            format_version: INDEX_FORMAT_VERSION,
            config: self.config.clone(),
            dim: self.dim(),
            len: self.len(),
            kind: kind.into(),
        };
        write_manifest(&dir.join(MANIFEST), &manifest)
    }

    /// Reads an index written by [`AdaptiveIndex::save`].
    pub fn load(dir: &Path) -> std::result::Result<AdaptiveIndex, PersistError> {
        let path = dir.join(MANIFEST);
        let manifest: Manifest = read_manifest(&path, INDEX_FORMAT_VERSION)?;
        let inner = match manifest.kind.as_str() {
            "flat" => Inner::Flat(FlatIndex::load(&dir.join(FLAT_FILE))?),
            "hnsw" => {
                Inner::Hnsw(Box::new(HnswIndex::load(&dir.join(HNSW_FILE), manifest.config.hnsw.clone())?))
            }
            other => {
                return Err(PersistError::Format { path, message: format!("unknown index kind `{other}`") })
            }
        };
        let index = AdaptiveIndex { config: manifest.config, inner };
        if (index.dim(), index.len()) != (manifest.dim, manifest.len) {
            return Err(PersistError::Format {
                path,
                message: format!(
                    "the manifest says {} vectors of {} dimensions, the data holds {} of {}",
                    manifest.len,
                    manifest.dim,
                    index.len(),
                    index.dim()
                ),
            });
        }
        Ok(index)
    }
}

impl VectorIndex for AdaptiveIndex {
    fn dim(&self) -> usize {
        self.index().dim()
    }

    fn len(&self) -> usize {
        self.index().len()
    }

    fn upsert(&mut self, key: u64, vector: &[f32]) -> Result<()> {
        match &mut self.inner {
            Inner::Flat(flat) if flat.len() + 1 >= self.config.exact_below && flat.get(key).is_none() => {
                let (keys, vectors): (Vec<u64>, Vec<&[f32]>) = flat.iter().unzip();
                let mut hnsw =
                    HnswIndex::build(flat.dim(), self.config.hnsw.clone(), &keys, &vectors.concat())?;
                hnsw.upsert(key, vector)?;
                self.inner = Inner::Hnsw(Box::new(hnsw));
                Ok(())
            }
            Inner::Flat(flat) => flat.upsert(key, vector),
            Inner::Hnsw(hnsw) => hnsw.upsert(key, vector),
        }
    }

    fn remove(&mut self, key: u64) -> bool {
        match &mut self.inner {
            Inner::Flat(flat) => flat.remove(key),
            Inner::Hnsw(hnsw) => hnsw.remove(key),
        }
    }

    fn vector(&self, key: u64) -> Option<Vec<f32>> {
        self.index().vector(key)
    }

    fn contains(&self, key: u64) -> bool {
        self.index().contains(key)
    }

    fn search(&self, query: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)> {
        self.index().search(query, k, filter)
    }

    fn search_all(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        self.index().search_all(query, k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::ClusteredVectors;

    fn config(exact_below: usize) -> IndexConfig {
        IndexConfig { exact_below, ..IndexConfig::default() }
    }

    #[test]
    fn switches_to_the_graph_at_the_threshold_and_keeps_every_vector() {
        let vectors = ClusteredVectors::new(8, 5, 1).sample(300, 2);
        let mut index = AdaptiveIndex::new(8, config(200));
        for (key, v) in vectors.chunks_exact(8).enumerate() {
            index.upsert(key as u64, v).unwrap();
            assert_eq!(index.is_exact(), key + 1 < 200, "after {} inserts", key + 1);
        }
        assert_eq!(index.len(), 300);
        // The graph search is approximate (a graph built on several threads misses a vector now
        // and then): nearly every vector's own key is among its nearest few.
        let mut found = 0;
        for (key, v) in vectors.chunks_exact(8).enumerate() {
            let stored = index.vector(key as u64).unwrap();
            assert!(stored.iter().zip(v).all(|(a, b)| (a - b).abs() < 1e-3), "stored in half precision");
            found += usize::from(index.search(v, 5, &|_| true).iter().any(|&(k, _)| k == key as u64));
        }
        assert!(found >= 290, "{found} of 300 vectors found among their own nearest five");
        assert!(AdaptiveIndex::build(8, config(200), &[1, 2], &vectors[..16]).unwrap().is_exact());
    }

    #[test]
    fn save_then_load_both_kinds() {
        let vectors = ClusteredVectors::new(8, 5, 1).sample(300, 2);
        let keys: Vec<u64> = (100..400).collect();
        let query = &vectors[8..16];
        for exact_below in [1000, 100] {
            let index = AdaptiveIndex::build(8, config(exact_below), &keys, &vectors).unwrap();
            let dir = tempfile::tempdir().unwrap();
            index.save(dir.path()).unwrap();
            let loaded = AdaptiveIndex::load(dir.path()).unwrap();
            assert_eq!(loaded.is_exact(), exact_below == 1000);
            assert_eq!(loaded.config, index.config);
            assert_eq!(loaded.search(query, 10, &|_| true), index.search(query, 10, &|_| true));
        }
        let dir = tempfile::tempdir().unwrap();
        AdaptiveIndex::new(8, config(10)).save(dir.path()).unwrap();
        let manifest = dir.path().join(MANIFEST);
        let text = std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("\"format_version\": 2", "\"format_version\": 9");
        std::fs::write(&manifest, text).unwrap();
        assert!(matches!(AdaptiveIndex::load(dir.path()), Err(PersistError::Version { found: 9, .. })));
    }
}
