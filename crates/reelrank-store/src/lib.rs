//! reelrank's durable store: the catalog, the users and the append-only event log.
//!
//! One code path serves two real databases through sqlx's `Any` driver: an embedded **SQLite** file
//! (the default, one file under the data directory, WAL with `synchronous=FULL`) and **PostgreSQL**
//! for platforms that outgrow one machine. Each backend has its own versioned migrations because
//! their DDL differs (identity columns, types); every query is shared and uses `$n` placeholders,
//! which both accept.
//!
//! A write returns only after its transaction is committed to disk, so an acknowledged write
//! survives `kill -9`. Writes are multi-row statements in one transaction per call: a batch is
//! stored whole or not at all.
//!
//! ```no_run
//! # async fn demo() -> reelrank_store::Result<()> {
//! let store = reelrank_store::Store::open_in_dir(std::path::Path::new("./reelrank-data")).await?;
//! let counts = store.counts().await?;
//! println!("{} items, {} users, {} events", counts.items, counts.users, counts.events);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod controls;
mod error;
mod lease;
mod moderation;
mod read;
mod rows;
#[cfg(feature = "testing")]
pub mod testing;
mod write;

use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use reelrank_core::Breaker;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, ConnectOptions, Transaction};
use tokio::sync::Mutex;

pub use error::{Result, StoreError};
pub use lease::Lease;
pub use moderation::{AuditEntry, Moderated, REPORTS_ACTOR};
pub use read::{Counts, ItemChange, StoredEvent};
pub use write::{AppendOutcome, Appended, BatchKey, BATCH_KEY_RETENTION_MS};

/// How long calls are refused at once after one found the database unreachable.
const BACK_OFF: Duration = Duration::from_secs(1);

/// File name of the embedded database inside the data directory.
pub const SQLITE_FILE: &str = "reelrank.db";

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Handle to the database; cheap to share behind an `Arc`.
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer at a time; queueing writers here instead of in SQLite's busy loop
    /// keeps latency predictable. PostgreSQL writers run concurrently.
    sqlite_writer: Option<Mutex<()>>,
    /// The SQLite database file (leases lock files beside it).
    sqlite_path: Option<std::path::PathBuf>,
    /// While the database server is unreachable every call would wait the pool's acquire
    /// timeout; the breaker refuses them at once instead ([`StoreError::Unavailable`]).
    breaker: Breaker,
}

/// The database file an `sqlite:` URL names.
fn sqlite_file(url: &str) -> std::path::PathBuf {
    let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
    path.split('?').next().unwrap_or(path).into()
}

/// Durable commits (an acknowledged write survives power loss and kill -9) with WAL so readers never
/// block the writer.
async fn sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> sqlx::Result<()> {
    use sqlx::Executor;
    for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA busy_timeout = 10000"] {
        conn.execute(pragma).await?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the embedded SQLite store in `data_dir`.
    pub async fn open_in_dir(data_dir: &Path) -> Result<Store> {
        fs_err::create_dir_all(data_dir)?;
        let path = std::path::absolute(data_dir.join(SQLITE_FILE))?;
        Store::open(&format!("sqlite://{}", path.display())).await
    }

    /// Opens a store by URL: `sqlite://PATH` or `postgres://USER@HOST/DB`. Applies pending migrations.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl { url: url.to_owned() });
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        // Batches are statements of thousands of placeholders: log them only when asked for.
        let options = AnyConnectOptions::from_str(&url)?
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _meta| Box::pin(sqlite_pragmas(conn)))
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => {
                // A server down fails requests within seconds (503 with the reason) rather
                // than holding them past clients' own timeouts.
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(3))
                    .connect_with(options)
                    .await?
            }
        };
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        let sqlite_writer = (backend == Backend::Sqlite).then(|| Mutex::new(()));
        let sqlite_path = (backend == Backend::Sqlite).then(|| sqlite_file(&url));
        Ok(Store { pool, backend, sqlite_writer, sqlite_path, breaker: Breaker::new(BACK_OFF) })
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes all connections, waiting for in-flight statements.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A connection from the pool, through the breaker.
    async fn connection(&self) -> Result<PoolConnection<Any>> {
        self.guarded(self.pool.acquire()).await
    }

    /// A transaction on a connection from the pool, through the breaker.
    async fn begin(&self) -> Result<Transaction<'static, Any>> {
        self.guarded(self.pool.begin()).await
    }

    /// Runs `call` through the breaker: a pool that timed out waiting for a connection, or one
    /// that lost its socket, did not reach the database.
    async fn guarded<T>(&self, call: impl Future<Output = sqlx::Result<T>>) -> Result<T> {
        let reached = |answer: &Result<T>| match answer {
            Err(StoreError::Database(err)) => {
                Some(!matches!(**err, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_)))
            }
            _ => Some(true),
        };
        let call = async { Ok(call.await?) };
        self.breaker.guard(call, reached, || StoreError::Unavailable).await
    }
}
