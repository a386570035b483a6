//! Saving and loading tables: `NAME.safetensors` (the arrays) beside `NAME.json` (the manifest with
//! the format version and the config that built the table).

use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::embedding::FREE;
use crate::{EmbeddingConfig, EmbeddingTable};

/// Version of the on-disk layout; tables of another version are refused.
pub const FORMAT_VERSION: u32 = 1;

/// Saving or loading a table failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The arrays file is malformed.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The table was written by an incompatible version.
    #[error("{}: format version {found}, this build reads {FORMAT_VERSION}", path.display())]
    Version {
        /// The manifest.
        path: PathBuf,
        /// Its version.
        found: u32,
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

fn bytes<T: Copy, const N: usize>(values: &[T], to_le: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|v| to_le(*v)).collect()
}

impl EmbeddingTable {
    /// Writes the table as `dir/NAME.safetensors` and `dir/NAME.json`.
    pub fn save(&self, dir: &Path, name: &str) -> Result<(), PersistError> {
        let (arrays, manifest) = paths(dir, name);
        let (pending_keys, pending_counts, pending_seen): (Vec<u64>, Vec<u32>, Vec<i64>) = {
            let mut entries: Vec<(u64, (u32, i64))> = self.pending.iter().map(|(k, v)| (*k, *v)).collect();
            entries.sort_unstable_by_key(|e| e.0);
            let keys = entries.iter().map(|e| e.0).collect();
            let counts = entries.iter().map(|e| e.1 .0).collect();
            let seen = entries.iter().map(|e| e.1 .1).collect();
            (keys, counts, seen)
        };
        let n = self.keys.len();
        let buffers: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            ("keys", Dtype::U64, vec![n], bytes(&self.keys, u64::to_le_bytes)),
            ("weights", Dtype::F32, vec![n, self.config.dim], bytes(&self.weights, f32::to_le_bytes)),
            ("accumulators", Dtype::F32, vec![n], bytes(&self.accumulators, f32::to_le_bytes)),
            ("last_touch", Dtype::I64, vec![n], bytes(&self.last_touch, i64::to_le_bytes)),
            ("free", Dtype::U32, vec![self.free.len()], bytes(&self.free, u32::to_le_bytes)),
            ("pending_keys", Dtype::U64, vec![pending_keys.len()], bytes(&pending_keys, u64::to_le_bytes)),
            (
                "pending_counts",
                Dtype::U32,
                vec![pending_counts.len()],
                bytes(&pending_counts, u32::to_le_bytes),
            ),
            ("pending_seen", Dtype::I64, vec![pending_seen.len()], bytes(&pending_seen, i64::to_le_bytes)),
        ];
        let views = buffers
            .iter()
            .map(|(name, dtype, shape, data)| Ok((*name, TensorView::new(*dtype, shape.clone(), data)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| PersistError::Format { path: arrays.clone(), message: e.to_string() })?;
        fs_err::create_dir_all(dir)?;
        safetensors::serialize_to_file(views, None, &arrays)
            .map_err(|e| PersistError::Format { path: arrays.clone(), message: e.to_string() })?;
        let manifest_json =
            Manifest { format_version: FORMAT_VERSION, config: self.config.clone(), rows: self.rows.len() };
        fs_err::write(&manifest, serde_json::to_vec_pretty(&manifest_json).expect("plain data"))?;
        Ok(())
    }

    /// Reads a table written by [`EmbeddingTable::save`].
    pub fn load(dir: &Path, name: &str) -> Result<EmbeddingTable, PersistError> {
        let (arrays, manifest_path) = paths(dir, name);
        let manifest: Manifest = serde_json::from_slice(&fs_err::read(&manifest_path)?)
            .map_err(|e| PersistError::Format { path: manifest_path.clone(), message: e.to_string() })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(PersistError::Version { path: manifest_path, found: manifest.format_version });
        }
        let buffer = fs_err::read(&arrays)?;
        let format = |message: String| PersistError::Format { path: arrays.clone(), message };
        let tensors = SafeTensors::deserialize(&buffer).map_err(|e| format(e.to_string()))?;
        let raw = |name: &str, dtype: Dtype| -> Result<&[u8], PersistError> {
            let t = tensors.tensor(name).map_err(|e| format(e.to_string()))?;
            if t.dtype() != dtype {
                return Err(format(format!("`{name}` is {:?}, expected {dtype:?}", t.dtype())));
            }
            Ok(t.data())
        };
        let keys: Vec<u64> = decode(raw("keys", Dtype::U64)?, u64::from_le_bytes);
        let table = EmbeddingTable {
            rows: keys
                .iter()
                .enumerate()
                .filter(|(_, k)| **k != FREE)
                .map(|(row, k)| (*k, row as u32))
                .collect(),
            weights: decode(raw("weights", Dtype::F32)?, f32::from_le_bytes),
            accumulators: decode(raw("accumulators", Dtype::F32)?, f32::from_le_bytes),
            last_touch: decode(raw("last_touch", Dtype::I64)?, i64::from_le_bytes),
            free: decode(raw("free", Dtype::U32)?, u32::from_le_bytes),
            pending: decode(raw("pending_keys", Dtype::U64)?, u64::from_le_bytes)
                .into_iter()
                .zip(decode(raw("pending_counts", Dtype::U32)?, u32::from_le_bytes))
                .zip(decode(raw("pending_seen", Dtype::I64)?, i64::from_le_bytes))
                .map(|((k, c), s)| (k, (c, s)))
                .collect::<rustc_hash::FxHashMap<_, _>>(),
            keys,
            config: manifest.config,
        };
        let n = table.keys.len();
        if table.weights.len() != n * table.config.dim
            || table.accumulators.len() != n
            || table.last_touch.len() != n
        {
            return Err(format(format!(
                "array lengths disagree with {n} rows of width {}",
                table.config.dim
            )));
        }
        Ok(table)
    }
}

fn decode<T, const N: usize>(data: &[u8], from_le: impl Fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N).map(|c| from_le(c.try_into().expect("exact chunk"))).collect()
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
            Err(PersistError::Version { found: 99, .. })
        ));
    }
}
