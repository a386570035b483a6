//! A CSV file of items, users or events (the first byte chooses which), checked by the importer
//! as `reelrank import csv --check` does: every row read and validated, or an error naming the
//! line, never a panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use reelrank_ingest::{import_csv, CsvFiles, Destination};

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&choice, text)) = data.split_first() else { return };
    let path: PathBuf = dir().path().join("file.csv");
    std::fs::write(&path, text).expect("write the input");
    let files = match choice % 3 {
        0 => CsvFiles { items: Some(path), ..CsvFiles::default() },
        1 => CsvFiles { users: Some(path), ..CsvFiles::default() },
        _ => CsvFiles { events: Some(path), ..CsvFiles::default() },
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let progress = indicatif::ProgressBar::hidden();
    let _ = runtime.block_on(import_csv(Destination::Check, &files, &progress));
});
