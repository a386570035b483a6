//! Test fixtures: fresh stores on every backend that this machine offers.
//!
//! PostgreSQL tests run when `REELRANK_TEST_POSTGRES` holds a server URL whose user may create
//! databases (`.ci/start-postgres` prints one). With `REELRANK_REQUIRE_POSTGRES=1` (as in CI) a
//! missing server fails the test instead of skipping that backend. Likewise the tests of state
//! shared through Redis run when `REELRANK_TEST_REDIS` holds a server URL (`.ci/start-redis`),
//! and `REELRANK_REQUIRE_REDIS=1` makes them required.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

use crate::{Result, Store};

/// A store for a test, with whatever keeps it alive (the SQLite directory).
pub struct TestStore {
    /// `sqlite` or `postgres`.
    pub name: &'static str,
    /// The URL it was opened with (a second process can open it too).
    pub url: String,
    /// The store.
    pub store: Store,
    /// Directory of the SQLite file, removed on drop.
    pub dir: Option<tempfile::TempDir>,
}

/// A fresh SQLite store in a temporary directory.
pub async fn sqlite() -> Result<TestStore> {
    let dir = tempfile::tempdir()?;
    let store = Store::open_in_dir(dir.path()).await?;
    let url = format!("sqlite://{}", dir.path().join(crate::SQLITE_FILE).display());
    Ok(TestStore { name: "sqlite", url, store, dir: Some(dir) })
}

/// The server URL `REELRANK_TEST_{NAME}` holds, or `None` (that part is skipped) when it is not
/// set; with `REELRANK_REQUIRE_{NAME}=1` a missing server fails the test instead.
fn configured(name: &str) -> Option<String> {
    let (var, require) = (format!("REELRANK_TEST_{name}"), format!("REELRANK_REQUIRE_{name}"));
    let url = std::env::var(&var).ok();
    if url.is_none() {
        assert!(std::env::var(&require).as_deref() != Ok("1"), "{require}=1 but {var} is not set");
        eprintln!("{var} not set: skipping what needs that server");
    }
    url
}

/// A name no other test of any process uses: `prefix`, the process, a counter and the time.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        reelrank_core::Timestamp::now().millis() % 1_000_000
    )
}

/// URL of a freshly created, empty PostgreSQL database, or `None` when no server is configured.
pub async fn postgres_url() -> Option<String> {
    let admin = configured("POSTGRES")?;
    sqlx::any::install_default_drivers();
    let name = unique("reelrank_test");
    let mut conn = sqlx::AnyConnection::connect(&admin).await.expect("connect to REELRANK_TEST_POSTGRES");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
    conn.close().await.ok();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _db)| base);
    Some(format!("{base}/{name}"))
}

/// The Redis server to test against and a key prefix of the test's own, or `None` (the test is
/// skipped) when no server is configured.
pub fn redis() -> Option<(String, String)> {
    Some((configured("REDIS")?, format!("{}:", unique("reelrank_test"))))
}

/// Fresh stores on every available backend: SQLite always, PostgreSQL when configured.
pub async fn all() -> Vec<TestStore> {
    let mut stores = vec![sqlite().await.expect("open sqlite")];
    if let Some(url) = postgres_url().await {
        let store = Store::open(&url).await.expect("open postgres");
        stores.push(TestStore { name: "postgres", url, store, dir: None });
    }
    stores
}
