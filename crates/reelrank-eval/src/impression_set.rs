//! Ranking examples from a behaviour log: one per impression, labelled with every action of
//! [`ACTIONS`], its features computed from what happened *before* it was shown (the user's and
//! the item's decayed engagement counters, the user's latest positives), so no example sees its
//! own outcome or anything later.
//!
//! A log without impression events (only outcomes, each an implicit impression) has no observed
//! negatives: for each example, negatives are sampled from the catalog in proportion to item
//! popularity `q(i)`, and every example carries the log-odds correction `-ln(k·q(i))`, so the model
//! learns the user's preference rather than the sampler's popularity.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use reelrank_core::{Item, Timestamp, User};
use reelrank_features::{
    EngagementPrior, FeatureState, Impression, Outcome, RankingFeatures, RequestFeatures, UserSchema,
    WatchQuantiles, WideSchema, ACTIONS, ENGAGEMENT_FEATURES,
};
use reelrank_models::{RankingExample, RankingSchema, ValueWeights, WideDeep};
use serde::{Deserialize, Serialize};

use crate::metrics::{auc, gauc, logloss};

/// How examples are built from a log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImpressionConfig {
    /// Half-life of the engagement counters, in hours.
    pub counter_half_life_hours: f64,
    /// Negatives sampled per example when the log has no impression events.
    pub sampled_negatives: usize,
    /// Seed of the negative sampler.
    pub seed: u64,
}

impl Default for ImpressionConfig {
    fn default() -> ImpressionConfig {
        ImpressionConfig { counter_half_life_hours: 24.0, sampled_negatives: 4, seed: 0 }
    }
}

/// The examples of a log, in time order.
#[derive(Debug, Clone)]
pub struct ImpressionSet {
    /// One per impression (and per sampled negative), in time order.
    pub examples: Vec<RankingExample>,
    /// When each example was shown.
    pub times: Vec<Timestamp>,
    /// Each example's user, numbered from 0 (for per-user metrics).
    pub users: Vec<u32>,
    /// Impressions skipped because their item is not in the catalog.
    pub unknown_items: usize,
    /// The heads ([`ACTIONS`]) and the layout of the examples: the user's slots, context and
    /// history, then the item's; the user's engagement, then the item's.
    pub schema: RankingSchema,
    /// What the features were computed with.
    pub features: RankingFeatures,
}

/// The catalog and the feature state, as the log is replayed.
struct Replay<'a> {
    items: HashMap<&'a str, &'a Item>,
    users: HashMap<&'a str, &'a User>,
    user_schema: UserSchema,
    wide: WideSchema,
    state: FeatureState,
}

impl Replay<'_> {
    /// The example of showing `item` to `impression`'s user at its time, labelled with its actions.
    fn example(&self, impression: &Impression, item: &Item) -> RankingExample {
        let user_id = impression.user_id.as_str();
        let user = self.users.get(user_id).copied();
        let request = RequestFeatures::new(
            &self.user_schema,
            &self.state,
            user_id,
            user,
            impression.context.as_ref(),
            impression.ts,
        );
        let candidate = request.candidate(&self.wide, &self.state, item);
        RankingExample::new(request, candidate, impression.labels())
    }
}

impl ImpressionSet {
    /// The examples of `impressions` (as [`reelrank_features::join_impressions`] returns them) on
    /// the catalog `items`, with user records `users` (users without one are known by id).
    /// Watch thresholds, rate priors and dense standardisation are fitted on the impressions
    /// shown before `fit_before`.
    pub fn new(
        mut impressions: Vec<Impression>,
        items: &[Item],
        users: &[User],
        fit_before: Timestamp,
        config: &ImpressionConfig,
    ) -> ImpressionSet {
        let items: HashMap<&str, &Item> = items.iter().map(|i| (i.item_id.as_str(), i)).collect();
        let before = impressions.partition_point(|i| i.ts < fit_before);
        let duration = |id: &str| items.get(id).and_then(|i| i.duration_s);
        let watch = WatchQuantiles::fit(&impressions[..before], duration);
        for impression in &mut impressions {
            watch.label(&mut impression.outcome, duration(&impression.item_id));
        }
        let half_life_ms = config.counter_half_life_hours * 3_600_000.0;
        let user_schema = UserSchema::from_users(users);
        let user_slots = user_schema.anonymous_bags("").len();
        let prior = EngagementPrior::fit(&impressions[..before], half_life_ms);
        let mut replay = Replay {
            items,
            users: users.iter().map(|u| (u.user_id.as_str(), u)).collect(),
            wide: WideSchema::standard(user_slots),
            state: FeatureState::new(prior.clone()),
            user_schema,
        };
        let mut sampler = Sampler::new(&impressions, &replay.items, config);
        let (mut examples, mut times, mut user_ids) = (Vec::new(), Vec::new(), Vec::new());
        let mut user_numbers: HashMap<String, u32> = HashMap::new();
        let mut unknown_items = 0;
        for impression in &impressions {
            let Some(&item) = replay.items.get(impression.item_id.as_str()) else {
                unknown_items += 1;
                continue;
            };
            let next = user_numbers.len() as u32;
            let user = *user_numbers.entry(impression.user_id.clone()).or_insert(next);
            let mut shown = vec![(replay.example(impression, item), item)];
            if let Some(sampler) = &mut sampler {
                for negative in sampler.negatives(&impression.item_id) {
                    let unseen = Impression { outcome: Outcome::default(), ..impression.clone() };
                    shown.push((replay.example(&unseen, negative), negative));
                }
            }
            for (mut example, item) in shown {
                if let Some(sampler) = &sampler {
                    example.offset = sampler.offset(&item.item_id);
                }
                examples.push(example);
                times.push(impression.ts);
                user_ids.push(user);
            }
            replay.state.record(impression);
        }
        let fitted = times.partition_point(|&t| t < fit_before);
        let standardise = standardise(&mut examples, fitted);
        let schema = RankingSchema {
            heads: ACTIONS.iter().map(|&a| a.to_owned()).collect(),
            wide: replay.wide,
            request_slots: user_slots + 2,
            request_dense: ENGAGEMENT_FEATURES,
        };
        let features = RankingFeatures { user_schema: replay.user_schema, watch, prior, standardise };
        ImpressionSet { examples, times, users: user_ids, unknown_items, schema, features }
    }

    /// The number of examples shown before `t`: `examples[..n]` precede it.
    pub fn shown_before(&self, t: Timestamp) -> usize {
        self.times.partition_point(|&s| s < t)
    }
}

/// One head's metrics on a range of examples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadReport {
    /// The action.
    pub head: String,
    /// Examples where it happened.
    pub positives: usize,
    /// AUC over every example (`None` without both classes).
    pub auc: Option<f64>,
    /// Per-user AUC, weighted by the user's examples ([`crate::gauc`]).
    pub gauc: Option<f64>,
    /// Mean logloss.
    pub logloss: f64,
}

/// How well the value model `Σ P(action) × weight` orders examples by the value they realised
/// (`Σ weight` over the actions that happened).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueReport {
    /// Examples whose realised value is positive.
    pub positives: usize,
    /// AUC of the predicted value for "the realised value is positive".
    pub auc: Option<f64>,
    /// The same per user, weighted by the user's examples.
    pub gauc: Option<f64>,
}

/// A model's metrics on a range of examples: each head's, and the value model's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankingEvaluation {
    /// One per head, in the model's order.
    pub heads: Vec<HeadReport>,
    /// The value model with the weights evaluated with.
    pub value: ValueReport,
}

impl ImpressionSet {
    /// The metrics of `model` on `examples[range]`, the value model's with `weights`.
    pub fn evaluate(
        &self,
        model: &WideDeep,
        range: std::ops::Range<usize>,
        weights: &ValueWeights,
    ) -> RankingEvaluation {
        let p = model.predict(&self.examples[range.clone()]);
        self.evaluate_predictions(&p, model.heads(), range, weights)
    }

    /// The metrics of probabilities `p` (`[examples × heads]`, heads named `heads`) predicted for
    /// `examples[range]`, the value model's with `weights`: for predictions that did not all come
    /// from one model, as in progressive evaluation.
    pub fn evaluate_predictions(
        &self,
        p: &[f32],
        heads: &[String],
        range: std::ops::Range<usize>,
        weights: &ValueWeights,
    ) -> RankingEvaluation {
        let examples = &self.examples[range.clone()];
        let users = &self.users[range];
        let head_reports = heads
            .iter()
            .enumerate()
            .map(|(h, head)| {
                let scores: Vec<f32> = p.iter().skip(h).step_by(heads.len()).copied().collect();
                let labels: Vec<bool> = examples.iter().map(|e| e.labels[h] == Some(true)).collect();
                HeadReport {
                    head: head.clone(),
                    positives: labels.iter().filter(|&&y| y).count(),
                    auc: auc(&scores, &labels),
                    gauc: gauc(&scores, &labels, users),
                    logloss: logloss(&scores, &labels),
                }
            })
            .collect();
        let head_weights = weights.in_order(heads);
        let value_of = |values: &mut dyn Iterator<Item = f32>| -> f32 {
            values.zip(&head_weights).map(|(v, w)| v * w).sum()
        };
        let predicted: Vec<f32> =
            p.chunks_exact(heads.len()).map(|row| value_of(&mut row.iter().copied())).collect();
        let realised: Vec<bool> = examples
            .iter()
            .map(|e| value_of(&mut e.labels.iter().map(|y| f32::from(u8::from(*y == Some(true))))) > 0.0)
            .collect();
        let value = ValueReport {
            positives: realised.iter().filter(|&&y| y).count(),
            auc: auc(&predicted, &realised),
            gauc: gauc(&predicted, &realised, users),
        };
        RankingEvaluation { heads: head_reports, value }
    }
}

/// Negatives drawn in proportion to how often each catalog item appears in the log, for a log
/// that has no impression events.
struct Sampler<'a> {
    /// Items and their cumulative counts.
    items: Vec<(&'a Item, u64)>,
    popularity: HashMap<&'a str, f64>,
    per_example: usize,
    rng: Pcg64Mcg,
}

impl<'a> Sampler<'a> {
    /// `None` when the log has impression events (its negatives are observed).
    fn new(
        impressions: &[Impression],
        items: &HashMap<&str, &'a Item>,
        config: &ImpressionConfig,
    ) -> Option<Sampler<'a>> {
        if config.sampled_negatives == 0 || impressions.iter().any(|i| !i.implicit) {
            return None;
        }
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for i in impressions {
            *counts.entry(i.item_id.as_str()).or_default() += 1;
        }
        let mut sorted: Vec<(&'a Item, u64)> = items
            .values()
            .filter_map(|&item| counts.get(item.item_id.as_str()).map(|&c| (item, c)))
            .collect();
        sorted.sort_by(|a, b| a.0.item_id.cmp(&b.0.item_id));
        let total: u64 = sorted.iter().map(|&(_, c)| c).sum();
        let popularity =
            sorted.iter().map(|&(item, c)| (item.item_id.as_str(), c as f64 / total as f64)).collect();
        let mut cumulative = 0;
        let items = sorted
            .into_iter()
            .map(|(item, c)| {
                cumulative += c;
                (item, cumulative)
            })
            .collect();
        Some(Sampler {
            items,
            popularity,
            per_example: config.sampled_negatives,
            rng: Pcg64Mcg::seed_from_u64(config.seed),
        })
    }

    /// `per_example` items other than `shown`, drawn by popularity.
    fn negatives(&mut self, shown: &str) -> Vec<&'a Item> {
        let total = self.items.last().map_or(0, |&(_, c)| c);
        let mut drawn = Vec::with_capacity(self.per_example);
        while total > 0 && drawn.len() < self.per_example {
            let ticket = self.rng.random_range(0..total);
            let item = self.items[self.items.partition_point(|&(_, c)| c <= ticket)].0;
            if item.item_id != shown || self.items.len() == 1 {
                drawn.push(item);
            }
        }
        drawn
    }

    /// `-ln(k·q(item))`: the log-odds correction of an example of `item`.
    fn offset(&self, item: &str) -> f32 {
        let q = self.popularity.get(item).copied().unwrap_or(f64::MIN_POSITIVE);
        -((self.per_example as f64 * q).ln()) as f32
    }
}

/// Shifts and scales each dense feature of every example to mean 0 and variance 1 over
/// `examples[..fitted]`; returns the (mean, scale) pairs.
pub(crate) fn standardise(examples: &mut [RankingExample], fitted: usize) -> Vec<(f32, f32)> {
    let width = examples.first().map_or(0, |e| e.dense.len());
    let n = fitted.max(1) as f64;
    (0..width)
        .map(|d| {
            let fit = &examples[..fitted];
            let mean = fit.iter().map(|e| f64::from(e.dense[d])).sum::<f64>() / n;
            let var = fit.iter().map(|e| (f64::from(e.dense[d]) - mean).powi(2)).sum::<f64>() / n;
            let scale = 1.0 / var.sqrt().max(1e-6);
            for example in examples.iter_mut() {
                example.dense[d] = ((f64::from(example.dense[d]) - mean) * scale) as f32;
            }
            (mean as f32, scale as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use reelrank_core::{Category, Event, EventKind};
    use reelrank_features::join_impressions;

    use super::*;

    fn event(user: &str, item: &str, kind: EventKind, ts: i64, request: Option<&str>) -> Event {
        Event { request_id: request.map(str::to_owned), ..Event::new(user, item, kind, Timestamp(ts * 1000)) }
    }

    fn catalog() -> Vec<Item> {
        ["a", "b", "c"].map(|id| Item::new(id, Category::Other("x".into()))).to_vec()
    }

    #[test]
    fn examples_see_only_what_happened_before_them() {
        let like = ACTIONS.iter().position(|&a| a == "like").unwrap();
        let events = [
            event("u", "a", EventKind::Impression, 1, Some("r1")),
            event("u", "b", EventKind::Impression, 1, Some("r1")),
            event("u", "a", EventKind::Like, 2, Some("r1")),
            event("v", "a", EventKind::Impression, 3, Some("r2")),
            event("v", "z", EventKind::Impression, 3, Some("r2")),
        ];
        let set = ImpressionSet::new(
            join_impressions(&events),
            &catalog(),
            &[],
            Timestamp(10_000),
            &ImpressionConfig::default(),
        );
        assert_eq!((set.examples.len(), set.unknown_items), (3, 1), "z is not in the catalog");
        assert_eq!(set.users, [0, 0, 1]);
        assert_eq!(set.examples[0].labels[like], Some(true));
        assert_eq!(set.examples[1].labels[like], Some(false));
        assert!(set.examples.iter().all(|e| e.offset == 0.0), "impressions are observed negatives");
        // v sees a after u liked it: a's impressions and like rate are higher than on u's turn.
        let item_side = ENGAGEMENT_FEATURES;
        let (first, later) = (&set.examples[0].dense, &set.examples[2].dense);
        assert!(later[item_side] > first[item_side]);
        assert!(later[item_side + 2 + like] > first[item_side + 2 + like]);
        // v has no positives yet: an empty history slot.
        let history_slot = set.schema.request_slots - 1;
        assert!(set.examples[2].slots[history_slot].is_empty());

        let dir = tempfile::tempdir().unwrap();
        set.features.save(dir.path()).unwrap();
        assert_eq!(RankingFeatures::load(dir.path()).unwrap(), set.features);
    }

    #[test]
    fn outcome_only_logs_get_sampled_negatives_with_a_correction() {
        let events = [
            event("u", "a", EventKind::Like, 1, None),
            event("u", "b", EventKind::Like, 2, None),
            event("v", "a", EventKind::Like, 3, None),
            event("v", "c", EventKind::Like, 4, None),
        ];
        let config = ImpressionConfig { sampled_negatives: 2, ..ImpressionConfig::default() };
        let set = ImpressionSet::new(join_impressions(&events), &catalog(), &[], Timestamp(10_000), &config);
        assert_eq!(set.examples.len(), 4 * 3);
        let like = ACTIONS.iter().position(|&a| a == "like").unwrap();
        let positives = set.examples.iter().filter(|e| e.labels[like] == Some(true)).count();
        assert_eq!(positives, 4);
        // a is half the log: q = 0.5, k = 2, offset -ln(1) = 0; c is a quarter: -ln(0.5).
        let a = set.examples[0].offset;
        assert!(a.abs() < 1e-6, "{a}");
        let c = set.examples[9].offset;
        assert!((c - 2f32.ln()).abs() < 1e-6, "{c}");
        assert_eq!(
            set.examples[1].slots[set.schema.request_slots - 1].len(),
            0,
            "a sampled negative has the user's history as of the shown example"
        );
    }
}
