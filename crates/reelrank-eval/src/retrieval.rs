//! The retrieval task: rank every catalog item for every test user, minus what they rated in train.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rayon::prelude::*;
use reelrank_features::Bag;
use reelrank_models::{Interactions, Retriever};
use serde::Serialize;

use crate::metrics::{ndcg_at_k, recall_at_k};
use crate::{Rating, Split};

/// Training data in dense indices, as models consume it.
#[derive(Debug, Clone)]
pub struct TrainData {
    /// User ids by index.
    pub user_ids: Vec<String>,
    /// The catalog (every item rated in train) by index, in ascending id order so that ties between
    /// equal scores break by ascending id, as the protocol asks.
    pub item_ids: Vec<String>,
    /// Index of each user id.
    pub user_index: HashMap<String, u32>,
    /// Index of each item id.
    pub item_index: HashMap<String, u32>,
    /// Positive ratings, each user's in time order.
    pub positives: Interactions,
    /// Every item each user rated in train (excluded from their rankings).
    pub rated: Vec<Vec<u32>>,
    /// The context of each positive `(user, item)` whose rating carried one (the latest).
    pub contexts: HashMap<(u32, u32), Bag>,
    /// The item of every positive, oldest first (for recency-weighted popularity).
    pub positive_items_by_time: Vec<u32>,
}

/// Orders ids numerically when both are integers, else as text.
fn id_order(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

fn index_ids(mut ids: Vec<String>) -> (Vec<String>, HashMap<String, u32>) {
    ids.sort_by(|a, b| id_order(a, b));
    ids.dedup();
    let index = ids.iter().enumerate().map(|(i, id)| (id.clone(), i as u32)).collect();
    (ids, index)
}

impl TrainData {
    /// Indexes the training ratings.
    pub fn from_ratings(train: &[Rating]) -> TrainData {
        let (user_ids, user_index) = index_ids(train.iter().map(|r| r.user.clone()).collect());
        let (item_ids, item_index) = index_ids(train.iter().map(|r| r.item.clone()).collect());
        let mut by_time: Vec<&Rating> = train.iter().collect();
        by_time.sort_by_key(|r| r.timestamp);
        let mut rated = vec![Vec::new(); user_ids.len()];
        let mut pairs = Vec::new();
        let mut contexts = HashMap::new();
        for r in by_time {
            let (u, i) = (user_index[&r.user], item_index[&r.item]);
            rated[u as usize].push(i);
            if r.is_positive() {
                pairs.push((u, i));
                if !r.context.is_empty() {
                    contexts.insert((u, i), r.context.clone());
                }
            }
        }
        let positives = Interactions::from_pairs(user_ids.len(), item_ids.len(), &pairs);
        let positive_items_by_time = pairs.iter().map(|&(_, i)| i).collect();
        TrainData {
            user_ids,
            item_ids,
            user_index,
            item_index,
            positives,
            rated,
            contexts,
            positive_items_by_time,
        }
    }
}

/// Retrieval metrics over the test users.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetrievalReport {
    /// Mean Recall@20.
    #[serde(rename = "recall@20")]
    pub recall_20: f64,
    /// Mean NDCG@20.
    #[serde(rename = "ndcg@20")]
    pub ndcg_20: f64,
    /// Mean Recall@50.
    #[serde(rename = "recall@50")]
    pub recall_50: f64,
    /// Distinct items in all top-20 lists over the catalog size.
    #[serde(rename = "coverage@20")]
    pub coverage_20: f64,
    /// Test users evaluated.
    pub users: usize,
    /// Seconds spent fitting the model.
    pub train_seconds: f64,
}

/// A model's scores for a task's test users (see [`RetrievalTask::cache_scores`]).
pub struct CachedScores {
    rows: HashMap<u32, Vec<f32>>,
}

impl Retriever for CachedScores {
    /// Panics for a user that was not a test user of the task.
    fn score_items(&self, user: u32, _history: &[u32], scores: &mut [f32]) {
        scores.copy_from_slice(&self.rows[&user]);
    }
}

/// A split prepared for retrieval evaluation: its train data and each test user's positives.
pub struct RetrievalTask {
    /// The train data models fit on.
    pub data: TrainData,
    relevant: HashMap<u32, HashSet<u32>>,
}

impl RetrievalTask {
    /// Indexes the split's train ratings and its retrieval test positives.
    pub fn new(split: &Split) -> RetrievalTask {
        let data = TrainData::from_ratings(&split.train);
        let mut relevant: HashMap<u32, HashSet<u32>> = HashMap::new();
        for r in &split.retrieval_test {
            if let (Some(&u), Some(&i)) = (data.user_index.get(&r.user), data.item_index.get(&r.item)) {
                relevant.entry(u).or_default().insert(i);
            }
        }
        RetrievalTask { data, relevant }
    }

    /// Whether `user` has test positives (is evaluated).
    pub fn has_test_positives(&self, user: u32) -> bool {
        self.relevant.contains_key(&user)
    }

    /// Every test user's scores from `model`, computed once, so that the weights of a blend can be
    /// searched without scoring the catalog again for each setting.
    pub fn cache_scores(&self, model: &dyn Retriever) -> CachedScores {
        let rows = self
            .relevant
            .par_iter()
            .map(|(&u, _)| {
                let mut scores = vec![0f32; self.data.item_ids.len()];
                model.score_items(u, self.data.positives.items_of(u), &mut scores);
                (u, scores)
            })
            .collect();
        CachedScores { rows }
    }

    /// Ranks the catalog for every test user with `model` and averages the metrics
    /// (`train_seconds` is left at 0 for the caller to fill).
    pub fn evaluate(&self, model: &dyn Retriever) -> RetrievalReport {
        let data = &self.data;
        let mut users: Vec<u32> = self.relevant.keys().copied().collect();
        users.sort_unstable();
        let per_user: Vec<(f64, f64, f64, Vec<u32>)> = users
            .par_iter()
            .map_init(
                || vec![0f32; data.item_ids.len()],
                |scores, &u| {
                    model.score_items(u, data.positives.items_of(u), scores);
                    for &i in &data.rated[u as usize] {
                        scores[i as usize] = f32::NEG_INFINITY;
                    }
                    let ranked = top_k(scores, 50);
                    let truth = &self.relevant[&u];
                    let top20 = ranked[..20.min(ranked.len())].to_vec();
                    (
                        recall_at_k(&ranked, truth, 20),
                        ndcg_at_k(&ranked, truth, 20),
                        recall_at_k(&ranked, truth, 50),
                        top20,
                    )
                },
            )
            .collect();
        let n = per_user.len().max(1) as f64;
        let covered: HashSet<u32> = per_user.iter().flat_map(|p| p.3.iter().copied()).collect();
        RetrievalReport {
            recall_20: per_user.iter().map(|p| p.0).sum::<f64>() / n,
            ndcg_20: per_user.iter().map(|p| p.1).sum::<f64>() / n,
            recall_50: per_user.iter().map(|p| p.2).sum::<f64>() / n,
            coverage_20: covered.len() as f64 / data.item_ids.len().max(1) as f64,
            users: per_user.len(),
            train_seconds: 0.0,
        }
    }
}

/// Fits a model with `fit` on the split's train data and measures it on `retrieval_test.csv`.
pub fn evaluate_retrieval<R: Retriever>(split: &Split, fit: impl FnOnce(&TrainData) -> R) -> RetrievalReport {
    let task = RetrievalTask::new(split);
    let started = Instant::now();
    let model = fit(&task.data);
    let train_seconds = started.elapsed().as_secs_f64();
    RetrievalReport { train_seconds, ..task.evaluate(&model) }
}

/// Indices of the `k` highest finite scores, best first; ties by ascending index.
fn top_k(scores: &[f32], k: usize) -> Vec<u32> {
    let mut candidates: Vec<(u32, f32)> = (0..scores.len() as u32)
        .map(|i| (i, scores[i as usize]))
        .filter(|c| c.1 > f32::NEG_INFINITY)
        .collect();
    reelrank_core::top_k(&mut candidates, k);
    candidates.into_iter().map(|c| c.0).collect()
}

#[cfg(test)]
mod tests {
    use reelrank_models::Popularity;

    use super::*;

    #[test]
    fn ids_sort_numerically_and_ties_break_by_id() {
        let train = vec![
            Rating::new("1", "10", 5.0, 1),
            Rating::new("1", "9", 1.0, 2),
            Rating::new("2", "100", 4.0, 3),
        ];
        let data = TrainData::from_ratings(&train);
        assert_eq!(data.item_ids, ["9", "10", "100"]);
        assert_eq!(top_k(&[1.0, 3.0, 3.0, f32::NEG_INFINITY], 3), [1, 2, 0]);
    }

    #[test]
    fn popularity_on_a_toy_split_excludes_rated_items() {
        // Item a is the most popular; user 3 rated it, so their list starts with b.
        let train = vec![
            Rating::new("1", "a", 5.0, 1),
            Rating::new("2", "a", 5.0, 2),
            Rating::new("3", "a", 2.0, 3),
            Rating::new("1", "b", 4.0, 4),
            Rating::new("2", "c", 4.0, 5),
            Rating::new("3", "c", 5.0, 6),
        ];
        let split = Split { train, test: vec![], retrieval_test: vec![Rating::new("3", "b", 5.0, 9)] };
        let report = evaluate_retrieval(&split, |d| Popularity::fit(&d.positives));
        assert_eq!(report.users, 1);
        assert_eq!((report.recall_20, report.ndcg_20), (1.0, 1.0));
        assert!((report.coverage_20 - 1.0 / 3.0).abs() < 1e-12, "user 3's list is [b]: {report:?}");
    }

    #[test]
    fn cached_scores_evaluate_like_the_model_and_positives_keep_time_order() {
        let train = vec![
            Rating::new("1", "b", 5.0, 3),
            Rating::new("1", "a", 5.0, 1),
            Rating::new("2", "a", 2.0, 2),
            Rating::new("2", "c", 4.0, 4),
        ];
        let split = Split { train, test: vec![], retrieval_test: vec![Rating::new("2", "b", 5.0, 9)] };
        let task = RetrievalTask::new(&split);
        assert_eq!(task.data.positive_items_by_time, [0, 1, 2], "a (t=1), b (t=3), c (t=4)");
        let model = Popularity::fit(&task.data.positives);
        assert_eq!(task.evaluate(&task.cache_scores(&model)), task.evaluate(&model));
    }
}
