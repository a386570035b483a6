//! `reelrank serve`.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use reelrank_server::{AppState, Engine, ModelSource};

use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to bind (`127.0.0.1:0` picks a free port); default from config, 127.0.0.1:8080.
    #[arg(long)]
    pub addr: Option<String>,
    /// What this process does when serving is scaled out: `all` (serve and learn; one process),
    /// `api` (serve, follow the trainer's models; any number) or `trainer` (learn while holding
    /// the trainer lease, stand by otherwise; see docs/DEPLOY.md). Default from config, `all`.
    #[arg(long)]
    pub role: Option<reelrank_server::ProcessRole>,
}

/// Serves the store in `data_dir` with the models trained there; `ready(url)` runs once the
/// feeds are loaded, just before requests are answered.
pub async fn run(
    data_dir: &Path,
    settings: &Settings,
    args: Args,
    ready: impl FnOnce(&str),
) -> anyhow::Result<()> {
    let store = super::open_store(data_dir, settings).await?;
    let addr = args.addr.unwrap_or_else(|| settings.server.addr.clone());
    let parsed: SocketAddr = addr.parse().with_context(|| format!("`{addr}` is not HOST:PORT"))?;
    settings.server.api_keys.check_bind(&parsed).map_err(anyhow::Error::msg)?;
    if settings.server.api_keys.keys.is_empty() {
        tracing::warn!("no API keys configured: serving without authentication on loopback only");
    }
    let models = ModelSource {
        retrieval_dir: Some(super::train::model_dir(data_dir)),
        ranking_dir: Some(super::train_ranking::model_dir(data_dir)),
        value: settings.ranking.value.clone(),
        online_dir: Some(data_dir.join("models").join("online")),
    };
    let mut serving = settings.serving.clone();
    serving.role = args.role.unwrap_or(serving.role);
    let engine = Engine::start(store.clone(), serving, models).await?;
    engine.spawn_background();
    // Bound once the feeds are loaded: until then the port refuses connections, so that a load
    // balancer or client moves on at once instead of queueing requests behind the load.
    let listener = bind(&addr).await?;
    let state = AppState::new(store.clone(), settings.ingest.clone())
        .with_engine(engine)
        .with_auth(settings.server.api_keys.clone())
        .with_request_timeout(std::time::Duration::from_millis(settings.server.request_timeout_ms));
    ready(&format!("http://{}", listener.local_addr()?));
    reelrank_server::serve(listener, state, shutdown_signal()).await?;
    store.close().await;
    Ok(())
}

/// Binds `addr` and announces the URL on stdout (scripts and tests read this line).
pub async fn bind(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let parsed: SocketAddr = addr.parse().with_context(|| format!("`{addr}` is not HOST:PORT"))?;
    let listener = tokio::net::TcpListener::bind(parsed).await.with_context(|| format!("binding {addr}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    Ok(listener)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async { tokio::signal::ctrl_c().await.ok() };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => signal.recv().await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
