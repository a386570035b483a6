//! Saving and loading tables: `NAME.safetensors` (the arrays) beside `NAME.json` (the manifest with
//! the format version and the config that built the table).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::embedding::FREE;
use crate::tensors::{read_manifest, write_manifest, TensorReader, TensorWriter};
use crate::{EmbeddingConfig, EmbeddingTable};

/// Version of the embedding tables' on-disk layout; tables of another version are refused.
pub const FORMAT_VERSION: u32 = 1;

/// Saving or loading an artefact failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A file is malformed.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The artefact was written by an incompatible version. Every artefact is written by
    /// training, so training again (`reelrank train ...`) replaces it.
    #[error(
        "{}: format version {found}, this build reads {expected} (train the model again to rewrite it)",
        path.display()
    )]
    Version {
        /// The manifest.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    config: EmbeddingConfig,
    rows: usize,
}

fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.safetensors")), dir.join(format!("{name}.json")))
}

impl EmbeddingTable {
    /// Writes the table as `dir/NAME.safetensors` and `dir/NAME.json`.
    pub fn save(&self, dir: &Path, name: &str) -> Result<(), PersistError> {
        let (arrays, manifest) = paths(dir, name);
        let mut pending: Vec<(u64, (u32, i64))> = self.pending.iter().map(|(k, v)| (*k, *v)).collect();
        pending.sort_unstable_by_key(|e| e.0);
        let pending_keys: Vec<u64> = pending.iter().map(|e| e.0).collect();
        let pending_counts: Vec<u32> = pending.iter().map(|e| e.1 .0).collect();
        let pending_seen: Vec<i64> = pending.iter().map(|e| e.1 .1).collect();
        let n = self.keys.len();
        TensorWriter::new()
            .add("keys", vec![n], &self.keys)
            .add("weights", vec![n, self.config.dim], &self.weights)
            .add("accumulators", vec![n], &self.accumulators)
            .add("last_touch", vec![n], &self.last_touch)
            .add("free", vec![self.free.len()], &self.free)
            .add("pending_keys", vec![pending.len()], &pending_keys)
            .add("pending_counts", vec![pending.len()], &pending_counts)
            .add("pending_seen", vec![pending.len()], &pending_seen)
            .write(&arrays)?;
        write_manifest(
            &manifest,
            &Manifest { format_version: FORMAT_VERSION, config: self.config.clone(), rows: self.rows.len() },
        )
    }

    /// Reads a table written by [`EmbeddingTable::save`].
    pub fn load(dir: &Path, name: &str) -> Result<EmbeddingTable, PersistError> {
        let (arrays, manifest_path) = paths(dir, name);
        let manifest: Manifest = read_manifest(&manifest_path, FORMAT_VERSION)?;
        let reader = TensorReader::open(&arrays)?;
        let keys: Vec<u64> = reader.values("keys")?;
        let table = EmbeddingTable {
            rows: keys
                .iter()
                .enumerate()
                .filter(|(_, k)| **k != FREE)
                .map(|(row, k)| (*k, row as u32))
                .collect(),
            weights: reader.values("weights")?,
            accumulators: reader.values("accumulators")?,
            last_touch: reader.values("last_touch")?,
            free: reader.values("free")?,
            pending: reader
                .values::<u64>("pending_keys")?
                .into_iter()
                .zip(reader.values::<u32>("pending_counts")?)
                .zip(reader.values::<i64>("pending_seen")?)
                .map(|((k, c), s)| (k, (c, s)))
                .collect(),
            keys,
            config: manifest.config,
        };
        let n = table.keys.len();
        if table.weights.len() != n * table.config.dim
            || table.accumulators.len() != n
            || table.last_touch.len() != n
        {
            return Err(PersistError::Format {
                path: arrays,
                message: format!("array lengths disagree with {n} rows of width {}", table.config.dim),
            });
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GradientBuffer;

    #[test]
    fn save_then_load_gives_an_identical_table() {
        let config =
            EmbeddingConfig { dim: 3, min_count: 2, expire_after_ms: Some(10_000), ..Default::default() };
        let mut table = EmbeddingTable::new(config);
        for key in 0..50u64 {
            table.observe(key % 30, key as i64);
        }
        let mut grads = GradientBuffer::new(3);
        grads.add(table.row_of(3), &[1.0, -2.0, 0.5], 1.0);
        grads.add(0, &[0.1, 0.1, 0.1], 1.0);
        table.apply(&mut grads, 60);
        table.evict_expired(10_010);
        let dir = tempfile::tempdir().unwrap();
        table.save(dir.path(), "item").unwrap();
        let loaded = EmbeddingTable::load(dir.path(), "item").unwrap();
        assert_eq!(loaded.config, table.config);
        assert_eq!(loaded.rows, table.rows);
        assert_eq!(loaded.weights, table.weights);
        assert_eq!(loaded.accumulators, table.accumulators);
        assert_eq!(loaded.last_touch, table.last_touch);
        assert_eq!(loaded.free, table.free);
        assert_eq!(loaded.pending, table.pending);
        for key in 0..40u64 {
            assert_eq!(loaded.lookup(key), table.lookup(key));
        }
    }

    #[test]
    fn other_format_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        EmbeddingTable::new(EmbeddingConfig::default()).save(dir.path(), "t").unwrap();
        let manifest = dir.path().join("t.json");
        let text = std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("\"format_version\": 1", "\"format_version\": 99");
        std::fs::write(&manifest, text).unwrap();
        assert!(matches!(
            EmbeddingTable::load(dir.path(), "t"),
            Err(PersistError::Version { found: 99, expected: 1, .. })
        ));
    }
}
