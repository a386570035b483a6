//! Ranking stage: the Wide&Deep model's head probabilities for every candidate, turned into the
//! value `Σ P(action) × weight`. The request's share of the first layer is computed once per
//! request and each item's share is cached across requests; the features come from
//! [`reelrank_features::RequestFeatures`], the code training used.
//!
//! When the model learns online, the ranker also keeps what each impression's features were
//! when it was shown until its outcomes are in ([`WaitingImpressions`]).

use std::path::Path;
use std::sync::{Arc, RwLock};

use reelrank_core::{Event, EventContext, Item, Timestamp, User};
use reelrank_features::{
    item_age_bucket, item_bags, item_id_key, Bag, FeatureState, ImpressionJoiner, PersistError,
    RankingFeatures, RequestFeatures,
};
use reelrank_models::{Candidate as Scored, ValueWeights, Values, WideDeep};
use rustc_hash::FxHashMap;

use crate::catalog::{Catalog, ItemIndex};
use crate::online_ranking::{ShownOutcome, WaitingConfig, WaitingImpressions, WaitingStatus};

/// A trained ranking model with its features' state.
pub struct Ranker {
    model: WideDeep,
    features: RankingFeatures,
    weights: ValueWeights,
    /// The counters and histories the features read, as of the events observed so far; shared
    /// with the rankers of the same model as learned online ([`Ranker::with_model`]).
    live: Arc<RwLock<LiveState>>,
    /// Recently ranked items' bags and first-layer shares.
    sides: RwLock<FxHashMap<ItemIndex, Arc<ItemSide>>>,
}

impl Ranker {
    /// The ranker of `model` (trained with `features`), valuing actions by `weights`, with its
    /// counters and histories replayed from `events` (in log order).
    pub fn new(
        model: WideDeep,
        features: RankingFeatures,
        weights: ValueWeights,
        catalog: &Catalog,
        events: &[Event],
    ) -> Ranker {
        let live = LiveState {
            state: FeatureState::new(features.prior.clone()),
            joiner: ImpressionJoiner::new(OUTCOME_WINDOW_MS),
            waiting: None,
        };
        let live = Arc::new(RwLock::new(live));
        let ranker = Ranker { model, features, weights, live, sides: RwLock::default() };
        ranker.observe(catalog, events);
        ranker
    }

    /// Counts `events` (the log's next ones, in order) into the counters and histories, so the
    /// next request's features see them. Events without their log positions are never learned
    /// from online; see [`Ranker::follow`].
    pub fn observe<'a>(&self, catalog: &Catalog, events: impl IntoIterator<Item = &'a Event>) {
        self.apply(catalog, events.into_iter().map(|event| (None, event)));
    }

    /// [`Ranker::observe`] for events with their log sequence numbers: once
    /// [`Ranker::await_outcomes`] was called, the impressions they open after its `after_seq`
    /// wait for their outcomes, to be learned from.
    pub fn follow<'a>(&self, catalog: &Catalog, events: impl IntoIterator<Item = (i64, &'a Event)>) {
        self.apply(catalog, events.into_iter().map(|(seq, event)| (Some(seq), event)));
    }

    fn apply<'a>(&self, catalog: &Catalog, events: impl Iterator<Item = (Option<i64>, &'a Event)>) {
        let mut live = self.live.write().expect("ranking state");
        let LiveState { state, joiner, waiting } = &mut *live;
        let mut latest = None;
        for (seq, event) in events {
            let duration = catalog.index(&event.item_id).and_then(|i| catalog.item(i).duration_s);
            let label = |outcome: &mut _| self.features.watch.label(outcome, duration);
            // Only the impressions a learner waits for keep their ids and context.
            let waited = match (waiting.as_ref(), seq) {
                (Some(waiting), Some(seq)) => waiting.waits_for(seq),
                _ => false,
            };
            if let Some(joined) = joiner.push(event, waited, label) {
                if let (Some(waiting), Some(seq), true) = (waiting.as_mut(), seq, joined.opened) {
                    waiting.shown(seq, joined.id, || state.moment(&event.user_id, &event.item_id, event.ts));
                }
                state.update(&joined, event.ts);
            }
            latest = Some(event.ts);
        }
        if let Some(now) = latest {
            if let Some(waiting) = waiting {
                waiting.close_before(now.millis(), joiner);
            }
            joiner.close_before(now.millis());
        }
    }

    /// This ranker keeping served impressions open to their outcomes for `window_ms` by the log's
    /// clock ([`OUTCOME_WINDOW_MS`] unless told): the counters join an outcome to its impression
    /// within the window, and every impression shown in the window is held meanwhile.
    pub fn with_outcome_window(self, window_ms: i64) -> Ranker {
        self.live.write().expect("ranking state").joiner.set_window(window_ms);
        self
    }

    /// From now on, keeps the features of the impressions opened by events after `after_seq` until
    /// their outcomes are in (see [`WaitingImpressions`]); [`Ranker::take_outcomes`] hands them on.
    /// The wait is at most the join's window.
    pub fn await_outcomes(&self, config: WaitingConfig, after_seq: i64) {
        let mut live = self.live.write().expect("ranking state");
        let config = WaitingConfig { wait_ms: config.wait_ms.min(live.joiner.window_ms()), ..config };
        live.waiting = Some(WaitingImpressions::new(config, after_seq));
    }

    /// The impressions whose outcomes are in since the last call, in the order they were shown.
    pub fn take_outcomes(&self) -> Vec<ShownOutcome> {
        let mut live = self.live.write().expect("ranking state");
        live.waiting.as_mut().map(WaitingImpressions::take).unwrap_or_default()
    }

    /// How many impressions wait for their outcomes, and how many were not kept.
    pub fn waiting(&self) -> Option<WaitingStatus> {
        self.live.read().expect("ranking state").waiting.as_ref().map(WaitingImpressions::status)
    }

    /// This ranker with `model` (the same model having learned online): the counters, histories
    /// and waiting impressions are shared, the item cache starts empty.
    pub fn with_model(&self, model: WideDeep) -> Ranker {
        Ranker {
            model,
            features: self.features.clone(),
            weights: self.weights.clone(),
            live: self.live.clone(),
            sides: RwLock::default(),
        }
    }

    /// The model.
    pub fn model(&self) -> &WideDeep {
        &self.model
    }

    /// What turns the state into the model's features.
    pub fn features(&self) -> &RankingFeatures {
        &self.features
    }

    /// Reads the model and `features.json` that `reelrank train ranking` saved in `dir`; see
    /// [`Ranker::new`].
    pub fn load(
        dir: &Path,
        weights: ValueWeights,
        catalog: &Catalog,
        events: &[Event],
    ) -> Result<Ranker, PersistError> {
        Ok(Ranker::new(WideDeep::load(dir)?, RankingFeatures::load(dir)?, weights, catalog, events))
    }

    /// The item's engagement rates at `now` as the features read them (not standardised: see
    /// [`FeatureState::item_engagement`]).
    pub fn item_engagement(&self, item_id: &str, now: Timestamp) -> Vec<f32> {
        self.live.read().expect("ranking state").state.item_engagement(item_id_key(item_id), now)
    }

    /// The value of showing each of `candidates` to the user at `now` in `context`, in their order.
    pub fn values(
        &self,
        catalog: &Catalog,
        user_id: &str,
        user: Option<&User>,
        context: Option<&EventContext>,
        now: Timestamp,
        candidates: &[ItemIndex],
    ) -> Values<'_> {
        // The state is read under its lock; the model runs after it is released. The candidates'
        // wide keys go one after another into one buffer.
        let (request_part, features, wide_keys) = {
            let live = self.live.read().expect("ranking state");
            let mut request =
                RequestFeatures::new(&self.features.user_schema, &live.state, user_id, user, context, now);
            self.features.standardise(&mut request.dense, 0);
            let wide = request.wide(&self.model.schema().wide);
            let mut wide_keys = Vec::new();
            let features: Vec<_> = candidates
                .iter()
                .map(|&i| {
                    let item = catalog.item(i);
                    let key = catalog.key(i);
                    let side = self.item_side(i, key, item, now);
                    let start = wide_keys.len();
                    wide.keys_into(&side.slots, &mut wide_keys);
                    let mut dense = live.state.item_engagement(key, now);
                    self.features.standardise(&mut dense, request.dense.len());
                    (side, dense, start..wide_keys.len())
                })
                .collect();
            (self.model.request_part(&request.slots, &request.dense), features, wide_keys)
        };
        let scored: Vec<Scored<'_>> = features
            .iter()
            .map(|(side, dense, wide)| Scored { part: &side.part, dense, wide: &wide_keys[wide.clone()] })
            .collect();
        let probabilities = self.model.score_candidates(&request_part, &scored);
        self.weights.values(self.model.heads(), probabilities)
    }

    /// Forgets the users and items whose counters have been idle for `idle_ms` (see
    /// [`FeatureState::forget_idle`]); returns how many users and items went.
    pub fn forget_idle(&self, now: Timestamp, idle_ms: i64) -> (usize, usize) {
        self.live.write().expect("ranking state").state.forget_idle(now, idle_ms)
    }

    /// Drops what is cached of the items at `indices` (they changed in the catalog).
    pub fn forget(&self, indices: &[ItemIndex]) {
        let mut sides = self.sides.write().expect("item cache");
        for index in indices {
            sides.remove(index);
        }
    }

    /// The item's bags and its share of the first layer, from the cache while they are unchanged
    /// (they change only when its age bucket moves on).
    fn item_side(&self, index: ItemIndex, key: u64, item: &Item, now: Timestamp) -> Arc<ItemSide> {
        let stamp = (key, item_age_bucket(item, now));
        if let Some(side) = self.sides.read().expect("item cache").get(&index) {
            if side.stamp == stamp {
                return side.clone();
            }
        }
        let slots = item_bags(item, now);
        let side = Arc::new(ItemSide { stamp, part: self.model.candidate_part(&slots), slots });
        let mut sides = self.sides.write().expect("item cache");
        if sides.len() >= ITEM_CACHE_ITEMS {
            sides.clear();
        }
        sides.insert(index, side.clone());
        side
    }
}

/// The features' state, the join that feeds it and the impressions waiting for their outcomes.
struct LiveState {
    state: FeatureState,
    joiner: ImpressionJoiner,
    waiting: Option<WaitingImpressions>,
}

/// How long an impression stays open to its outcomes unless told
/// ([`Ranker::with_outcome_window`]): a later outcome counts as a new showing.
pub const OUTCOME_WINDOW_MS: i64 = 3_600_000;

/// What [`Ranker`] keeps of a recently ranked item: its bags and its [`WideDeep::candidate_part`],
/// stamped with the item's key and age bucket they were computed for.
struct ItemSide {
    stamp: (u64, Option<i64>),
    slots: Vec<Bag>,
    part: Vec<f32>,
}

/// Items [`Ranker`] keeps (about 1.5 KB each); the cache starts over when full.
const ITEM_CACHE_ITEMS: usize = 200_000;
