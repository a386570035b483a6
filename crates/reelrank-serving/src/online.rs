//! The two-tower model learning while it serves. Every positive the log brings becomes an
//! example, with the user's latest positives as they were just before it (what the user tower
//! read when the item was served); examples are learned in batches against each other and items
//! drawn uniformly from the catalog, on a private copy of the model, with the logQ correction
//! estimated from the stream itself. [`TowerLearner::publish`] hands serving a copy of the model
//! as learned so far, with fresh vectors for the items whose rows moved; the graph is shared.
//!
//! Only the embedding rows a batch touches move; the dense layers stay as trained, so that the
//! indexed item vectors stay comparable with the user vectors (see [`TwoTower::learn`]). A
//! user's taste and a new item's id embedding follow their first interactions within a
//! publication interval, and rows idle for long are evicted, so the table holds what was active
//! lately.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use reelrank_core::{Event, Timestamp, User};
use reelrank_features::{context_bag, item_bags, Bag, PositiveRule, UserSchema};
use reelrank_models::{FrequencyEstimator, TowerExample, TwoTower};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::activity::UserActivity;
use crate::catalog::{Catalog, ItemIndex};
use crate::retrieval::Retrieval;

/// A positive from the log, as the online learner takes it.
#[derive(Debug, Clone)]
pub struct OnlinePositive {
    user_id: String,
    context: Vec<(u64, f32)>,
    /// Item keys of the user's latest positives before this one, most recent last.
    history: Vec<u64>,
    item: ItemIndex,
}

impl OnlinePositive {
    /// `event` (the log's next) as an example if `rule` makes it a positive; `before` gives the
    /// user's activity before it (read before the activity records the event), and is asked only
    /// for positives: the tail calls this for every event.
    pub fn from_event<'a>(
        rule: &PositiveRule,
        catalog: &Catalog,
        before: impl FnOnce() -> &'a UserActivity,
        event: &Event,
    ) -> Option<OnlinePositive> {
        let item = catalog.index(&event.item_id)?;
        if !rule.is_positive(event, catalog.item(item).duration_s) {
            return None;
        }
        let before = before();
        Some(OnlinePositive {
            user_id: event.user_id.clone(),
            context: event.context.as_ref().map(context_bag).unwrap_or_default(),
            history: before.positives.iter().map(|&(i, _)| catalog.key(i)).collect(),
            item,
        })
    }

    /// Who it is from.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
}

/// The two-tower model learning from the log while serving (see the module documentation): its
/// own copy, apart from the one serving reads.
pub struct TowerLearner {
    model: TwoTower,
    /// How often each catalog position occurs among the positives, by batch.
    frequency: FrequencyEstimator,
    /// Items whose rows moved since the last publication.
    touched: FxHashSet<ItemIndex>,
    rng: Pcg64Mcg,
    /// Examples learned so far.
    learned: u64,
    idle: IdleRows,
}

/// When an online learner evicts its idle embedding rows: those idle for `idle_ms` by the log's
/// clock (rows are stamped with the time of the examples that touch them, so a replayed or
/// simulated log ages as it was lived), looked for once a minute of wall-clock time (a scan of
/// the whole table).
#[derive(Debug, Clone)]
pub(crate) struct IdleRows {
    /// Rows idle this long are evicted (`None`: kept forever).
    idle_ms: Option<i64>,
    /// When rows were last looked for.
    evicted_at: Instant,
}

/// How often idle rows are looked for.
const EVICTION_INTERVAL: Duration = Duration::from_secs(60);

impl IdleRows {
    /// Evicting rows idle for `idle_ms`, from now on.
    pub(crate) fn new(idle_ms: Option<i64>) -> IdleRows {
        IdleRows { idle_ms, evicted_at: Instant::now() }
    }

    /// The idle time to evict by when an eviction is due (which then counts as done).
    pub(crate) fn due(&mut self) -> Option<i64> {
        let idle_ms = self.idle_ms.filter(|_| self.evicted_at.elapsed() >= EVICTION_INTERVAL)?;
        self.evicted_at = Instant::now();
        Some(idle_ms)
    }
}

/// Weight of the newest gap in the frequency estimate (as in training).
const FREQUENCY_DECAY: f32 = 0.05;

impl TowerLearner {
    /// A learner starting from the served model at `now` (the log's clock), evicting embedding
    /// rows idle for `idle_ms` (the idle clock starts at `now`).
    pub fn new(serving: &Retrieval, catalog: &Catalog, idle_ms: Option<i64>, now: Timestamp) -> TowerLearner {
        let mut model = serving.model.clone();
        if idle_ms.is_some() {
            model.start_idle_clock(now.millis());
        }
        TowerLearner {
            model,
            frequency: FrequencyEstimator::new(catalog.len(), FREQUENCY_DECAY),
            touched: FxHashSet::default(),
            rng: Pcg64Mcg::seed_from_u64(serving.model.config().seed),
            learned: 0,
            idle: IdleRows::new(idle_ms),
        }
    }

    /// Examples learned so far.
    pub fn learned(&self) -> u64 {
        self.learned
    }

    /// The model as learned so far.
    pub fn model(&self) -> &TwoTower {
        &self.model
    }

    /// Whether anything was learned since the last publication.
    pub fn has_learned_since_publishing(&self) -> bool {
        !self.touched.is_empty()
    }

    /// Learns `positives` (in log order, up to `now` by the log's clock) in batches of
    /// `batch_size`; `users` holds the records of their users that exist, `schema` turns them into
    /// slots. Returns the mean loss (`None` for no positives).
    pub fn learn(
        &mut self,
        positives: &[OnlinePositive],
        catalog: &Catalog,
        users: &HashMap<String, User>,
        (schema, batch_size): (&UserSchema, usize),
        now: Timestamp,
    ) -> Option<f32> {
        // Items dropped from the catalog since the positives were queued are not learned.
        let held: Vec<&OnlinePositive> = positives.iter().filter(|p| !catalog.is_dropped(p.item)).collect();
        if held.is_empty() {
            return None;
        }
        self.frequency.grow(catalog.len());
        let (mut loss, mut batches) = (0.0, 0);
        let uniform = self.model.config().uniform_negatives;
        for batch in held.chunks(batch_size.max(1)) {
            let items: Vec<u32> = batch.iter().map(|e| e.item).collect();
            self.frequency.observe_batch(&items);
            let slots: Vec<Vec<Bag>> = batch
                .iter()
                .map(|e| match users.get(&e.user_id) {
                    Some(user) => schema.bags(user),
                    None => schema.anonymous_bags(&e.user_id),
                })
                .collect();
            let negatives: Vec<ItemIndex> = match catalog.len() {
                0 => Vec::new(),
                n => (0..uniform)
                    .map(|_| self.rng.random_range(0..n as ItemIndex))
                    .filter(|&i| !catalog.is_dropped(i))
                    .collect(),
            };
            let bags: FxHashMap<ItemIndex, Vec<Bag>> =
                items.iter().chain(&negatives).map(|&i| (i, item_bags(catalog.item(i), now))).collect();
            let examples: Vec<TowerExample<'_>> = batch
                .iter()
                .zip(&slots)
                .map(|(e, slots)| TowerExample {
                    user_slots: slots,
                    context: &e.context,
                    history: &e.history,
                    item_key: catalog.key(e.item),
                    item: &bags[&e.item],
                })
                .collect();
            let negative_bags: Vec<(u64, &[Bag])> =
                negatives.iter().map(|&i| (catalog.key(i), bags[&i].as_slice())).collect();
            let positions: FxHashMap<u64, ItemIndex> = bags.keys().map(|&i| (catalog.key(i), i)).collect();
            let frequency = &self.frequency;
            let log_q = |k: u64| {
                positions.get(&k).map_or(0.0, |&i| frequency.log_probability_with_uniform(i, uniform))
            };
            loss += self.model.learn(&examples, &negative_bags, log_q, now.millis(), false);
            batches += 1;
            self.touched.extend(items);
            self.learned += batch.len() as u64;
        }
        if let Some(idle_ms) = self.idle.due() {
            self.model.evict_idle(now.millis(), idle_ms);
        }
        Some(loss / batches as f32)
    }

    /// A retrieval serving the model as learned so far: `serving`'s graph and fresh vectors, and
    /// fresh vectors for the items learned since the last publication.
    pub fn publish(
        &mut self,
        serving: &Retrieval,
        catalog: &Catalog,
    ) -> reelrank_ann::Result<Arc<Retrieval>> {
        let touched: Vec<&reelrank_core::Item> =
            self.touched.drain().filter(|&i| !catalog.is_dropped(i)).map(|i| catalog.item(i)).collect();
        Ok(Arc::new(serving.with_model(self.model.clone(), &touched, Timestamp::now())?))
    }
}

/// Watches the learner's progressive loss (each batch's, computed before it is learned) and says
/// when the model has gone bad: once a baseline is taken over the first batches, a moving
/// average of the loss above `ratio` times the baseline. A drifting audience raises the loss
/// slowly; a broken stream (a bot, a bug upstream) raises it fast, and that is what a rollback is
/// for.
#[derive(Debug, Clone)]
pub struct LossGuard {
    ratio: f32,
    warmup: Vec<f32>,
    baseline: Option<f32>,
    recent: f32,
}

/// Learning steps averaged into the baseline.
const GUARD_WARMUP: usize = 10;

/// Weight of the newest step in the moving average.
const GUARD_DECAY: f32 = 0.2;

impl LossGuard {
    /// A guard that trips above `ratio` times the baseline.
    pub fn new(ratio: f32) -> LossGuard {
        LossGuard { ratio, warmup: Vec::with_capacity(GUARD_WARMUP), baseline: None, recent: 0.0 }
    }

    /// Records a step's loss; returns whether the model has gone bad.
    pub fn record(&mut self, loss: f32) -> bool {
        match self.baseline {
            None => {
                self.warmup.push(loss);
                if self.warmup.len() == GUARD_WARMUP {
                    let mean = self.warmup.iter().sum::<f32>() / GUARD_WARMUP as f32;
                    (self.baseline, self.recent) = (Some(mean), mean);
                }
                false
            }
            Some(baseline) => {
                self.recent = (1.0 - GUARD_DECAY) * self.recent + GUARD_DECAY * loss;
                self.recent > self.ratio * baseline
            }
        }
    }

    /// Whether the model is healthy (or the baseline is still being taken).
    pub fn healthy(&self) -> bool {
        self.baseline.is_none_or(|baseline| self.recent <= self.ratio * baseline)
    }

    /// The baseline and the moving average, once there is a baseline.
    pub fn levels(&self) -> Option<(f32, f32)> {
        self.baseline.map(|baseline| (baseline, self.recent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_trips_on_a_sustained_rise_and_not_on_noise() {
        let mut guard = LossGuard::new(1.5);
        for step in 0..GUARD_WARMUP {
            assert!(!guard.record(if step % 2 == 0 { 5.0 } else { 6.0 }));
        }
        assert_eq!(guard.levels(), Some((5.5, 5.5)));
        // A single bad batch is absorbed...
        assert!(!guard.record(12.0));
        for _ in 0..20 {
            assert!(!guard.record(5.5));
        }
        assert!(guard.healthy());
        // ...a sustained rise is not.
        let tripped = (0..20).position(|_| guard.record(10.0));
        assert!(tripped.is_some_and(|at| at > 0), "{tripped:?}");
        assert!(!guard.healthy());
    }
}
