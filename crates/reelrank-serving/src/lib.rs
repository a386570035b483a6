//! reelrank's serving pipeline, as the disclosed system describes it: several candidate
//! sources, filters in one place, the Wide&Deep value model, diversity and exploration in
//! re-ranking, and an explanation for every returned item.
//!
//! | stage | module |
//! |---|---|
//! | candidate sources (two-tower ANN, similar to recent positives, trending, fresh, followed creators, next episode) | [`sources`] |
//! | hydrate (catalog lookups) | [`catalog`] |
//! | filter (moderation, licence, region, age, seen, not interested, exclude, own items) | [`filters`] |
//! | score (Σ P(action) × weight) | [`rank`] |
//! | re-rank (caps, MMR, exploration) and select | [`rerank`] |
//! | explanation | [`explain`] |
//! | the whole request | [`pipeline`] |
//!
//! What a user did is kept in [`activity`], current from the event stream; the two-tower model
//! learns from that stream in [`online`], the Wide&Deep model in [`online_ranking`]; A/B variants are in [`experiment`].
#![warn(missing_docs)]

pub mod activity;
pub mod catalog;
pub mod experiment;
pub mod explain;
pub mod filters;
pub mod online;
pub mod online_ranking;
pub mod online_snapshot;
pub mod pipeline;
pub mod rank;
pub mod rerank;
pub mod retrieval;
pub mod sources;

pub use activity::{Activity, SeenItems, Trending, TrendingLists, UserActivity};
pub use catalog::{Catalog, ItemIndex};
pub use experiment::{ExperimentConfig, ExperimentStats, VariantConfig, VariantStats};
pub use filters::{Filter, FilterConfig, FilterInput};
pub use online::{LossGuard, OnlinePositive, TowerLearner};
pub use online_ranking::{RankingLearner, ShownOutcome, WaitingConfig, WaitingImpressions, WaitingStatus};
pub use pipeline::{
    candidates, explain, recommend, Behaviour, Explanation, MinorConfig, Models, PipelineConfig,
    Recommendation, Recommended, Request,
};
pub use rank::{Ranker, OUTCOME_WINDOW_MS};
pub use rerank::DiversityConfig;
pub use retrieval::Retrieval;
pub use sources::{Candidate, Source, SourceConfig, Sources};
