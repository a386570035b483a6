//! The review workflow's writes: a moderator's decision on an item or a creator, users' reports
//! sending an item back to review, each recorded in the audit log in the same transaction as the
//! change it records.

use std::collections::{BTreeSet, HashMap};

use reelrank_core::{
    CreatorDecision, Item, ItemDecision, ModerationStatus, Timestamp, CREATOR_BLOCKED, REVIEW_FLAGS,
};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::rows::{item_from_row, json, json_column};
use crate::write::{placeholders, Log};
use crate::{Result, Store};

/// The actor the audit log names for a review that users' reports asked for.
pub const REPORTS_ACTOR: &str = "user-reports";

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Its position in the log.
    pub seq: i64,
    /// When.
    pub at: Timestamp,
    /// Who: the API key's name, or `user-reports`.
    pub actor: String,
    /// `item` or `creator`.
    pub target: String,
    /// The item's or the creator's id.
    pub target_id: String,
    /// The item's status before (items only).
    pub from_status: Option<String>,
    /// The item's status after (items only).
    pub to_status: Option<String>,
    /// The flags after: the item's, or `creator_blocked` while a creator is blocked.
    pub flags: Vec<String>,
    /// Why.
    pub reason: String,
}

/// What became of a decision on an item.
#[derive(Debug, Clone, PartialEq)]
pub enum Moderated {
    /// Made, and recorded.
    Done(AuditEntry),
    /// No such item.
    NotFound,
    /// The workflow does not lead from the item's status to the one asked for.
    Refused {
        /// The item's status.
        from: ModerationStatus,
    },
}

/// An audit entry about to be written.
struct Record<'a> {
    actor: &'a str,
    target: &'a str,
    target_id: &'a str,
    from_status: Option<ModerationStatus>,
    to_status: Option<ModerationStatus>,
    flags: &'a [String],
    reason: &'a str,
}

async fn record(tx: &mut Transaction<'_, Any>, at: i64, entry: Record<'_>) -> Result<AuditEntry> {
    let row = sqlx::query(
        "INSERT INTO moderation_audit (at, actor, target, target_id, from_status, to_status, flags, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
    )
    .bind(at)
    .bind(entry.actor)
    .bind(entry.target)
    .bind(entry.target_id)
    .bind(entry.from_status.map(ModerationStatus::as_str))
    .bind(entry.to_status.map(ModerationStatus::as_str))
    .bind(json(&entry.flags))
    .bind(entry.reason)
    .fetch_one(&mut **tx)
    .await?;
    Ok(AuditEntry {
        seq: row.try_get("seq")?,
        at: Timestamp(at),
        actor: entry.actor.to_owned(),
        target: entry.target.to_owned(),
        target_id: entry.target_id.to_owned(),
        from_status: entry.from_status.map(|s| s.as_str().to_owned()),
        to_status: entry.to_status.map(|s| s.as_str().to_owned()),
        flags: entry.flags.to_vec(),
        reason: entry.reason.to_owned(),
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEntry> {
    let seq: i64 = row.try_get("seq")?;
    Ok(AuditEntry {
        seq,
        at: Timestamp(row.try_get("at")?),
        actor: row.try_get("actor")?,
        target: row.try_get("target")?,
        target_id: row.try_get("target_id")?,
        from_status: row.try_get("from_status")?,
        to_status: row.try_get("to_status")?,
        flags: json_column(row, "moderation_audit", &seq.to_string(), "flags")?,
        reason: row.try_get("reason")?,
    })
}

/// `flags` with the review flags replaced by `review` (when given) and `creator_blocked` present
/// exactly when `blocked`.
fn settle(flags: &[String], review: Option<&[String]>, blocked: bool) -> Vec<String> {
    let is_review = |f: &String| REVIEW_FLAGS.contains(&f.as_str());
    let mut settled: Vec<String> = flags
        .iter()
        .filter(|f| f.as_str() != CREATOR_BLOCKED && (review.is_none() || !is_review(f)))
        .cloned()
        .collect();
    settled.extend(
        review.unwrap_or_default().iter().filter(|f| !settled.contains(f)).cloned().collect::<Vec<_>>(),
    );
    if blocked {
        settled.push(CREATOR_BLOCKED.to_owned());
    }
    settled
}

impl Store {
    /// Applies a moderator's `decision` on item `item_id` by `actor`, and records it; a decision
    /// that leaves review (any but `pending`) clears the item's reports.
    pub async fn moderate_item(
        &self,
        item_id: &str,
        decision: &ItemDecision,
        actor: &str,
    ) -> Result<Moderated> {
        let _guard = self.write_guard().await;
        let (mut tx, now) = self.begin_ordered(Log::Catalog).await?;
        let Some(row) = sqlx::query("SELECT * FROM items WHERE item_id = $1")
            .bind(item_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(Moderated::NotFound);
        };
        let item = item_from_row(&row)?;
        let from = item.status.unwrap_or(ModerationStatus::Approved);
        if !from.can_become(decision.status) {
            return Ok(Moderated::Refused { from });
        }
        let blocked = item.flags.iter().any(|f| f == CREATOR_BLOCKED);
        let flags = settle(&item.flags, decision.flags.as_deref(), blocked);
        let updated = sqlx::query(
            "UPDATE items SET status = $1, flags = $2, updated_at = $3 WHERE item_id = $4 AND status = $5",
        )
        .bind(decision.status.as_str())
        .bind(json(&flags))
        .bind(now)
        .bind(item_id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            // Changed since it was read (another replica's moderator): judge again.
            return Ok(Moderated::Refused { from });
        }
        if decision.status != ModerationStatus::Pending {
            sqlx::query("DELETE FROM item_reports WHERE item_id = $1")
                .bind(item_id)
                .execute(&mut *tx)
                .await?;
        }
        let entry = Record {
            actor,
            target: "item",
            target_id: item_id,
            from_status: Some(from),
            to_status: Some(decision.status),
            flags: &flags,
            reason: &decision.reason,
        };
        let entry = record(&mut tx, now, entry).await?;
        tx.commit().await?;
        Ok(Moderated::Done(entry))
    }

    /// Blocks or unblocks creator `creator_id` by `actor`: every item of theirs, and every one
    /// uploaded while they are blocked, carries the `creator_blocked` flag. Records it.
    pub async fn moderate_creator(
        &self,
        creator_id: &str,
        decision: &CreatorDecision,
        actor: &str,
    ) -> Result<AuditEntry> {
        let _guard = self.write_guard().await;
        let (mut tx, now) = self.begin_ordered(Log::Catalog).await?;
        if decision.blocked {
            sqlx::query("INSERT INTO creator_blocks (creator_id, at) VALUES ($1, $2) ON CONFLICT (creator_id) DO NOTHING")
                .bind(creator_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("DELETE FROM creator_blocks WHERE creator_id = $1")
                .bind(creator_id)
                .execute(&mut *tx)
                .await?;
        }
        let rows = sqlx::query("SELECT item_id, flags FROM items WHERE creator_id = $1")
            .bind(creator_id)
            .fetch_all(&mut *tx)
            .await?;
        for row in rows {
            let item_id: String = row.try_get("item_id")?;
            let flags: Vec<String> = json_column(&row, "items", &item_id, "flags")?;
            let settled = settle(&flags, None, decision.blocked);
            if settled != flags {
                sqlx::query("UPDATE items SET flags = $1, updated_at = $2 WHERE item_id = $3")
                    .bind(json(&settled))
                    .bind(now)
                    .bind(&item_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let flags = if decision.blocked { vec![CREATOR_BLOCKED.to_owned()] } else { Vec::new() };
        let entry = Record {
            actor,
            target: "creator",
            target_id: creator_id,
            from_status: None,
            to_status: None,
            flags: &flags,
            reason: &decision.reason,
        };
        let entry = record(&mut tx, now, entry).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Records that users reported items (`(item_id, user_id)` pairs); an approved item that
    /// `threshold` distinct users have reported since its last review goes back to `pending`,
    /// recorded with actor [`REPORTS_ACTOR`]. Returns the items sent back.
    pub async fn report_items(&self, reports: &[(&str, &str)], threshold: u32) -> Result<Vec<String>> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let _guard = self.write_guard().await;
        let (mut tx, now) = self.begin_ordered(Log::Catalog).await?;
        for (item_id, user_id) in reports {
            sqlx::query("INSERT INTO item_reports (item_id, user_id, at) VALUES ($1, $2, $3) ON CONFLICT (item_id, user_id) DO NOTHING")
                .bind(*item_id)
                .bind(*user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        let mut sent = Vec::new();
        let items: BTreeSet<&str> = reports.iter().map(|(item, _)| *item).collect();
        for item_id in items {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM item_reports WHERE item_id = $1")
                .bind(item_id)
                .fetch_one(&mut *tx)
                .await?;
            let reporters: i64 = row.try_get("n")?;
            if reporters < i64::from(threshold) {
                continue;
            }
            let flags = sqlx::query("UPDATE items SET status = 'pending', updated_at = $1 WHERE item_id = $2 AND status = 'approved' RETURNING flags")
                .bind(now)
                .bind(item_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(flags) = flags else { continue };
            let flags: Vec<String> = json_column(&flags, "items", item_id, "flags")?;
            let reason = format!("{reporters} users reported it");
            let entry = Record {
                actor: REPORTS_ACTOR,
                target: "item",
                target_id: item_id,
                from_status: Some(ModerationStatus::Approved),
                to_status: Some(ModerationStatus::Pending),
                flags: &flags,
                reason: &reason,
            };
            record(&mut tx, now, entry).await?;
            sent.push(item_id.to_owned());
        }
        tx.commit().await?;
        Ok(sent)
    }

    /// The audit log after entry `after`, oldest first, at most `limit` entries.
    pub async fn audit(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT * FROM moderation_audit WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.connection().await?)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// The latest `limit` entries of the audit log, newest first (what a moderator reads).
    pub async fn audit_latest(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT * FROM moderation_audit ORDER BY seq DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&mut *self.connection().await?)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Items waiting for review, longest waiting first, at most `limit`.
    pub async fn review_queue(&self, limit: u32) -> Result<Vec<Item>> {
        let rows =
            sqlx::query("SELECT * FROM items WHERE status = 'pending' ORDER BY updated_at, item_id LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&mut *self.connection().await?)
                .await?;
        rows.iter().map(item_from_row).collect()
    }

    /// The flags to store for `items` about to be upserted: `creator_blocked` exactly for those
    /// whose creator is blocked, and, for a record without a status (a catalog sync, not a
    /// moderation decision), the review flags already stored kept. Two queries per batch.
    pub(crate) async fn settled_flags(
        &self,
        tx: &mut Transaction<'_, Any>,
        items: &[&Item],
    ) -> Result<Vec<Vec<String>>> {
        let creators: Vec<&str> = items
            .iter()
            .filter_map(|i| i.creator_id.as_deref())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let blocked: BTreeSet<String> = self
            .rows_in(tx, "SELECT creator_id FROM creator_blocks WHERE creator_id IN", &creators)
            .await?
            .iter()
            .map(|row| row.try_get("creator_id"))
            .collect::<sqlx::Result<_>>()?;
        let synced: Vec<&str> =
            items.iter().filter(|i| i.status.is_none()).map(|i| i.item_id.as_str()).collect();
        let mut stored: HashMap<String, Vec<String>> = HashMap::new();
        for row in self.rows_in(tx, "SELECT item_id, flags FROM items WHERE item_id IN", &synced).await? {
            let item_id: String = row.try_get("item_id")?;
            let flags: Vec<String> = json_column(&row, "items", &item_id, "flags")?;
            stored
                .insert(item_id, flags.into_iter().filter(|f| REVIEW_FLAGS.contains(&f.as_str())).collect());
        }
        Ok(items
            .iter()
            .map(|item| {
                let mut flags = item.flags.clone();
                let kept =
                    stored.get(&item.item_id).into_iter().flatten().filter(|f| !item.flags.contains(f));
                flags.extend(kept.cloned());
                settle(&flags, None, item.creator_id.as_ref().is_some_and(|c| blocked.contains(c)))
            })
            .collect())
    }

    /// The rows of `select` (ending in `... IN`) for the values `keys`, none for none.
    async fn rows_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        select: &str,
        keys: &[&str],
    ) -> Result<Vec<AnyRow>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("{select} ({})", placeholders(self.backend, 1, keys.len()));
        let mut query = sqlx::query(&sql);
        for key in keys {
            query = query.bind(*key);
        }
        Ok(query.fetch_all(&mut **tx).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_settle() {
        let flags = |list: &[&str]| list.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        let stored = flags(&["dubbed", "rumor", CREATOR_BLOCKED]);
        assert_eq!(settle(&stored, None, true), flags(&["dubbed", "rumor", CREATOR_BLOCKED]));
        assert_eq!(settle(&stored, None, false), flags(&["dubbed", "rumor"]));
        assert_eq!(settle(&stored, Some(&flags(&["abuse"])), false), flags(&["dubbed", "abuse"]));
        assert_eq!(settle(&stored, Some(&[]), true), flags(&["dubbed", CREATOR_BLOCKED]));
    }
}
