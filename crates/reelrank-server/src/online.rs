//! The engine's online learning of the two-tower model: positives from the tail are queued, a
//! background task learns them every second on its own copy of the model, publishes it to the
//! feeds every `publish_secs` and snapshots it every `snapshot_secs` (with the last event it
//! covers, so that a restart replays exactly the events after it). Learning can be paused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reelrank_features::PositiveRule;
use reelrank_serving::online_snapshot::{self, SnapshotMeta};
use reelrank_serving::{OnlinePositive, Retrieval, TowerLearner};
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
}

impl Default for OnlineConfig {
    fn default() -> OnlineConfig {
        OnlineConfig { enabled: true, batch_size: 256, publish_secs: 15, snapshot_secs: 60 }
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
        }
    }
}

/// The learner as the task keeps it, with the retrieval it last published or started from.
struct Learning {
    learner: TowerLearner,
    origin: Arc<Retrieval>,
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
            let Learning { mut learner, origin } = match learning.take() {
                Some(kept) if Arc::ptr_eq(&kept.origin, &serving) => kept,
                // First run, or a reload replaced the model: start over from the served one.
                _ => Learning { learner: TowerLearner::new(&serving, &catalog), origin: serving },
            };
            let mut users = HashMap::new();
            let ids: std::collections::BTreeSet<&str> =
                positives.iter().map(OnlinePositive::user_id).collect();
            for user_id in ids {
                match engine.store.user(user_id).await {
                    Ok(Some(user)) => {
                        users.insert(user_id.to_owned(), user);
                    }
                    Ok(None) => {}
                    Err(err) => tracing::warn!(error = %err, "reading users for online learning failed"),
                }
            }
            let publish = last_publication.elapsed().as_secs() >= config.publish_secs.max(1);
            let save_to = engine
                .models
                .online_dir
                .clone()
                .filter(|_| last_snapshot.elapsed().as_secs() >= config.snapshot_secs.max(1));
            let base_version = engine.trained_retrieval_version();
            let (learned_before, publications) =
                (online.learned.load(Ordering::Acquire), online.publications.load(Ordering::Acquire));
            let batch_size = config.batch_size;
            let stepped = tokio::task::spawn_blocking(move || {
                let count = positives.len() as u64;
                let loss = learner.learn(&positives, &catalog, &users, &origin.user_schema, batch_size);
                let learned = learned_before + count;
                let published = (publish && learner.has_learned_since_publishing())
                    .then(|| learner.publish(&origin, &catalog));
                let saved = save_to.filter(|_| loss.is_some() || published.is_some()).map(|root| {
                    // Every item the feeds read a fresh vector of, so that a restart rebuilds them.
                    let current = match &published {
                        Some(Ok(fresh)) => fresh.clone(),
                        _ => origin.clone(),
                    };
                    let fresh_items = current
                        .fresh_keys()
                        .into_iter()
                        .filter_map(|key| catalog.index_of_key(key))
                        .map(|i| catalog.item(i).item_id.clone())
                        .collect();
                    let publications = publications + u64::from(matches!(published, Some(Ok(_))));
                    let meta = SnapshotMeta::new(&base_version, seq, learned, publications, fresh_items);
                    online_snapshot::save(&root, learner.model(), &meta).map(|_| meta)
                });
                (Learning { learner, origin }, loss, learned, published, saved)
            })
            .await;
            let Ok((kept, loss, learned, published, saved)) = stepped else {
                tracing::error!("online learning panicked; starting over from the served model");
                continue;
            };
            online.learned.store(learned, Ordering::Release);
            if let Some(loss) = loss {
                tracing::debug!(loss, learned, "two-tower model learned online");
            }
            match saved {
                Some(Ok(meta)) => {
                    last_snapshot = Instant::now();
                    online.snapshot_seq.store(meta.seq, Ordering::Release);
                    tracing::info!(seq = meta.seq, learned = meta.learned, "online two-tower snapshot saved");
                }
                Some(Err(err)) => tracing::error!(error = %err, "saving the online snapshot failed"),
                None => {}
            }
            let origin = kept.origin.clone();
            learning = Some(kept);
            let fresh = match published {
                Some(Ok(fresh)) => fresh,
                Some(Err(err)) => {
                    tracing::error!(error = %err, "indexing online item vectors failed");
                    continue;
                }
                None => continue,
            };
            last_publication = Instant::now();
            let _updating = engine.updating.lock().await;
            let now = engine.snapshot();
            // Unless a reload replaced the model meanwhile.
            if now.models.retrieval.as_ref().is_some_and(|r| Arc::ptr_eq(r, &origin)) {
                let publications = online.publications.fetch_add(1, Ordering::AcqRel) + 1;
                engine.current.store(Arc::new(now.with_retrieval(fresh.clone(), publications)));
                if let Some(kept) = learning.as_mut() {
                    kept.origin = fresh;
                }
                tracing::info!(publications, version = %engine.snapshot().models.version, "online two-tower model published");
            }
        }
    });
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
