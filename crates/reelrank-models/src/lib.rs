//! reelrank's recommendation models over dense user and item indices.
//!
//! Models here know nothing of stores, HTTP or string ids: callers map ids to indices
//! ([`Interactions`]) and back.
#![warn(missing_docs)]

mod cooccurrence;
mod interactions;
mod popularity;

pub use cooccurrence::{CooccurrenceConfig, ItemCooccurrence};
pub use interactions::Interactions;
pub use popularity::Popularity;

/// A model that scores every item for a user from the user's positive history.
pub trait Retriever: Sync {
    /// Writes a score for every item into `scores` (length = number of items); higher is better.
    fn score_items(&self, history: &[u32], scores: &mut [f32]);
}
