//! Offline evaluation on fixed splits of rating data, following the benchmark protocol
//! (`shared/benchmarks/PROTOCOL.md`): a split directory holds `train.csv`, `test.csv` and
//! `retrieval_test.csv` (`user,item,rating,timestamp`), and a `valid/` split carved from train for
//! tuning. Splits are read as they are, never re-split.
#![warn(missing_docs)]

mod chart;
mod impression_set;
mod metrics;
mod progressive;
mod progressive_retrieval;
mod ranking;
mod retrieval;
mod split;
mod towers;

pub use chart::{svg, LineChart, Series};
pub use impression_set::{HeadReport, ImpressionConfig, ImpressionSet, RankingEvaluation, ValueReport};
pub use metrics::{auc, gauc, logloss, ndcg_at_k, recall_at_k};
pub use progressive::{progressive, windowed, Crash, Progressive, ProgressiveConfig, ProgressiveWindow};
pub use progressive_retrieval::{progressive_retrieval, RetrievalDay, RetrievalLog};
pub use ranking::{RankingReport, RankingSet};
pub use retrieval::{evaluate_retrieval, CachedScores, RetrievalReport, RetrievalTask, TrainData};
pub use split::{Rating, Split, SplitError, POSITIVE_RATING};
pub use towers::{epochs_by_early_stopping, tower_inputs};
