//! Getting data into reelrank.
//!
//! - [`append_events`]: events stored with their reports counted, under an [`ArrivalPolicy`]
//!   shared by every way in.
//! - [`decode_batch`]: HTTP ingest bodies (JSON array or NDJSON) decoded and validated as a whole.
//! - [`import_csv`]: items, users and events from the documented CSV layout (`docs/CSV.md`).
//! - [`import_movielens`]: the ml-100k layout (`u.data`, `u.user`, `u.item`) and the ml-latest layout
//!   (`ratings.csv`, `movies.csv`, `tags.csv`), detected from the directory.
//!
//! Importers stream in constant memory, validate a whole file before writing any of it, and report a
//! bad row with its file, line and column.
#![warn(missing_docs)]

mod arrival;
mod batch;
mod csv_format;
mod destination;
mod movielens;
mod table;

use std::path::{Path, PathBuf};

pub use arrival::{append_events, ArrivalPolicy};
pub use batch::{decode_batch, BatchError, RecordError, MAX_REPORTED_ERRORS};
pub use csv_format::{import_csv, CsvFiles};
pub use destination::Destination;
pub use movielens::{import_movielens, movielens_side_info, MovieLensLayout};
use reelrank_store::StoreError;
use serde::Serialize;

/// Records written per store transaction by the importers.
pub const IMPORT_BATCH_ROWS: usize = 10_000;

/// What an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Items upserted.
    pub items: u64,
    /// Users upserted.
    pub users: u64,
    /// Events read from the files (duplicates of stored event ids are skipped by the store).
    pub events: u64,
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A row is malformed or invalid; nothing of its file was written.
    #[error("{}:{line}: {}{message}", path.display(), if field.is_empty() { String::new() } else { format!("column `{field}`: ") })]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Column (or field) name; empty when the row as a whole is wrong.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The directory does not look like any supported layout.
    #[error("{}: {message}", dir.display())]
    Layout {
        /// The directory.
        dir: PathBuf,
        /// What was expected.
        message: String,
    },
    /// Writing to the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tests' destination: `store` with the default policy.
#[cfg(test)]
pub(crate) fn into(store: &reelrank_store::Store) -> Destination<'_> {
    Destination::Store { store, policy: ArrivalPolicy::default() }
}

impl ImportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> ImportError {
        ImportError::Io { path: path.to_owned(), source }
    }

    pub(crate) fn row(path: &Path, line: u64, field: &str, message: impl Into<String>) -> ImportError {
        ImportError::Row { path: path.to_owned(), line, field: field.to_owned(), message: message.into() }
    }
}
