//! Exact search by scanning every vector.

use rustc_hash::FxHashMap;

use crate::{VectorIndex, WrongDimension};

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
}

impl VectorIndex for FlatIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn upsert(&mut self, key: u64, vector: &[f32]) -> Result<(), WrongDimension> {
        if vector.len() != self.dim {
            return Err(WrongDimension { expected: self.dim, got: vector.len() });
        }
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

    fn search(&self, query: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)> {
        if k == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let mut hits: Vec<(u64, f32)> = self
            .keys
            .iter()
            .zip(self.vectors.chunks_exact(self.dim))
            .filter(|(key, _)| filter(**key))
            .map(|(key, v)| (*key, v.iter().zip(query).map(|(a, b)| a * b).sum()))
            .collect();
        reelrank_core::top_k(&mut hits, k);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(index.upsert(9, &[1.0]), Err(WrongDimension { expected: 2, got: 1 }));
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
