//! Most-popular: the non-personalised baseline and the cold-start fallback.

use crate::{Interactions, Retriever};

/// Scores each item by its number of positive interactions.
#[derive(Debug, Clone)]
pub struct Popularity {
    counts: Vec<f32>,
}

impl Popularity {
    /// Counts positives per item.
    pub fn fit(interactions: &Interactions) -> Popularity {
        let counts =
            (0..interactions.num_items() as u32).map(|i| interactions.users_of(i).len() as f32).collect();
        Popularity { counts }
    }
}

impl Retriever for Popularity {
    fn score_items(&self, _user: u32, _history: &[u32], scores: &mut [f32]) {
        scores.copy_from_slice(&self.counts);
    }
}
