//! Queries over the stored catalog, users and event log.

use reelrank_core::{Event, Item, User};
use serde::Serialize;
use sqlx::Row;

use crate::rows::{event_from_row, item_from_row, user_from_row};
use crate::write::placeholders;
use crate::{Result, Store};

/// Sizes of the three tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Catalog items.
    pub items: u64,
    /// Users.
    pub users: u64,
    /// Stored events.
    pub events: u64,
}

/// An event as stored: its position in the log and when the server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position in the append-only log; increasing in commit order on SQLite.
    pub seq: i64,
    /// When the store accepted it (Unix ms).
    pub received_at: i64,
    /// The event.
    pub event: Event,
}

/// A catalog item as last written, and when (Unix ms).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemChange {
    /// When it was written.
    pub updated_at: i64,
    /// The item.
    pub item: Item,
}

/// The newest catalog stamp, as `last`.
pub(crate) const CATALOG_STAMP_SQL: &str = "SELECT COALESCE(MAX(updated_at), 0) AS last FROM items";

/// Rows per query of the `all_*` readers.
const PAGE: u32 = 10_000;

impl Store {
    /// Whether the database answers (a readiness probe: cheap, unlike [`Store::counts`]).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&mut *self.connection().await?).await?;
        Ok(())
    }

    /// Counts of items, users and events.
    pub async fn counts(&self) -> Result<Counts> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM items) AS items, (SELECT COUNT(*) FROM users) AS users, \
             (SELECT COUNT(*) FROM events) AS events",
        )
        .fetch_one(&mut *self.connection().await?)
        .await?;
        let count = |column: &str| -> Result<u64> { Ok(row.try_get::<i64, _>(column)?.max(0) as u64) };
        Ok(Counts { items: count("items")?, users: count("users")?, events: count("events")? })
    }

    /// One catalog item.
    pub async fn item(&self, item_id: &str) -> Result<Option<Item>> {
        let row = sqlx::query("SELECT * FROM items WHERE item_id = $1")
            .bind(item_id)
            .fetch_optional(&mut *self.connection().await?)
            .await?;
        row.as_ref().map(item_from_row).transpose()
    }

    /// One user.
    pub async fn user(&self, user_id: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *self.connection().await?)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Up to `limit` catalog items with ids after `after` (`""` for the first page), in id order.
    pub async fn items_after(&self, after: &str, limit: u32) -> Result<Vec<Item>> {
        let rows = sqlx::query("SELECT * FROM items WHERE item_id > $1 ORDER BY item_id LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.connection().await?)
            .await?;
        rows.iter().map(item_from_row).collect()
    }

    /// The newest catalog change's stamp (0 for an empty catalog): a reader that loads the whole
    /// catalog after asking this, then tails [`Store::items_changed`] from it, misses nothing,
    /// since every later write is stamped after it.
    pub async fn catalog_stamp(&self) -> Result<i64> {
        let row = sqlx::query(CATALOG_STAMP_SQL).fetch_one(&mut *self.connection().await?).await?;
        Ok(row.try_get("last")?)
    }

    /// Up to `limit` items written after the write stamped `since_ms`, in order of
    /// `(updated_at, item_id)` after the position `after` (`None` for the first page), with each
    /// item's `updated_at`: how serving follows catalog changes without reading the whole
    /// catalog. Every write has a stamp of its own, later than all before it, and is seen whole,
    /// so the write stamped `since_ms` is not read again: re-reading it on every tick re-read a
    /// whole bulk-loaded catalog, which shares one stamp.
    pub async fn items_changed(
        &self,
        since_ms: i64,
        after: Option<&ItemChange>,
        limit: u32,
    ) -> Result<Vec<ItemChange>> {
        let query = match after {
            None => {
                sqlx::query("SELECT * FROM items WHERE updated_at > $1 ORDER BY updated_at, item_id LIMIT $2")
                    .bind(since_ms)
            }
            Some(change) => sqlx::query(
                "SELECT * FROM items WHERE updated_at > $1 OR (updated_at = $1 AND item_id > $2) \
                 ORDER BY updated_at, item_id LIMIT $3",
            )
            .bind(change.updated_at)
            .bind(change.item.item_id.as_str()),
        };
        let rows = query.bind(i64::from(limit)).fetch_all(&mut *self.connection().await?).await?;
        rows.iter()
            .map(|row| Ok(ItemChange { updated_at: row.try_get("updated_at")?, item: item_from_row(row)? }))
            .collect()
    }

    /// Up to `limit` users with ids after `after` (`""` for the first page), in id order.
    pub async fn users_after(&self, after: &str, limit: u32) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users WHERE user_id > $1 ORDER BY user_id LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.connection().await?)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Up to `limit` users whose id starts with `prefix`, by id.
    pub async fn users_with_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<User>> {
        let escaped: String = prefix
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let rows =
            sqlx::query("SELECT * FROM users WHERE user_id LIKE $1 ESCAPE '\\' ORDER BY user_id LIMIT $2")
                .bind(format!("{escaped}%"))
                .bind(i64::from(limit))
                .fetch_all(&mut *self.connection().await?)
                .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Up to `limit` events with `seq > after`, in log order: the way consumers read the log.
    pub async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query("SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.connection().await?)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredEvent {
                    seq: row.try_get("seq")?,
                    received_at: row.try_get("received_at")?,
                    event: event_from_row(row)?,
                })
            })
            .collect()
    }

    /// How many events the log holds up to sequence number `seq`.
    pub async fn count_events_through(&self, seq: i64) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM events WHERE seq <= $1")
            .bind(seq)
            .fetch_one(&mut *self.connection().await?)
            .await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

    /// Every item, in id order (read in pages).
    pub async fn all_items(&self) -> Result<Vec<Item>> {
        let mut items: Vec<Item> = Vec::new();
        loop {
            let after = items.last().map_or(String::new(), |i| i.item_id.clone());
            let page = self.items_after(&after, PAGE).await?;
            if page.is_empty() {
                return Ok(items);
            }
            items.extend(page);
        }
    }

    /// Every user, in id order (read in pages).
    pub async fn all_users(&self) -> Result<Vec<User>> {
        let mut users: Vec<User> = Vec::new();
        loop {
            let after = users.last().map_or(String::new(), |u| u.user_id.clone());
            let page = self.users_after(&after, PAGE).await?;
            if page.is_empty() {
                return Ok(users);
            }
            users.extend(page);
        }
    }

    /// Every event that `keep` accepts, in log order (read in pages), and the sequence number of
    /// the last event read (0 for an empty log).
    pub async fn all_events(&self, keep: impl Fn(&Event) -> bool) -> Result<(Vec<Event>, i64)> {
        let (mut kept, mut after) = (Vec::new(), 0);
        loop {
            let page = self.events_after(after, PAGE).await?;
            let Some(last) = page.last() else { return Ok((kept, after)) };
            after = last.seq;
            kept.extend(page.into_iter().map(|stored| stored.event).filter(|event| keep(event)));
        }
    }

    /// The ids among `item_ids` that the catalog does not hold.
    pub async fn missing_items(&self, item_ids: &[&str]) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        for chunk in item_ids.chunks(1000) {
            let sql = format!(
                "SELECT item_id FROM items WHERE item_id IN ({})",
                placeholders(self.backend, 1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            let found: std::collections::HashSet<String> = query
                .fetch_all(&mut *self.connection().await?)
                .await?
                .iter()
                .map(|r| r.try_get("item_id"))
                .collect::<sqlx::Result<_>>()?;
            missing.extend(chunk.iter().filter(|id| !found.contains(**id)).map(|id| id.to_string()));
        }
        Ok(missing)
    }
}
