use std::sync::Arc;

/// What can go wrong in the store. Every variant is our failure or the database's, never the
/// caller's: records are validated before they reach the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no backend we support.
    #[error("unsupported database URL `{url}`: use a path, sqlite://PATH or postgres://...")]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
    },
    /// Creating the data directory, or a lease's lock file beside the database, failed.
    #[error("file system error: {0}")]
    Io(Arc<std::io::Error>),
    /// Applying the schema migrations failed.
    #[error("migrating the database schema failed: {0}")]
    Migrate(Arc<sqlx::migrate::MigrateError>),
    /// The database refused or lost a statement (connection down, disk full, constraint).
    #[error("database error: {0}")]
    Database(Arc<sqlx::Error>),
    /// The database was found unreachable moments ago: calls are refused at once until a probe
    /// reaches it again (one per second), rather than each waiting for a connection.
    #[error("the database is unreachable (tried again every second)")]
    Unavailable,
    /// A stored value could not be read back into the data model.
    #[error("stored {table} row `{id}` has an unreadable `{column}`: {message}")]
    Corrupt {
        /// Table of the row.
        table: &'static str,
        /// Primary key of the row.
        id: String,
        /// Column that failed to decode.
        column: &'static str,
        /// Why.
        message: String,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> StoreError {
        StoreError::Database(Arc::new(err))
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> StoreError {
        StoreError::Migrate(Arc::new(err))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(err: std::io::Error) -> StoreError {
        StoreError::Io(Arc::new(err))
    }
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;
