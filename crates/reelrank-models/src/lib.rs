//! reelrank's recommendation models over dense user and item indices.
//!
//! Models here know nothing of stores, HTTP or string ids: callers map ids to indices
//! ([`Interactions`]) and back.
#![warn(missing_docs)]

mod als;
mod bf16;
mod blend;
mod cooccurrence;
mod dense;
mod frequency;
mod ftrl;
mod interactions;
mod pooling;
mod popularity;
mod two_tower;
mod value;
mod wide_deep;

pub use als::{AlsConfig, ImplicitAls};
pub use blend::Blend;
pub use cooccurrence::{CooccurrenceConfig, ItemCooccurrence};
pub use dense::{Linear, Mlp};
pub use frequency::FrequencyEstimator;
pub use ftrl::{Ftrl, FtrlConfig, Located};
pub use interactions::Interactions;
pub use popularity::{Popularity, RecentPopularity};
pub use two_tower::{
    TowerExample, TowerInputs, TwoTower, TwoTowerConfig, TwoTowerRetriever, TWO_TOWER_FORMAT_VERSION,
};
pub use value::{HeadValue, Value, ValueWeights, Values};
pub use wide_deep::{
    Candidate, RankingExample, RankingSchema, WideDeep, WideDeepConfig, WIDE_DEEP_FORMAT_VERSION,
};

/// A model that scores every item for a user.
pub trait Retriever: Sync {
    /// Writes a score for every item into `scores` (length = number of items) for `user`, whose
    /// positive items (most recent last) are `history`; higher is better.
    fn score_items(&self, user: u32, history: &[u32], scores: &mut [f32]);
}
