//! Leases: a role only one process may hold at a time (the trainer), held for as long as the
//! holder lives. On PostgreSQL a lease is a session advisory lock on a connection of its own, which
//! the server releases the moment that connection dies (the holder killed, its machine gone), so
//! a standby takes over without waiting for a timeout; on SQLite, whose processes share one
//! machine, it is an exclusive lock on a file beside the database, which the kernel releases with
//! the process.

use sqlx::{AnyConnection, Connection};

use crate::{Backend, Result, Store};

/// A held lease; dropping it releases it.
pub struct Lease {
    hold: Hold,
}

enum Hold {
    /// The connection whose session holds the advisory lock.
    Postgres(AnyConnection),
    /// The locked file, unlocked when dropped.
    Sqlite { _locked: std::fs::File },
}

impl Store {
    /// Takes the lease `name` if no other process holds it; `None` when one does.
    pub async fn try_lease(&self, name: &str) -> Result<Option<Lease>> {
        let hold = match self.backend {
            Backend::Postgres => {
                // Detached from the pool: the lock lives exactly as long as this connection.
                let mut connection = self.connection().await?.detach();
                let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(lock_key(name))
                    .fetch_one(&mut connection)
                    .await?;
                if !taken {
                    connection.close().await.ok();
                    return Ok(None);
                }
                Hold::Postgres(connection)
            }
            Backend::Sqlite => {
                let database = self.sqlite_path.as_ref().expect("an SQLite store knows its file");
                let path = database.with_extension(format!("{name}.lease"));
                let file = fs_err::File::options().create(true).truncate(false).write(true).open(&path)?;
                let file = file.into_parts().0;
                match file.try_lock() {
                    Ok(()) => Hold::Sqlite { _locked: file },
                    Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                    Err(std::fs::TryLockError::Error(err)) => return Err(err.into()),
                }
            }
        };
        Ok(Some(Lease { hold }))
    }
}

impl Lease {
    /// Whether the lease is still held. A PostgreSQL lease is lost with its connection (the
    /// server restarted or the network cut it), and another process may hold it by now.
    pub async fn held(&mut self) -> bool {
        match &mut self.hold {
            Hold::Postgres(connection) => connection.ping().await.is_ok(),
            Hold::Sqlite { .. } => true,
        }
    }
}

/// The advisory lock key of a lease: a stable 64-bit hash (FNV-1a) of its name.
fn lock_key(name: &str) -> i64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    hash as i64
}

#[cfg(test)]
mod tests {
    use crate::testing;

    async fn one_holder_at_a_time(first: &crate::Store, second: &crate::Store) {
        let mut held = first.try_lease("trainer").await.unwrap().expect("a free lease is taken");
        assert!(held.held().await);
        assert!(second.try_lease("trainer").await.unwrap().is_none(), "taken twice");
        assert!(second.try_lease("other").await.unwrap().is_some(), "leases are by name");
        drop(held);
        // A released PostgreSQL lock is released when its connection closes, which the drop
        // starts; wait for it.
        let mut taken = None;
        for _ in 0..50 {
            taken = second.try_lease("trainer").await.unwrap();
            if taken.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(taken.is_some(), "a released lease is taken by another holder");
    }

    #[tokio::test]
    async fn an_sqlite_lease_has_one_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (
            crate::Store::open_in_dir(dir.path()).await.unwrap(),
            crate::Store::open_in_dir(dir.path()).await.unwrap(),
        );
        one_holder_at_a_time(&first, &second).await;
    }

    #[tokio::test]
    async fn a_postgres_lease_has_one_holder_until_dropped() {
        let Some(url) = testing::postgres_url().await else { return };
        let (first, second) =
            (crate::Store::open(&url).await.unwrap(), crate::Store::open(&url).await.unwrap());
        one_holder_at_a_time(&first, &second).await;
    }
}
