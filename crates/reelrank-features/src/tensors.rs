//! Named arrays in one safetensors file, and JSON manifests with a format version: how every model
//! artefact of reelrank is stored.

use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::PersistError;

/// A number type that safetensors stores.
pub trait Element: Copy {
    /// Its safetensors type.
    const DTYPE: Dtype;
    /// Appends its little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
    /// Decodes little-endian bytes (exactly its size).
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! element {
    ($t:ty, $dtype:expr) => {
        impl Element for $t {
            const DTYPE: Dtype = $dtype;
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("exact chunk"))
            }
        }
    };
}

element!(f32, Dtype::F32);
element!(u32, Dtype::U32);
element!(u64, Dtype::U64);
element!(i64, Dtype::I64);

/// IEEE half-precision bits, stored as safetensors' F16 (the caller encodes and decodes them), so
/// that vectors kept in half precision are written at their size and read by any tool as halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct F16Bits(pub u16);

impl Element for F16Bits {
    const DTYPE: Dtype = Dtype::F16;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
    fn get(bytes: &[u8]) -> Self {
        F16Bits(u16::from_le_bytes(bytes.try_into().expect("exact chunk")))
    }
}

/// Collects arrays, then writes them as one safetensors file.
#[derive(Debug, Default)]
pub struct TensorWriter {
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
}

impl TensorWriter {
    /// An empty set of arrays.
    pub fn new() -> TensorWriter {
        TensorWriter::default()
    }

    /// Adds array `name` of `shape` (whose product must be `values.len()`).
    pub fn add<T: Element>(&mut self, name: &str, shape: Vec<usize>, values: &[T]) -> &mut TensorWriter {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
        let mut bytes = Vec::with_capacity(std::mem::size_of_val(values));
        values.iter().for_each(|v| v.put(&mut bytes));
        self.tensors.push((name.to_owned(), T::DTYPE, shape, bytes));
        self
    }

    /// Writes the file, creating its directory.
    pub fn write(&self, path: &Path) -> Result<(), PersistError> {
        let format = |e: safetensors::SafeTensorError| PersistError::Format {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let views = self
            .tensors
            .iter()
            .map(|(name, dtype, shape, data)| {
                Ok((name.as_str(), TensorView::new(*dtype, shape.clone(), data)?))
            })
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(format)?;
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        safetensors::serialize_to_file(views, None, path).map_err(format)
    }
}

/// Reads arrays from a safetensors file.
pub struct TensorReader {
    path: PathBuf,
    buffer: Vec<u8>,
}

impl TensorReader {
    /// Loads the file.
    pub fn open(path: &Path) -> Result<TensorReader, PersistError> {
        Ok(TensorReader { path: path.to_owned(), buffer: fs_err::read(path)? })
    }

    /// Array `name` with its shape; its stored type must be `T`'s.
    pub fn read<T: Element>(&self, name: &str) -> Result<(Vec<usize>, Vec<T>), PersistError> {
        let format = |message: String| PersistError::Format { path: self.path.clone(), message };
        let tensors = SafeTensors::deserialize(&self.buffer).map_err(|e| format(e.to_string()))?;
        let tensor = tensors.tensor(name).map_err(|e| format(e.to_string()))?;
        if tensor.dtype() != T::DTYPE {
            return Err(format(format!("`{name}` is {:?}, expected {:?}", tensor.dtype(), T::DTYPE)));
        }
        let values = tensor.data().chunks_exact(std::mem::size_of::<T>()).map(T::get).collect();
        Ok((tensor.shape().to_vec(), values))
    }

    /// Whether the file holds array `name`.
    pub fn has(&self, name: &str) -> bool {
        SafeTensors::deserialize(&self.buffer).is_ok_and(|tensors| tensors.tensor(name).is_ok())
    }

    /// The values of array `name`, whatever its shape.
    pub fn values<T: Element>(&self, name: &str) -> Result<Vec<T>, PersistError> {
        Ok(self.read(name)?.1)
    }
}

/// Writes a manifest as pretty JSON.
pub fn write_manifest<M: Serialize>(path: &Path, manifest: &M) -> Result<(), PersistError> {
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    fs_err::write(path, serde_json::to_vec_pretty(manifest).expect("plain data"))?;
    Ok(())
}

/// Reads a manifest, refusing any `format_version` other than `expected`.
pub fn read_manifest<M: DeserializeOwned>(path: &Path, expected: u32) -> Result<M, PersistError> {
    let bytes = fs_err::read(path)?;
    let format =
        |e: serde_json::Error| PersistError::Format { path: path.to_owned(), message: e.to_string() };
    #[derive(serde::Deserialize)]
    struct Version {
        format_version: u32,
    }
    let found = serde_json::from_slice::<Version>(&bytes).map_err(format)?.format_version;
    if found != expected {
        return Err(PersistError::Version { path: path.to_owned(), found, expected });
    }
    serde_json::from_slice(&bytes).map_err(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_round_trip_with_their_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/a.safetensors");
        TensorWriter::new()
            .add("w", vec![2, 2], &[1.0f32, -2.0, 3.5, 0.0])
            .add("k", vec![2], &[7u64, u64::MAX])
            .write(&path)
            .unwrap();
        let reader = TensorReader::open(&path).unwrap();
        assert_eq!(reader.read::<f32>("w").unwrap(), (vec![2, 2], vec![1.0, -2.0, 3.5, 0.0]));
        assert_eq!(reader.values::<u64>("k").unwrap(), [7, u64::MAX]);
        assert!(reader.values::<u32>("k").is_err(), "types are checked");
        assert!(reader.values::<f32>("missing").is_err());
    }
}
