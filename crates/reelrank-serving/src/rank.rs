//! Ranking stage: the Wide&Deep model's head probabilities for every candidate, turned into the
//! value `Σ P(action) × weight`. The request's share of the first layer is computed once per
//! request and each item's share is cached across requests; the features come from [`reelrank_features::RequestFeatures`], the code training
//! used.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use reelrank_core::{Event, EventContext, Timestamp, User};
use reelrank_features::{
    join_impressions, splitmix64, Bag, FeatureState, PersistError, RankingFeatures, RequestFeatures,
};
use reelrank_models::{Candidate as Scored, Value, ValueWeights, WideDeep};

use crate::catalog::{Catalog, ItemIndex};

/// A trained ranking model with its features' state.
pub struct Ranker {
    model: WideDeep,
    features: RankingFeatures,
    weights: ValueWeights,
    state: FeatureState,
    /// Each recently ranked item's [`WideDeep::candidate_part`], with a hash of the slots it was
    /// computed from.
    parts: RwLock<HashMap<ItemIndex, StampedPart>>,
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
        let mut state = FeatureState::new(features.prior.clone());
        for mut impression in join_impressions(events) {
            let duration = catalog.index(&impression.item_id).and_then(|i| catalog.item(i).duration_s);
            features.watch.label(&mut impression, duration);
            state.record(&impression);
        }
        Ranker { model, features, weights, state, parts: RwLock::default() }
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

    /// The value of showing each of `candidates` to the user at `now` in `context`, in their order.
    pub fn values(
        &self,
        catalog: &Catalog,
        user_id: &str,
        user: Option<&User>,
        context: Option<&EventContext>,
        now: Timestamp,
        candidates: &[ItemIndex],
    ) -> Vec<Value> {
        let mut request =
            RequestFeatures::new(&self.features.user_schema, &self.state, user_id, user, context, now);
        self.features.standardise(&mut request.dense, 0);
        let request_part = self.model.request_part(&request.slots, &request.dense);
        let features: Vec<_> = candidates
            .iter()
            .map(|&i| {
                let mut candidate =
                    request.candidate(&self.model.schema().wide, &self.state, catalog.item(i));
                self.features.standardise(&mut candidate.dense, request.dense.len());
                let part = self.candidate_part(i, &candidate.slots);
                (candidate, part)
            })
            .collect();
        let scored: Vec<Scored<'_>> = features
            .iter()
            .map(|(candidate, part)| Scored {
                part: &part[..],
                dense: &candidate.dense,
                wide: &candidate.wide,
            })
            .collect();
        let heads = self.model.heads();
        let probabilities = self.model.score_candidates(&request_part, &scored);
        probabilities.chunks_exact(heads.len().max(1)).map(|p| self.weights.value(heads, p)).collect()
    }

    /// The item's share of the first layer, from the cache while its slots are unchanged (they
    /// change only when its age bucket moves on).
    fn candidate_part(&self, index: ItemIndex, slots: &[Bag]) -> Arc<[f32]> {
        let stamp = slots.iter().flatten().fold(0u64, |h, &(key, _)| splitmix64(h ^ key));
        if let Some((cached, part)) = self.parts.read().expect("part cache").get(&index) {
            if *cached == stamp {
                return part.clone();
            }
        }
        let part: Arc<[f32]> = self.model.candidate_part(slots).into();
        let mut parts = self.parts.write().expect("part cache");
        if parts.len() >= PART_CACHE_ITEMS {
            parts.clear();
        }
        parts.insert(index, (stamp, part.clone()));
        part
    }
}

/// An item's first-layer share and a hash of the slots it was computed from.
type StampedPart = (u64, Arc<[f32]>);

/// Items whose first-layer share [`Ranker`] keeps (about 1 KB each); the cache starts over when
/// full.
const PART_CACHE_ITEMS: usize = 200_000;
