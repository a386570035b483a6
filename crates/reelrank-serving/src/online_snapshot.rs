//! Snapshots of a model as it learns online, so that a restart resumes it: each one is a
//! directory named by the last event sequence number it has learned, holding the model and
//! `online.json` (what it derives from, what it learned, which items have fresh vectors). It is
//! written under a temporary name, synced and renamed into place, so a crash leaves either the
//! whole snapshot or none; the newest few are kept. On restart the engine loads the newest one
//! whose trained model is still the one on disk and replays the log after it.

use std::path::{Path, PathBuf};

use reelrank_features::{read_manifest, write_manifest, PersistError};
use serde::{Deserialize, Serialize};

/// Version of the `online.json` layout.
const FORMAT_VERSION: u32 = 1;

/// Snapshots kept; older ones are removed after each write.
const KEPT: usize = 3;

/// What `online.json` says of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The version of the trained model it learned from (a retrained model starts over).
    pub base_version: String,
    /// The last event sequence number it has learned from (the two-tower model: a positive's;
    /// the ranking model: the event that opened an impression).
    pub seq: i64,
    /// Examples learned since the trained model.
    pub learned: u64,
    /// Times it was published to the feeds.
    pub publications: u64,
    /// Items whose vectors the feeds read from this model rather than from the graph (two-tower).
    pub fresh_items: Vec<String>,
}

/// Writes the model (`write` saves it into the directory it is given) and `meta` as the snapshot
/// for `meta.seq` under `root`, then removes all but the newest [`KEPT`].
pub fn save(
    root: &Path,
    meta: &SnapshotMeta,
    write: impl FnOnce(&Path) -> Result<(), PersistError>,
) -> Result<PathBuf, PersistError> {
    let dir = root.join(format!("{:020}", meta.seq));
    let partial = root.join(format!(".{:020}.partial", meta.seq));
    if partial.exists() {
        fs_err::remove_dir_all(&partial)?;
    }
    fs_err::create_dir_all(&partial)?;
    write(&partial)?;
    write_manifest(&partial.join("online.json"), meta)?;
    for entry in fs_err::read_dir(&partial)? {
        fs_err::File::open(entry?.path())?.sync_all()?;
    }
    if dir.exists() {
        fs_err::remove_dir_all(&dir)?;
    }
    fs_err::rename(&partial, &dir)?;
    fs_err::File::open(root)?.sync_all()?;
    for old in snapshots(root)?.into_iter().skip(KEPT) {
        fs_err::remove_dir_all(old)?;
    }
    Ok(dir)
}

/// The newest snapshot under `root` learned from the trained model `base_version`, with its
/// metadata (`None` when there is none; unreadable ones are skipped with a warning).
pub fn latest(root: &Path, base_version: &str) -> Option<(PathBuf, SnapshotMeta)> {
    let dirs = snapshots(root).unwrap_or_default();
    dirs.into_iter().find_map(|dir| {
        match read_manifest::<SnapshotMeta>(&dir.join("online.json"), FORMAT_VERSION) {
            Ok(meta) if meta.base_version == base_version => Some((dir, meta)),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(error = %err, "skipping an unreadable online snapshot");
                None
            }
        }
    })
}

/// The snapshot directories under `root`, newest first.
fn snapshots(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut dirs: Vec<PathBuf> = fs_err::read_dir(root)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_dir()
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    dirs.sort_unstable_by(|a, b| b.cmp(a));
    Ok(dirs)
}

impl SnapshotMeta {
    /// Metadata of a snapshot of a model learned from `base_version` through event `seq`.
    pub fn new(
        base_version: &str,
        seq: i64,
        learned: u64,
        publications: u64,
        fresh_items: Vec<String>,
    ) -> SnapshotMeta {
        SnapshotMeta {
            format_version: FORMAT_VERSION,
            base_version: base_version.to_owned(),
            seq,
            learned,
            publications,
            fresh_items,
        }
    }
}

#[cfg(test)]
mod tests {
    use reelrank_models::{Interactions, TowerInputs, TwoTower, TwoTowerConfig};

    use super::*;

    /// A model of two users and two items, trained for one epoch.
    fn model() -> TwoTower {
        let bag = |key: u64| vec![(key, 1.0)];
        let inputs = TowerInputs {
            user_slots: vec![vec![bag(1)], vec![bag(2)]],
            item_slots: vec![vec![bag(3)], vec![bag(4)]],
            item_keys: vec![3, 4],
            contexts: Default::default(),
        };
        let positives = Interactions::from_pairs(2, 2, &[(0, 0), (1, 1)]);
        let config = TwoTowerConfig { max_epochs: 1, ..TwoTowerConfig::default() };
        TwoTower::fit(&inputs, &positives, &config, |_, _, _| true)
    }

    #[test]
    fn the_newest_snapshot_of_the_same_trained_model_is_found_and_three_are_kept() {
        let root = tempfile::tempdir().unwrap();
        let model = model();
        for seq in [10, 20, 30, 40] {
            let meta = SnapshotMeta::new("base", seq, seq as u64, 1, vec!["a".into()]);
            save(root.path(), &meta, |dir| model.save(dir)).unwrap();
        }
        save(root.path(), &SnapshotMeta::new("other", 50, 0, 0, Vec::new()), |dir| model.save(dir)).unwrap();
        // A crash mid-write leaves a partial directory, which is never read.
        fs_err::create_dir_all(root.path().join(".00000000000000000060.partial")).unwrap();
        let (dir, meta) = latest(root.path(), "base").unwrap();
        assert_eq!((meta.seq, meta.fresh_items.as_slice()), (40, &["a".to_owned()][..]));
        assert!(TwoTower::load(&dir).is_ok());
        assert_eq!(snapshots(root.path()).unwrap().len(), 3, "the oldest are removed");
        assert!(latest(root.path(), "retrained").is_none());
    }
}
