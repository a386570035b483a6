//! A MovieLens directory checked by the importer as `reelrank import movielens --check` does.
//! The first byte chooses the layout (ml-100k: u.data, u.user, u.item; ml-latest: ratings.csv,
//! movies.csv, tags.csv); the rest is split into the three files at NUL bytes.
#![no_main]

use std::sync::OnceLock;

use reelrank_ingest::{import_movielens, Destination};

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

const ML_100K: [&str; 3] = ["u.data", "u.user", "u.item"];
const ML_LATEST: [&str; 3] = ["ratings.csv", "movies.csv", "tags.csv"];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else { return };
    let dir = dir().path();
    for name in ML_100K.iter().chain(&ML_LATEST) {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let names = if choice % 2 == 0 { ML_100K } else { ML_LATEST };
    let mut parts = rest.split(|&b| b == 0).filter(|part| !part.is_empty());
    for name in names {
        std::fs::write(dir.join(name), parts.next().unwrap_or_default()).expect("write the input");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let progress = indicatif::ProgressBar::hidden();
    let _ = runtime.block_on(import_movielens(Destination::Check, dir, &progress));
});
