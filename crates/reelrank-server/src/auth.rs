//! API keys with roles. A request names its key in `Authorization: Bearer KEY` (or `X-Api-Key`);
//! no key or an unknown one gets `401`, a key without the route's role `403`. With no keys
//! configured every request is let through, and the server refuses to bind anything but
//! loopback ([`AuthConfig::check_bind`]), so a keyless server is never reachable from outside.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

use crate::{AppState, HttpError};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Write items, users and events.
    Ingest,
    /// Read feeds, similar items and explanations.
    Read,
    /// Everything, including metrics and operations.
    Admin,
}

/// One API key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Who holds it (for logs).
    pub name: String,
    /// The secret; at least 16 characters.
    pub key: String,
    /// What it may do.
    pub roles: Vec<Role>,
    /// Requests it may make per second, in bursts of up to a second's worth, on each replica;
    /// more get `429` with `Retry-After`. None: unlimited.
    #[serde(default)]
    pub requests_per_second: Option<NonZeroU32>,
}

/// The configured keys (`[[server.api_keys]]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct AuthConfig {
    /// Every key; none means keyless on loopback.
    pub keys: Vec<ApiKey>,
}

/// Shortest key accepted.
const MIN_KEY_LEN: usize = 16;

impl AuthConfig {
    /// Refuses configurations that would be unsafe to serve: short keys, and no keys on an
    /// address other than loopback.
    pub fn check_bind(&self, addr: &SocketAddr) -> Result<(), String> {
        if let Some(short) = self.keys.iter().find(|k| k.key.len() < MIN_KEY_LEN) {
            return Err(format!("api key `{}` is shorter than {MIN_KEY_LEN} characters", short.name));
        }
        if self.keys.is_empty() && !addr.ip().is_loopback() {
            return Err(format!(
                "no API keys are configured ([[server.api_keys]]): refusing to serve on {addr}; \
                 bind a loopback address or configure keys"
            ));
        }
        Ok(())
    }

    /// The key a request presents and its position (`None`: no key, or one not configured).
    fn key(&self, presented: &str) -> Option<(usize, &ApiKey)> {
        self.keys.iter().enumerate().find(|(_, k)| same_secret(k.key.as_bytes(), presented.as_bytes()))
    }
}

/// Each key's request budget, in the order of the keys (`None`: unlimited).
pub(crate) struct RateLimits(Vec<Option<DefaultDirectRateLimiter>>);

impl RateLimits {
    pub(crate) fn new(auth: &AuthConfig) -> RateLimits {
        let limiter =
            |key: &ApiKey| key.requests_per_second.map(|rate| RateLimiter::direct(Quota::per_second(rate)));
        RateLimits(auth.keys.iter().map(limiter).collect())
    }

    /// Spends one request of key `index`; when its budget is spent, how long until it is not.
    fn spend(&self, index: usize) -> Result<(), Duration> {
        let Some(Some(limiter)) = self.0.get(index) else { return Ok(()) };
        limiter.check().map_err(|refused| refused.wait_time_from(limiter.clock().now()))
    }
}

/// Compares two secrets in time that depends only on their lengths, so that response times do
/// not reveal how much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The key a request presents.
fn presented(request: &Request) -> Option<&str> {
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok())).map(str::trim)
}

/// Middleware for routes of the `ingest` role.
pub(crate) async fn ingest(state: State<AppState>, request: Request, next: Next) -> Response {
    require(Role::Ingest, state, request, next).await
}

/// Middleware for routes of the `read` role.
pub(crate) async fn read(state: State<AppState>, request: Request, next: Next) -> Response {
    require(Role::Read, state, request, next).await
}

/// Middleware for routes of the `admin` role.
pub(crate) async fn admin(state: State<AppState>, request: Request, next: Next) -> Response {
    require(Role::Admin, state, request, next).await
}

/// Who made a request, for the audit log: the name of the API key it presented, or `local` on
/// a keyless (loopback) server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// Lets through requests whose key has `role` (or `admin`), naming its holder as the [`Actor`].
async fn require(role: Role, State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if state.auth.keys.is_empty() {
        request.extensions_mut().insert(Actor("local".to_owned()));
        return next.run(request).await;
    }
    let Some((index, key)) = presented(&request).and_then(|key| state.auth.key(key)) else {
        return HttpError::new(
            StatusCode::UNAUTHORIZED,
            "a valid API key is required (Authorization: Bearer KEY)",
        )
        .into_response();
    };
    if !key.roles.contains(&role) && !key.roles.contains(&Role::Admin) {
        let needed = format!("{role:?}").to_lowercase();
        return HttpError::new(StatusCode::FORBIDDEN, format!("this API key lacks the `{needed}` role"))
            .into_response();
    }
    if let Err(wait) = state.limits.spend(index) {
        metrics::counter!("reelrank_rate_limited_total", "key" => key.name.clone()).increment(1);
        let rate = key.requests_per_second.map_or(0, NonZeroU32::get);
        let message = format!("API key `{}` is over its {rate} requests per second", key.name);
        let retry_after = wait.as_secs_f64().ceil().max(1.0).to_string();
        let mut response = HttpError::new(StatusCode::TOO_MANY_REQUESTS, message).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, retry_after.parse().expect("a number"));
        return response;
    }
    request.extensions_mut().insert(Actor(key.name.clone()));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyless_servers_stay_on_loopback_and_short_keys_are_refused() {
        let none = AuthConfig::default();
        assert!(none.check_bind(&"127.0.0.1:8080".parse().unwrap()).is_ok());
        assert!(none.check_bind(&"[::1]:8080".parse().unwrap()).is_ok());
        let refused = none.check_bind(&"0.0.0.0:8080".parse().unwrap()).unwrap_err();
        assert!(refused.contains("no API keys"), "{refused}");
        let short = AuthConfig {
            keys: vec![ApiKey {
                name: "bot".into(),
                key: "abc".into(),
                roles: vec![Role::Read],
                requests_per_second: None,
            }],
        };
        assert!(short.check_bind(&"127.0.0.1:8080".parse().unwrap()).unwrap_err().contains("`bot`"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcdef", b"0123456789abcdeg"));
        assert!(!same_secret(b"0123456789abcdef", b"0123456789abcde"));
    }
}
