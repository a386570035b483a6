//! Features for reelrank's models: stable hashing of categorical values into 64-bit keys, and the
//! sparse embedding tables those keys index.
//!
//! Ids and categorical values are never put through a vocabulary: a value is hashed with its field
//! ([`feature_key`]) and the table maps the full 64-bit key to a row, so a new item, tag or creator
//! needs no rebuild and two values never share a row by accident.
//!
//! ```
//! use reelrank_features::{feature_key, EmbeddingConfig, EmbeddingTable};
//! let mut table = EmbeddingTable::new(EmbeddingConfig { dim: 8, min_count: 1, ..EmbeddingConfig::default() });
//! let key = feature_key("tag", "romance");
//! table.observe(key, 0);
//! assert_eq!(table.lookup(key).len(), 8);
//! ```
#![warn(missing_docs)]

mod crosses;
mod embedding;
mod engagement;
mod hashing;
pub mod kernels;
mod labels;
mod outcomes;
mod persist;
mod ranking_inputs;
mod schema;
mod tensors;

pub use crosses::{cross_key, WideRequest, WideSchema};
pub use embedding::{EmbeddingConfig, EmbeddingTable, GradientBuffer, MemoryUse};
pub use engagement::{describe_engagement, Counts, Engagement, EngagementPrior, ENGAGEMENT_FEATURES};
pub use hashing::{feature_key, splitmix64};
pub use labels::PositiveRule;
pub use outcomes::{
    join_impressions, Impression, ImpressionJoiner, Joined, Outcome, WatchQuantiles, ACTIONS, EFFECTIVE_PLAY,
};
pub use persist::{PersistError, FORMAT_VERSION};
pub use ranking_inputs::{
    CandidateFeatures, FeatureState, Moment, RankingFeatures, RequestFeatures, HISTORY,
    RANKING_FEATURES_FORMAT_VERSION,
};
pub use schema::{
    context_bag, item_age_bucket, item_bags, item_id_key, numeric_bucket, Bag, UserSchema,
    ITEM_CATEGORY_SLOT, ITEM_CREATOR_SLOT, ITEM_TAGS_SLOT, USER_SCHEMA_FORMAT_VERSION,
};
pub use tensors::{read_manifest, write_manifest, Element, F16Bits, TensorReader, TensorWriter};
