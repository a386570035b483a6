//! Test fixtures: fresh stores on every backend that this machine offers.
//!
//! PostgreSQL tests run when `REELRANK_TEST_POSTGRES` holds a server URL whose user may create
//! databases (`.ci/start-postgres` prints one). With `REELRANK_REQUIRE_POSTGRES=1` (as in CI) a
//! missing server fails the test instead of skipping that backend.

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

/// URL of a freshly created, empty PostgreSQL database, or `None` when no server is configured.
pub async fn postgres_url() -> Option<String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let Ok(admin) = std::env::var("REELRANK_TEST_POSTGRES") else {
        assert!(
            std::env::var("REELRANK_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "REELRANK_REQUIRE_POSTGRES=1 but REELRANK_TEST_POSTGRES is not set"
        );
        eprintln!("REELRANK_TEST_POSTGRES not set: skipping the PostgreSQL backend");
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = format!(
        "reelrank_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        reelrank_core::Timestamp::now().millis() % 1_000_000
    );
    let mut conn = sqlx::AnyConnection::connect(&admin).await.expect("connect to REELRANK_TEST_POSTGRES");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
    conn.close().await.ok();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _db)| base);
    Some(format!("{base}/{name}"))
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
