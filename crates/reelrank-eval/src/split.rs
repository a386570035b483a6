//! Reading a split directory.

use std::path::{Path, PathBuf};

use reelrank_core::Event;
use reelrank_features::{context_bag, Bag};
use serde::Deserialize;

/// A rating at or above this is a positive (PROTOCOL.md).
pub const POSITIVE_RATING: f32 = 4.0;

/// One row of a split file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Rating {
    /// User id as in the raw data.
    pub user: String,
    /// Item id as in the raw data.
    pub item: String,
    /// The rating.
    pub rating: f32,
    /// Unix seconds.
    pub timestamp: i64,
    /// Keys of the context the event happened in (hour, page, device), for the two-tower model's
    /// context slot; split files carry none.
    #[serde(skip)]
    pub context: Bag,
}

impl Rating {
    /// A rating without context, as a split file holds it.
    pub fn new(user: impl Into<String>, item: impl Into<String>, rating: f32, timestamp: i64) -> Rating {
        Rating { user: user.into(), item: item.into(), rating, timestamp, context: Vec::new() }
    }

    /// A positive event (by whatever rule the caller applied) as a top rating, with its context.
    pub fn from_positive_event(event: &Event) -> Rating {
        Rating {
            user: event.user_id.clone(),
            item: event.item_id.clone(),
            rating: 5.0,
            timestamp: event.ts.millis() / 1000,
            context: event.context.as_ref().map(context_bag).unwrap_or_default(),
        }
    }

    /// Whether the rating counts as a positive.
    pub fn is_positive(&self) -> bool {
        self.rating >= POSITIVE_RATING
    }
}

/// A split directory's contents.
#[derive(Debug, Clone)]
pub struct Split {
    /// Training ratings (every rating value), in time order.
    pub train: Vec<Rating>,
    /// Test ratings (temporal: every rating of the test period; random: held-out positives).
    pub test: Vec<Rating>,
    /// The positives that retrieval metrics are computed on.
    pub retrieval_test: Vec<Rating>,
}

/// A split file is missing or malformed.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct SplitError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl Split {
    /// Reads `train.csv`, `test.csv` and `retrieval_test.csv` from `dir`.
    pub fn load(dir: &Path) -> Result<Split, SplitError> {
        Ok(Split {
            train: read(&dir.join("train.csv"))?,
            test: read(&dir.join("test.csv"))?,
            retrieval_test: read(&dir.join("retrieval_test.csv"))?,
        })
    }
}

fn read(path: &Path) -> Result<Vec<Rating>, SplitError> {
    let error = |message: String| SplitError { path: path.to_owned(), message };
    let file = fs_err::File::open(path).map_err(|e| error(e.to_string()))?;
    csv::Reader::from_reader(file)
        .deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| error(format!("line {}: {e}", i + 2))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_split_directory() {
        let dir = tempfile::tempdir().unwrap();
        let header = "user,item,rating,timestamp\n";
        std::fs::write(dir.path().join("train.csv"), format!("{header}1,10,4,100\n1,11,2,101\n")).unwrap();
        std::fs::write(dir.path().join("test.csv"), format!("{header}1,12,5,200\n")).unwrap();
        std::fs::write(dir.path().join("retrieval_test.csv"), format!("{header}1,12,5,200\n")).unwrap();
        let split = Split::load(dir.path()).unwrap();
        assert_eq!(split.train.len(), 2);
        assert!(split.train[0].is_positive() && !split.train[1].is_positive());
        std::fs::write(dir.path().join("test.csv"), format!("{header}1,12,five,200\n")).unwrap();
        let err = Split::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("test.csv") && err.message.contains("line 2"), "{err}");
    }
}
