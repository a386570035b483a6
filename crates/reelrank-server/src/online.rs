//! The engine's online learning. Both models learn from the log while serving:
//!
//! - the two-tower model from the positives the tail queues, each with the user's history as it
//!   was before it ([`TowerLearner`]);
//! - the Wide&Deep model from the impressions whose outcomes are in, each with the features it
//!   was shown with ([`RankingLearner`]; the ranker keeps them waiting).
//!
//! A background task learns every second on its own copies of the models, publishes them to the
//! feeds every `publish_secs` (one swap for both) and snapshots each every `snapshot_secs`, with
//! the last event it covers, so that a restart replays exactly the events after it. Learning can
//! be paused; a model whose loss rises past a guard ([`LossGuard`]) is rolled back to its newest
//! snapshot. Experiment variants' own ranking models do not learn online.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reelrank_core::{Item, Timestamp, User};
use reelrank_features::{MemoryUse, PersistError};
use reelrank_models::{TwoTower, WideDeep};
use reelrank_serving::online_snapshot::{self, SnapshotMeta};
use reelrank_serving::{
    Catalog, LossGuard, OnlinePositive, Ranker, RankingLearner, Retrieval, ShownOutcome, TowerLearner,
    WaitingConfig, WaitingStatus,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::engine::{Engine, Resumed};

/// The `[serving.online]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnlineConfig {
    /// Whether the models learn from the log while serving.
    pub enabled: bool,
    /// Most examples per learning step.
    pub batch_size: usize,
    /// How often the models as learned so far are handed to the feeds, in seconds; the ranking
    /// model's MLP steps at this rate too (its rows and wide weights at every step).
    pub publish_secs: u64,
    /// How often the models as learned so far are saved, in seconds.
    pub snapshot_secs: u64,
    /// A learner's moving-average loss, over its first steps' average, past which its model is
    /// rolled back to the newest snapshot.
    pub rollback_loss_ratio: f32,
    /// Embedding rows (users, items, tags...) not touched for this many days are evicted, which
    /// bounds the tables by what was active lately; 0 keeps them forever.
    pub row_expiry_days: f64,
    /// How long after an impression (by the log's clock) its outcomes are taken as complete and
    /// the ranking model learns from it, in seconds.
    pub outcome_wait_secs: u64,
    /// Most impressions waiting for their outcomes; past it, new ones are not learned from.
    pub max_waiting_impressions: usize,
}

impl OnlineConfig {
    /// The rows' idle time before eviction, when they expire.
    fn idle_ms(&self) -> Option<i64> {
        (self.row_expiry_days > 0.0).then_some((self.row_expiry_days * 86_400_000.0) as i64)
    }

    /// How the ranker keeps impressions waiting for their outcomes.
    pub(crate) fn waiting(&self) -> WaitingConfig {
        WaitingConfig {
            wait_ms: (self.outcome_wait_secs * 1000) as i64,
            capacity: self.max_waiting_impressions,
        }
    }
}

impl Default for OnlineConfig {
    fn default() -> OnlineConfig {
        OnlineConfig {
            enabled: true,
            batch_size: 256,
            publish_secs: 15,
            snapshot_secs: 60,
            rollback_loss_ratio: 1.5,
            row_expiry_days: 30.0,
            outcome_wait_secs: 300,
            max_waiting_impressions: 200_000,
        }
    }
}

/// The models that learn online.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnlineModel {
    TwoTower,
    Ranking,
}

impl OnlineModel {
    /// Where its snapshots are kept under the online directory.
    pub(crate) fn root(self, online_dir: &Path) -> PathBuf {
        online_dir.join(match self {
            OnlineModel::TwoTower => "two-tower",
            OnlineModel::Ranking => "ranking",
        })
    }
}

/// Positives waiting for the learner; past this many the oldest are dropped (the learner is
/// behind the log, and the newest say most about what users want now).
const MAX_QUEUED_POSITIVES: usize = 200_000;

/// One model's counters.
#[derive(Debug, Default)]
struct Counters {
    /// Examples learned since the trained model (across restarts).
    learned: AtomicU64,
    /// The last event the newest snapshot covers (0: none).
    snapshot_seq: AtomicI64,
    /// Rows of the learner's embedding table, and the bytes it holds, after its last step.
    table_rows: AtomicU64,
    table_bytes: AtomicU64,
    /// Times the model was rolled back since the server started.
    rollbacks: AtomicU64,
}

impl Counters {
    fn resume(&self, meta: Option<&SnapshotMeta>) {
        self.learned.store(meta.map_or(0, |m| m.learned), Ordering::Release);
        self.snapshot_seq.store(meta.map_or(0, |m| m.seq), Ordering::Release);
    }

    fn stepped(&self, learned: u64, table: MemoryUse) {
        self.learned.store(learned, Ordering::Release);
        self.table_rows.store(table.rows as u64, Ordering::Release);
        self.table_bytes.store(table.bytes as u64, Ordering::Release);
    }

    fn status(&self, queued: usize, dropped: u64) -> ModelStatus {
        ModelStatus {
            learned: self.learned.load(Ordering::Acquire),
            queued,
            dropped,
            snapshot_seq: self.snapshot_seq.load(Ordering::Acquire),
            table_rows: self.table_rows.load(Ordering::Acquire),
            table_bytes: self.table_bytes.load(Ordering::Acquire),
            rollbacks: self.rollbacks.load(Ordering::Acquire),
        }
    }
}

/// The online learner's queue, switches and counters.
pub(crate) struct Online {
    config: OnlineConfig,
    /// Positives from the log not learned yet, in log order.
    queue: Mutex<Vec<OnlinePositive>>,
    /// Positives dropped from a full queue.
    dropped: AtomicU64,
    paused: AtomicBool,
    /// A trainer without the trainer lease: it learns nothing until it takes it.
    standby: AtomicBool,
    /// Times learned models were published (across restarts).
    publications: AtomicU64,
    tower: Counters,
    ranking: Counters,
}

/// What `GET /v1/admin/online` reports.
#[derive(Debug, Default, Serialize)]
pub struct OnlineStatus {
    /// Whether the models learn online.
    pub enabled: bool,
    /// Whether learning is paused.
    pub paused: bool,
    /// Whether this trainer stands by, another one holding the trainer lease.
    pub standby: bool,
    /// Times learned models were handed to the feeds (the `+N` of `model_version`).
    pub publications: u64,
    /// The last event the feeds have applied.
    pub applied_seq: i64,
    /// The two-tower model.
    pub two_tower: ModelStatus,
    /// The Wide&Deep model.
    pub ranking: ModelStatus,
}

/// One model's part of [`OnlineStatus`].
#[derive(Debug, Default, Serialize)]
pub struct ModelStatus {
    /// Examples learned since the trained model.
    pub learned: u64,
    /// Examples waiting: positives queued, or impressions waiting for their outcomes.
    pub queued: usize,
    /// Examples not learned: positives dropped from a full queue, or impressions not kept.
    pub dropped: u64,
    /// The last event the newest snapshot covers.
    pub snapshot_seq: i64,
    /// Rows of the learner's embedding table after its last step.
    pub table_rows: u64,
    /// Bytes the learner's embedding table holds.
    pub table_bytes: u64,
    /// Times the model's loss rose past the guard and it was rolled back, since the server
    /// started.
    pub rollbacks: u64,
}

/// Body of `POST /v1/admin/online`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OnlineSwitch {
    pub(crate) paused: bool,
}

impl Online {
    pub(crate) fn new(config: OnlineConfig, resumed: Resumed) -> Online {
        let online = Online {
            config,
            queue: Mutex::default(),
            dropped: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            standby: AtomicBool::new(false),
            publications: AtomicU64::new(0),
            tower: Counters::default(),
            ranking: Counters::default(),
        };
        online.resume(resumed);
        online
    }

    /// Starts over from what a (re)load resumed: its counters, and its replayed positives in place
    /// of the queue (they cover the queued ones).
    pub(crate) fn resume(&self, resumed: Resumed) {
        self.tower.resume(resumed.tower.as_ref());
        self.ranking.resume(resumed.ranking.as_ref());
        let publications = [&resumed.tower, &resumed.ranking].into_iter().flatten().map(|m| m.publications);
        self.publications.store(publications.max().unwrap_or(0), Ordering::Release);
        *self.queue.lock().expect("online queue") = resumed.positives;
    }

    /// Queues the positives of newly applied events.
    pub(crate) fn enqueue(&self, positives: Vec<OnlinePositive>) {
        if positives.is_empty() {
            return;
        }
        let mut queue = self.queue.lock().expect("online queue");
        queue.extend(positives);
        let excess = queue.len().saturating_sub(MAX_QUEUED_POSITIVES);
        if excess > 0 {
            queue.drain(..excess);
            self.dropped.fetch_add(excess as u64, Ordering::AcqRel);
            tracing::warn!(
                dropped = excess,
                "the online learner is behind the log; oldest positives dropped"
            );
        }
    }

    /// Pauses or resumes learning (positives keep being queued meanwhile).
    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        tracing::info!(paused, "online learning switched");
    }

    /// Stands learning by (a trainer without the lease), or lets it go on.
    pub(crate) fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Release);
    }

    /// Whether learning stands by.
    pub(crate) fn standby(&self) -> bool {
        self.standby.load(Ordering::Acquire)
    }

    /// The status, with the ranker's waiting impressions when it has some.
    pub(crate) fn status(&self, applied_seq: i64, waiting: Option<WaitingStatus>) -> OnlineStatus {
        let waiting = waiting.unwrap_or(WaitingStatus { waiting: 0, skipped: 0 });
        let queued = self.queue.lock().expect("online queue").len();
        OnlineStatus {
            enabled: true,
            paused: self.paused.load(Ordering::Acquire),
            standby: self.standby(),
            publications: self.publications.load(Ordering::Acquire),
            applied_seq,
            two_tower: self.tower.status(queued, self.dropped.load(Ordering::Acquire)),
            ranking: self.ranking.status(waiting.waiting, waiting.skipped),
        }
    }

    fn counters(&self, model: OnlineModel) -> &Counters {
        match model {
            OnlineModel::TwoTower => &self.tower,
            OnlineModel::Ranking => &self.ranking,
        }
    }
}

impl OnlineStatus {
    /// The status of an engine that does not learn online.
    pub(crate) fn disabled(applied_seq: i64) -> OnlineStatus {
        OnlineStatus { applied_seq, ..OnlineStatus::default() }
    }
}

/// One model's learning as the task keeps it.
struct Track<L, S> {
    learner: L,
    /// What it last published or started from: serving still reads it unless a reload replaced
    /// the models.
    origin: Arc<S>,
    /// What it started from, to fall back on when no snapshot is good.
    start: Arc<S>,
    guard: LossGuard,
    /// The last event its learning covers, and whether it learned since its last snapshot.
    covered: i64,
    unsaved: bool,
    /// When its last snapshot was saved (or it started).
    saved_at: std::time::Instant,
}

impl<L, S> Track<L, S> {
    fn new(learner: L, serving: Arc<S>, config: &OnlineConfig) -> Track<L, S> {
        Track {
            learner,
            origin: serving.clone(),
            start: serving,
            guard: LossGuard::new(config.rollback_loss_ratio),
            covered: 0,
            unsaved: false,
            saved_at: std::time::Instant::now(),
        }
    }

    /// Saves a snapshot of `model` when one is due: every `snapshot_secs` of `step` while it has
    /// learned something new and is healthy. `meta` makes its record from the last event covered;
    /// `write` saves the learner's model into a directory.
    fn save_when_due(
        &mut self,
        step: &Step,
        (model, healthy): (OnlineModel, bool),
        meta: impl FnOnce(i64) -> SnapshotMeta,
        write: impl FnOnce(&L, &Path) -> Result<(), PersistError>,
    ) -> Option<Result<SnapshotMeta, PersistError>> {
        let due = healthy && self.unsaved && self.saved_at.elapsed().as_secs() >= step.snapshot_secs.max(1);
        let root = step.online_dir.as_deref().filter(|_| due)?;
        let meta = meta(self.covered);
        let saved =
            online_snapshot::save(&model.root(root), &meta, |dir| write(&self.learner, dir)).map(|_| meta);
        if saved.is_ok() {
            self.unsaved = false;
            self.saved_at = std::time::Instant::now();
        }
        Some(saved)
    }

    /// Whether serving reads what this track published or started from.
    fn follows(&self, serving: Option<&Arc<S>>) -> bool {
        serving.is_some_and(|serving| Arc::ptr_eq(&self.origin, serving))
    }

    /// Records a step's loss; returns whether the guard tripped, and whether the model is healthy.
    fn check(&mut self, loss: Option<f32>) -> (bool, bool) {
        let tripped = loss.is_some_and(|loss| self.guard.record(loss));
        (tripped, !tripped && self.guard.healthy())
    }
}

/// The learners as the task keeps them, one per model that serving has.
#[derive(Default)]
struct Learning {
    tower: Option<Track<TowerLearner, Retrieval>>,
    ranking: Option<Track<RankingLearner, Ranker>>,
}

/// What one learning step is given.
struct Step {
    positives: Vec<OnlinePositive>,
    outcomes: Vec<ShownOutcome>,
    /// The last event whose positive is among the positives (or before them).
    seq: i64,
    catalog: Arc<Catalog>,
    users: HashMap<String, User>,
    /// The log's clock.
    now: Timestamp,
    batch_size: usize,
    publish: bool,
    /// Where to save snapshots, and how often.
    online_dir: Option<PathBuf>,
    snapshot_secs: u64,
    /// The trained versions of the two-tower and the ranking model.
    base_versions: [String; 2],
    /// Examples each model learned before (two-tower, ranking).
    learned_before: [u64; 2],
    publications: u64,
}

/// What one learning step did with one model.
struct Stepped<S> {
    loss: Option<f32>,
    learned: u64,
    table: MemoryUse,
    /// The loss guard tripped: nothing was published or saved.
    tripped: bool,
    published: Option<Result<Arc<S>, String>>,
    saved: Option<Result<SnapshotMeta, PersistError>>,
}

/// Learns `step`'s examples with each model that has a track, then publishes and snapshots the
/// healthy ones when due.
fn learn_step(learning: &mut Learning, step: &Step) -> (Option<Stepped<Retrieval>>, Option<Stepped<Ranker>>) {
    let publications = step.publications + u64::from(step.publish);
    let snapshot_meta = |model: usize, seq: i64, learned: u64, fresh_items: Vec<String>| {
        SnapshotMeta::new(&step.base_versions[model], seq, learned, publications, fresh_items)
    };
    let tower = learning.tower.as_mut().map(|track| {
        let schema = &track.origin.user_schema;
        let loss = track.learner.learn(
            &step.positives,
            &step.catalog,
            &step.users,
            (schema, step.batch_size),
            step.now,
        );
        let learned = step.learned_before[0] + step.positives.len() as u64;
        let (tripped, healthy) = track.check(loss);
        let published = (healthy && step.publish && track.learner.has_learned_since_publishing())
            .then(|| track.learner.publish(&track.origin, &step.catalog).map_err(|e| e.to_string()));
        // Every positive up to `seq` was taken for this step.
        track.covered = step.seq;
        track.unsaved |= loss.is_some() || published.is_some();
        let origin = track.origin.clone();
        let meta = |covered| {
            // Every item the feeds read a fresh vector of, so that a restart rebuilds them.
            let current = match &published {
                Some(Ok(fresh)) => fresh,
                _ => &origin,
            };
            let fresh_items = current
                .fresh_keys()
                .into_iter()
                .filter_map(|key| step.catalog.index_of_key(key))
                .map(|i| step.catalog.item(i).item_id.clone())
                .collect();
            snapshot_meta(0, covered, learned, fresh_items)
        };
        let write = |learner: &TowerLearner, dir: &Path| learner.model().save(dir);
        let saved = track.save_when_due(step, (OnlineModel::TwoTower, healthy), meta, write);
        Stepped { loss, learned, table: track.learner.model().table_memory(), tripped, published, saved }
    });
    let ranking = learning.ranking.as_mut().map(|track| {
        let shape = (step.batch_size, step.publish);
        let loss =
            track.learner.learn(&step.outcomes, (&track.origin, &step.catalog), &step.users, shape, step.now);
        let learned = step.learned_before[1] + step.outcomes.len() as u64;
        let (tripped, healthy) = track.check(loss);
        let published = (healthy && step.publish && track.learner.has_learned_since_publishing())
            .then(|| Ok(track.learner.publish(&track.origin)));
        // Learned in the order they were shown: the last one's event is where a replay resumes.
        if let Some(last) = step.outcomes.last().filter(|_| loss.is_some()) {
            (track.covered, track.unsaved) = (last.seq, true);
        }
        let meta = |covered| snapshot_meta(1, covered, learned, Vec::new());
        let write = |learner: &RankingLearner, dir: &Path| learner.model().save(dir);
        let saved = track.save_when_due(step, (OnlineModel::Ranking, healthy), meta, write);
        Stepped { loss, learned, table: track.learner.model().table_memory(), tripped, published, saved }
    });
    (tower, ranking)
}

/// Starts the learning task (see the module documentation); nothing when online learning is off.
pub(crate) fn spawn_learning(engine: &Arc<Engine>) {
    if engine.online.is_none() {
        return;
    }
    let engine = engine.clone();
    tokio::spawn(async move {
        let online = engine.online.as_ref().expect("checked above");
        let config = online.config.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut learning = Learning::default();
        let mut last_publication = Instant::now();
        loop {
            tick.tick().await;
            if online.standby() {
                // What a standby would learn is replayed when it takes the lease: the outcomes
                // that came in meanwhile are dropped rather than held.
                drop(engine.snapshot().models.ranker.as_ref().map(|ranker| ranker.take_outcomes()));
                continue;
            }
            if online.paused.load(Ordering::Acquire) {
                continue;
            }
            // Taken with the tail stopped: the positives are exactly those of the events up to
            // `seq`, which is what a snapshot then covers.
            let (snapshot, positives, outcomes, seq) = {
                let _updating = engine.updating.lock().await;
                let snapshot = engine.snapshot();
                let positives = std::mem::take(&mut *online.queue.lock().expect("online queue"));
                let outcomes = snapshot.models.ranker.as_ref().map(|r| r.take_outcomes()).unwrap_or_default();
                let seq = snapshot.applied_seq();
                (snapshot, positives, outcomes, seq)
            };
            let catalog = snapshot.catalog();
            let now = snapshot.log_clock();
            // A track starts over from the served model the first time, and when a reload
            // replaced it.
            let models = &snapshot.models;
            learning.tower = match (learning.tower.take(), &models.retrieval) {
                (Some(kept), serving) if kept.follows(serving.as_ref()) => Some(kept),
                (_, Some(serving)) => {
                    let learner = TowerLearner::new(serving, &catalog, config.idle_ms(), now);
                    Some(Track::new(learner, serving.clone(), &config))
                }
                (_, None) => None,
            };
            learning.ranking = match (learning.ranking.take(), &models.ranker) {
                (Some(kept), serving) if kept.follows(serving.as_ref()) => Some(kept),
                (_, Some(serving)) => {
                    let learner = RankingLearner::new(serving, config.idle_ms(), now);
                    Some(Track::new(learner, serving.clone(), &config))
                }
                (_, None) => None,
            };
            if learning.tower.is_none() && learning.ranking.is_none() {
                continue;
            }
            let step = Step {
                users: users(&engine, &positives, &outcomes).await,
                positives,
                outcomes,
                seq,
                catalog,
                now,
                batch_size: config.batch_size,
                publish: last_publication.elapsed().as_secs() >= config.publish_secs.max(1),
                online_dir: engine.models.online_dir.clone(),
                snapshot_secs: config.snapshot_secs,
                base_versions: [OnlineModel::TwoTower, OnlineModel::Ranking]
                    .map(|m| engine.trained_version(m)),
                learned_before: [&online.tower, &online.ranking].map(|c| c.learned.load(Ordering::Acquire)),
                publications: online.publications.load(Ordering::Acquire),
            };
            let Ok((kept, (tower, ranking))) = tokio::task::spawn_blocking(move || {
                let stepped = learn_step(&mut learning, &step);
                (learning, stepped)
            })
            .await
            else {
                tracing::error!("online learning panicked; starting over from the served models");
                learning = Learning::default();
                continue;
            };
            learning = kept;
            let tower = report(online, OnlineModel::TwoTower, tower);
            let ranking = report(online, OnlineModel::Ranking, ranking);
            if matches!(tower, Next::RollBack) {
                roll_back_tower(&engine, &mut learning).await;
            }
            if matches!(ranking, Next::RollBack) {
                roll_back_ranking(&engine, &mut learning).await;
            }
            let (retrieval, ranker) = (tower.published(), ranking.published());
            if retrieval.is_some() || ranker.is_some() {
                last_publication = Instant::now();
                publish(&engine, &mut learning, retrieval, ranker, "online models published").await;
            }
        }
    });
}

/// What the task does next with one model after a step.
enum Next<S> {
    Publish(Arc<S>),
    RollBack,
    Keep,
}

impl<S> Next<S> {
    fn published(self) -> Option<Arc<S>> {
        match self {
            Next::Publish(fresh) => Some(fresh),
            _ => None,
        }
    }
}

/// Records what a step did with `model` in the counters and the log; returns what to do next.
fn report<S>(online: &Online, model: OnlineModel, stepped: Option<Stepped<S>>) -> Next<S> {
    let Some(stepped) = stepped else { return Next::Keep };
    let counters = online.counters(model);
    counters.stepped(stepped.learned, stepped.table);
    if let Some(loss) = stepped.loss {
        tracing::debug!(?model, loss, learned = stepped.learned, "learned online");
    }
    match stepped.saved {
        Some(Ok(meta)) => {
            counters.snapshot_seq.store(meta.seq, Ordering::Release);
            tracing::info!(?model, seq = meta.seq, learned = meta.learned, "online snapshot saved");
        }
        Some(Err(err)) => tracing::error!(?model, error = %err, "saving the online snapshot failed"),
        None => {}
    }
    match stepped.published {
        _ if stepped.tripped => Next::RollBack,
        Some(Ok(fresh)) => Next::Publish(fresh),
        Some(Err(err)) => {
            tracing::error!(?model, error = %err, "publishing the online model failed");
            Next::Keep
        }
        None => Next::Keep,
    }
}

/// The records of the users the examples name (those the store has).
async fn users(
    engine: &Engine,
    positives: &[OnlinePositive],
    outcomes: &[ShownOutcome],
) -> HashMap<String, User> {
    let mut users = HashMap::new();
    let ids: BTreeSet<&str> = positives
        .iter()
        .map(OnlinePositive::user_id)
        .chain(outcomes.iter().map(|o| o.impression.user_id.as_str()))
        .collect();
    for user_id in ids {
        match engine.store.user(user_id).await {
            Ok(Some(user)) => {
                users.insert(user_id.to_owned(), user);
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "reading users for online learning failed"),
        }
    }
    users
}

/// Swaps in a snapshot serving `retrieval` and `ranker` (either may be absent) unless a reload
/// replaced the models their tracks derive from meanwhile; the tracks then derive from them.
async fn publish(
    engine: &Engine,
    learning: &mut Learning,
    retrieval: Option<Arc<Retrieval>>,
    ranker: Option<Arc<Ranker>>,
    what: &str,
) {
    let online = engine.online.as_ref().expect("publishing implies online learning");
    let _updating = engine.updating.lock().await;
    let now = engine.snapshot();
    let current = |follows: Option<bool>, published: bool| !published || follows == Some(true);
    let tower_current = current(
        learning.tower.as_ref().map(|t| t.follows(now.models.retrieval.as_ref())),
        retrieval.is_some(),
    );
    let ranking_current =
        current(learning.ranking.as_ref().map(|t| t.follows(now.models.ranker.as_ref())), ranker.is_some());
    if !(tower_current && ranking_current) {
        return;
    }
    let publications = online.publications.fetch_add(1, Ordering::AcqRel) + 1;
    engine.current.store(Arc::new(now.with_published(retrieval.clone(), ranker.clone(), publications)));
    if let (Some(track), Some(fresh)) = (learning.tower.as_mut(), retrieval) {
        track.origin = fresh;
    }
    if let (Some(track), Some(fresh)) = (learning.ranking.as_mut(), ranker) {
        track.origin = fresh;
    }
    tracing::info!(publications, version = %engine.snapshot().models.version, "{what}");
}

/// The newest snapshot of `model` learned from the model on disk, when there is one.
fn latest_snapshot(engine: &Engine, model: OnlineModel) -> Option<(PathBuf, SnapshotMeta)> {
    let root = model.root(engine.models.online_dir.as_deref()?);
    online_snapshot::latest(&root, &engine.trained_version(model))
}

/// Serves the two-tower model's newest snapshot (saved only while it was healthy) or, without
/// one, the model its learner started from, and learns on from there.
async fn roll_back_tower(engine: &Engine, learning: &mut Learning) {
    let Some(track) = learning.tower.as_ref() else { return };
    rolled_back(engine, OnlineModel::TwoTower, &track.guard);
    let (start, catalog) = (track.start.clone(), engine.snapshot().catalog());
    let snapshot = latest_snapshot(engine, OnlineModel::TwoTower);
    let restored = tokio::task::spawn_blocking(move || -> Result<Arc<Retrieval>, String> {
        let Some((dir, meta)) = snapshot else { return Ok(start) };
        let model = TwoTower::load(&dir).map_err(|e| e.to_string())?;
        let items: Vec<&Item> =
            meta.fresh_items.iter().filter_map(|id| catalog.index(id)).map(|i| catalog.item(i)).collect();
        start.with_model(model, &items, Timestamp::now()).map(Arc::new).map_err(|e| e.to_string())
    })
    .await;
    let Some(restored) = restored_or_log(restored) else { return };
    publish(engine, learning, Some(restored.clone()), None, "online two-tower model rolled back").await;
    let config = &engine.online.as_ref().expect("rolling back implies online learning").config;
    if let Some(track) = learning.tower.as_mut() {
        let now = engine.snapshot().log_clock();
        track.learner = TowerLearner::new(&restored, &engine.snapshot().catalog(), config.idle_ms(), now);
        track.guard = LossGuard::new(config.rollback_loss_ratio);
    }
}

/// The same for the ranking model.
async fn roll_back_ranking(engine: &Engine, learning: &mut Learning) {
    let Some(track) = learning.ranking.as_ref() else { return };
    rolled_back(engine, OnlineModel::Ranking, &track.guard);
    let start = track.start.clone();
    let snapshot = latest_snapshot(engine, OnlineModel::Ranking);
    let restored = tokio::task::spawn_blocking(move || -> Result<Arc<Ranker>, String> {
        let Some((dir, _)) = snapshot else { return Ok(start) };
        let model = WideDeep::load(&dir).map_err(|e| e.to_string())?;
        Ok(Arc::new(start.with_model(model)))
    })
    .await;
    let Some(restored) = restored_or_log(restored) else { return };
    publish(engine, learning, None, Some(restored.clone()), "online ranking model rolled back").await;
    let config = &engine.online.as_ref().expect("rolling back implies online learning").config;
    if let Some(track) = learning.ranking.as_mut() {
        track.learner = RankingLearner::new(&restored, config.idle_ms(), engine.snapshot().log_clock());
        track.guard = LossGuard::new(config.rollback_loss_ratio);
    }
}

/// Counts and logs a rollback of `model`.
fn rolled_back(engine: &Engine, model: OnlineModel, guard: &LossGuard) {
    let online = engine.online.as_ref().expect("rolling back implies online learning");
    online.counters(model).rollbacks.fetch_add(1, Ordering::AcqRel);
    let levels = guard.levels();
    tracing::warn!(?model, ?levels, "online model's loss rose past the guard; rolling back");
}

/// The restored model, or `None` (logged) when it could not be restored: learning goes on.
fn restored_or_log<S>(restored: Result<Result<Arc<S>, String>, tokio::task::JoinError>) -> Option<Arc<S>> {
    match restored {
        Ok(Ok(restored)) => Some(restored),
        Ok(Err(err)) => {
            tracing::error!(error = %err, "the snapshot to roll back to does not load; learning on");
            None
        }
        Err(_) => None,
    }
}

/// `GET /v1/admin/online`: what online learning has done.
pub(crate) async fn status(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
) -> Result<axum::Json<OnlineStatus>, crate::HttpError> {
    Ok(axum::Json(serving(&state)?.online_status()))
}

/// `POST /v1/admin/online`: pauses or resumes online learning.
pub(crate) async fn switch(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    axum::Json(switch): axum::Json<OnlineSwitch>,
) -> Result<axum::Json<OnlineStatus>, crate::HttpError> {
    let engine = serving(&state)?;
    if !engine.pause_online(switch.paused) {
        let message = "online learning is off ([serving.online] enabled = false)";
        return Err(crate::HttpError::new(axum::http::StatusCode::CONFLICT, message));
    }
    Ok(axum::Json(engine.online_status()))
}

fn serving(state: &crate::AppState) -> Result<&Engine, crate::HttpError> {
    state.engine.as_deref().ok_or_else(|| {
        crate::HttpError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "this server does not serve feeds")
    })
}
