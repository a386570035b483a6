//! Probes for orchestrators and load balancers: `GET /livez` (the process answers; restart it
//! when not) and `GET /readyz` (send it traffic: the store answers and the server is not shutting
//! down; Redis answers where replicas share users' activity in it; it also says whether this
//! process serves feeds, which are loaded before it listens).
//! `GET /healthz` is readiness, under its older name.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use crate::AppState;

/// How long readiness waits for the store before calling it unreachable.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /livez`.
pub(crate) async fn live() -> &'static str {
    "ok\n"
}

/// Answer of `GET /readyz`: `ready`, and for each check `ok` or what is wrong.
#[derive(Debug, Serialize)]
pub(crate) struct Readiness {
    ready: bool,
    store: String,
    feeds: String,
    /// Redis, where replicas share users' activity (`not used` without).
    shared_state: String,
    shutdown: String,
    /// What this process does in a scaled-out deployment (`reelrank serve --role`).
    role: String,
}

/// `GET /readyz`: `200` when ready, `503` with the failing checks when not.
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let store = match tokio::time::timeout(STORE_PROBE_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(err)) => format!("unreachable: {err}"),
        Err(_) => format!("no answer within {} s", STORE_PROBE_TIMEOUT.as_secs()),
    };
    let feeds = match &state.engine {
        Some(_) => "ok".to_owned(),
        None => "not served by this process (ingest only)".to_owned(),
    };
    let shared = match &state.engine {
        Some(engine) => tokio::time::timeout(STORE_PROBE_TIMEOUT, engine.ping_shared()).await.ok(),
        None => Some(None),
    };
    let shared_state = match shared {
        Some(None) => "not used".to_owned(),
        Some(Some(Ok(()))) => "ok".to_owned(),
        Some(Some(Err(err))) => format!("unreachable: {err}"),
        None => format!("no answer within {} s", STORE_PROBE_TIMEOUT.as_secs()),
    };
    let role = state.engine.as_ref().map_or("ingest", |engine| engine.role_status()).to_owned();
    let draining = state.draining.load(Ordering::Acquire);
    let shutdown = if draining { "draining: finishing in-flight requests" } else { "ok" }.to_owned();
    // A server without feeds is still ready for what it serves (ingest).
    let ready = store == "ok" && matches!(shared_state.as_str(), "ok" | "not used") && !draining;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { ready, store, feeds, shared_state, shutdown, role }))
}
