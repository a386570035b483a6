//! Users' own controls over their feed: personalisation on or off, and the hidden tags, blocked
//! creators and profile reset kept as JSON on their row. A user who has never been seen is
//! created by their first control, as by their first event.

use reelrank_core::{Timestamp, UserControls};
use sqlx::Row;

use crate::rows::json;
use crate::{Result, Store, StoreError};

fn parse(user_id: &str, text: Option<String>) -> Result<UserControls> {
    let Some(text) = text else { return Ok(UserControls::default()) };
    serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
        table: "users",
        id: user_id.to_owned(),
        column: "controls",
        message: err.to_string(),
    })
}

impl Store {
    /// Turns personalised recommendation on or off for `user_id`.
    pub async fn set_personalization(&self, user_id: &str, enabled: bool) -> Result<()> {
        let _guard = self.write_guard().await;
        sqlx::query(
            "INSERT INTO users (user_id, attributes, personalization, updated_at) VALUES ($1, '{}', $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET personalization = excluded.personalization, updated_at = excluded.updated_at",
        )
        .bind(user_id)
        .bind(i64::from(enabled))
        .bind(Timestamp::now().millis())
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(())
    }

    /// Changes `user_id`'s controls with `change`, in one transaction; returns them as stored.
    pub async fn change_controls(
        &self,
        user_id: &str,
        change: impl FnOnce(&mut UserControls),
    ) -> Result<UserControls> {
        let _guard = self.write_guard().await;
        let now = Timestamp::now().millis();
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT controls FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let mut controls = match row {
            Some(row) => parse(user_id, row.try_get("controls")?)?,
            None => UserControls::default(),
        };
        change(&mut controls);
        sqlx::query(
            "INSERT INTO users (user_id, attributes, controls, updated_at) VALUES ($1, '{}', $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET controls = excluded.controls, updated_at = excluded.updated_at",
        )
        .bind(user_id)
        .bind(json(&controls))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(controls)
    }

    /// Every user who has reset their profile, and when they last did.
    pub async fn profile_resets(&self) -> Result<Vec<(String, Timestamp)>> {
        let rows = sqlx::query("SELECT user_id, controls FROM users WHERE controls IS NOT NULL")
            .fetch_all(&mut *self.connection().await?)
            .await?;
        let mut resets = Vec::new();
        for row in rows {
            let user_id: String = row.try_get("user_id")?;
            if let Some(at) = parse(&user_id, row.try_get("controls")?)?.reset_at {
                resets.push((user_id, at));
            }
        }
        Ok(resets)
    }
}
