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
use reelrank_core::{Event, Item, Timestamp};
use reelrank_features::PositiveRule;
use reelrank_features::{feature_key, PersistError};
use reelrank_models::ValueWeights;
use reelrank_serving::{
    Activity, Catalog, ExperimentConfig, Models, OnlinePositive, PipelineConfig, Ranker, Retrieval,
    TowerLearner, VariantConfig,
};
use reelrank_store::{ItemChange, Store, StoreError};
use serde::Deserialize;
use tokio::sync::{mpsc, Mutex};

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
}

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
}

impl Default for OnlineConfig {
    fn default() -> OnlineConfig {
        OnlineConfig { enabled: true, batch_size: 256, publish_secs: 15 }
    }
}

/// Positives waiting for the online learner; past this many the oldest are dropped (the learner
/// is behind the log, and the newest say most about what users want now).
const MAX_QUEUED_POSITIVES: usize = 200_000;

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            pipeline: PipelineConfig::default(),
            heat_half_life_hours: 72.0,
            tail_interval_ms: 500,
            model_check_secs: 5,
            experiment: ExperimentConfig::default(),
            online: OnlineConfig::default(),
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
}

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
}

/// What the tail keeps current, shared by the snapshots online learning publishes.
struct TailState {
    live: RwLock<Live>,
    /// The last event sequence number applied to `activity`.
    applied: AtomicI64,
    /// The newest catalog change applied (`updated_at`, Unix ms).
    catalog_as_of: AtomicI64,
}

/// The catalog and users' behaviour, changed together (under one lock) so that every item
/// position the activity holds is in the catalog a request reads with it.
pub struct Live {
    /// The catalog; a request clones the pointer and keeps its version for its whole run.
    pub catalog: Arc<Catalog>,
    /// Users' behaviour and item heat.
    pub activity: Activity,
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

    /// This snapshot serving `retrieval` (the same model having learned online, published for
    /// the `publications`-th time), everything else shared.
    fn with_retrieval(&self, retrieval: Arc<Retrieval>, publications: u64) -> Snapshot {
        let swap = |models: &Models| Models {
            version: format!("{}+{publications}", models.version.split('+').next().unwrap_or_default()),
            retrieval: Some(retrieval.clone()),
            ranker: models.ranker.clone(),
        };
        Snapshot {
            state: self.state.clone(),
            models: swap(&self.models),
            variant_models: self
                .variant_models
                .iter()
                .map(|(name, models)| (name.clone(), swap(models)))
                .collect(),
            disk_version: self.disk_version.clone(),
        }
    }
}

/// The online learner and what it is fed.
struct Online {
    config: OnlineConfig,
    rule: PositiveRule,
    /// Positives from the log not learned yet, in log order.
    queue: std::sync::Mutex<Vec<OnlinePositive>>,
}

/// How far back each catalog read reaches before the newest change it applied: a write stamped
/// earlier but committed later (concurrent writers on PostgreSQL) is still read. Items read
/// again unchanged change nothing.
const CATALOG_OVERLAP_MS: i64 = 5_000;

/// The serving state and the tasks that keep it current.
pub struct Engine {
    store: Arc<Store>,
    config: EngineConfig,
    models: ModelSource,
    current: ArcSwap<Snapshot>,
    /// Serialises tailing and reloading, so that each event is applied once to each snapshot.
    updating: Mutex<()>,
    impressions: mpsc::UnboundedSender<Event>,
    /// Present when the two-tower model learns online.
    online: Option<Online>,
}

impl Engine {
    /// Loads the catalog, the log and the models, and starts writing logged impressions to the
    /// store. Call [`Engine::spawn_background`] to keep it current.
    pub async fn start(
        store: Arc<Store>,
        config: EngineConfig,
        models: ModelSource,
    ) -> Result<Arc<Engine>, EngineError> {
        config.experiment.validate().map_err(EngineError::Config)?;
        let snapshot = load(&store, &config, &models).await?;
        let (impressions, receiver) = mpsc::unbounded_channel();
        tokio::spawn(write_impressions(store.clone(), receiver));
        let online = config.online.enabled.then(|| Online {
            config: config.online.clone(),
            rule: PositiveRule::default(),
            queue: std::sync::Mutex::default(),
        });
        Ok(Arc::new(Engine {
            store,
            config,
            models,
            current: ArcSwap::from_pointee(snapshot),
            updating: Mutex::new(()),
            impressions,
            online,
        }))
    }

    /// The current snapshot; a request keeps it for its whole run, whatever is swapped meanwhile.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
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

    /// Applies the catalog changes and then the events stored since the last call to the current
    /// snapshot; returns how many of each.
    pub async fn catch_up(&self) -> Result<(usize, usize), EngineError> {
        let _updating = self.updating.lock().await;
        let snapshot = self.snapshot();
        let items = apply_catalog_changes(&self.store, &snapshot).await?;
        let events = apply_new_events(&self.store, &snapshot, self.online_queue(&snapshot)).await?;
        Ok((items, events))
    }

    /// Builds a new snapshot from the store and the model directories and swaps it in; requests
    /// in flight finish on the old one.
    pub async fn reload(&self) -> Result<(), EngineError> {
        let fresh = Arc::new(load(&self.store, &self.config, &self.models).await?);
        let _updating = self.updating.lock().await;
        apply_catalog_changes(&self.store, &fresh).await?;
        apply_new_events(&self.store, &fresh, self.online_queue(&fresh)).await?;
        self.current.store(fresh);
        tracing::info!(version = %self.snapshot().models.version, "models swapped in");
        Ok(())
    }

    /// Where the positives of new events go: the online learner's queue, when it learns.
    fn online_queue(
        &self,
        snapshot: &Snapshot,
    ) -> Option<(&PositiveRule, &std::sync::Mutex<Vec<OnlinePositive>>)> {
        let online = self.online.as_ref().filter(|_| snapshot.models.retrieval.is_some())?;
        Some((&online.rule, &online.queue))
    }

    /// Logs the items of a response as impression events (written to the store in batches).
    pub fn log_impressions(&self, events: Vec<Event>) {
        for event in events {
            // The receiver lives as long as the runtime; a send fails only during shutdown.
            let _ = self.impressions.send(event);
        }
    }

    /// Learns the queued positives every second on the learner's copy of the two-tower model,
    /// and every `publish_secs` swaps in a snapshot serving the model as learned so far. A model
    /// loaded from disk meanwhile starts the learner over from it.
    fn spawn_online_learning(self: &Arc<Self>) {
        let Some(online) = &self.online else { return };
        let (engine, config) = (self.clone(), online.config.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut learner: Option<(TowerLearner, Arc<Retrieval>)> = None;
            let (mut publications, mut last_publication) = (0u64, tokio::time::Instant::now());
            loop {
                tick.tick().await;
                let snapshot = engine.snapshot();
                let Some(serving) = snapshot.models.retrieval.clone() else { continue };
                let catalog = snapshot.catalog();
                let (mut current, origin) = match learner.take() {
                    Some((current, origin)) if Arc::ptr_eq(&origin, &serving) => (current, origin),
                    _ => (TowerLearner::new(&serving, &catalog), serving.clone()),
                };
                let positives = std::mem::take(
                    &mut *engine.online.as_ref().expect("online").queue.lock().expect("online queue"),
                );
                let mut users = std::collections::HashMap::new();
                for user_id in
                    positives.iter().map(OnlinePositive::user_id).collect::<std::collections::BTreeSet<_>>()
                {
                    match engine.store.user(user_id).await {
                        Ok(Some(user)) => {
                            users.insert(user_id.to_owned(), user);
                        }
                        Ok(None) => {}
                        Err(err) => tracing::warn!(error = %err, "reading users for online learning failed"),
                    }
                }
                let publish = last_publication.elapsed().as_secs() >= config.publish_secs.max(1);
                let batch_size = config.batch_size;
                let learned = tokio::task::spawn_blocking(move || {
                    let loss = current.learn(&positives, &catalog, &users, &origin.user_schema, batch_size);
                    let published = match publish && current.has_learned_since_publishing() {
                        true => Some(current.publish(&origin, &catalog)),
                        false => None,
                    };
                    (current, origin, loss, published)
                })
                .await;
                let Ok((current, origin, loss, published)) = learned else {
                    tracing::error!("online learning panicked; starting over from the served model");
                    continue;
                };
                if let Some(loss) = loss {
                    tracing::debug!(loss, learned = current.learned(), "two-tower model learned online");
                }
                learner = Some((current, origin.clone()));
                let fresh = match published {
                    Some(Ok(fresh)) => fresh,
                    Some(Err(err)) => {
                        tracing::error!(error = %err, "indexing online item vectors failed");
                        continue;
                    }
                    None => continue,
                };
                last_publication = tokio::time::Instant::now();
                let _updating = engine.updating.lock().await;
                let now = engine.snapshot();
                // Unless a reload replaced the model meanwhile.
                if now.models.retrieval.as_ref().is_some_and(|r| Arc::ptr_eq(r, &origin)) {
                    publications += 1;
                    engine.current.store(Arc::new(now.with_retrieval(fresh.clone(), publications)));
                    if let Some((_, published_from)) = learner.as_mut() {
                        *published_from = fresh;
                    }
                    tracing::info!(publications, version = %engine.snapshot().models.version, "online two-tower model published");
                }
            }
        });
    }

    /// Tails the catalog and the log every `tail_interval_ms` (re-sorting trending lists after
    /// each batch of events) and reloads when the model directories change.
    pub fn spawn_background(self: &Arc<Self>) {
        self.spawn_online_learning();
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(engine.config.tail_interval_ms.max(10)));
            loop {
                tick.tick().await;
                match engine.catch_up().await {
                    Ok((_, 0)) => {}
                    Ok(_) => {
                        // Sorted under the read lock, so requests wait only for the swap.
                        let snapshot = engine.snapshot();
                        let lists = {
                            let live = snapshot.live().read().expect("live state lock");
                            live.activity.trending().sorted(&live.catalog)
                        };
                        if let Some(lists) = lists {
                            snapshot
                                .live()
                                .write()
                                .expect("live state lock")
                                .activity
                                .install_trending(lists);
                        }
                    }
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
                }
            }
        });
    }
}

/// Builds a snapshot: the whole catalog and log from `store`, the models from their directories.
async fn load(store: &Store, config: &EngineConfig, models: &ModelSource) -> Result<Snapshot, EngineError> {
    // Changes from here on are read again by the catalog tail.
    let as_of = Timestamp::now().millis();
    let items = store.all_items().await?;
    let (events, last_seq) = store.all_events(|_| true).await?;
    let (config, models) = (config.clone(), models.clone());
    tokio::task::spawn_blocking(move || build(items, &events, last_seq, as_of, &config, &models))
        .await
        .expect("snapshot build panicked")
}

fn build(
    items: Vec<Item>,
    events: &[Event],
    last_seq: i64,
    catalog_as_of: i64,
    config: &EngineConfig,
    models: &ModelSource,
) -> Result<Snapshot, EngineError> {
    let now = Timestamp::now();
    let disk_version = models_version(&model_dirs(config, models));
    let version = models_version(&[&models.retrieval_dir, &models.ranking_dir]);
    let retrieval = match existing(&models.retrieval_dir) {
        Some(dir) => {
            let mut retrieval = Retrieval::load(dir).map_err(|source| model_error(dir, source))?;
            let added = retrieval.index_missing(&items, now)?;
            tracing::info!(added, "indexed items newer than the retrieval model");
            Some(Arc::new(retrieval))
        }
        None => None,
    };
    let catalog = Catalog::new(items);
    let load_ranker = |dir: &Option<PathBuf>| match existing(dir) {
        Some(dir) => Ranker::load(dir, models.value.clone(), &catalog, events)
            .map(|ranker| Some(Arc::new(ranker)))
            .map_err(|source| model_error(dir, source)),
        None => Ok(None),
    };
    let ranker = load_ranker(&models.ranking_dir)?;
    let mut variant_models = BTreeMap::new();
    for variant in config.experiment.variants.iter().filter(|v| v.ranking_dir.is_some()) {
        let version = models_version(&[&models.retrieval_dir, &variant.ranking_dir]);
        let ranker = load_ranker(&variant.ranking_dir)?;
        variant_models.insert(variant.name.clone(), Models { version, retrieval: retrieval.clone(), ranker });
    }
    let mut activity = Activity::new(catalog.len(), config.heat_half_life_hours);
    for event in events {
        activity.record(&catalog, event);
    }
    activity.refresh_trending(&catalog);
    tracing::info!(items = catalog.len(), events = events.len(), %version, "serving snapshot built");
    Ok(Snapshot {
        state: Arc::new(TailState {
            live: RwLock::new(Live { catalog: Arc::new(catalog), activity }),
            applied: AtomicI64::new(last_seq),
            catalog_as_of: AtomicI64::new(catalog_as_of),
        }),
        models: Models { version, retrieval, ranker },
        variant_models,
        disk_version,
    })
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
    let since = snapshot.state.catalog_as_of.load(Ordering::Acquire) - CATALOG_OVERLAP_MS;
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
    let (catalog, changes) = tokio::task::spawn_blocking(move || catalog.with_changes(items))
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

/// Applies the events after `snapshot`'s last applied one, queueing their positives for the
/// online learner when there is one.
async fn apply_new_events(
    store: &Store,
    snapshot: &Snapshot,
    online: Option<(&PositiveRule, &std::sync::Mutex<Vec<OnlinePositive>>)>,
) -> Result<usize, StoreError> {
    let mut applied = 0;
    loop {
        let page = store.events_after(snapshot.state.applied.load(Ordering::Acquire), PAGE).await?;
        let Some(last) = page.last().map(|e| e.seq) else { return Ok(applied) };
        let mut positives = Vec::new();
        let catalog = {
            let mut live = snapshot.live().write().expect("live state lock");
            let Live { catalog, activity } = &mut *live;
            for stored in &page {
                let event = &stored.event;
                if let Some((rule, _)) = online {
                    let before = activity.user(&event.user_id);
                    positives.extend(OnlinePositive::from_event(rule, catalog, before, event));
                }
                activity.record(catalog, event);
            }
            catalog.clone()
        };
        if let Some((_, queue)) = online.filter(|_| !positives.is_empty()) {
            let mut queue = queue.lock().expect("online queue");
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
        for ranker in rankers(snapshot) {
            ranker.observe(&catalog, page.iter().map(|stored| &stored.event));
        }
        applied += page.len();
        snapshot.state.applied.store(last, Ordering::Release);
    }
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
