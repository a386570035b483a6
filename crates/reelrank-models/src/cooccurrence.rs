//! Item-to-item co-occurrence (a random walk item → user → item with a popularity penalty).
//!
//! The weight from item `i` to item `j` is the probability of walking `i → u → j` over the bipartite
//! graph of positives, divided by `popularity(j)^β`:
//!
//! ```text
//! W[i, j] = Σ_{u ∈ U(i) ∩ U(j)} 1/|U(i)| · 1/|I(u)|  /  |U(j)|^β        (RP3β, Paudel et al. 2016)
//! ```
//!
//! Only the `neighbors` largest weights per item are kept, so the model is sparse and scales with the
//! catalog (`O(items × neighbors)` memory); a user's score for `j` is `Σ_{i ∈ history} W[i, j]`.
//! It serves two roles: an item-to-item recall source ("because you watched X") and a strong
//! memorisation baseline that the learned towers are blended with.

use rayon::prelude::*;
use reelrank_core::top_k;
use serde::{Deserialize, Serialize};

use crate::{Interactions, Retriever};

/// Settings of [`ItemCooccurrence`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CooccurrenceConfig {
    /// Kept neighbours per item.
    pub neighbors: usize,
    /// Popularity penalty exponent β (0 = plain random walk, 1 = fully normalised).
    pub popularity_penalty: f32,
    /// Only a user's most recent positives take part in fitting, bounding the quadratic cost of very
    /// active users.
    pub max_history: usize,
}

impl Default for CooccurrenceConfig {
    fn default() -> CooccurrenceConfig {
        CooccurrenceConfig { neighbors: 200, popularity_penalty: 0.4, max_history: 500 }
    }
}

/// Sparse item-to-item weights.
#[derive(Debug, Clone)]
pub struct ItemCooccurrence {
    /// Per item, `(neighbor, weight)` sorted by decreasing weight.
    neighbors: Vec<Vec<(u32, f32)>>,
}

impl ItemCooccurrence {
    /// Fits the weights from positive interactions, items in parallel.
    pub fn fit(interactions: &Interactions, config: &CooccurrenceConfig) -> ItemCooccurrence {
        let num_items = interactions.num_items();
        let recent = |user: u32| {
            let items = interactions.items_of(user);
            &items[items.len().saturating_sub(config.max_history)..]
        };
        let penalty: Vec<f32> = (0..num_items as u32)
            .map(|j| (interactions.users_of(j).len().max(1) as f32).powf(config.popularity_penalty))
            .collect();
        let neighbors = (0..num_items as u32)
            .into_par_iter()
            .map_init(
                || (vec![0f32; num_items], Vec::new()),
                |(acc, touched), i| {
                    let users = interactions.users_of(i);
                    let from_i = 1.0 / users.len().max(1) as f32;
                    for &u in users {
                        let history = recent(u);
                        let step = from_i / history.len().max(1) as f32;
                        for &j in history {
                            if j != i {
                                if acc[j as usize] == 0.0 {
                                    touched.push(j);
                                }
                                acc[j as usize] += step;
                            }
                        }
                    }
                    let mut row: Vec<(u32, f32)> = touched
                        .drain(..)
                        .map(|j| (j, std::mem::take(&mut acc[j as usize]) / penalty[j as usize]))
                        .collect();
                    top_k(&mut row, config.neighbors);
                    row
                },
            )
            .collect();
        ItemCooccurrence { neighbors }
    }

    /// The most related items of `item`, strongest first.
    pub fn similar(&self, item: u32) -> &[(u32, f32)] {
        &self.neighbors[item as usize]
    }
}

impl Retriever for ItemCooccurrence {
    fn score_items(&self, _user: u32, history: &[u32], scores: &mut [f32]) {
        scores.fill(0.0);
        for &i in history {
            for &(j, w) in &self.neighbors[i as usize] {
                scores[j as usize] += w;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users 0-2 like items 0 and 1 together; user 3 likes items 2 and 3; everyone likes item 4.
    fn toy() -> Interactions {
        let mut pairs = vec![(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 2), (3, 3)];
        pairs.extend((0..4).map(|u| (u, 4)));
        Interactions::from_pairs(4, 5, &pairs)
    }

    #[test]
    fn weights_follow_the_random_walk() {
        let config = CooccurrenceConfig { popularity_penalty: 0.0, ..CooccurrenceConfig::default() };
        let model = ItemCooccurrence::fit(&toy(), &config);
        // From item 0: three users, each with 3 items -> 3 · (1/3 · 1/3) = 1/3 to item 1 and to item 4.
        let from_0: Vec<(u32, f32)> = model.similar(0).to_vec();
        assert_eq!(from_0.len(), 2);
        assert!((from_0[0].1 - 1.0 / 3.0).abs() < 1e-6 && (from_0[1].1 - 1.0 / 3.0).abs() < 1e-6);
        assert!(model.similar(2).iter().all(|(j, _)| [3, 4].contains(j)));
    }

    #[test]
    fn popularity_penalty_demotes_the_hub() {
        let model = ItemCooccurrence::fit(
            &toy(),
            &CooccurrenceConfig { popularity_penalty: 1.0, ..Default::default() },
        );
        assert_eq!(model.similar(0)[0].0, 1, "item 1 beats the everyone-likes item 4");
        let mut scores = vec![0.0; 5];
        model.score_items(0, &[2], &mut scores);
        assert!(scores[3] > scores[4] && scores[0] == 0.0);
    }

    #[test]
    fn neighbours_are_capped() {
        let model = ItemCooccurrence::fit(&toy(), &CooccurrenceConfig { neighbors: 1, ..Default::default() });
        assert!((0..5).all(|i| model.similar(i).len() <= 1));
    }
}
