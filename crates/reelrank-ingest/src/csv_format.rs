//! The CSV layout of `docs/CSV.md`: `items.csv`, `users.csv`, `events.csv`.

use std::path::PathBuf;

use indicatif::ProgressBar;
use reelrank_core::{
    AttributeValue, Category, Event, EventContext, EventKind, FieldError, Item, ModerationStatus, Timestamp,
    User,
};

use crate::table::{import_file, Format, Row};
use crate::{Destination, ImportError, ImportSummary, IMPORT_BATCH_ROWS};

/// The files of one CSV import; any may be left out. Items and users are written before events.
#[derive(Debug, Clone, Default)]
pub struct CsvFiles {
    /// `items.csv`.
    pub items: Option<PathBuf>,
    /// `users.csv`.
    pub users: Option<PathBuf>,
    /// `events.csv`.
    pub events: Option<PathBuf>,
}

/// Imports the given CSV files into `destination`.
pub async fn import_csv(
    destination: Destination<'_>,
    files: &CsvFiles,
    progress: &ProgressBar,
) -> Result<ImportSummary, ImportError> {
    let mut summary = ImportSummary::default();
    let format = Format::csv();
    let batch = IMPORT_BATCH_ROWS;
    if let Some(path) = &files.items {
        summary.items =
            import_file(path, &format, &item_from_row, batch, progress, async |b| destination.items(b).await)
                .await?;
    }
    if let Some(path) = &files.users {
        summary.users =
            import_file(path, &format, &user_from_row, batch, progress, async |b| destination.users(b).await)
                .await?;
    }
    if let Some(path) = &files.events {
        summary.events = import_file(path, &format, &event_from_row, batch, progress, async |b| {
            destination.events(b).await
        })
        .await?;
    }
    Ok(summary)
}

fn list(row: &Row, column: &str) -> Vec<String> {
    row.get(column).map_or_else(Vec::new, split_list)
}

fn split_list(text: &str) -> Vec<String> {
    text.split('|').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn owned(row: &Row, column: &str) -> Option<String> {
    row.get(column).map(str::to_owned)
}

fn timestamp(row: &Row, column: &str) -> Result<Option<Timestamp>, FieldError> {
    row.get(column)
        .map(|text| {
            text.parse::<i64>().map(Timestamp).ok().or_else(|| Timestamp::parse(text)).ok_or_else(|| {
                FieldError::new(column, format!("`{text}` is not RFC 3339, a date or Unix milliseconds"))
            })
        })
        .transpose()
}

fn item_from_row(row: &Row) -> Result<Item, FieldError> {
    let status = row
        .get("status")
        .map(|s| {
            ModerationStatus::from_name(s)
                .ok_or_else(|| FieldError::new("status", format!("unknown status `{s}`")))
        })
        .transpose()?;
    Ok(Item {
        item_id: row.require("item_id")?.to_owned(),
        title: row.get("title").unwrap_or_default().to_owned(),
        category: Category::from_name(row.require("category")?),
        tags: list(row, "tags"),
        creator_id: owned(row, "creator_id"),
        duration_s: row.parse("duration_s")?,
        language: owned(row, "language"),
        regions: list(row, "regions"),
        available_from: timestamp(row, "available_from")?,
        available_until: timestamp(row, "available_until")?,
        published_at: timestamp(row, "published_at")?,
        series_id: owned(row, "series_id"),
        episode: row.parse("episode")?,
        age_rating: row.parse("age_rating")?,
        status,
        flags: list(row, "flags"),
    })
}

fn user_from_row(row: &Row) -> Result<User, FieldError> {
    let mut user = User::new(row.require("user_id")?);
    user.region = owned(row, "region");
    user.language = owned(row, "language");
    user.birth_year = row.parse("birth_year")?;
    user.personalization = row.parse("personalization")?;
    for (column, cell) in row.cells() {
        let value = if let Some(name) = column.strip_prefix("cat:") {
            (name, AttributeValue::Categorical(cell.to_owned()))
        } else if let Some(name) = column.strip_prefix("num:") {
            let number =
                cell.parse().map_err(|_| FieldError::new(column, format!("`{cell}` is not a number")))?;
            (name, AttributeValue::Numeric(number))
        } else if let Some(name) = column.strip_prefix("multi:") {
            (name, AttributeValue::Multi(split_list(cell)))
        } else {
            continue;
        };
        user.attributes.insert(value.0.to_owned(), value.1);
    }
    Ok(user)
}

fn event_from_row(row: &Row) -> Result<Event, FieldError> {
    let kind = row.require("kind")?;
    let context =
        EventContext { device: owned(row, "device"), page: owned(row, "page"), hour: row.parse("hour")? };
    Ok(Event {
        event_id: owned(row, "event_id"),
        user_id: row.require("user_id")?.to_owned(),
        item_id: row.require("item_id")?.to_owned(),
        kind: EventKind::from_name(kind)
            .ok_or_else(|| FieldError::new("kind", format!("unknown event kind `{kind}`")))?,
        value: row.parse("value")?,
        ts: timestamp(row, "ts")?.ok_or_else(|| FieldError::new("ts", "required"))?,
        request_id: owned(row, "request_id"),
        variant: owned(row, "variant"),
        context: (context != EventContext::default()).then_some(context),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
        path
    }

    #[tokio::test]
    async fn imports_the_documented_layout() {
        let t = reelrank_store::testing::sqlite().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = CsvFiles {
            items: Some(file(
                dir.path(),
                "items.csv",
                "item_id,title,category,tags,duration_s,regions,series_id,episode\n\
                ep1,\"Heiress, ep. 1\",micro_drama,romance|revenge,95,CN|SG,heiress,1\n",
            )),
            users: Some(file(
                dir.path(),
                "users.csv",
                "user_id,region,cat:gender,num:age,multi:likes,personalization\n\
                u1,CN,f,23,food|travel,false\n",
            )),
            events: Some(file(
                dir.path(),
                "events.csv",
                "event_id,user_id,item_id,kind,value,ts,hour\n\
                e1,u1,ep1,watch,30000,2026-01-02T10:00:00Z,10\ne2,u2,ep1,like,,1767348000000,\n",
            )),
        };
        let summary = import_csv(crate::into(&t.store), &files, &ProgressBar::hidden()).await.unwrap();
        assert_eq!((summary.items, summary.users, summary.events), (1, 1, 2));
        let item = t.store.item("ep1").await.unwrap().unwrap();
        assert_eq!((item.title.as_str(), item.episode, item.regions.len()), ("Heiress, ep. 1", Some(1), 2));
        let user = t.store.user("u1").await.unwrap().unwrap();
        assert_eq!(user.attributes["likes"], AttributeValue::Multi(vec!["food".into(), "travel".into()]));
        assert_eq!(user.personalization, Some(false));
        let events = t.store.events_after(0, 10).await.unwrap();
        assert_eq!(events[0].event.context.as_ref().unwrap().hour, Some(10));
        assert_eq!(events[1].event.ts, Timestamp(1_767_348_000_000));
    }

    #[tokio::test]
    async fn a_bad_row_writes_nothing_and_names_line_and_column() {
        let t = reelrank_store::testing::sqlite().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("user_id,item_id,kind,ts\n");
        for i in 0..25_000 {
            text.push_str(&format!("u{i},i1,play,2026-01-02\n"));
        }
        text.push_str("u9,i1,dance,2026-01-02\n");
        let files = CsvFiles { events: Some(file(dir.path(), "events.csv", &text)), ..CsvFiles::default() };
        let err = import_csv(crate::into(&t.store), &files, &ProgressBar::hidden()).await.unwrap_err();
        match err {
            ImportError::Row { line, field, .. } => assert_eq!((line, field.as_str()), (25_002, "kind")),
            other => panic!("{other}"),
        }
        assert_eq!(t.store.counts().await.unwrap().events, 0);
    }
}
