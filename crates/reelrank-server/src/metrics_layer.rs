//! Request metrics and access logs.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process-wide Prometheus recorder, installed on first use.
pub(crate) fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
                .expect("static buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding applications); keep rendering ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The latest feed latencies, for the dashboard's percentiles (Prometheus keeps buckets only).
pub(crate) struct FeedLatencies {
    latest: std::collections::VecDeque<f32>,
}

/// Feed requests the percentiles are taken over.
const LATENCY_WINDOW: usize = 4096;

impl FeedLatencies {
    fn global() -> &'static std::sync::Mutex<FeedLatencies> {
        static LATENCIES: OnceLock<std::sync::Mutex<FeedLatencies>> = OnceLock::new();
        LATENCIES.get_or_init(|| std::sync::Mutex::new(FeedLatencies { latest: Default::default() }))
    }

    fn record(ms: f32) {
        let mut latencies = FeedLatencies::global().lock().expect("latency lock");
        if latencies.latest.len() == LATENCY_WINDOW {
            latencies.latest.pop_front();
        }
        latencies.latest.push_back(ms);
    }

    /// How many of the latest feed requests there are (at most 4,096), and their p50, p95 and
    /// p99 in milliseconds.
    pub(crate) fn percentiles() -> (usize, [f32; 3]) {
        let mut sorted: Vec<f32> =
            FeedLatencies::global().lock().expect("latency lock").latest.iter().copied().collect();
        sorted.sort_unstable_by(f32::total_cmp);
        let at =
            |q: f64| sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
        (sorted.len(), [at(0.5), at(0.95), at(0.99)])
    }
}

/// Counts requests and their latency per route and status, and logs each one.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let response = next.run(request).await;
    let seconds = start.elapsed().as_secs_f64();
    let status = response.status().as_u16().to_string();
    let labels = [("method", method.to_string()), ("route", route.clone()), ("status", status)];
    metrics::counter!("reelrank_http_requests_total", &labels).increment(1);
    metrics::histogram!("reelrank_http_request_duration_seconds", &labels[..2]).record(seconds);
    if route == "/v1/recommend" {
        FeedLatencies::record((seconds * 1e3) as f32);
    }
    tracing::debug!(%method, route, status = response.status().as_u16(), ms = seconds * 1e3, "request");
    response
}
