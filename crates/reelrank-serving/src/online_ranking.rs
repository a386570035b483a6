//! The Wide&Deep model learning while it serves. An impression becomes an example only once its
//! outcomes are in, but its features must be those it was shown with: when the log opens an
//! impression, the ranker keeps what the counters and history said of it then (a [`Moment`]),
//! and after a wait (`wait_ms` by the log's clock; outcomes joined by request id meanwhile) hands
//! it on with its labels. [`RankingLearner`] learns those on a private copy of the model: the
//! embedding rows and wide weights at every step, the MLP's accumulated gradients when the engine
//! says so (at each publication, a lower rate), and [`RankingLearner::publish`] hands serving a
//! ranker of the model as learned so far, sharing the live state.
//!
//! The waiting impressions are bounded ([`WaitingConfig::capacity`]): past it, new impressions
//! are not kept (and counted), so a feed rate beyond what the learner can take is sampled by
//! time rather than queued without end.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use reelrank_core::{Timestamp, User};
use reelrank_features::{Impression, ImpressionJoiner, Moment, RequestFeatures};
use reelrank_models::{RankingExample, WideDeep};
use serde::Serialize;

use crate::catalog::Catalog;
use crate::online::IdleRows;
use crate::rank::Ranker;

/// How long impressions wait for their outcomes, and how many may.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitingConfig {
    /// Time after an impression (by the log's clock) when its outcomes are taken as complete.
    pub wait_ms: i64,
    /// Most impressions waiting or ready at once.
    pub capacity: usize,
}

/// An impression whose outcomes are in, with the state it was shown in.
#[derive(Debug, Clone)]
pub struct ShownOutcome {
    /// The log sequence number of the event that opened it.
    pub seq: i64,
    /// The impression with its outcomes (labelled).
    pub impression: Impression,
    /// The counters and history as it was shown.
    pub moment: Moment,
}

/// How many impressions wait, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WaitingStatus {
    /// Impressions waiting for their outcomes or for the learner.
    pub waiting: usize,
    /// Impressions not kept because the capacity was reached.
    pub skipped: u64,
}

/// The impressions shown after a log position, waiting for their outcomes (see the module
/// documentation).
#[derive(Debug, Clone)]
pub struct WaitingImpressions {
    config: WaitingConfig,
    after_seq: i64,
    /// In the order they were opened: (the joiner's id, the opening event's seq, the moment).
    queue: VecDeque<(u64, i64, Moment)>,
    ready: Vec<ShownOutcome>,
    skipped: u64,
}

impl WaitingImpressions {
    /// Keeps the impressions opened by events after `after_seq`.
    pub fn new(config: WaitingConfig, after_seq: i64) -> WaitingImpressions {
        WaitingImpressions { config, after_seq, queue: VecDeque::new(), ready: Vec::new(), skipped: 0 }
    }

    /// Whether an impression opened by the event at `seq` is to wait: the joiner keeps the ids
    /// and context of those only.
    pub fn waits_for(&self, seq: i64) -> bool {
        seq > self.after_seq
    }

    /// Keeps the impression numbered `id` by the joiner, opened by the event at `seq`, with its
    /// `moment` (asked only when it is kept).
    pub fn shown(&mut self, seq: i64, id: u64, moment: impl FnOnce() -> Moment) {
        if !self.waits_for(seq) {
            return;
        }
        if self.queue.len() + self.ready.len() >= self.config.capacity {
            self.skipped += 1;
            return;
        }
        self.queue.push_back((id, seq, moment()));
    }

    /// Moves the impressions shown before `now_ms - wait_ms` to the ready ones, with their
    /// outcomes as `joiner` has them (one the joiner closed already is dropped).
    pub fn close_before(&mut self, now_ms: i64, joiner: &ImpressionJoiner) {
        let cutoff = now_ms.saturating_sub(self.config.wait_ms);
        while let Some((_, _, moment)) = self.queue.front() {
            if moment.now.millis() >= cutoff {
                break;
            }
            let (id, seq, moment) = self.queue.pop_front().expect("looked at above");
            if let Some(impression) = joiner.get(id) {
                self.ready.push(ShownOutcome { seq, impression, moment });
            }
        }
    }

    /// The ready impressions, in the order they were shown.
    pub fn take(&mut self) -> Vec<ShownOutcome> {
        std::mem::take(&mut self.ready)
    }

    /// How many wait, and how many were skipped.
    pub fn status(&self) -> WaitingStatus {
        WaitingStatus { waiting: self.queue.len() + self.ready.len(), skipped: self.skipped }
    }
}

/// The Wide&Deep model learning from the log while serving (see the module documentation): its
/// own copy, apart from the one serving reads.
pub struct RankingLearner {
    model: WideDeep,
    /// Whether anything was learned since the last publication.
    unpublished: bool,
    idle: IdleRows,
}

impl RankingLearner {
    /// A learner starting from the served model at `now` (the log's clock), evicting embedding
    /// rows idle for `idle_ms` (the idle clock starts at `now`).
    pub fn new(serving: &Ranker, idle_ms: Option<i64>, now: Timestamp) -> RankingLearner {
        let mut model = serving.model().clone();
        let idle = IdleRows::new(idle_ms);
        if idle_ms.is_some() {
            model.start_idle_clock(now.millis());
        }
        RankingLearner { model, unpublished: false, idle }
    }

    /// The model as learned so far.
    pub fn model(&self) -> &WideDeep {
        &self.model
    }

    /// Whether anything was learned since the last publication.
    pub fn has_learned_since_publishing(&self) -> bool {
        self.unpublished
    }

    /// Learns `outcomes` (in the order they were shown, up to `now` by the log's clock) in
    /// batches of `batch_size`, with the features `serving` computes; `users` holds the records of
    /// their users that exist. The MLP's gradients are applied after the last batch when `dense`
    /// is set. Impressions of items the catalog no longer holds are skipped. Returns the mean
    /// loss (`None` for no examples).
    pub fn learn(
        &mut self,
        outcomes: &[ShownOutcome],
        (serving, catalog): (&Ranker, &Catalog),
        users: &HashMap<String, User>,
        (batch_size, dense): (usize, bool),
        now: Timestamp,
    ) -> Option<f32> {
        let features = serving.features();
        let wide = &self.model.schema().wide;
        let examples: Vec<RankingExample> = outcomes
            .iter()
            .filter_map(|outcome| {
                let Impression { user_id, item_id, context, .. } = &outcome.impression;
                let item = catalog.item(catalog.index(item_id)?);
                let user = users.get(user_id);
                let request = RequestFeatures::at(
                    &features.user_schema,
                    user_id,
                    user,
                    context.as_ref(),
                    &outcome.moment,
                );
                let candidate = request.candidate_at(wide, item, &outcome.moment);
                let mut example = RankingExample::new(request, candidate, outcome.impression.labels());
                features.standardise(&mut example.dense, 0);
                Some(example)
            })
            .collect();
        if examples.is_empty() {
            return None;
        }
        let now = now.millis();
        let batches: Vec<&[RankingExample]> = examples.chunks(batch_size.max(1)).collect();
        let mut loss = 0.0;
        for (n, batch) in batches.iter().enumerate() {
            let batch: Vec<&RankingExample> = batch.iter().collect();
            loss += self.model.learn(&batch, now, dense && n + 1 == batches.len());
        }
        self.unpublished = true;
        if let Some(idle_ms) = self.idle.due() {
            self.model.evict_idle(now, idle_ms);
        }
        Some(loss / batches.len() as f32)
    }

    /// A ranker serving the model as learned so far, sharing `serving`'s state.
    pub fn publish(&mut self, serving: &Ranker) -> Arc<Ranker> {
        self.unpublished = false;
        Arc::new(serving.with_model(self.model.clone()))
    }
}

#[cfg(test)]
mod tests {
    use reelrank_core::{Event, EventKind};
    use reelrank_features::ACTIONS;

    use super::*;

    fn moment(ms: i64) -> Moment {
        Moment { now: Timestamp(ms), history: vec![7], user: vec![0.5], item: vec![0.25] }
    }

    /// An impression waits out `wait_ms` by the log's clock, then comes out with the outcomes the
    /// joiner has for it by then and the moment it was shown in; impressions at or before
    /// `after_seq`, and those past the capacity, are not kept.
    #[test]
    fn impressions_wait_for_their_outcomes_within_a_capacity() {
        let mut joiner = ImpressionJoiner::new(3_600_000);
        let mut waiting = WaitingImpressions::new(WaitingConfig { wait_ms: 1_000, capacity: 2 }, 10);
        let event = |item: &str, kind, ms| Event {
            request_id: Some(format!("r-{item}")),
            ..Event::new("u", item, kind, Timestamp(ms))
        };
        for (seq, item) in [(9, "old"), (11, "a"), (12, "b"), (13, "c")] {
            let shown = event(item, EventKind::Impression, 0);
            let joined = joiner.push(&shown, waiting.waits_for(seq), |_| {}).unwrap();
            waiting.shown(seq, joined.id, || moment(0));
        }
        assert_eq!(waiting.status(), WaitingStatus { waiting: 2, skipped: 1 });
        joiner.push(&event("a", EventKind::Like, 500), false, |_| {});
        waiting.close_before(900, &joiner);
        assert!(waiting.take().is_empty(), "the wait is not over");
        waiting.close_before(1_001, &joiner);
        let ready = waiting.take();
        assert_eq!(
            ready.iter().map(|o| (o.seq, o.impression.item_id.as_str())).collect::<Vec<_>>(),
            [(11, "a"), (12, "b")]
        );
        let like = ACTIONS.iter().position(|&a| a == "like").unwrap();
        assert!(ready[0].impression.did(like) && !ready[1].impression.did(like));
        assert_eq!(ready[0].moment, moment(0));
        assert_eq!(waiting.status(), WaitingStatus { waiting: 0, skipped: 1 });
    }
}
