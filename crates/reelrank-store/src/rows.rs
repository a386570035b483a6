//! Conversions between the data model and table rows.

use reelrank_core::{
    Category, Event, EventContext, EventKind, Item, ModerationStatus, Timestamp, User, UserControls,
};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use crate::{Result, StoreError};

pub(crate) type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

pub(crate) const ITEM_COLUMNS: &[&str] = &[
    "item_id",
    "title",
    "category",
    "tags",
    "creator_id",
    "duration_s",
    "language",
    "regions",
    "available_from",
    "available_until",
    "published_at",
    "series_id",
    "episode",
    "age_rating",
    "status",
    "flags",
    "updated_at",
];

pub(crate) const USER_COLUMNS: &[&str] =
    &["user_id", "attributes", "region", "language", "birth_year", "personalization", "minor", "updated_at"];

pub(crate) const EVENT_COLUMNS: &[&str] = &[
    "event_id",
    "user_id",
    "item_id",
    "kind",
    "value",
    "ts",
    "request_id",
    "variant",
    "device",
    "page",
    "hour",
    "received_at",
];

pub(crate) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

pub(crate) fn bind_item<'q>(
    q: AnyQuery<'q>,
    item: &'q Item,
    status: ModerationStatus,
    flags: &[String],
    now: i64,
) -> AnyQuery<'q> {
    q.bind(item.item_id.as_str())
        .bind(item.title.as_str())
        .bind(item.category.as_str())
        .bind(json(&item.tags))
        .bind(item.creator_id.as_deref())
        .bind(item.duration_s)
        .bind(item.language.as_deref())
        .bind(json(&item.regions))
        .bind(item.available_from.map(Timestamp::millis))
        .bind(item.available_until.map(Timestamp::millis))
        .bind(item.published_at.map(Timestamp::millis))
        .bind(item.series_id.as_deref())
        .bind(item.episode.map(i64::from))
        .bind(item.age_rating.map(i64::from))
        .bind(status.as_str())
        .bind(json(&flags))
        .bind(now)
}

pub(crate) fn bind_user<'q>(q: AnyQuery<'q>, user: &'q User, now: i64) -> AnyQuery<'q> {
    q.bind(user.user_id.as_str())
        .bind(json(&user.attributes))
        .bind(user.region.as_deref())
        .bind(user.language.as_deref())
        .bind(user.birth_year.map(i64::from))
        .bind(user.personalization.map(i64::from))
        .bind(user.minor.map(i64::from))
        .bind(now)
}

pub(crate) fn bind_event<'q>(q: AnyQuery<'q>, event: &'q Event, received_at: i64) -> AnyQuery<'q> {
    let ctx = event.context.as_ref();
    q.bind(event.event_id.as_deref())
        .bind(event.user_id.as_str())
        .bind(event.item_id.as_str())
        .bind(i64::from(event.kind.code()))
        .bind(event.value)
        .bind(event.ts.millis())
        .bind(event.request_id.as_deref())
        .bind(event.variant.as_deref())
        .bind(ctx.and_then(|c| c.device.as_deref()))
        .bind(ctx.and_then(|c| c.page.as_deref()))
        .bind(ctx.and_then(|c| c.hour).map(i64::from))
        .bind(received_at)
}

/// Reads a JSON column, reporting the row and column when it does not parse.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    table: &'static str,
    id: &str,
    column: &'static str,
) -> Result<T> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
        table,
        id: id.to_owned(),
        column,
        message: err.to_string(),
    })
}

fn out_of_range(table: &'static str, id: &str, column: &'static str, value: i64) -> StoreError {
    StoreError::Corrupt { table, id: id.to_owned(), column, message: format!("{value} is out of range") }
}

pub(crate) fn item_from_row(row: &AnyRow) -> Result<Item> {
    let id: String = row.try_get("item_id")?;
    let ts = |column: &str| -> Result<Option<Timestamp>> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(Timestamp))
    };
    let status: String = row.try_get("status")?;
    let episode = row
        .try_get::<Option<i64>, _>("episode")?
        .map(|e| u32::try_from(e).map_err(|_| out_of_range("items", &id, "episode", e)))
        .transpose()?;
    let age_rating = row
        .try_get::<Option<i64>, _>("age_rating")?
        .map(|a| u8::try_from(a).map_err(|_| out_of_range("items", &id, "age_rating", a)))
        .transpose()?;
    Ok(Item {
        title: row.try_get("title")?,
        category: Category::from_name(&row.try_get::<String, _>("category")?),
        tags: json_column(row, "items", &id, "tags")?,
        creator_id: row.try_get("creator_id")?,
        duration_s: row.try_get("duration_s")?,
        language: row.try_get("language")?,
        regions: json_column(row, "items", &id, "regions")?,
        available_from: ts("available_from")?,
        available_until: ts("available_until")?,
        published_at: ts("published_at")?,
        series_id: row.try_get("series_id")?,
        episode,
        age_rating,
        status: Some(ModerationStatus::from_name(&status).ok_or_else(|| StoreError::Corrupt {
            table: "items",
            id: id.clone(),
            column: "status",
            message: format!("unknown status `{status}`"),
        })?),
        flags: json_column(row, "items", &id, "flags")?,
        item_id: id,
    })
}

pub(crate) fn user_from_row(row: &AnyRow) -> Result<User> {
    let id: String = row.try_get("user_id")?;
    Ok(User {
        attributes: json_column(row, "users", &id, "attributes")?,
        region: row.try_get("region")?,
        language: row.try_get("language")?,
        birth_year: row
            .try_get::<Option<i64>, _>("birth_year")?
            .map(|y| i32::try_from(y).map_err(|_| out_of_range("users", &id, "birth_year", y)))
            .transpose()?,
        personalization: row.try_get::<Option<i64>, _>("personalization")?.map(|p| p != 0),
        minor: row.try_get::<Option<i64>, _>("minor")?.map(|m| m != 0),
        controls: match row.try_get::<Option<String>, _>("controls")? {
            Some(text) => serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
                table: "users",
                id: id.clone(),
                column: "controls",
                message: err.to_string(),
            })?,
            None => UserControls::default(),
        },
        user_id: id,
    })
}

pub(crate) fn event_from_row(row: &AnyRow) -> Result<Event> {
    let code: i64 = row.try_get("kind")?;
    let event_id: Option<String> = row.try_get("event_id")?;
    let kind =
        i16::try_from(code).ok().and_then(EventKind::from_code).ok_or_else(|| StoreError::Corrupt {
            table: "events",
            id: event_id.clone().unwrap_or_default(),
            column: "kind",
            message: format!("unknown kind code {code}"),
        })?;
    let device: Option<String> = row.try_get("device")?;
    let page: Option<String> = row.try_get("page")?;
    let hour = row.try_get::<Option<i64>, _>("hour")?.and_then(|h| u8::try_from(h).ok());
    let context =
        (device.is_some() || page.is_some() || hour.is_some()).then_some(EventContext { device, page, hour });
    Ok(Event {
        event_id,
        user_id: row.try_get("user_id")?,
        item_id: row.try_get("item_id")?,
        kind,
        value: row.try_get("value")?,
        ts: Timestamp(row.try_get("ts")?),
        request_id: row.try_get("request_id")?,
        variant: row.try_get("variant")?,
        context,
    })
}
