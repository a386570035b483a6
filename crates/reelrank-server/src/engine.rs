//! The serving state behind the feed endpoints: a [`Snapshot`] (catalog, models, activity) that
//! requests read without waiting, rebuilt in the background and swapped atomically when a
//! newly trained model appears, and kept current by tailing the store's catalog changes and
//! event log, so that what any replica ingested reaches every replica's feeds within a tick.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use reelrank_charts::{ChartConfig, Charts};
use reelrank_core::{Event, Item, Timestamp, User};
use reelrank_features::{feature_key, PersistError, PositiveRule};
use reelrank_models::{TwoTower, ValueWeights, WideDeep};
use reelrank_serving::online_snapshot::{self, SnapshotMeta};
use reelrank_serving::{
    Activity, Behaviour, Catalog, ExperimentConfig, ItemIndex, Models, OnlinePositive, PipelineConfig,
    Ranker, Retrieval, UserActivity, VariantConfig, OUTCOME_WINDOW_MS,
};
use reelrank_store::{ItemChange, Store, StoreError, StoredEvent};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Mutex};

use crate::online::{Online, OnlineConfig, OnlineModel, OnlineStatus};
use crate::roles::{self, Followed, ProcessRole};
use crate::shared_state::{SharedState, SharedStateConfig, SharedStateError, SharedUser};

/// Rows read from the store per query.
const PAGE: u32 = 10_000;

/// How the engine serves: the `[serving]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Every pipeline stage's settings.
    pub pipeline: PipelineConfig,
    /// Half-life of the trending source's heat, in hours.
    pub heat_half_life_hours: f64,
    /// How often catalog changes and new events are applied, in milliseconds.
    pub tail_interval_ms: u64,
    /// How often the model directories are checked for a newly trained model, in seconds.
    pub model_check_secs: u64,
    /// The A/B experiment feeds run in (none without variants).
    pub experiment: ExperimentConfig,
    /// How the two-tower model learns while serving.
    pub online: OnlineConfig,
    /// Users without an event or a feed for this many days (by the log's clock) are forgotten by
    /// serving (what they saw, their counters), and items whose counters were idle as long; 0
    /// keeps them forever.
    pub forget_idle_days: f64,
    /// How long a served impression stays open to its outcomes for the ranking model's counters,
    /// in minutes by the log's clock: a later outcome counts as a new showing. Every impression
    /// served in the window is held meanwhile (about 150 bytes each, in every replica).
    pub outcome_window_mins: f64,
    /// Charts and the exclusion of fake traffic.
    pub charts: ChartConfig,
    /// Where users' activity and item counters are kept: in this process, or in Redis shared by
    /// replicas.
    pub shared_state: SharedStateConfig,
    /// What this process does when serving is scaled out (`reelrank serve --role`).
    pub role: ProcessRole,
}

impl EngineConfig {
    /// Whether this process learns online (its role and `[serving.online] enabled`).
    fn learns(&self) -> bool {
        self.role.learns(self.online.enabled)
    }
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            pipeline: PipelineConfig::default(),
            heat_half_life_hours: 72.0,
            tail_interval_ms: 500,
            model_check_secs: 5,
            experiment: ExperimentConfig::default(),
            online: OnlineConfig::default(),
            charts: ChartConfig::default(),
            forget_idle_days: 30.0,
            outcome_window_mins: OUTCOME_WINDOW_MS as f64 / 60_000.0,
            shared_state: SharedStateConfig::default(),
            role: ProcessRole::default(),
        }
    }
}

/// Where the models are and what their actions are worth.
#[derive(Debug, Clone, Default)]
pub struct ModelSource {
    /// Where `reelrank train retrieval` saves (absent or empty: no two-tower source).
    pub retrieval_dir: Option<PathBuf>,
    /// Where `reelrank train ranking` saves (absent or empty: candidates ranked by heat).
    pub ranking_dir: Option<PathBuf>,
    /// The value model's action weights.
    pub value: ValueWeights,
    /// Where the two-tower model's online snapshots are kept (absent: none are written).
    pub online_dir: Option<PathBuf>,
}

/// Why the engine could not load.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Reading the catalog or the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A model directory exists but does not load.
    #[error("loading the model in {dir}: {source}")]
    Model {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        source: PersistError,
    },
    /// The settings are inconsistent.
    #[error("{0}")]
    Config(String),
    /// New items could not be added to the vector index.
    #[error("indexing new items: {0}")]
    Index(#[from] reelrank_ann::IndexError),
    /// The shared state did not answer or holds what this build cannot read.
    #[error("shared state: {0}")]
    SharedState(#[from] SharedStateError),
    /// Applying what a request wrote took longer than it waits; it goes on in the background.
    #[error("still applying after {} s; going on in the background", .0.as_secs())]
    Slow(Duration),
}

/// How long a request that wrote waits for what it wrote to be applied ([`Engine::apply_written`]).
const WRITE_APPLY_WAIT: Duration = Duration::from_secs(2);

/// Everything a request reads, as of one load; replaced whole by a reload, and with new models
/// (the state kept) when online learning publishes.
pub struct Snapshot {
    /// The catalog and what users did, and how far the tail got.
    state: Arc<TailState>,
    /// The models.
    pub models: Models,
    /// The models of experiment variants with a ranking model of their own, by variant.
    pub variant_models: BTreeMap<String, Models>,
    /// The model directories' version as loaded: a change on disk triggers a reload.
    disk_version: String,
    /// The online snapshots the models were loaded from.
    pub(crate) followed: Followed,
}

/// What the tail keeps current, shared by the snapshots online learning publishes.
struct TailState {
    live: RwLock<Live>,
    /// The last event sequence number applied to `activity`.
    applied: AtomicI64,
    /// The newest catalog change applied (`updated_at`, Unix ms).
    catalog_as_of: AtomicI64,
    /// The latest event time applied (Unix ms): the log's clock, which idleness is measured by,
    /// so that a replayed or simulated log ages as it was lived.
    log_clock: AtomicI64,
    /// Charts, and the accounts excluded as fake traffic, kept from the same events.
    charts: RwLock<Charts>,
}

/// The catalog and users' behaviour, changed together (under one lock) so that every item
/// position the activity holds is in the catalog a request reads with it.
pub struct Live {
    /// The catalog; a request clones the pointer and keeps its version for its whole run.
    pub catalog: Arc<Catalog>,
    /// Users' behaviour and item heat.
    pub activity: Activity,
}

impl Live {
    /// `user_id`'s behaviour: `shared` (their activity as the shared state holds it, placed over
    /// this catalog) when replicas share users' activity, else this replica's own.
    pub fn behaviour<'a>(&'a self, user_id: &str, shared: Option<&'a UserActivity>) -> Behaviour<'a> {
        match shared {
            Some(user) => Behaviour { user, everyone: &self.activity },
            None => Behaviour::of(&self.activity, user_id),
        }
    }
}

impl Snapshot {
    /// The catalog and what users did.
    pub fn live(&self) -> &RwLock<Live> {
        &self.state.live
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.live().read().expect("live state lock").catalog.clone()
    }

    /// The charts as of the last event applied.
    pub fn charts(&self) -> &RwLock<Charts> {
        &self.state.charts
    }

    /// The last event sequence number the tail applied.
    pub fn applied_seq(&self) -> i64 {
        self.state.applied.load(Ordering::Acquire)
    }

    /// The log's clock: the latest event time applied.
    pub fn log_clock(&self) -> Timestamp {
        Timestamp(self.state.log_clock.load(Ordering::Acquire))
    }

    /// This snapshot serving the models of `published` that are there in place of the ones
    /// served (the same models, having learned online, published for the `publications`-th
    /// time), everything else shared. Experiment variants share the two-tower model and keep
    /// their own ranking models, which do not learn online.
    pub(crate) fn with_published(
        &self,
        retrieval: Option<Arc<Retrieval>>,
        ranker: Option<Arc<Ranker>>,
        publications: u64,
    ) -> Snapshot {
        let swap = |models: &Models, ranker: Option<&Arc<Ranker>>| Models {
            version: online_version(&models.version, publications),
            retrieval: retrieval.clone().or_else(|| models.retrieval.clone()),
            ranker: ranker.cloned().or_else(|| models.ranker.clone()),
        };
        Snapshot {
            state: self.state.clone(),
            models: swap(&self.models, ranker.as_ref()),
            variant_models: self
                .variant_models
                .iter()
                .map(|(name, models)| (name.clone(), swap(models, None)))
                .collect(),
            disk_version: self.disk_version.clone(),
            followed: self.followed,
        }
    }
}

/// `version` (of models as trained) after online learning published `publications` times.
fn online_version(version: &str, publications: u64) -> String {
    let trained = version.split('+').next().unwrap_or_default();
    match publications {
        0 => trained.to_owned(),
        n => format!("{trained}+{n}"),
    }
}

/// What [`Engine::stats`] reports.
#[derive(Debug, Serialize)]
pub struct EngineStats {
    /// The last event applied.
    pub applied_seq: i64,
    /// The latest event time applied.
    pub log_clock: Timestamp,
    /// Items the catalog holds (gone ones are dropped at each sweep, see
    /// [`Catalog::without_gone`]).
    pub catalog_items: usize,
    /// Users whose activity is held (those not idle for `forget_idle_days`).
    pub users: usize,
    /// Online learning.
    pub online: OnlineStatus,
}

/// How often idle users and items, and gone items, are looked for (a scan of all of them under
/// the write lock), at the latest; also whenever the log's clock has moved on a day, for a log
/// replayed faster than it was lived.
const FORGET_INTERVAL: Duration = Duration::from_secs(600);

/// The serving state and the tasks that keep it current.
pub struct Engine {
    pub(crate) store: Arc<Store>,
    config: EngineConfig,
    pub(crate) models: ModelSource,
    pub(crate) current: ArcSwap<Snapshot>,
    /// Serialises tailing, reloading and publishing, so that each event is applied once to each
    /// snapshot.
    pub(crate) updating: Mutex<()>,
    impressions: mpsc::UnboundedSender<Event>,
    /// Present when the two-tower model learns online.
    pub(crate) online: Option<Online>,
    /// Present when users' activity and item counters are shared by replicas
    /// (`[serving.shared_state]`).
    shared: Option<SharedState>,
    /// A trainer's lease when it took it at start, until the background tasks keep it.
    lease: std::sync::Mutex<Option<reelrank_store::Lease>>,
}

impl Engine {
    /// Loads the catalog, the log and the models, brings the shared state (when configured) up
    /// to the log, and starts writing logged impressions to the store. Call
    /// [`Engine::spawn_background`] to keep it current.
    pub async fn start(
        store: Arc<Store>,
        config: EngineConfig,
        models: ModelSource,
    ) -> Result<Arc<Engine>, EngineError> {
        config.experiment.validate().map_err(EngineError::Config)?;
        if config.outcome_window_mins.is_nan() || config.outcome_window_mins <= 0.0 {
            return Err(EngineError::Config(format!(
                "[serving] outcome_window_mins: must be above 0, got {}",
                config.outcome_window_mins
            )));
        }
        let trainer = config.role == ProcessRole::Trainer;
        if trainer && !config.online.enabled {
            return Err(EngineError::Config(
                "the trainer role learns online: [serving.online] enabled must be true".to_owned(),
            ));
        }
        // Taken before loading, so that a trainer that gets it learns from what it loads.
        let lease = match trainer {
            true => roles::take_trainer_lease(&store).await,
            false => None,
        };
        if trainer && lease.is_none() {
            tracing::info!("another trainer holds the lease (or the store did not answer): standing by");
        }
        let shared = match config.shared_state.redis_url.is_empty() {
            true => None,
            false => {
                let idle_ms = (config.forget_idle_days * 86_400_000.0) as i64;
                Some(SharedState::connect(&config.shared_state, idle_ms, config.heat_half_life_hours).await?)
            }
        };
        // A trainer standing by learns nothing, so it keeps nothing learning reads (impressions
        // awaiting outcomes, users' activity when Redis holds it).
        let learning = config.learns() && !(trainer && lease.is_none());
        let (snapshot, resumed) = load(&store, &config, &models, learning).await?;
        if let Some(shared) = &shared {
            let applied = shared.catch_up(&store, &snapshot.catalog(), &fake_traffic(&snapshot)).await?;
            tracing::info!(applied, "shared state brought up to the log");
            install_shared_items(shared, &snapshot, config.heat_half_life_hours).await?;
        }
        let (impressions, receiver) = mpsc::unbounded_channel();
        tokio::spawn(write_impressions(store.clone(), receiver));
        let online = config.learns().then(|| {
            let online = Online::new(config.online.clone(), resumed);
            online.set_standby(trainer && lease.is_none());
            online
        });
        Ok(Arc::new(Engine {
            store,
            config,
            models,
            current: ArcSwap::new(snapshot),
            updating: Mutex::new(()),
            impressions,
            online,
            shared,
            lease: std::sync::Mutex::new(lease),
        }))
    }

    /// The current snapshot; a request keeps it for its whole run, whatever is swapped meanwhile.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The serving settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The pipeline settings.
    pub fn pipeline(&self) -> &PipelineConfig {
        &self.config.pipeline
    }

    /// The experiment feeds run in.
    pub fn experiment(&self) -> &ExperimentConfig {
        &self.config.experiment
    }

    /// What `user_id`'s feed runs on: their experiment variant (if any), its models and its
    /// pipeline.
    pub fn route<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        user_id: &str,
    ) -> (Option<&'a VariantConfig>, &'a Models, &'a PipelineConfig) {
        let variant = self.config.experiment.assign(user_id);
        let models = variant.and_then(|v| snapshot.variant_models.get(&v.name)).unwrap_or(&snapshot.models);
        let pipeline = variant.and_then(|v| v.pipeline.as_ref()).unwrap_or(&self.config.pipeline);
        (variant, models, pipeline)
    }

    /// Applies `user`'s profile reset to the current snapshot unless it already has it (another
    /// replica recorded it, or this one before a reload). The shared state takes a reset when it
    /// is made ([`Engine::reset_shared`]), or else when the user is next read from it.
    pub fn apply_reset(&self, user: &User) {
        let Some(at) = user.controls.reset_at.map(Timestamp::millis) else { return };
        let snapshot = self.snapshot();
        let applied = snapshot.live().read().expect("live state lock").activity.reset_at(&user.user_id);
        if applied.is_none_or(|applied| applied < at) {
            snapshot.live().write().expect("live state lock").activity.reset(&user.user_id, at);
        }
    }

    /// Writes `user`'s profile reset, just made, to the shared state; one that cannot take it
    /// now gets it when the user is next read from it.
    pub async fn reset_shared(&self, user: &User) {
        let (Some(shared), Some(at)) = (&self.shared, user.controls.reset_at) else { return };
        if let Err(err) = shared.reset(&user.user_id, at.millis()).await {
            tracing::warn!(error = %err, user_id = %user.user_id, "writing a profile reset to the shared state failed; the next read writes it");
        }
    }

    /// `user_id`'s activity read from the shared state, to be placed over the catalog a request
    /// reads ([`Live::behaviour`]); `None` when this replica holds users' activity itself.
    pub async fn shared_user(
        &self,
        user_id: &str,
        user: Option<&User>,
    ) -> Result<Option<SharedUser>, SharedStateError> {
        match &self.shared {
            Some(shared) => Ok(Some(shared.user(user_id, user).await?)),
            None => Ok(None),
        }
    }

    /// Marks the items at `served` (in `catalog`) as served to `user_id`, in `snapshot` and in
    /// the shared state. The impressions are logged anyway, so a shared state that cannot take
    /// them gets them when it applies the log.
    pub async fn mark_served(
        &self,
        snapshot: &Snapshot,
        catalog: &Catalog,
        user_id: &str,
        served: &[ItemIndex],
        now: Timestamp,
    ) {
        snapshot.live().write().expect("live state lock").activity.served(user_id, served, now);
        if let Some(shared) = &self.shared {
            let keys = served.iter().map(|&index| catalog.key(index));
            if let Err(err) = shared.served(user_id, keys).await {
                tracing::warn!(error = %err, "marking a feed served in the shared state failed; its impressions will be");
            }
        }
    }

    /// Whether the shared state answers: `None` when there is none.
    pub async fn ping_shared(&self) -> Option<Result<(), SharedStateError>> {
        Some(self.shared.as_ref()?.ping().await)
    }

    /// Applies the catalog changes and then the events stored since the last call to the current
    /// snapshot, and the events not yet in the shared state to it; returns how many catalog
    /// changes and events this snapshot took.
    pub async fn catch_up(&self) -> Result<(usize, usize), EngineError> {
        let (snapshot, items, events) = {
            let _updating = self.updating.lock().await;
            let snapshot = self.snapshot();
            let items = apply_catalog_changes(&self.store, &snapshot).await?;
            // A standing-by trainer queues nothing: taking the lease, it reloads, which replays.
            let standby = self.online.as_ref().is_some_and(Online::standby);
            let events = self.apply_new_events(&snapshot, !standby).await?;
            (snapshot, items, events)
        };
        // Not under the lock: Redis has its own order, and one that does not answer must not
        // hold up the snapshot's tail.
        if let Some(shared) = &self.shared {
            shared.catch_up(&self.store, &snapshot.catalog(), &fake_traffic(&snapshot)).await?;
        }
        Ok((items, events))
    }

    /// Re-sorts the trending lists, once per tail tick rather than per write: from the shared
    /// state's item counts when replicas share them (read only when they moved on), else from
    /// this process's own counts when `new_events` were applied. Sorted before the write lock is
    /// taken, so requests wait only for the swap.
    async fn refresh_trending(&self, new_events: bool) {
        let snapshot = self.snapshot();
        if let Some(shared) = &self.shared {
            if let Err(err) = install_shared_items(shared, &snapshot, self.config.heat_half_life_hours).await
            {
                tracing::warn!(error = %err, "reading the item counters from the shared state failed");
            }
            return;
        }
        if new_events {
            resort_trending(&snapshot);
        }
    }

    /// [`Engine::catch_up`] for a request that just wrote, so that what it wrote shapes the next
    /// feed of any replica; it waits at most [`WRITE_APPLY_WAIT`], and the catching up goes on in
    /// the background past it (a Redis rebuilt from the log takes longer than a client waits).
    pub async fn apply_written(self: &Arc<Self>) -> Result<(), EngineError> {
        let engine = self.clone();
        let applying = tokio::spawn(async move { engine.catch_up().await });
        match tokio::time::timeout(WRITE_APPLY_WAIT, applying).await {
            Ok(applied) => applied.expect("catching up panicked").map(drop),
            Err(_) => Err(EngineError::Slow(WRITE_APPLY_WAIT)),
        }
    }

    /// Applies the events after `snapshot`'s last applied one, queueing their positives for the
    /// online learner when there is one and `queue` says so; returns how many.
    async fn apply_new_events(&self, snapshot: &Arc<Snapshot>, queue: bool) -> Result<usize, StoreError> {
        let online = self.online.as_ref().filter(|_| queue && snapshot.models.retrieval.is_some());
        let (events, positives) = apply_new_events(&self.store, snapshot, online.map(|_| i64::MIN)).await?;
        if let Some(online) = online {
            online.enqueue(positives);
        }
        Ok(events)
    }

    /// Builds a new snapshot from the store and the model directories and swaps it in; requests
    /// in flight finish on the old one.
    pub async fn reload(&self) -> Result<(), EngineError> {
        self.reload_for(self.online.as_ref().is_some_and(|online| !online.standby())).await
    }

    /// [`Engine::reload`] for a process that learns from the new snapshot on (`learning`: it
    /// keeps what learning reads, see [`load`]) or not: a trainer taking the lease reloads while
    /// it still stands by.
    pub(crate) async fn reload_for(&self, learning: bool) -> Result<(), EngineError> {
        let (fresh, resumed) = load(&self.store, &self.config, &self.models, learning).await?;
        let _updating = self.updating.lock().await;
        if let Some(online) = &self.online {
            online.resume(resumed);
        }
        apply_catalog_changes(&self.store, &fresh).await?;
        self.apply_new_events(&fresh, true).await?;
        if let Some(shared) = &self.shared {
            // New models are not held back by Redis: the tail installs the counters when it answers.
            if let Err(err) = install_shared_items(shared, &fresh, self.config.heat_half_life_hours).await {
                tracing::warn!(error = %err, "reading the item counters from the shared state failed; the tail reads them");
            }
        }
        self.current.store(fresh);
        tracing::info!(version = %self.snapshot().models.version, "models swapped in");
        Ok(())
    }

    /// The version of a model on disk, as trained (what its online snapshots derive from).
    pub(crate) fn trained_version(&self, model: OnlineModel) -> String {
        models_version(&[match model {
            OnlineModel::TwoTower => &self.models.retrieval_dir,
            OnlineModel::Ranking => &self.models.ranking_dir,
        }])
    }

    /// What online learning has done, for operators.
    pub(crate) fn online_status(&self) -> OnlineStatus {
        let snapshot = self.snapshot();
        let applied = snapshot.applied_seq();
        match &self.online {
            Some(online) => online.status(applied, snapshot.models.ranker.as_ref().and_then(|r| r.waiting())),
            None => OnlineStatus::disabled(applied),
        }
    }

    /// What the engine holds now: how far it got, the catalog, the users it remembers and online
    /// learning's state.
    pub fn stats(&self) -> EngineStats {
        let snapshot = self.snapshot();
        let (catalog_items, users) = {
            let live = snapshot.live().read().expect("live state lock");
            (live.catalog.held(), live.activity.users())
        };
        EngineStats {
            applied_seq: snapshot.applied_seq(),
            log_clock: snapshot.log_clock(),
            catalog_items,
            users,
            online: self.online_status(),
        }
    }

    /// Pauses or resumes online learning; `false` when it is off altogether.
    pub(crate) fn pause_online(&self, paused: bool) -> bool {
        self.online.as_ref().map(|online| online.set_paused(paused)).is_some()
    }

    /// Logs the items of a response as impression events (written to the store in batches).
    pub fn log_impressions(&self, events: Vec<Event>) {
        for event in events {
            // The receiver lives as long as the runtime; a send fails only during shutdown.
            let _ = self.impressions.send(event);
        }
    }

    /// Forgets the users and items idle for `forget_idle_days` by the log's clock (see
    /// [`Activity::forget_idle`]).
    fn forget_idle(&self) {
        if self.config.forget_idle_days <= 0.0 {
            return;
        }
        let snapshot = self.snapshot();
        let now = Timestamp(snapshot.state.log_clock.load(Ordering::Acquire));
        let idle_ms = (self.config.forget_idle_days * 86_400_000.0) as i64;
        let users = snapshot.live().write().expect("live state lock").activity.forget_idle(now, idle_ms);
        let counters: Vec<(usize, usize)> = rankers(&snapshot).map(|r| r.forget_idle(now, idle_ms)).collect();
        tracing::info!(users, ?counters, "idle users and items forgotten");
    }

    /// Drops the items gone by now (taken down, refused, past their licence) from the catalog,
    /// and what is held of them elsewhere (see [`Catalog::without_gone`]): what serving holds
    /// follows the live catalog, not every item ever published.
    async fn drop_gone_items(&self) {
        let _updating = self.updating.lock().await;
        let snapshot = self.snapshot();
        let catalog = snapshot.catalog();
        let dropping = tokio::task::spawn_blocking(move || {
            let (dropped, gone) = catalog.without_gone(Timestamp::now())?;
            let keys: Vec<u64> = gone.iter().map(|&i| catalog.key(i)).collect();
            Some((dropped, gone, keys))
        })
        .await
        .expect("dropping gone items panicked");
        let Some((dropped, gone, keys)) = dropping else { return };
        if let Some(shared) = &self.shared {
            if let Err(err) = shared.forget_items(&keys).await {
                tracing::warn!(error = %err, "deleting gone items' counters from the shared state failed; the next sweep tries again");
            }
        }
        // The experiment variants share this retrieval.
        if let Some(retrieval) = &snapshot.models.retrieval {
            retrieval.forget(&keys);
        }
        for ranker in rankers(&snapshot) {
            ranker.forget(&gone);
        }
        let mut live = snapshot.live().write().expect("live state lock");
        live.activity.forget_items(&gone);
        live.catalog = Arc::new(dropped);
        tracing::info!(
            dropped = gone.len(),
            held = live.catalog.held(),
            "gone items dropped from the catalog"
        );
    }

    /// Tails the catalog and the log every `tail_interval_ms` (re-sorting trending lists after
    /// each batch of events), forgets idle users and drops gone items every 10 minutes (or log
    /// day), and reloads when the model directories change.
    pub fn spawn_background(self: &Arc<Self>) {
        crate::online::spawn_learning(self);
        if self.config.role == ProcessRole::Trainer {
            let lease = self.lease.lock().expect("lease lock").take();
            roles::spawn_lease_keeper(self, lease);
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(engine.config.tail_interval_ms.max(10)));
            let (mut swept, mut swept_clock) = (tokio::time::Instant::now(), engine.snapshot().log_clock());
            loop {
                tick.tick().await;
                let clock = engine.snapshot().log_clock();
                if swept.elapsed() >= FORGET_INTERVAL
                    || clock.millis() - swept_clock.millis() >= Timestamp::DAY_MS
                {
                    engine.forget_idle();
                    engine.drop_gone_items().await;
                    (swept, swept_clock) = (tokio::time::Instant::now(), clock);
                }
                match engine.catch_up().await {
                    Ok((_, events)) => engine.refresh_trending(events > 0).await,
                    Err(err) => tracing::warn!(error = %err, "applying catalog changes or new events failed"),
                }
            }
        });
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(engine.config.model_check_secs.max(1)));
            loop {
                tick.tick().await;
                let snapshot = engine.snapshot();
                // A directory of a loaded model that is gone is being replaced (saved whole, then
                // renamed into place): wait for the new one rather than drop the model meanwhile.
                let replacing = (snapshot.models.retrieval.is_some()
                    && existing(&engine.models.retrieval_dir).is_none())
                    || (snapshot.models.ranker.is_some() && existing(&engine.models.ranking_dir).is_none());
                let on_disk = models_version(&model_dirs(&engine.config, &engine.models));
                if !replacing && on_disk != snapshot.disk_version {
                    if let Err(err) = engine.reload().await {
                        tracing::error!(error = %err, "loading the new models failed; serving the previous ones");
                    }
                } else if engine.config.role == ProcessRole::Api {
                    if let Err(err) = roles::follow_snapshots(&engine).await {
                        tracing::error!(error = %err, "loading the trainer's online models failed; serving the previous ones");
                    }
                }
            }
        });
    }
}

/// Builds a snapshot: the whole catalog from `store`, the models from their directories (each
/// from its newest online snapshot when there is one), then the log read through page by page as
/// the tail reads it. What online learning resumes is returned: the snapshots' records and the
/// positives of the events after the two-tower one, to be learned again. With `learning`, the
/// ranker keeps the impressions after the ranking one waiting for their outcomes, and users'
/// activity is kept in process even when Redis shares it; a process that learns nothing keeps
/// neither.
async fn load(
    store: &Store,
    config: &EngineConfig,
    models: &ModelSource,
    learning: bool,
) -> Result<(Arc<Snapshot>, Resumed), EngineError> {
    // Changes stamped after this are read by the catalog tail (items changed while the catalog
    // loads are read twice, which changes nothing).
    let catalog_as_of = store.catalog_stamp().await?;
    let as_of = Timestamp::now();
    let mut items = store.all_items().await?;
    // Gone items are filtered out of every feed: holding them would only cost memory.
    items.retain(|item| !item.is_gone(as_of));
    let online = |model: OnlineModel, dir: &Option<PathBuf>| {
        let reads = config.role.reads_snapshots(config.online.enabled);
        let root = models.online_dir.as_deref().filter(|_| reads && existing(dir).is_some())?;
        online_snapshot::latest(&model.root(root), &models_version(&[dir]))
    };
    let tower = online(OnlineModel::TwoTower, &models.retrieval_dir);
    let ranking = online(OnlineModel::Ranking, &models.ranking_dir);
    let (owned_config, owned_models) = (config.clone(), models.clone());
    let (snapshot, resumed) = tokio::task::spawn_blocking(move || {
        build(items, catalog_as_of, &owned_config, &owned_models, tower, ranking, learning)
    })
    .await
    .expect("snapshot build panicked")?;
    let snapshot = Arc::new(snapshot);
    // Profile resets first, so that replaying the log leaves out what users reset.
    for (user_id, at) in store.profile_resets().await? {
        snapshot.live().write().expect("live state lock").activity.reset(&user_id, at.millis());
    }
    let learn_after = resumed.tower.as_ref().map(|meta| meta.seq);
    let (events, positives) = apply_new_events(store, &snapshot, learn_after).await?;
    if let Some(ranker) = snapshot.models.ranker.as_ref().filter(|_| learning) {
        if ranker.waiting().is_none() {
            ranker.await_outcomes(config.online.waiting(), snapshot.applied_seq());
        }
    }
    {
        let mut live = snapshot.live().write().expect("live state lock");
        let Live { catalog, activity } = &mut *live;
        activity.refresh_trending(catalog);
    }
    tracing::info!(events, version = %snapshot.models.version, "serving snapshot built");
    Ok((snapshot, Resumed { positives, ..resumed }))
}

/// Whether a user's events are left out as fake traffic, as the charts of `snapshot` judge (see
/// [`apply_chunk`]).
fn fake_traffic(snapshot: &Snapshot) -> impl Fn(&str) -> bool + Sync + '_ {
    |user_id| snapshot.charts().read().expect("charts lock").is_excluded(user_id)
}

/// Re-sorts `snapshot`'s trending lists if positives were counted since their last sort: under
/// the read lock, so that requests wait only for the swap.
fn resort_trending(snapshot: &Snapshot) {
    let lists = {
        let live = snapshot.live().read().expect("live state lock");
        live.activity.trending().sorted(&live.catalog)
    };
    if let Some(lists) = lists {
        snapshot.live().write().expect("live state lock").activity.install_trending(lists);
    }
}

/// Installs the item counters of the shared state in `snapshot` when events were counted there
/// since it took them last: those of the items counted since, or all of them the first time and
/// when the changes do not follow on from what it holds (sorted before its write lock is taken).
async fn install_shared_items(
    shared: &SharedState,
    snapshot: &Snapshot,
    heat_half_life_hours: f64,
) -> Result<(), SharedStateError> {
    let as_of = snapshot.live().read().expect("live state lock").activity.items_as_of();
    let Some(mut counts) = shared.item_counts(as_of).await? else { return Ok(()) };
    if counts.since > 0 {
        let updated = {
            let mut live = snapshot.live().write().expect("live state lock");
            let Live { catalog, activity } = &mut *live;
            activity.update_items(counts, catalog)
        };
        if updated {
            resort_trending(snapshot);
            return Ok(());
        }
        let Some(whole) = shared.item_counts(0).await? else { return Ok(()) };
        counts = whole;
    }
    let placed = counts.place(&snapshot.catalog(), heat_half_life_hours);
    snapshot.live().write().expect("live state lock").activity.install_items(placed);
    Ok(())
}

/// What online learning resumes from: its snapshots' records and the positives after the
/// two-tower one.
#[derive(Debug, Default)]
pub(crate) struct Resumed {
    /// The two-tower snapshot's metadata, when one was loaded.
    pub tower: Option<SnapshotMeta>,
    /// The ranking snapshot's metadata, when one was loaded.
    pub ranking: Option<SnapshotMeta>,
    /// The positives of the events after the two-tower snapshot, in log order.
    pub positives: Vec<OnlinePositive>,
}

/// The snapshot of the catalog `items` and the models, with no event applied yet.
fn build(
    items: Vec<Item>,
    catalog_as_of: i64,
    config: &EngineConfig,
    models: &ModelSource,
    tower: Option<(PathBuf, SnapshotMeta)>,
    ranking: Option<(PathBuf, SnapshotMeta)>,
    learning: bool,
) -> Result<(Snapshot, Resumed), EngineError> {
    let now = Timestamp::now();
    let disk_version = models_version(&model_dirs(config, models));
    let mut resumed = Resumed::default();
    let retrieval = match existing(&models.retrieval_dir) {
        Some(dir) => {
            let mut retrieval = Retrieval::load(dir).map_err(|source| model_error(dir, source))?;
            let added = retrieval.index_missing(&items, now)?;
            tracing::info!(added, "indexed items newer than the retrieval model");
            if let Some((snapshot, meta)) = tower {
                match TwoTower::load(&snapshot) {
                    Ok(model) => {
                        let fresh: std::collections::HashSet<&str> =
                            meta.fresh_items.iter().map(String::as_str).collect();
                        let learned: Vec<&Item> =
                            items.iter().filter(|i| fresh.contains(i.item_id.as_str())).collect();
                        retrieval = retrieval.with_model(model, &learned, now)?;
                        tracing::info!(
                            seq = meta.seq,
                            learned = meta.learned,
                            "online two-tower model resumed from its snapshot"
                        );
                        resumed.tower = Some(meta);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, dir = %snapshot.display(), "the online snapshot does not load; starting from the trained model")
                    }
                }
            }
            Some(Arc::new(retrieval))
        }
        None => None,
    };
    let catalog = Catalog::new(items);
    let outcome_window_ms = (config.outcome_window_mins * 60_000.0) as i64;
    let load_ranker = |dir: &Option<PathBuf>| match existing(dir) {
        Some(dir) => Ranker::load(dir, models.value.clone(), &catalog, &[])
            .map(|ranker| Some(Arc::new(ranker.with_outcome_window(outcome_window_ms))))
            .map_err(|source| model_error(dir, source)),
        None => Ok(None),
    };
    let mut ranker = load_ranker(&models.ranking_dir)?;
    if let (Some(trained), Some((snapshot, meta))) = (&ranker, ranking) {
        match WideDeep::load(&snapshot) {
            Ok(model) => {
                let resumed_ranker = trained.with_model(model);
                if learning {
                    resumed_ranker.await_outcomes(config.online.waiting(), meta.seq);
                }
                tracing::info!(
                    seq = meta.seq,
                    learned = meta.learned,
                    "online ranking model resumed from its snapshot"
                );
                ranker = Some(Arc::new(resumed_ranker));
                resumed.ranking = Some(meta);
            }
            Err(err) => {
                tracing::warn!(error = %err, dir = %snapshot.display(), "the online snapshot does not load; starting from the trained model")
            }
        }
    }
    let publications =
        [&resumed.tower, &resumed.ranking].iter().filter_map(|m| m.as_ref()).map(|m| m.publications).max();
    let version = online_version(
        &models_version(&[&models.retrieval_dir, &models.ranking_dir]),
        publications.unwrap_or(0),
    );
    let mut variant_models = BTreeMap::new();
    for variant in config.experiment.variants.iter().filter(|v| v.ranking_dir.is_some()) {
        let version = models_version(&[&models.retrieval_dir, &variant.ranking_dir]);
        let ranker = load_ranker(&variant.ranking_dir)?;
        variant_models.insert(variant.name.clone(), Models { version, retrieval: retrieval.clone(), ranker });
    }
    // Online learning reads each positive's history before it, so a process that learns keeps
    // users' activity; one that shares it and learns nothing (an API replica, a standby trainer)
    // reads it from the shared state.
    let activity = match config.shared_state.redis_url.is_empty() {
        true => Activity::new(catalog.len(), config.heat_half_life_hours),
        false => Activity::sharing(catalog.len(), config.heat_half_life_hours, learning),
    };
    let followed = Followed::of(resumed.tower.as_ref(), resumed.ranking.as_ref());
    let snapshot = Snapshot {
        state: Arc::new(TailState {
            live: RwLock::new(Live { catalog: Arc::new(catalog), activity }),
            applied: AtomicI64::new(0),
            catalog_as_of: AtomicI64::new(catalog_as_of),
            log_clock: AtomicI64::new(0),
            charts: RwLock::new(Charts::new(config.charts.clone())),
        }),
        models: Models { version, retrieval, ranker },
        variant_models,
        disk_version,
        followed,
    };
    Ok((snapshot, resumed))
}

fn model_error(dir: &Path, source: PersistError) -> EngineError {
    EngineError::Model { dir: dir.to_owned(), source }
}

/// The directory, when it is configured and holds a saved model.
fn existing(dir: &Option<PathBuf>) -> Option<&Path> {
    dir.as_deref().filter(|d| d.is_dir())
}

/// Every model directory the engine loads: the served models' and the experiment variants'.
fn model_dirs<'a>(config: &'a EngineConfig, models: &'a ModelSource) -> Vec<&'a Option<PathBuf>> {
    let variants = config.experiment.variants.iter().map(|v| &v.ranking_dir);
    [&models.retrieval_dir, &models.ranking_dir].into_iter().chain(variants).collect()
}

/// Names the models in `dirs`: a hash of their modification times (`none` without models), so
/// that every newly saved model gets a new version.
fn models_version(dirs: &[&Option<PathBuf>]) -> String {
    let stamps: Vec<String> = dirs
        .iter()
        .filter_map(|dir| existing(dir))
        .map(|dir| {
            let modified =
                std::fs::metadata(dir).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
            format!("{}@{:?}", dir.display(), modified)
        })
        .collect();
    if stamps.is_empty() {
        return "none".to_owned();
    }
    format!("{:012x}", feature_key("models", &stamps.join(";")) >> 16)
}

/// Applies the catalog changes written since `snapshot`'s newest applied one: new items are
/// appended (and embedded into the two-tower index), changed ones replaced in place (a takedown
/// reaches the filters), and the new catalog is swapped in. Returns how many items changed.
async fn apply_catalog_changes(store: &Store, snapshot: &Snapshot) -> Result<usize, EngineError> {
    let since = snapshot.state.catalog_as_of.load(Ordering::Acquire);
    let mut read: Vec<ItemChange> = Vec::new();
    loop {
        let page = store.items_changed(since, read.last(), PAGE).await?;
        if page.is_empty() {
            break;
        }
        read.extend(page);
    }
    let Some(newest) = read.iter().map(|c| c.updated_at).max() else { return Ok(0) };
    let started = std::time::Instant::now();
    let catalog = snapshot.catalog();
    let items = read.into_iter().map(|c| c.item).collect();
    let (catalog, changes) =
        tokio::task::spawn_blocking(move || catalog.with_changes(items, Timestamp::now()))
            .await
            .expect("catalog change panicked");
    if !changes.is_empty() {
        let touched: Vec<&Item> =
            changes.added.iter().chain(&changes.replaced).map(|&i| catalog.item(i)).collect();
        if let Some(retrieval) = &snapshot.models.retrieval {
            retrieval.index_changed(&touched, Timestamp::now())?;
        }
        for ranker in rankers(snapshot) {
            ranker.forget(&changes.replaced);
        }
        snapshot.live().write().expect("live state lock").catalog = Arc::new(catalog);
        tracing::info!(
            added = changes.added.len(),
            replaced = changes.replaced.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "catalog changes applied"
        );
    }
    snapshot.state.catalog_as_of.fetch_max(newest, Ordering::AcqRel);
    Ok(changes.added.len() + changes.replaced.len())
}

/// The snapshot's ranking models: the served one and the experiment variants'.
fn rankers(snapshot: &Snapshot) -> impl Iterator<Item = &Arc<Ranker>> {
    std::iter::once(&snapshot.models)
        .chain(snapshot.variant_models.values())
        .filter_map(|models| models.ranker.as_ref())
}

/// Applies the events after `snapshot`'s last applied one, page by page; returns how many, and
/// the positives of those after `learn_after` (none without it) for the online learner. A page
/// of more than one [`APPLY_CHUNK`] is applied on a blocking thread, so that the runtime's
/// workers keep serving: under `bench/serve.sh` load a tail tick reads about 7,000 logged
/// impressions, which took a worker for about 11 ms. A few events are applied in place.
async fn apply_new_events(
    store: &Store,
    snapshot: &Arc<Snapshot>,
    learn_after: Option<i64>,
) -> Result<(usize, Vec<OnlinePositive>), StoreError> {
    let (mut applied, mut positives) = (0, Vec::new());
    loop {
        let page = store.events_after(snapshot.applied_seq(), PAGE).await?;
        if page.is_empty() {
            return Ok((applied, positives));
        }
        applied += page.len();
        let learned = if page.len() <= APPLY_CHUNK {
            apply_page(snapshot, &page, learn_after)
        } else {
            let snapshot = snapshot.clone();
            tokio::task::spawn_blocking(move || apply_page(&snapshot, &page, learn_after))
                .await
                .expect("applying events panicked")
        };
        positives.extend(learned);
    }
}

/// Events applied per hold of the charts', the activity's and the rankers' write locks: a request
/// waits for one chunk at most, not for a page. Under `bench/serve.sh` load a page of 2,000
/// logged impressions held the ranker's lock for 5 ms on average and up to 81 ms, and requests
/// queued behind it (p99 24 ms at 4 connections, against 10 ms with the tail stopped).
const APPLY_CHUNK: usize = 128;

/// Applies `page` (the log's next events) chunk by chunk (see [`apply_chunk`]); returns the
/// positives of the events after `learn_after`.
fn apply_page(snapshot: &Snapshot, page: &[StoredEvent], learn_after: Option<i64>) -> Vec<OnlinePositive> {
    page.chunks(APPLY_CHUNK).flat_map(|chunk| apply_chunk(snapshot, chunk, learn_after)).collect()
}

/// Applies `chunk` (the log's next events) to the charts, then, leaving out the events of accounts
/// excluded as fake traffic, to the activity and the rankers' state; returns the positives of the
/// events after `learn_after`.
fn apply_chunk(snapshot: &Snapshot, chunk: &[StoredEvent], learn_after: Option<i64>) -> Vec<OnlinePositive> {
    let counted: Vec<&StoredEvent> = {
        let catalog = snapshot.catalog();
        let mut charts = snapshot.charts().write().expect("charts lock");
        chunk
            .iter()
            .filter(|stored| {
                let item = catalog.index(&stored.event.item_id).map(|index| catalog.item(index));
                charts.record(&stored.event, item)
            })
            .collect()
    };
    let rule = PositiveRule::default();
    let mut positives = Vec::new();
    let catalog = {
        let mut live = snapshot.live().write().expect("live state lock");
        let Live { catalog, activity } = &mut *live;
        for &stored in &counted {
            let event = &stored.event;
            if learn_after.is_some_and(|after| stored.seq > after) {
                let before = || activity.user(&event.user_id);
                positives.extend(OnlinePositive::from_event(&rule, catalog, before, event));
            }
            activity.record(catalog, event);
        }
        catalog.clone()
    };
    for ranker in rankers(snapshot) {
        ranker.follow(&catalog, counted.iter().map(|stored| (stored.seq, &stored.event)));
    }
    if let Some(latest) = chunk.iter().map(|stored| stored.event.ts.millis()).max() {
        snapshot.state.log_clock.fetch_max(latest, Ordering::AcqRel);
    }
    if let Some(last) = chunk.last() {
        snapshot.state.applied.store(last.seq, Ordering::Release);
    }
    positives
}

/// Writes logged impressions in batches of whatever has queued up since the last write.
async fn write_impressions(store: Arc<Store>, mut receiver: mpsc::UnboundedReceiver<Event>) {
    const BATCH: usize = 5_000;
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(err) = store.append_events(&batch).await {
            tracing::error!(error = %err, dropped = batch.len(), "writing impressions failed");
        }
        batch.clear();
    }
}
