//! The engine's online learning of the two-tower model: positives from the tail are queued, a
//! background task learns them every second on its own copy of the model, publishes it to the
//! feeds every `publish_secs` and snapshots it every `snapshot_secs` (with the last event it
//! covers, so that a restart replays exactly the events after it). Learning can be paused; a
//! model whose loss rises past a guard ([`LossGuard`]) is rolled back to the newest snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::BTreeSet;
use std::path::PathBuf;

use reelrank_core::{Item, Timestamp, User};
use reelrank_features::{PersistError, PositiveRule};
use reelrank_models::TwoTower;
use reelrank_serving::online_snapshot::{self, SnapshotMeta};
use reelrank_serving::{Catalog, LossGuard, OnlinePositive, Retrieval, TowerLearner};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::engine::{Engine, Resumed};

/// The `[serving.online]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnlineConfig {
    /// Whether the two-tower model learns from the log while serving.
    pub enabled: bool,
    /// Most positives per learning step.
    pub batch_size: usize,
    /// How often the model as learned so far is handed to the feeds, in seconds.
    pub publish_secs: u64,
    /// How often the model as learned so far is saved, in seconds.
    pub snapshot_secs: u64,
    /// The learner's moving-average loss, over its first steps' average, past which the model is
    /// rolled back to the newest snapshot.
    pub rollback_loss_ratio: f32,
    /// Embedding rows (users, items, tags...) not touched for this many days are evicted, which
    /// bounds the table by what was active lately; 0 keeps them forever.
    pub row_expiry_days: f64,
}

impl OnlineConfig {
    /// The rows' idle time before eviction, when they expire.
    fn idle_ms(&self) -> Option<i64> {
        (self.row_expiry_days > 0.0).then_some((self.row_expiry_days * 86_400_000.0) as i64)
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
        }
    }
}

/// Positives waiting for the learner; past this many the oldest are dropped (the learner is
/// behind the log, and the newest say most about what users want now).
const MAX_QUEUED_POSITIVES: usize = 200_000;

/// The online learner's queue, switches and counters.
pub(crate) struct Online {
    config: OnlineConfig,
    pub(crate) rule: PositiveRule,
    /// Positives from the log not learned yet, in log order.
    queue: Mutex<Vec<OnlinePositive>>,
    paused: AtomicBool,
    /// Positives learned since the trained model (across restarts).
    learned: AtomicU64,
    /// Times a learned model was published (across restarts).
    publications: AtomicU64,
    /// The last event the newest snapshot covers (0: none).
    snapshot_seq: AtomicI64,
    /// Times the model was rolled back since the server started.
    rollbacks: AtomicU64,
    /// Rows of the learner's embedding table, and the bytes it holds, after its last step.
    table_rows: AtomicU64,
    table_bytes: AtomicU64,
}

/// What `GET /v1/admin/online` reports.
#[derive(Debug, Serialize)]
pub(crate) struct OnlineStatus {
    enabled: bool,
    paused: bool,
    learned: u64,
    publications: u64,
    queued: usize,
    /// The last event the newest snapshot covers.
    snapshot_seq: i64,
    /// The last event the feeds have applied.
    applied_seq: i64,
    /// Times the model was rolled back since the server started.
    rollbacks: u64,
    /// Rows of the learner's embedding table after its last step.
    table_rows: u64,
    /// Bytes the learner's embedding table holds.
    table_bytes: u64,
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
            rule: PositiveRule::default(),
            queue: Mutex::default(),
            paused: AtomicBool::new(false),
            learned: AtomicU64::new(0),
            publications: AtomicU64::new(0),
            snapshot_seq: AtomicI64::new(0),
            rollbacks: AtomicU64::new(0),
            table_rows: AtomicU64::new(0),
            table_bytes: AtomicU64::new(0),
        };
        online.resume(resumed);
        online
    }

    /// Starts over from what a (re)load resumed: its counters, and its replayed positives in place
    /// of the queue (they cover the queued ones).
    pub(crate) fn resume(&self, resumed: Resumed) {
        let meta = resumed.meta.as_ref();
        self.learned.store(meta.map_or(0, |m| m.learned), Ordering::Release);
        self.publications.store(meta.map_or(0, |m| m.publications), Ordering::Release);
        self.snapshot_seq.store(meta.map_or(0, |m| m.seq), Ordering::Release);
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

    pub(crate) fn status(&self, applied_seq: i64) -> OnlineStatus {
        OnlineStatus {
            enabled: true,
            paused: self.paused.load(Ordering::Acquire),
            learned: self.learned.load(Ordering::Acquire),
            publications: self.publications.load(Ordering::Acquire),
            queued: self.queue.lock().expect("online queue").len(),
            snapshot_seq: self.snapshot_seq.load(Ordering::Acquire),
            applied_seq,
            rollbacks: self.rollbacks.load(Ordering::Acquire),
            table_rows: self.table_rows.load(Ordering::Acquire),
            table_bytes: self.table_bytes.load(Ordering::Acquire),
        }
    }
}

impl OnlineStatus {
    /// The status of an engine that does not learn online.
    pub(crate) fn disabled(applied_seq: i64) -> OnlineStatus {
        OnlineStatus {
            enabled: false,
            paused: false,
            learned: 0,
            publications: 0,
            queued: 0,
            snapshot_seq: 0,
            applied_seq,
            rollbacks: 0,
            table_rows: 0,
            table_bytes: 0,
        }
    }
}

/// The learner as the task keeps it.
struct Learning {
    learner: TowerLearner,
    /// The retrieval it last published or started from: serving still reads it unless a reload
    /// replaced the models.
    origin: Arc<Retrieval>,
    /// The retrieval it started from, to fall back on when no snapshot is good.
    start: Arc<Retrieval>,
    guard: LossGuard,
}

impl Learning {
    fn new(serving: Arc<Retrieval>, catalog: &Catalog, config: &OnlineConfig) -> Learning {
        Learning {
            learner: TowerLearner::new(&serving, catalog, config.idle_ms()),
            origin: serving.clone(),
            start: serving,
            guard: LossGuard::new(config.rollback_loss_ratio),
        }
    }
}

/// What one learning step is given.
struct Step {
    positives: Vec<OnlinePositive>,
    /// The last event whose positive is among them (or before them).
    seq: i64,
    catalog: Arc<Catalog>,
    users: HashMap<String, User>,
    batch_size: usize,
    publish: bool,
    /// Where to save a snapshot, when one is due.
    save_to: Option<PathBuf>,
    base_version: String,
    learned_before: u64,
    publications: u64,
}

/// What one learning step did.
struct Stepped {
    loss: Option<f32>,
    learned: u64,
    /// The loss guard tripped: nothing was published or saved.
    tripped: bool,
    published: Option<reelrank_ann::Result<Arc<Retrieval>>>,
    saved: Option<Result<SnapshotMeta, PersistError>>,
}

/// Learns `step.positives`, then publishes and snapshots when due and the model is healthy.
fn learn_step(learning: &mut Learning, step: Step) -> Stepped {
    let Learning { learner, origin, guard, .. } = learning;
    let loss =
        learner.learn(&step.positives, &step.catalog, &step.users, &origin.user_schema, step.batch_size);
    let learned = step.learned_before + step.positives.len() as u64;
    let tripped = loss.is_some_and(|loss| guard.record(loss));
    let healthy = !tripped && guard.healthy();
    let published = (healthy && step.publish && learner.has_learned_since_publishing())
        .then(|| learner.publish(origin, &step.catalog));
    let saved = step.save_to.filter(|_| healthy && (loss.is_some() || published.is_some())).map(|root| {
        // Every item the feeds read a fresh vector of, so that a restart rebuilds them.
        let current = match &published {
            Some(Ok(fresh)) => fresh.clone(),
            _ => origin.clone(),
        };
        let catalog = &step.catalog;
        let fresh_items = current
            .fresh_keys()
            .into_iter()
            .filter_map(|key| catalog.index_of_key(key))
            .map(|i| catalog.item(i).item_id.clone())
            .collect();
        let publications = step.publications + u64::from(matches!(published, Some(Ok(_))));
        let meta = SnapshotMeta::new(&step.base_version, step.seq, learned, publications, fresh_items);
        online_snapshot::save(&root, learner.model(), &meta).map(|_| meta)
    });
    Stepped { loss, learned, tripped, published, saved }
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
        let mut learning: Option<Learning> = None;
        let (mut last_publication, mut last_snapshot) = (Instant::now(), Instant::now());
        loop {
            tick.tick().await;
            if online.paused.load(Ordering::Acquire) {
                continue;
            }
            // Taken with the tail stopped: the positives are exactly those of the events up to
            // `seq`, which is what a snapshot then covers.
            let (snapshot, positives, seq) = {
                let _updating = engine.updating.lock().await;
                let snapshot = engine.snapshot();
                let positives = std::mem::take(&mut *online.queue.lock().expect("online queue"));
                let seq = snapshot.applied_seq();
                (snapshot, positives, seq)
            };
            let Some(serving) = snapshot.models.retrieval.clone() else { continue };
            let catalog = snapshot.catalog();
            let mut current = match learning.take() {
                Some(kept) if Arc::ptr_eq(&kept.origin, &serving) => kept,
                // First run, or a reload replaced the model: start over from the served one.
                _ => Learning::new(serving, &catalog, &config),
            };
            let step = Step {
                users: users(&engine, &positives).await,
                positives,
                seq,
                catalog,
                batch_size: config.batch_size,
                publish: last_publication.elapsed().as_secs() >= config.publish_secs.max(1),
                save_to: engine
                    .models
                    .online_dir
                    .clone()
                    .filter(|_| last_snapshot.elapsed().as_secs() >= config.snapshot_secs.max(1)),
                base_version: engine.trained_retrieval_version(),
                learned_before: online.learned.load(Ordering::Acquire),
                publications: online.publications.load(Ordering::Acquire),
            };
            let Ok((current, stepped)) = tokio::task::spawn_blocking(move || {
                let stepped = learn_step(&mut current, step);
                (current, stepped)
            })
            .await
            else {
                tracing::error!("online learning panicked; starting over from the served model");
                continue;
            };
            online.learned.store(stepped.learned, Ordering::Release);
            let table = current.learner.model().table_memory();
            online.table_rows.store(table.rows as u64, Ordering::Release);
            online.table_bytes.store(table.bytes as u64, Ordering::Release);
            if let Some(loss) = stepped.loss {
                tracing::debug!(loss, learned = stepped.learned, "two-tower model learned online");
            }
            match stepped.saved {
                Some(Ok(meta)) => {
                    last_snapshot = Instant::now();
                    online.snapshot_seq.store(meta.seq, Ordering::Release);
                    tracing::info!(seq = meta.seq, learned = meta.learned, "online two-tower snapshot saved");
                }
                Some(Err(err)) => tracing::error!(error = %err, "saving the online snapshot failed"),
                None => {}
            }
            if stepped.tripped {
                learning = roll_back(&engine, current).await;
                continue;
            }
            match stepped.published {
                Some(Ok(fresh)) => {
                    last_publication = Instant::now();
                    learning =
                        Some(publish(&engine, current, fresh, "online two-tower model published").await);
                }
                Some(Err(err)) => {
                    tracing::error!(error = %err, "indexing online item vectors failed");
                    learning = Some(current);
                }
                None => learning = Some(current),
            }
        }
    });
}

/// The records of the users `positives` name (those the store has).
async fn users(engine: &Engine, positives: &[OnlinePositive]) -> HashMap<String, User> {
    let mut users = HashMap::new();
    let ids: BTreeSet<&str> = positives.iter().map(OnlinePositive::user_id).collect();
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

/// Swaps in a snapshot serving `fresh` unless a reload replaced the model `learning` derives from
/// meanwhile; returns the learning, now deriving from `fresh`.
async fn publish(engine: &Engine, mut learning: Learning, fresh: Arc<Retrieval>, what: &str) -> Learning {
    let online = engine.online.as_ref().expect("publishing implies online learning");
    let _updating = engine.updating.lock().await;
    let now = engine.snapshot();
    if now.models.retrieval.as_ref().is_some_and(|r| Arc::ptr_eq(r, &learning.origin)) {
        let publications = online.publications.fetch_add(1, Ordering::AcqRel) + 1;
        engine.current.store(Arc::new(now.with_retrieval(fresh.clone(), publications)));
        learning.origin = fresh;
        tracing::info!(publications, version = %engine.snapshot().models.version, "{what}");
    }
    learning
}

/// Serves the newest snapshot (saved only while the model was healthy) or, without one, the model
/// the learner started from, and learns on from there.
async fn roll_back(engine: &Engine, learning: Learning) -> Option<Learning> {
    let online = engine.online.as_ref().expect("rolling back implies online learning");
    online.rollbacks.fetch_add(1, Ordering::AcqRel);
    let levels = learning.guard.levels();
    tracing::warn!(?levels, "online two-tower model's loss rose past the guard; rolling back");
    let (start, catalog) = (learning.start.clone(), engine.snapshot().catalog());
    let snapshot = engine
        .models
        .online_dir
        .as_deref()
        .and_then(|root| online_snapshot::latest(root, &engine.trained_retrieval_version()));
    let restored = tokio::task::spawn_blocking(move || -> Result<Arc<Retrieval>, String> {
        let Some((dir, meta)) = snapshot else { return Ok(start) };
        let model = TwoTower::load(&dir).map_err(|e| e.to_string())?;
        let items: Vec<&Item> =
            meta.fresh_items.iter().filter_map(|id| catalog.index(id)).map(|i| catalog.item(i)).collect();
        start.with_model(model, &items, Timestamp::now()).map(Arc::new).map_err(|e| e.to_string())
    })
    .await;
    match restored {
        Ok(Ok(restored)) => {
            let learning =
                publish(engine, learning, restored.clone(), "online two-tower model rolled back").await;
            let config = &online.config;
            let learner = TowerLearner::new(&restored, &engine.snapshot().catalog(), config.idle_ms());
            Some(Learning { learner, guard: LossGuard::new(config.rollback_loss_ratio), ..learning })
        }
        Ok(Err(err)) => {
            tracing::error!(error = %err, "the snapshot to roll back to does not load; learning on");
            Some(learning)
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
