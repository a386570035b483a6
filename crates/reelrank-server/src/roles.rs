//! What a process does when serving is scaled out over one store and one shared state:
//!
//! - `all` (the default, one machine): serves, and learns online when that is on;
//! - `api` (any number, stateless): serves, never learns, and hot-swaps to the models the trainer
//!   publishes, each time it snapshots them;
//! - `trainer` (one active): serves too, and learns online while it holds the trainer lease in the
//!   store ([`reelrank_store::Lease`]). A trainer started while another holds it stands by; when
//!   the holder dies its lease goes with its connection, and the standby takes it, reloads from
//!   the newest snapshot (replaying the log after it) and learns from there.
//!
//! Models are shared through the model directories (on shared storage when replicas run on
//! several machines): the trained models, versioned by their modification time, and the online
//! snapshots, versioned by the last event they learned from.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use reelrank_core::{Item, Timestamp};
use reelrank_models::{TwoTower, WideDeep};
use reelrank_serving::online_snapshot::{self, SnapshotMeta};
use reelrank_store::Lease;
use serde::Deserialize;

use crate::engine::{Engine, EngineError, Snapshot};
use crate::online::OnlineModel;

/// The name of the lease the active trainer holds.
const TRAINER_LEASE: &str = "trainer";

/// How often a trainer checks its lease, or tries to take it.
const LEASE_CHECK: Duration = Duration::from_secs(2);

/// What this process does (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessRole {
    /// Serves and learns: a deployment of one process.
    #[default]
    All,
    /// Serves and follows the trainer's models.
    Api,
    /// Serves, and learns while holding the trainer lease.
    Trainer,
}

impl FromStr for ProcessRole {
    type Err = String;

    fn from_str(role: &str) -> Result<ProcessRole, String> {
        match role {
            "all" => Ok(ProcessRole::All),
            "api" => Ok(ProcessRole::Api),
            "trainer" => Ok(ProcessRole::Trainer),
            other => Err(format!("unknown role `{other}`: use all, api or trainer")),
        }
    }
}

impl ProcessRole {
    /// Whether a process in this role learns online, given whether online learning is on.
    pub fn learns(self, online_enabled: bool) -> bool {
        online_enabled && self != ProcessRole::Api
    }

    /// Whether a process in this role serves the online snapshots: those it learned itself, or
    /// the trainer's.
    pub fn reads_snapshots(self, online_enabled: bool) -> bool {
        online_enabled || self == ProcessRole::Api
    }
}

impl Engine {
    /// This process's role as readiness reports it: `all`, `api`, or whether a trainer learns
    /// or stands by.
    pub fn role_status(&self) -> &'static str {
        match (self.config().role, &self.online) {
            (ProcessRole::All, _) => "all",
            (ProcessRole::Api, _) => "api",
            (ProcessRole::Trainer, Some(online)) if !online.standby() => "trainer: holds the lease, learning",
            (ProcessRole::Trainer, _) => "trainer: standing by, another holds the lease",
        }
    }
}

/// The online snapshots a snapshot's models were loaded from (`None`: the trained model), so that
/// a follower swaps only when a newer one appears.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Followed {
    pub(crate) tower: Option<i64>,
    pub(crate) ranking: Option<i64>,
}

impl Followed {
    /// Of what a load resumed.
    pub(crate) fn of(tower: Option<&SnapshotMeta>, ranking: Option<&SnapshotMeta>) -> Followed {
        Followed { tower: tower.map(|m| m.seq), ranking: ranking.map(|m| m.seq) }
    }
}

/// Takes the trainer lease if it is free (`None`: another trainer holds it, or the store did not
/// answer, and this one stands by).
pub(crate) async fn take_trainer_lease(store: &reelrank_store::Store) -> Option<Lease> {
    match store.try_lease(TRAINER_LEASE).await {
        Ok(Some(lease)) => {
            tracing::info!("took the trainer lease: learning online");
            Some(lease)
        }
        Ok(None) => {
            // Asked every 2 s while standing by: said once, at start (`Engine::start`).
            tracing::debug!("another trainer holds the lease");
            None
        }
        Err(err) => {
            tracing::warn!(error = %err, "taking the trainer lease failed: standing by");
            None
        }
    }
}

/// Keeps a trainer's lease: checks it every [`LEASE_CHECK`] and stands learning by when it is
/// lost; while standing by, tries to take it, and on taking it reloads (resuming from the newest
/// snapshot, which the previous holder wrote) before learning.
pub(crate) fn spawn_lease_keeper(engine: &Arc<Engine>, mut lease: Option<Lease>) {
    let engine = engine.clone();
    tokio::spawn(async move {
        let online = engine.online.as_ref().expect("a trainer learns online");
        let mut tick = tokio::time::interval(LEASE_CHECK);
        loop {
            tick.tick().await;
            let held = match &mut lease {
                Some(held) => held.held().await,
                None => false,
            };
            if held {
                continue;
            }
            if lease.take().is_some() {
                tracing::error!("the trainer lease was lost with its connection: standing by");
                online.set_standby(true);
                continue;
            }
            let Some(taken) = take_trainer_lease(&engine.store).await else { continue };
            if let Err(err) = engine.reload_for(true).await {
                tracing::error!(error = %err, "reloading on taking the trainer lease failed; releasing it");
                continue;
            }
            online.set_standby(false);
            lease = Some(taken);
        }
    });
}

/// Swaps in the newest online snapshots of the served models when they are newer than those
/// served: the models change, the catalog and the activity stay. Returns whether it swapped.
pub(crate) async fn follow_snapshots(engine: &Engine) -> Result<bool, EngineError> {
    let Some(root) = engine.models.online_dir.clone() else { return Ok(false) };
    let snapshot = engine.snapshot();
    let newer = |model: OnlineModel, served: bool, followed: Option<i64>| {
        let (dir, meta) = online_snapshot::latest(&model.root(&root), &engine.trained_version(model))?;
        (served && Some(meta.seq) != followed).then_some((dir, meta))
    };
    let tower = newer(OnlineModel::TwoTower, snapshot.models.retrieval.is_some(), snapshot.followed.tower);
    let ranking = newer(OnlineModel::Ranking, snapshot.models.ranker.is_some(), snapshot.followed.ranking);
    if tower.is_none() && ranking.is_none() {
        return Ok(false);
    }
    let building = snapshot.clone();
    let next = tokio::task::spawn_blocking(move || swapped(&building, tower, ranking))
        .await
        .expect("loading an online snapshot panicked")?;
    let _updating = engine.updating.lock().await;
    // A reload meanwhile read the snapshots itself.
    if !Arc::ptr_eq(&engine.snapshot(), &snapshot) {
        return Ok(false);
    }
    tracing::info!(version = %next.models.version, "the trainer's online models swapped in");
    engine.current.store(Arc::new(next));
    Ok(true)
}

/// `snapshot` serving the models of the online snapshots given (the others as they are).
fn swapped(
    snapshot: &Snapshot,
    tower: Option<(std::path::PathBuf, SnapshotMeta)>,
    ranking: Option<(std::path::PathBuf, SnapshotMeta)>,
) -> Result<Snapshot, EngineError> {
    let model_error = |dir: &std::path::Path| {
        let dir = dir.to_owned();
        move |source| EngineError::Model { dir, source }
    };
    let mut followed = snapshot.followed;
    let mut publications = 0;
    let retrieval = match (&tower, &snapshot.models.retrieval) {
        (Some((dir, meta)), Some(served)) => {
            let model = TwoTower::load(dir).map_err(model_error(dir))?;
            let catalog = snapshot.catalog();
            let learned: Vec<&Item> = meta
                .fresh_items
                .iter()
                .filter_map(|id| catalog.index(id).map(|index| catalog.item(index)))
                .collect();
            (followed.tower, publications) = (Some(meta.seq), meta.publications);
            Some(Arc::new(served.with_model(model, &learned, Timestamp::now())?))
        }
        _ => None,
    };
    let ranker = match (&ranking, &snapshot.models.ranker) {
        (Some((dir, meta)), Some(served)) => {
            let model = WideDeep::load(dir).map_err(model_error(dir))?;
            followed.ranking = Some(meta.seq);
            publications = publications.max(meta.publications);
            Some(Arc::new(served.with_model(model)))
        }
        _ => None,
    };
    let mut next = snapshot.with_published(retrieval, ranker, publications);
    next.followed = followed;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_only_api_never_learns() {
        assert_eq!("api".parse(), Ok(ProcessRole::Api));
        assert_eq!("trainer".parse(), Ok(ProcessRole::Trainer));
        assert!("leader".parse::<ProcessRole>().unwrap_err().contains("all, api or trainer"));
        assert!(!ProcessRole::Api.learns(true));
        assert!(ProcessRole::Trainer.learns(true) && ProcessRole::All.learns(true));
        assert!(ProcessRole::Api.reads_snapshots(false));
        assert!(!ProcessRole::All.reads_snapshots(false));
    }
}
