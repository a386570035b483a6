//! The ranking model's inputs beyond the catalog, one implementation for training and serving:
//! training replays the log through a [`FeatureState`] and builds each example from what happened
//! before it was shown; serving keeps the same state current from the events and builds a
//! request's features with the same calls, so a served score sees exactly the features its model
//! was trained on.

use std::path::Path;

use reelrank_core::{EventContext, Item, Timestamp, User};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::crosses::{WideRequest, WideSchema};
use crate::engagement::{Counts, Engagement, EngagementPrior};
use crate::outcomes::{Impression, Joined, WatchQuantiles};
use crate::persist::PersistError;
use crate::schema::{context_bag, item_bags, item_id_key, Bag, UserSchema};
use crate::tensors::{read_manifest, write_manifest};

/// Actions that make an item one of the user's positives (history), by position in
/// [`crate::ACTIONS`]: effective play, finish, like, comment, share, follow.
const POSITIVE_ACTIONS: u16 = 0b11_1111;

/// How many of the user's latest positives the history slot and crosses hold.
pub const HISTORY: usize = 10;

/// What turns a (user, item, moment) into an example's features beyond the catalog: fitted on
/// the training impressions and saved with a model, so serving computes the same features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankingFeatures {
    /// The user attributes that are slots.
    pub user_schema: UserSchema,
    /// Thresholds of an effective play.
    pub watch: WatchQuantiles,
    /// Averages the counters' rates start from, and their half-life.
    pub prior: EngagementPrior,
    /// Mean and scale of each dense feature over the training examples: the request's columns,
    /// then the candidate's.
    pub standardise: Vec<(f32, f32)>,
}

/// Version of the `features.json` layout [`RankingFeatures::save`] writes.
pub const RANKING_FEATURES_FORMAT_VERSION: u32 = 1;

/// `features.json`.
#[derive(Serialize, Deserialize)]
struct FeaturesManifest {
    format_version: u32,
    #[serde(flatten)]
    features: RankingFeatures,
}

impl RankingFeatures {
    /// Writes `features.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), PersistError> {
        let manifest =
            FeaturesManifest { format_version: RANKING_FEATURES_FORMAT_VERSION, features: self.clone() };
        write_manifest(&dir.join("features.json"), &manifest)
    }

    /// Reads what [`RankingFeatures::save`] wrote.
    pub fn load(dir: &Path) -> Result<RankingFeatures, PersistError> {
        let manifest: FeaturesManifest =
            read_manifest(&dir.join("features.json"), RANKING_FEATURES_FORMAT_VERSION)?;
        Ok(manifest.features)
    }

    /// Standardises `dense` in place as training did, `dense[0]` being dense column `first`.
    pub fn standardise(&self, dense: &mut [f32], first: usize) {
        for (value, &(mean, scale)) in dense.iter_mut().zip(&self.standardise[first..]) {
            *value = (*value - mean) * scale;
        }
    }
}

/// Each user's and each item's decayed engagement counters and each user's latest positives, as
/// of the impressions recorded so far.
#[derive(Debug, Clone)]
pub struct FeatureState {
    prior: EngagementPrior,
    users: FxHashMap<String, Engagement>,
    /// By [`item_id_key`]: serving looks up hundreds of items per request.
    items: FxHashMap<u64, Engagement>,
    histories: FxHashMap<String, Vec<u64>>,
}

impl FeatureState {
    /// No impressions yet; rates start from `prior`.
    pub fn new(prior: EngagementPrior) -> FeatureState {
        FeatureState {
            prior,
            users: FxHashMap::default(),
            items: FxHashMap::default(),
            histories: FxHashMap::default(),
        }
    }

    /// Counts `impression` (labelled, see [`WatchQuantiles::label`]) as having happened, all at
    /// once: how training replays a log.
    pub fn record(&mut self, impression: &Impression) {
        self.count(&impression.user_id, &impression.item_id, impression.ts, Counts::of(impression));
    }

    /// Counts what one event added to an impression (see [`crate::ImpressionJoiner::push`]; labelled)
    /// at `ts`: how serving follows the log as it grows.
    pub fn update(&mut self, joined: &Joined<'_>, ts: Timestamp) {
        let outcome = joined.outcome;
        let counts = Counts {
            shown: joined.opened,
            played: outcome.played && !joined.played_before,
            actions: outcome.actions & !joined.actions_before,
        };
        self.count(joined.user_id, joined.item_id, ts, counts);
    }

    fn count(&mut self, user_id: &str, item_id: &str, ts: Timestamp, counts: Counts) {
        let item = item_id_key(item_id);
        by_user(&mut self.users, user_id).count(ts.millis(), counts, &self.prior);
        self.items.entry(item).or_default().count(ts.millis(), counts, &self.prior);
        if counts.actions & POSITIVE_ACTIONS != 0 {
            let history = by_user(&mut self.histories, user_id);
            if history.len() == HISTORY {
                history.remove(0);
            }
            history.push(item);
        }
    }

    /// Forgets the users and items whose counters have not changed for `idle_ms` before `now`
    /// (decayed by then to next to nothing, so the prior's rates stand in for them as they would
    /// anyway), with those users' histories. Returns how many users and items went.
    pub fn forget_idle(&mut self, now: Timestamp, idle_ms: i64) -> (usize, usize) {
        let cutoff = now.millis() - idle_ms;
        let (users, items) = (self.users.len(), self.items.len());
        self.users.retain(|_, e| e.updated_ms() >= cutoff);
        self.items.retain(|_, e| e.updated_ms() >= cutoff);
        let kept = &self.users;
        self.histories.retain(|user, _| kept.contains_key(user));
        (users - self.users.len(), items - self.items.len())
    }

    /// The item-id keys of the user's latest [`HISTORY`] positives, most recent last.
    pub fn history(&self, user_id: &str) -> &[u64] {
        self.histories.get(user_id).map_or(&[], Vec::as_slice)
    }

    /// The user's engagement rates at `now` (not standardised).
    pub fn user_engagement(&self, user_id: &str, now: Timestamp) -> Vec<f32> {
        self.engagement(self.users.get(user_id), now)
    }

    /// The engagement rates at `now` (not standardised) of the item whose [`item_id_key`] is
    /// `key`: serving holds the keys of the candidates it ranks.
    pub fn item_engagement(&self, key: u64, now: Timestamp) -> Vec<f32> {
        self.engagement(self.items.get(&key), now)
    }

    fn engagement(&self, counters: Option<&Engagement>, now: Timestamp) -> Vec<f32> {
        counters.copied().unwrap_or_default().features(now.millis(), &self.prior).to_vec()
    }
}

/// `user_id`'s entry in `map`, added empty when missing: the id is copied only then, where an
/// entry by `String` would copy it for every event counted.
fn by_user<'m, V: Default>(map: &'m mut FxHashMap<String, V>, user_id: &str) -> &'m mut V {
    if !map.contains_key(user_id) {
        map.insert(user_id.to_owned(), V::default());
    }
    map.get_mut(user_id).expect("inserted above")
}

/// What the counters and history said of showing an item to a user at one moment, before the
/// showing was counted: the part of an example's features that the log's state gives, kept while
/// the example's outcomes are awaited (the state moves on meanwhile).
#[derive(Debug, Clone, PartialEq)]
pub struct Moment {
    /// When it was shown.
    pub now: Timestamp,
    /// The item keys of the user's latest positives, most recent last.
    pub history: Vec<u64>,
    /// The user's engagement rates (not standardised).
    pub user: Vec<f32>,
    /// The item's engagement rates (not standardised).
    pub item: Vec<f32>,
}

impl FeatureState {
    /// The state's share of the features of showing `item_id` to `user_id` at `now`.
    pub fn moment(&self, user_id: &str, item_id: &str, now: Timestamp) -> Moment {
        Moment {
            now,
            history: self.history(user_id).to_vec(),
            user: self.user_engagement(user_id, now),
            item: self.item_engagement(item_id_key(item_id), now),
        }
    }
}

/// The request's side of the features, computed once per request: the user's slots, the context,
/// the history and the user's engagement.
#[derive(Debug, Clone)]
pub struct RequestFeatures {
    /// The user's slots, then the context's, then the history's (recency-averaged).
    pub slots: Vec<Bag>,
    /// The user's engagement rates (not standardised).
    pub dense: Vec<f32>,
    user_slots: usize,
    history: Vec<u64>,
    now: Timestamp,
}

impl RequestFeatures {
    /// The features of showing something to `user_id` (whose record is `user`, when there is one)
    /// at `now` in `context`.
    pub fn new(
        schema: &UserSchema,
        state: &FeatureState,
        user_id: &str,
        user: Option<&User>,
        context: Option<&EventContext>,
        now: Timestamp,
    ) -> RequestFeatures {
        let history = state.history(user_id).to_vec();
        RequestFeatures::of(schema, user_id, user, context, now, history, state.user_engagement(user_id, now))
    }

    /// The same for a showing whose state was taken as `moment` ([`FeatureState::moment`]).
    pub fn at(
        schema: &UserSchema,
        user_id: &str,
        user: Option<&User>,
        context: Option<&EventContext>,
        moment: &Moment,
    ) -> RequestFeatures {
        let (history, dense) = (moment.history.clone(), moment.user.clone());
        RequestFeatures::of(schema, user_id, user, context, moment.now, history, dense)
    }

    fn of(
        schema: &UserSchema,
        user_id: &str,
        user: Option<&User>,
        context: Option<&EventContext>,
        now: Timestamp,
        history: Vec<u64>,
        dense: Vec<f32>,
    ) -> RequestFeatures {
        let mut slots = match user {
            Some(user) => schema.bags(user),
            None => schema.anonymous_bags(user_id),
        };
        let user_slots = slots.len();
        let weight = 1.0 / history.len().max(1) as f32;
        slots.push(context.map(context_bag).unwrap_or_default());
        slots.push(history.iter().map(|&k| (k, weight)).collect());
        RequestFeatures { slots, dense, user_slots, history, now }
    }

    /// The candidate `item`'s slots, its engagement rates (not standardised) and the example's wide
    /// keys.
    pub fn candidate(&self, wide: &WideSchema, state: &FeatureState, item: &Item) -> CandidateFeatures {
        self.candidate_with(wide, item, state.item_engagement(item_id_key(&item.item_id), self.now))
    }

    /// The same with the item's engagement rates as `moment` took them.
    pub fn candidate_at(&self, wide: &WideSchema, item: &Item, moment: &Moment) -> CandidateFeatures {
        self.candidate_with(wide, item, moment.item.clone())
    }

    fn candidate_with(&self, wide: &WideSchema, item: &Item, dense: Vec<f32>) -> CandidateFeatures {
        let slots = item_bags(item, self.now);
        let wide = self.wide(wide).keys(&slots);
        CandidateFeatures { dense, slots, wide }
    }

    /// This request's side of the wide keys, for its candidates'.
    pub fn wide<'a>(&'a self, wide: &'a WideSchema) -> WideRequest<'a> {
        wide.request(&self.slots[..self.user_slots], &self.slots[self.user_slots], &self.history)
    }
}

/// A candidate's side of one example's features.
#[derive(Debug, Clone)]
pub struct CandidateFeatures {
    /// The item's slots ([`item_bags`]).
    pub slots: Vec<Bag>,
    /// The item's engagement rates (not standardised).
    pub dense: Vec<f32>,
    /// The wide keys of the (user, item) pair.
    pub wide: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use reelrank_core::{Category, Event, EventKind};

    use super::*;
    use crate::outcomes::{Outcome, ACTIONS};

    fn impression(user: &str, item: &str, action: Option<usize>) -> Impression {
        Impression {
            user_id: user.into(),
            item_id: item.into(),
            ts: Timestamp(1_000),
            context: None,
            implicit: false,
            outcome: Outcome {
                actions: action.map_or(0, |a| 1 << a),
                played: action.is_some(),
                watch_ms: 0.0,
            },
        }
    }

    /// Serving counts an impression event by event; training counts it whole. Both end with the
    /// same counters and history.
    #[test]
    fn counting_event_by_event_matches_counting_the_whole_impression() {
        let prior = EngagementPrior { half_life_ms: 3.6e9, rates: [0.1; 1 + ACTIONS.len()] };
        let event = |kind: EventKind| Event {
            request_id: Some("r".into()),
            ..Event::new("u", "i", kind, Timestamp(1_000))
        };
        let events = [event(EventKind::Impression), event(EventKind::Play), event(EventKind::Like)];
        let (mut streamed, mut whole) = (FeatureState::new(prior.clone()), FeatureState::new(prior));
        let mut joiner = crate::ImpressionJoiner::new(i64::MAX);
        for e in &events {
            let joined = joiner.push(e, false, |_| {}).unwrap();
            streamed.update(&joined, e.ts);
        }
        for impression in crate::join_impressions(&events) {
            whole.record(&impression);
        }
        let now = Timestamp(2_000);
        assert_eq!(
            streamed.item_engagement(item_id_key("i"), now),
            whole.item_engagement(item_id_key("i"), now)
        );
        assert_eq!(streamed.user_engagement("u", now), whole.user_engagement("u", now));
        assert_eq!(streamed.history("u"), whole.history("u"));
        assert_eq!(streamed.history("u"), [item_id_key("i")]);
    }

    #[test]
    fn history_keeps_the_latest_positives_only() {
        let prior = EngagementPrior { half_life_ms: 3.6e6, rates: [0.1; 1 + ACTIONS.len()] };
        let mut state = FeatureState::new(prior);
        let skip = ACTIONS.iter().position(|&a| a == EventKind::Skip.as_str());
        state.record(&impression("u", "skipped", skip));
        for i in 0..HISTORY + 2 {
            state.record(&impression("u", &format!("liked{i}"), Some(2)));
        }
        let history = state.history("u");
        assert_eq!(history.len(), HISTORY);
        assert_eq!(history.last(), Some(&item_id_key(&format!("liked{}", HISTORY + 1))));
        assert!(!history.contains(&item_id_key("skipped")) && !history.contains(&item_id_key("liked0")));
        let schema = UserSchema::from_users([]);
        let request = RequestFeatures::new(&schema, &state, "u", None, None, Timestamp(2_000));
        let item = Item::new("new", Category::MicroDrama);
        let wide = WideSchema::standard(schema.anonymous_bags("u").len());
        let candidate = request.candidate(&wide, &state, &item);
        assert_eq!(candidate.dense.len(), request.dense.len());
        assert!(candidate.wide.len() > HISTORY, "history crosses are among the wide keys");
    }

    #[test]
    fn idle_users_and_items_are_forgotten_with_their_histories() {
        let prior = EngagementPrior { half_life_ms: 3.6e6, rates: [0.1; 1 + ACTIONS.len()] };
        let mut state = FeatureState::new(prior);
        state.record(&impression("old", "old-item", Some(2)));
        state.record(&Impression { ts: Timestamp(50_000), ..impression("recent", "recent-item", Some(2)) });
        let now = Timestamp(60_000);
        let before = state.user_engagement("old", now);
        assert_eq!(state.forget_idle(now, 30_000), (1, 1));
        assert!(state.history("old").is_empty() && !state.history("recent").is_empty());
        assert_ne!(state.user_engagement("old", now), before, "back to the prior");
        assert_eq!(state.user_engagement("old", now), state.user_engagement("nobody", now));
    }
}
