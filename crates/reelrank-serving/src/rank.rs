//! Ranking stage: the Wide&Deep model's head probabilities for every candidate, turned into the
//! value `Σ P(action) × weight`. The request's share of the first layer is computed once per
//! request; the features come from [`reelrank_features::RequestFeatures`], the code training
//! used.

use std::path::Path;

use reelrank_core::{Event, EventContext, Timestamp, User};
use reelrank_features::{join_impressions, FeatureState, PersistError, RankingFeatures, RequestFeatures};
use reelrank_models::{Candidate as Scored, Value, ValueWeights, WideDeep};

use crate::catalog::{Catalog, ItemIndex};

/// A trained ranking model with its features' state.
pub struct Ranker {
    model: WideDeep,
    features: RankingFeatures,
    weights: ValueWeights,
    state: FeatureState,
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
        Ranker { model, features, weights, state }
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
                let part = self.model.candidate_part(&candidate.slots);
                (candidate, part)
            })
            .collect();
        let scored: Vec<Scored<'_>> = features
            .iter()
            .map(|(candidate, part)| Scored { part, dense: &candidate.dense, wide: &candidate.wide })
            .collect();
        let heads = self.model.heads();
        let probabilities = self.model.score_candidates(&request_part, &scored);
        probabilities.chunks_exact(heads.len().max(1)).map(|p| self.weights.value(heads, p)).collect()
    }
}
