//! Exact search by scanning every vector.

use std::path::Path;

use reelrank_features::kernels::dot;
use reelrank_features::{PersistError, TensorReader, TensorWriter};
use rustc_hash::FxHashMap;

use crate::{check_dim, Result, VectorIndex};

/// Every vector in one contiguous array, scanned per query: exact, `O(n·dim)` per search, and
/// cheap to update. Used below a size threshold and as the ground truth for approximate indexes.
#[derive(Debug, Clone, Default)]
pub struct FlatIndex {
    dim: usize,
    keys: Vec<u64>,
    vectors: Vec<f32>,
    position: FxHashMap<u64, usize>,
}

impl FlatIndex {
    /// An empty index of `dim`-wide vectors.
    pub fn new(dim: usize) -> FlatIndex {
        FlatIndex { dim, ..FlatIndex::default() }
    }

    /// The stored vector of `key`.
    pub fn get(&self, key: u64) -> Option<&[f32]> {
        self.position.get(&key).map(|&p| &self.vectors[p * self.dim..(p + 1) * self.dim])
    }

    /// Every `(key, vector)`, in storage order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[f32])> {
        self.keys.iter().copied().zip(self.vectors.chunks_exact(self.dim.max(1)))
    }

    /// Writes the keys and vectors as one safetensors file.
    pub fn save(&self, path: &Path) -> std::result::Result<(), PersistError> {
        TensorWriter::new()
            .add("keys", vec![self.keys.len()], &self.keys)
            .add("vectors", vec![self.keys.len(), self.dim], &self.vectors)
            .write(path)
    }

    /// Reads a file written by [`FlatIndex::save`].
    pub fn load(path: &Path) -> std::result::Result<FlatIndex, PersistError> {
        let arrays = TensorReader::open(path)?;
        let keys: Vec<u64> = arrays.values("keys")?;
        let (shape, vectors) = arrays.read::<f32>("vectors")?;
        let format = |message: String| PersistError::Format { path: path.to_owned(), message };
        let &[rows, dim] = shape.as_slice() else {
            return Err(format(format!("vectors have shape {shape:?}, expected [rows, dim]")));
        };
        if rows != keys.len() {
            return Err(format(format!("{} keys for {rows} vectors", keys.len())));
        }
        let position: FxHashMap<u64, usize> = keys.iter().enumerate().map(|(p, &k)| (k, p)).collect();
        if position.len() != keys.len() {
            return Err(format("a key is stored twice".into()));
        }
        Ok(FlatIndex { dim, keys, vectors, position })
    }
}

impl VectorIndex for FlatIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn upsert(&mut self, key: u64, vector: &[f32]) -> Result<()> {
        check_dim(self.dim, vector)?;
        match self.position.get(&key) {
            Some(&p) => self.vectors[p * self.dim..(p + 1) * self.dim].copy_from_slice(vector),
            None => {
                self.position.insert(key, self.keys.len());
                self.keys.push(key);
                self.vectors.extend_from_slice(vector);
            }
        }
        Ok(())
    }

    fn remove(&mut self, key: u64) -> bool {
        let Some(p) = self.position.remove(&key) else { return false };
        // Move the last vector into the hole.
        let last = self.keys.len() - 1;
        if p != last {
            let moved = self.keys[last];
            self.keys[p] = moved;
            self.vectors.copy_within(last * self.dim..(last + 1) * self.dim, p * self.dim);
            self.position.insert(moved, p);
        }
        self.keys.pop();
        self.vectors.truncate(last * self.dim);
        true
    }

    fn vector(&self, key: u64) -> Option<Vec<f32>> {
        self.get(key).map(<[f32]>::to_vec)
    }

    fn contains(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    fn search(&self, query: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)> {
        if k == 0 || query.len() != self.dim {
            return Vec::new();
        }
        // A buffer of up to 2k candidates, cut back to the best k whenever it fills: no allocation
        // per vector, and the filter only runs on vectors that would make the cut.
        let mut best: Vec<(u64, f32)> = Vec::with_capacity(2 * k);
        let mut threshold = f32::NEG_INFINITY;
        for (key, v) in self.iter() {
            let score = dot(v, query);
            if score < threshold || !filter(key) {
                continue;
            }
            best.push((key, score));
            if best.len() == 2 * k {
                reelrank_core::top_k(&mut best, k);
                threshold = best[k - 1].1;
            }
        }
        reelrank_core::top_k(&mut best, k);
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IndexError;

    fn index() -> FlatIndex {
        let mut index = FlatIndex::new(2);
        for (key, v) in [(1, [1.0, 0.0]), (2, [0.8, 0.6]), (3, [0.0, 1.0]), (4, [-1.0, 0.0])] {
            index.upsert(key, &v).unwrap();
        }
        index
    }

    #[test]
    fn exact_top_k_by_inner_product() {
        let hits = index().search(&[1.0, 0.0], 3, &|_| true);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(hits[1].1, 0.8);
    }

    #[test]
    fn the_filter_runs_inside_the_search() {
        let hits = index().search(&[1.0, 0.0], 2, &|key| key != 1);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [2, 3], "k results despite the filter");
    }

    #[test]
    fn upsert_replaces_and_remove_keeps_the_rest_findable() {
        let mut index = index();
        index.upsert(4, &[1.0, 0.1]).unwrap();
        assert_eq!(index.len(), 4);
        assert_eq!(index.search(&[0.9, 0.1], 1, &|_| true)[0].0, 4);
        assert!(index.remove(1));
        assert!(!index.remove(1));
        assert_eq!(index.len(), 3);
        assert_eq!(index.get(4), Some(&[1.0, 0.1][..]), "the moved vector kept its key");
        assert_eq!(index.search(&[0.0, 1.0], 1, &|_| true)[0].0, 3);
        assert!(matches!(index.upsert(9, &[1.0]), Err(IndexError::WrongDimension { expected: 2, got: 1 })));
    }

    #[test]
    fn similar_excludes_the_item_itself() {
        let hits = index().similar(1, 2, &|_| true);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [2, 3]);
        assert!(index().similar(77, 2, &|_| true).is_empty());
    }

    #[test]
    fn save_then_load_gives_the_same_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flat.safetensors");
        let original = index();
        original.save(&path).unwrap();
        let loaded = FlatIndex::load(&path).unwrap();
        assert_eq!(loaded.iter().collect::<Vec<_>>(), original.iter().collect::<Vec<_>>());
        assert_eq!(loaded.search(&[0.6, 0.8], 4, &|_| true), original.search(&[0.6, 0.8], 4, &|_| true));
    }

    #[test]
    fn ties_break_by_key() {
        let mut index = FlatIndex::new(1);
        for key in [5, 3, 9] {
            index.upsert(key, &[1.0]).unwrap();
        }
        assert_eq!(index.search(&[1.0], 3, &|_| true).iter().map(|h| h.0).collect::<Vec<_>>(), [3, 5, 9]);
    }
}
