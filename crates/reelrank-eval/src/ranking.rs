//! Ranking (CTR) evaluation: every rating of a split is an example, positive when the rating is
//! at least 4 (PROTOCOL.md). Features come from the side information and from the train ratings
//! that precede the example — the user's and the item's counts and positive rates, the item's
//! positive rate among users sharing each of the user's attributes, the user's latest positives —
//! so a train example never sees its own label or anything later.

use std::collections::HashMap;

use rayon::prelude::*;
use reelrank_core::{Category, Item, Timestamp, User};
use reelrank_features::{item_bags, item_id_key, Bag, UserSchema, WideSchema};
use reelrank_models::{RankingExample, RankingSchema, WideDeep};
use serde::Serialize;

use crate::impression_set::standardise;
use crate::metrics::{auc, logloss};
use crate::{Rating, Split};

/// Dense features of each side (see `Counts::features`).
const DENSE_PER_SIDE: usize = 5;

/// Prior weight (in ratings) of the smoothed positive rates.
const RATE_PRIOR: f64 = 10.0;

/// The examples of a split, ready for a Wide&Deep model with one head (`like`: rating ≥ 4).
#[derive(Debug, Clone)]
pub struct RankingSet {
    /// Train examples, in time order.
    pub train: Vec<RankingExample>,
    /// Test examples, in the file's order.
    pub test: Vec<RankingExample>,
    /// For each test example, whether its user rated anything in train.
    pub test_user_seen: Vec<bool>,
    /// What the examples look like: one head, `like`; the user's slots and dense features first.
    pub schema: RankingSchema,
}

/// Running counts of one user or item over the ratings seen so far, all-time and decayed by
/// recency. The clock counts ratings, not seconds (see [`Clock`]).
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    ratings: u32,
    positives: u32,
    rating_sum: f64,
    /// Ratings and positives weighed `0.5^(age / half-life)`, as of `updated`.
    recent: f64,
    recent_positives: f64,
    updated: f64,
}

/// Time measured in ratings, with the half-life of the decayed counts: 5 % of the train ratings,
/// as the trending retrieval uses, so that one setting fits any data set's pace.
#[derive(Debug, Clone, Copy)]
struct Clock {
    now: f64,
    half_life: f64,
}

impl Counts {
    fn decayed_to(mut self, now: f64, half_life: f64) -> Counts {
        let factor = 0.5f64.powf((now - self.updated) / half_life);
        self.recent *= factor;
        self.recent_positives *= factor;
        self.updated = now;
        self
    }

    fn add(&mut self, rating: &Rating, clock: Clock) {
        *self = self.decayed_to(clock.now, clock.half_life);
        self.ratings += 1;
        self.positives += u32::from(rating.is_positive());
        self.rating_sum += f64::from(rating.rating);
        self.recent += 1.0;
        self.recent_positives += f64::from(u8::from(rating.is_positive()));
    }

    /// `[ln(1 + ratings), positive rate, mean rating, ln(1 + recent ratings), recent positive
    /// rate]`, the rates and mean smoothed towards the train averages `prior` by [`RATE_PRIOR`]
    /// ratings.
    fn features(self, prior: Prior, clock: Clock) -> [f32; DENSE_PER_SIDE] {
        let recent = self.decayed_to(clock.now, clock.half_life);
        let n = f64::from(self.ratings) + RATE_PRIOR;
        let rate = (f64::from(self.positives) + prior.positive_rate * RATE_PRIOR) / n;
        let mean = (self.rating_sum + prior.mean_rating * RATE_PRIOR) / n;
        let recent_rate =
            (recent.recent_positives + prior.positive_rate * RATE_PRIOR) / (recent.recent + RATE_PRIOR);
        [f64::from(self.ratings).ln_1p(), rate, mean, recent.recent.ln_1p(), recent_rate].map(|x| x as f32)
    }
}

/// Train-wide averages that smoothed rates start from.
#[derive(Debug, Clone, Copy)]
struct Prior {
    positive_rate: f64,
    mean_rating: f64,
}

/// Ratings and positives of each item among the users sharing one attribute value (this
/// occupation, this age bucket): how the item fares with users like this one, which a user new
/// to the data still has.
#[derive(Debug, Default)]
struct GroupCounts<'a> {
    counts: HashMap<(u64, &'a str), (f32, f32)>,
}

/// Ratings of weight that a group's rate starts from at the item's overall rate.
const GROUP_PRIOR: f32 = 5.0;

impl<'a> GroupCounts<'a> {
    fn add(&mut self, attributes: &[Bag], rating: &'a Rating) {
        for &(key, _) in attributes.iter().flatten() {
            let (n, positives) = self.counts.entry((key, rating.item.as_str())).or_default();
            *n += 1.0;
            *positives += f32::from(u8::from(rating.is_positive()));
        }
    }

    /// Per attribute slot, the item's smoothed positive rate among users with the slot's values
    /// (`item_rate` for an empty slot).
    fn rates<'b>(
        &'b self,
        attributes: &'b [Bag],
        item: &'b str,
        item_rate: f32,
    ) -> impl Iterator<Item = f32> + 'b {
        attributes.iter().map(move |bag| {
            let (n, positives) = bag.iter().fold((0.0, 0.0), |(n, p), &(key, _)| {
                let (gn, gp) = self.counts.get(&(key, item)).copied().unwrap_or_default();
                (n + gn, p + gp)
            });
            (positives + item_rate * GROUP_PRIOR) / (n + GROUP_PRIOR)
        })
    }
}

/// What the features of an example are computed from.
struct Context<'a> {
    items: HashMap<&'a str, &'a Item>,
    users: HashMap<&'a str, &'a User>,
    user_schema: UserSchema,
    wide_schema: WideSchema,
    prior: Prior,
}

impl Context<'_> {
    /// The example of `rating`; its first slots are the user's (see [`UserSchema::bags`]).
    fn example(
        &self,
        rating: &Rating,
        (user, item): (Counts, Counts),
        clock: Clock,
        history: &[u64],
        groups: &GroupCounts,
    ) -> RankingExample {
        let user_bags = match self.users.get(rating.user.as_str()) {
            Some(u) => self.user_schema.bags(u),
            None => self.user_schema.anonymous_bags(&rating.user),
        };
        let when = Timestamp::from_secs(rating.timestamp);
        let item_bags = match self.items.get(rating.item.as_str()) {
            Some(item) => item_bags(item, when),
            None => item_bags(&Item::new(rating.item.clone(), Category::Other("unknown".into())), when),
        };
        let wide = self.wide_schema.keys(&user_bags, &item_bags, &[], history);
        let item_features = item.features(self.prior, clock);
        let group_rates = groups.rates(&user_bags[1..], &rating.item, item_features[1]);
        let dense =
            user.features(self.prior, clock).into_iter().chain(item_features).chain(group_rates).collect();
        RankingExample {
            slots: user_bags.into_iter().chain(item_bags).collect(),
            dense,
            wide,
            labels: vec![Some(rating.is_positive())],
            offset: 0.0,
        }
    }
}

impl RankingSet {
    /// Builds the examples of `split` (its `train` and `test` ratings) with side information
    /// `items` and `users` (either may be empty: then ids alone describe them).
    pub fn new(split: &Split, items: &[Item], users: &[User]) -> RankingSet {
        let n = split.train.len().max(1) as f64;
        let prior = Prior {
            positive_rate: split.train.iter().filter(|r| r.is_positive()).count() as f64 / n,
            mean_rating: split.train.iter().map(|r| f64::from(r.rating)).sum::<f64>() / n,
        };
        let user_schema = UserSchema::from_users(users);
        let user_slots = user_schema.anonymous_bags("").len();
        let context = Context {
            items: items.iter().map(|i| (i.item_id.as_str(), i)).collect(),
            users: users.iter().map(|u| (u.user_id.as_str(), u)).collect(),
            user_schema,
            wide_schema: WideSchema::standard(user_slots),
            prior,
        };

        let mut by_time: Vec<&Rating> = split.train.iter().collect();
        by_time.sort_by_key(|r| r.timestamp);
        let mut user_counts: HashMap<&str, Counts> = HashMap::new();
        let mut item_counts: HashMap<&str, Counts> = HashMap::new();
        let mut histories: HashMap<&str, Vec<u64>> = HashMap::new();
        let mut groups = GroupCounts::default();
        let mut train = Vec::with_capacity(by_time.len());
        let half_life = (0.05 * split.train.len() as f64).max(1.0);
        for (now, r) in by_time.into_iter().enumerate() {
            let clock = Clock { now: now as f64, half_life };
            let (user, item) =
                (user_counts.entry(&r.user).or_default(), item_counts.entry(&r.item).or_default());
            let history = histories.entry(&r.user).or_default();
            let example = context.example(r, (*user, *item), clock, history, &groups);
            groups.add(&example.slots[1..user_slots], r);
            train.push(example);
            user.add(r, clock);
            item.add(r, clock);
            if r.is_positive() {
                history.push(item_id_key(&r.item));
            }
        }
        let no_history = Vec::new();
        let end_of_train = Clock { now: split.train.len() as f64, half_life };
        let test: Vec<RankingExample> = split
            .test
            .par_iter()
            .map(|r| {
                let user = user_counts.get(r.user.as_str()).copied().unwrap_or_default();
                let item = item_counts.get(r.item.as_str()).copied().unwrap_or_default();
                let history = histories.get(r.user.as_str()).unwrap_or(&no_history);
                context.example(r, (user, item), end_of_train, history, &groups)
            })
            .collect();
        let test_user_seen = split.test.iter().map(|r| user_counts.contains_key(r.user.as_str())).collect();
        let schema = RankingSchema {
            heads: vec!["like".into()],
            wide: context.wide_schema,
            request_slots: user_slots,
            request_dense: DENSE_PER_SIDE,
        };
        // Dense features standardised over train, test alike.
        let mut examples = train;
        let fitted = examples.len();
        examples.extend(test);
        standardise(&mut examples, fitted);
        let test = examples.split_off(fitted);
        RankingSet { train: examples, test, test_user_seen, schema }
    }
}

/// AUC and logloss of a ranking model on a test set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RankingReport {
    /// AUC over every test example.
    pub auc: f64,
    /// Mean logloss over every test example.
    pub logloss: f64,
    /// AUC over examples of users who rated something in train.
    pub auc_seen_users: Option<f64>,
    /// AUC over examples of users new in test.
    pub auc_unseen_users: Option<f64>,
    /// Test examples.
    pub examples: usize,
    /// Seconds spent fitting the model.
    pub train_seconds: f64,
}

impl RankingSet {
    /// Scores the test examples with `model`'s first head; the AUC is also split by whether the
    /// user was seen in train (`train_seconds` is left at 0).
    pub fn evaluate(&self, model: &WideDeep) -> RankingReport {
        let heads = model.heads().len();
        let p: Vec<f32> = model.predict(&self.test).chunks_exact(heads).map(|row| row[0]).collect();
        let labels: Vec<bool> = self.test.iter().map(|e| e.labels[0].unwrap_or(false)).collect();
        let subset = |seen: bool| {
            let (s, l): (Vec<f32>, Vec<bool>) = p
                .iter()
                .zip(&labels)
                .zip(&self.test_user_seen)
                .filter(|(_, &s)| s == seen)
                .map(|((&p, &y), _)| (p, y))
                .unzip();
            auc(&s, &l)
        };
        RankingReport {
            auc: auc(&p, &labels).unwrap_or(0.5),
            logloss: logloss(&p, &labels),
            auc_seen_users: subset(true),
            auc_unseen_users: subset(false),
            examples: self.test.len(),
            train_seconds: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_examples_see_only_earlier_ratings() {
        let train =
            vec![Rating::new("u", "b", 5.0, 2), Rating::new("u", "a", 5.0, 1), Rating::new("v", "a", 1.0, 3)];
        let test = vec![Rating::new("u", "c", 4.0, 9), Rating::new("w", "a", 2.0, 9)];
        let set = RankingSet::new(&Split { train, test, retrieval_test: vec![] }, &[], &[]);
        assert_eq!(set.train.len(), 3);
        assert_eq!(set.test_user_seen, [true, false]);
        let labels: Vec<_> = set.train.iter().map(|e| e.labels[0]).collect();
        assert_eq!(labels, [Some(true), Some(true), Some(false)], "time order: a, b, then v's rating");
        // u's first rating has no history; the second crosses a (u's earlier positive) with b.
        let cross = reelrank_features::cross_key(item_id_key("a"), item_id_key("b"));
        assert!(!set.train[0].wide.contains(&cross) && set.train[1].wide.contains(&cross));
        // The user-count feature grows with each of u's ratings and is the same for u at test time.
        assert!(set.train[1].dense[0] > set.train[0].dense[0]);
        assert!(set.test[0].dense[0] > set.train[1].dense[0]);
        assert_eq!(set.test[1].dense[0], set.train[0].dense[0], "w is new, like u at first");
    }

    #[test]
    fn new_users_see_how_the_item_fares_with_users_like_them() {
        let user = |id: &str, gender: &str| {
            let mut u = User::new(id);
            u.attributes.insert("gender".into(), reelrank_core::AttributeValue::Categorical(gender.into()));
            u
        };
        let users = [user("a", "F"), user("b", "M"), user("c", "F"), user("d", "M")];
        // F users love x, M users hate it.
        let train = vec![Rating::new("a", "x", 5.0, 1), Rating::new("b", "x", 1.0, 2)];
        let test = vec![Rating::new("c", "x", 5.0, 9), Rating::new("d", "x", 1.0, 9)];
        let set = RankingSet::new(&Split { train, test, retrieval_test: vec![] }, &[], &users);
        // The gender rate follows both sides' counters: higher for the new F user than the new M.
        let gender = 2 * DENSE_PER_SIDE;
        let (c, d) = (set.test[0].dense[gender], set.test[1].dense[gender]);
        assert!(c > d, "{c} vs {d}");
    }
}
