//! Batched, transactional writes.

use std::collections::{BTreeSet, HashMap};

use reelrank_core::{Event, Item, ModerationStatus, Timestamp, User};
use serde::Serialize;
use sqlx::{Any, Row, Transaction};

use crate::rows::{bind_event, bind_item, bind_user, EVENT_COLUMNS, ITEM_COLUMNS, USER_COLUMNS};
use crate::{Backend, Result, Store};

/// Rows per multi-row statement: under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters.
const CHUNK_ROWS: usize = 1000;

/// The logs that readers tail: the event log by `seq`, the catalog by `updated_at`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Log {
    Events,
    Catalog,
}

impl Log {
    /// The PostgreSQL advisory lock key that orders the log's writers.
    fn lock_key(self) -> i64 {
        match self {
            Log::Events => 0x7265_656c_0001,
            Log::Catalog => 0x7265_656c_0002,
        }
    }
}

/// How long a batch's idempotency key is kept: a retry after it writes the batch again.
pub const BATCH_KEY_RETENTION_MS: i64 = 24 * 3_600_000;

/// A posted batch's idempotency key (the client's `Idempotency-Key`) and a digest of its content.
#[derive(Debug, Clone, Copy)]
pub struct BatchKey<'a> {
    /// The client's key.
    pub key: &'a str,
    /// A digest of the batch, which a retry repeats.
    pub digest: &'a str,
}

/// What [`Store::append_keyed_events`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The batch was new and written.
    Written(AppendOutcome),
    /// The key was seen with this batch before: nothing written; the first post's outcome.
    Replayed(AppendOutcome),
    /// The key was seen with a different batch: nothing written.
    KeyReused,
}

/// What [`Store::append_events`] did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AppendOutcome {
    /// Events written.
    pub inserted: u64,
    /// Events skipped because their `event_id` was already stored (or repeated in the batch).
    pub duplicates: u64,
    /// Users created because an event named them first.
    pub users_created: u64,
}

/// `count` placeholders, comma-separated, numbered from `first`. PostgreSQL numbers its
/// placeholders (`$1`); SQLite gets anonymous `?`, because sqlx binds `$n` there by name, a lookup
/// per parameter that made 1,000-row statements quadratic (30x slower).
pub(crate) fn placeholders(backend: Backend, first: usize, count: usize) -> String {
    let one = |n: usize| match backend {
        Backend::Sqlite => "?".to_owned(),
        Backend::Postgres => format!("${n}"),
    };
    (first..first + count).map(one).collect::<Vec<_>>().join(", ")
}

/// `INSERT INTO table (cols) VALUES (..),(..)` for `rows` rows.
fn insert_sql(backend: Backend, table: &str, columns: &[&str], rows: usize) -> String {
    let groups: Vec<String> = (0..rows)
        .map(|row| format!("({})", placeholders(backend, row * columns.len() + 1, columns.len())))
        .collect();
    format!("INSERT INTO {table} ({}) VALUES {}", columns.join(", "), groups.join(", "))
}

/// `ON CONFLICT (key) DO UPDATE SET c = excluded.c, ...` for every column but the key and `skip`.
fn upsert_clause(key: &str, columns: &[&str], skip: &[&str]) -> String {
    let sets: Vec<String> = columns
        .iter()
        .filter(|c| **c != key && !skip.contains(c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(" ON CONFLICT ({key}) DO UPDATE SET {}", sets.join(", "))
}

/// Keeps the last record per key, in first-appearance order: PostgreSQL refuses an upsert that
/// touches one row twice, and "last write wins" is what a client sending both expects.
fn last_per_key<T>(records: &[T], key: impl Fn(&T) -> &str) -> Vec<&T> {
    let mut position: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    let mut kept: Vec<&T> = Vec::with_capacity(records.len());
    for record in records {
        match position.get(key(record)) {
            Some(&i) => kept[i] = record,
            None => {
                position.insert(key(record), kept.len());
                kept.push(record);
            }
        }
    }
    kept
}

impl Store {
    /// A multi-row statement. PostgreSQL fixes parameter types when a statement is prepared, and
    /// sqlx's Any driver types a NULL by its Rust type only loosely, so a cached statement first run
    /// with a NULL can refuse a later value: there each batch is prepared afresh. SQLite keeps the
    /// cached statement, which saves re-parsing thousands of placeholders.
    fn bulk_query<'q>(&self, sql: &'q str) -> crate::rows::AnyQuery<'q> {
        sqlx::query(sql).persistent(self.backend == Backend::Sqlite)
    }

    /// Begins a transaction that writes to `log`, with the stamp (Unix ms) its rows carry. On
    /// PostgreSQL it first takes the log's transaction-scoped advisory lock, so that writes to a
    /// log commit in the order they draw sequence numbers and stamps: sequences are drawn before
    /// commit, and without the lock a reader tailing by `seq` skipped about a tenth of the events
    /// of six concurrent writers. The stamp is then read from the database's clock, so replicas'
    /// clocks do not matter. SQLite's single writer (see [`Store::write_guard`]) already orders
    /// writes. A catalog stamp is also later than every stored one: readers tail the catalog by
    /// `(updated_at, item_id)`, and two writes within one millisecond would otherwise order by id,
    /// not by commit.
    pub(crate) async fn begin_ordered(&self, log: Log) -> Result<(Transaction<'static, Any>, i64)> {
        let mut tx = self.begin().await?;
        let clock = match self.backend {
            Backend::Sqlite => Timestamp::now().millis(),
            Backend::Postgres => {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(log.lock_key())
                    .execute(&mut *tx)
                    .await?;
                let row =
                    sqlx::query("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS now")
                        .fetch_one(&mut *tx)
                        .await?;
                row.try_get("now")?
            }
        };
        let stamp = match log {
            Log::Events => clock,
            Log::Catalog => {
                let row = sqlx::query(crate::read::CATALOG_STAMP_SQL).fetch_one(&mut *tx).await?;
                clock.max(row.try_get::<i64, _>("last")? + 1)
            }
        };
        Ok((tx, stamp))
    }

    pub(crate) async fn write_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.sqlite_writer {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    /// Inserts or replaces catalog items in one transaction. An item without `status` keeps its
    /// stored moderation state and review flags (a catalog sync must not undo a takedown or a
    /// rumour flag); a new one gets `default_status`. An item of a blocked creator carries the
    /// `creator_blocked` flag, whatever it was sent with. Returns the number of distinct items
    /// written.
    pub async fn upsert_items(&self, items: &[Item], default_status: ModerationStatus) -> Result<u64> {
        let items = last_per_key(items, |i| &i.item_id);
        let written = items.len() as u64;
        let (with_status, without_status): (Vec<&Item>, Vec<&Item>) =
            items.into_iter().partition(|i| i.status.is_some());
        let _guard = self.write_guard().await;
        let (mut tx, now) = self.begin_ordered(Log::Catalog).await?;
        for (group, skip) in [(with_status, &[][..]), (without_status, &["status"][..])] {
            let conflict = upsert_clause("item_id", ITEM_COLUMNS, skip);
            for chunk in group.chunks(CHUNK_ROWS) {
                let flags = self.settled_flags(&mut tx, chunk).await?;
                let sql = insert_sql(self.backend, "items", ITEM_COLUMNS, chunk.len()) + &conflict;
                let mut query = self.bulk_query(&sql);
                for (item, flags) in chunk.iter().zip(&flags) {
                    query = bind_item(query, item, item.status.unwrap_or(default_status), flags, now);
                }
                query.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(written)
    }

    /// Inserts or replaces users in one transaction; an absent `personalization` or `minor` keeps
    /// the stored one, and the user's own controls are never touched. Returns the number of distinct users written.
    pub async fn upsert_users(&self, users: &[User]) -> Result<u64> {
        let users = last_per_key(users, |u| &u.user_id);
        let now = Timestamp::now().millis();
        let conflict = upsert_clause("user_id", USER_COLUMNS, &["personalization", "minor"])
            + ", personalization = COALESCE(excluded.personalization, users.personalization)"
            + ", minor = COALESCE(excluded.minor, users.minor)";
        let _guard = self.write_guard().await;
        let mut tx = self.begin().await?;
        for chunk in users.chunks(CHUNK_ROWS) {
            let sql = insert_sql(self.backend, "users", USER_COLUMNS, chunk.len()) + &conflict;
            let mut query = self.bulk_query(&sql);
            for user in chunk {
                query = bind_user(query, user, now);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(users.len() as u64)
    }

    /// Appends events in one transaction, creating the users they name that are not stored yet.
    /// Events whose `event_id` is already stored are skipped, so a retried batch is harmless.
    pub async fn append_events(&self, events: &[Event]) -> Result<AppendOutcome> {
        let _guard = self.write_guard().await;
        let (mut tx, received_at) = self.begin_ordered(Log::Events).await?;
        let outcome = self.append_in(&mut tx, events, received_at).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// [`Store::append_events`] for a batch posted under an idempotency key: the first post is
    /// written with its key in one transaction; a retry within [`BATCH_KEY_RETENTION_MS`] writes
    /// nothing and gets the first post's outcome, even for events without `event_id`.
    pub async fn append_keyed_events(&self, batch: &BatchKey<'_>, events: &[Event]) -> Result<Appended> {
        let _guard = self.write_guard().await;
        let (mut tx, received_at) = self.begin_ordered(Log::Events).await?;
        sqlx::query("DELETE FROM ingest_batches WHERE at < $1")
            .bind(received_at - BATCH_KEY_RETENTION_MS)
            .execute(&mut *tx)
            .await?;
        let claimed = sqlx::query(
            "INSERT INTO ingest_batches (batch_key, digest, at, inserted, duplicates, users_created) \
             VALUES ($1, $2, $3, 0, 0, 0) ON CONFLICT (batch_key) DO NOTHING",
        )
        .bind(batch.key)
        .bind(batch.digest)
        .bind(received_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            let first = sqlx::query("SELECT * FROM ingest_batches WHERE batch_key = $1")
                .bind(batch.key)
                .fetch_one(&mut *tx)
                .await?;
            let count = |column: &str| -> Result<u64> { Ok(first.try_get::<i64, _>(column)?.max(0) as u64) };
            if first.try_get::<String, _>("digest")? != batch.digest {
                return Ok(Appended::KeyReused);
            }
            let outcome = AppendOutcome {
                inserted: count("inserted")?,
                duplicates: count("duplicates")?,
                users_created: count("users_created")?,
            };
            return Ok(Appended::Replayed(outcome));
        }
        let outcome = self.append_in(&mut tx, events, received_at).await?;
        sqlx::query("UPDATE ingest_batches SET inserted = $1, duplicates = $2, users_created = $3 WHERE batch_key = $4")
            .bind(outcome.inserted as i64)
            .bind(outcome.duplicates as i64)
            .bind(outcome.users_created as i64)
            .bind(batch.key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Appended::Written(outcome))
    }

    /// Writes `events` and the users they name first within `tx`.
    async fn append_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        events: &[Event],
        received_at: i64,
    ) -> Result<AppendOutcome> {
        let user_ids: Vec<&str> =
            events.iter().map(|e| e.user_id.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
        let new_user_sql = |rows| {
            insert_sql(self.backend, "users", &["user_id", "attributes", "updated_at"], rows)
                + " ON CONFLICT (user_id) DO NOTHING"
        };
        let new_event_sql = |rows| {
            insert_sql(self.backend, "events", EVENT_COLUMNS, rows) + " ON CONFLICT (event_id) DO NOTHING"
        };
        let mut outcome = AppendOutcome::default();
        for chunk in user_ids.chunks(CHUNK_ROWS) {
            let sql = new_user_sql(chunk.len());
            let mut query = self.bulk_query(&sql);
            for user_id in chunk {
                query = query.bind(*user_id).bind("{}").bind(received_at);
            }
            outcome.users_created += query.execute(&mut **tx).await?.rows_affected();
        }
        for chunk in events.chunks(CHUNK_ROWS) {
            let sql = new_event_sql(chunk.len());
            let mut query = self.bulk_query(&sql);
            for event in chunk {
                query = bind_event(query, event, received_at);
            }
            outcome.inserted += query.execute(&mut **tx).await?.rows_affected();
        }
        outcome.duplicates = events.len() as u64 - outcome.inserted;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_numbers_placeholders_in_order() {
        let postgres = insert_sql(Backend::Postgres, "t", &["a", "b"], 2);
        assert_eq!(postgres, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
        let sqlite = insert_sql(Backend::Sqlite, "t", &["a", "b"], 2);
        assert_eq!(sqlite, "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)");
    }

    #[test]
    fn upsert_clause_skips_key_and_kept_columns() {
        assert_eq!(
            upsert_clause("id", &["id", "x", "status"], &["status"]),
            " ON CONFLICT (id) DO UPDATE SET x = excluded.x"
        );
    }

    #[test]
    fn last_record_per_key_wins_in_first_position() {
        let records = [("a", 1), ("b", 2), ("a", 3)];
        let kept = last_per_key(&records, |r| r.0);
        assert_eq!(kept, [&("a", 3), &("b", 2)]);
    }
}
