//! MovieLens importers: the ml-100k layout (`u.data`, `u.user`, `u.item`) and the ml-latest layout
//! (`ratings.csv`, `movies.csv`, `tags.csv`).
//!
//! Ratings become `rate` events with the rating as `value` and a deterministic `event_id`
//! (`ml-USER-ITEM`), so importing twice stores each rating once. Movies get category `movie`, their
//! genres (and, for ml-latest, the community tags) become tags, and the release date becomes
//! `published_at`. ml-100k users keep age, gender, occupation and zip code as attributes; ml-latest
//! has no user file, so its users are created by their first rating.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use reelrank_core::{AttributeValue, Category, Event, EventKind, FieldError, Item, Timestamp, User};

use crate::table::{import_file, Encoding, Format, Row};
use crate::{Destination, ImportError, ImportSummary, IMPORT_BATCH_ROWS};

/// The ml-100k genre flags of `u.item`, in column order (also listed in `u.genre`).
const ML100K_GENRES: [&str; 19] = [
    "unknown",
    "action",
    "adventure",
    "animation",
    "children's",
    "comedy",
    "crime",
    "documentary",
    "drama",
    "fantasy",
    "film-noir",
    "horror",
    "musical",
    "mystery",
    "romance",
    "sci-fi",
    "thriller",
    "war",
    "western",
];

const ML100K_ITEM_COLUMNS: [&str; 24] = [
    "movie_id",
    "title",
    "release_date",
    "video_release_date",
    "imdb_url",
    "g0",
    "g1",
    "g2",
    "g3",
    "g4",
    "g5",
    "g6",
    "g7",
    "g8",
    "g9",
    "g10",
    "g11",
    "g12",
    "g13",
    "g14",
    "g15",
    "g16",
    "g17",
    "g18",
];

/// Most community tags kept per movie (the most frequent first).
const MAX_TAGS_PER_MOVIE: usize = 30;

/// Which MovieLens layout a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovieLensLayout {
    /// ml-100k: `u.data`, `u.user`, `u.item`.
    Ml100k,
    /// ml-latest(-small), ml-20m, ml-25m: `ratings.csv`, `movies.csv`, optional `tags.csv`.
    MlLatest,
}

impl MovieLensLayout {
    /// Detects the layout from the files present in `dir`.
    pub fn detect(dir: &Path) -> Result<MovieLensLayout, ImportError> {
        if dir.join("u.data").is_file() {
            Ok(MovieLensLayout::Ml100k)
        } else if dir.join("ratings.csv").is_file() {
            Ok(MovieLensLayout::MlLatest)
        } else {
            Err(ImportError::Layout {
                dir: dir.to_owned(),
                message: "no MovieLens data: expected u.data (ml-100k) or ratings.csv (ml-latest)".into(),
            })
        }
    }
}

/// The files of a MovieLens directory and how to read them.
struct MovieLensFiles {
    layout: MovieLensLayout,
    dir: std::path::PathBuf,
    /// ml-latest's community tags per movie (from `tags.csv`).
    tags: HashMap<String, Vec<String>>,
}

impl MovieLensFiles {
    fn open(dir: &Path) -> Result<MovieLensFiles, ImportError> {
        let layout = MovieLensLayout::detect(dir)?;
        let tags = match layout {
            MovieLensLayout::Ml100k => HashMap::new(),
            MovieLensLayout::MlLatest => community_tags(dir)?,
        };
        Ok(MovieLensFiles { layout, dir: dir.to_owned(), tags })
    }

    async fn items(
        &self,
        progress: &ProgressBar,
        write: impl AsyncFnMut(Vec<Item>) -> Result<(), ImportError>,
    ) -> Result<u64, ImportError> {
        match self.layout {
            MovieLensLayout::Ml100k => {
                let format = Format {
                    delimiter: b'|',
                    quoting: false,
                    encoding: Encoding::Latin1,
                    columns: Some(&ML100K_ITEM_COLUMNS[..]),
                };
                let path = self.dir.join("u.item");
                import_file(&path, &format, &ml100k_item, IMPORT_BATCH_ROWS, progress, write).await
            }
            MovieLensLayout::MlLatest => {
                let parse = |row: &Row| ml_latest_item(row, &self.tags);
                let path = self.dir.join("movies.csv");
                import_file(&path, &Format::csv(), &parse, IMPORT_BATCH_ROWS, progress, write).await
            }
        }
    }

    /// ml-100k's `u.user`; ml-latest has no user file (its users come from their ratings).
    async fn users(
        &self,
        progress: &ProgressBar,
        write: impl AsyncFnMut(Vec<User>) -> Result<(), ImportError>,
    ) -> Result<u64, ImportError> {
        let path = self.dir.join("u.user");
        if self.layout != MovieLensLayout::Ml100k || !path.is_file() {
            return Ok(0);
        }
        let format = Format {
            delimiter: b'|',
            quoting: false,
            encoding: Encoding::Latin1,
            columns: Some(&["user_id", "age", "gender", "occupation", "zip"]),
        };
        import_file(&path, &format, &ml100k_user, IMPORT_BATCH_ROWS, progress, write).await
    }

    async fn ratings(
        &self,
        progress: &ProgressBar,
        write: impl AsyncFnMut(Vec<Event>) -> Result<(), ImportError>,
    ) -> Result<u64, ImportError> {
        let (path, format) = match self.layout {
            MovieLensLayout::Ml100k => (
                self.dir.join("u.data"),
                Format {
                    delimiter: b'\t',
                    quoting: false,
                    encoding: Encoding::Utf8,
                    columns: Some(&["userId", "movieId", "rating", "timestamp"]),
                },
            ),
            MovieLensLayout::MlLatest => (self.dir.join("ratings.csv"), Format::csv()),
        };
        import_file(&path, &format, &rating, IMPORT_BATCH_ROWS, progress, write).await
    }
}

/// Imports a MovieLens directory into `destination`.
pub async fn import_movielens(
    destination: Destination<'_>,
    dir: &Path,
    progress: &ProgressBar,
) -> Result<ImportSummary, ImportError> {
    let files = MovieLensFiles::open(dir)?;
    let items = files.items(progress, async |batch| destination.items(batch).await).await?;
    let users = files.users(progress, async |batch| destination.users(batch).await).await?;
    let events = files.ratings(progress, async |batch| destination.events(batch).await).await?;
    Ok(ImportSummary { items, users, events })
}

/// The movies and users of a MovieLens directory (its side information), without the ratings:
/// what offline evaluation on fixed rating splits needs beside them.
pub async fn movielens_side_info(dir: &Path) -> Result<(Vec<Item>, Vec<User>), ImportError> {
    let files = MovieLensFiles::open(dir)?;
    let hidden = ProgressBar::hidden();
    let (mut items, mut users) = (Vec::new(), Vec::new());
    files
        .items(&hidden, async |batch| {
            items.extend(batch);
            Ok(())
        })
        .await?;
    files
        .users(&hidden, async |batch| {
            users.extend(batch);
            Ok(())
        })
        .await?;
    Ok((items, users))
}

fn ml100k_item(row: &Row) -> Result<Item, FieldError> {
    let mut item = Item::new(row.require("movie_id")?, Category::Movie);
    item.title = row.get("title").unwrap_or_default().to_owned();
    for (flag, genre) in ML100K_GENRES.iter().enumerate() {
        if row.get(&format!("g{flag}")) == Some("1") {
            item.tags.push((*genre).to_owned());
        }
    }
    item.published_at = row.get("release_date").map(parse_ml_date).transpose()?;
    Ok(item)
}

/// ml-100k dates look like `01-Jan-1995`.
fn parse_ml_date(text: &str) -> Result<Timestamp, FieldError> {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let bad = || FieldError::new("release_date", format!("`{text}` is not a date like 01-Jan-1995"));
    let mut parts = text.split('-');
    let (Some(day), Some(month), Some(year), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let month = MONTHS.iter().position(|m| *m == month).ok_or_else(bad)? as u32 + 1;
    let (day, year) = (day.parse().map_err(|_| bad())?, year.parse().map_err(|_| bad())?);
    Timestamp::from_ymd(year, month, day).ok_or_else(bad)
}

fn ml100k_user(row: &Row) -> Result<User, FieldError> {
    let mut user = User::new(row.require("user_id")?);
    if let Some(age) = row.parse::<f64>("age")? {
        user.attributes.insert("age".into(), AttributeValue::Numeric(age));
    }
    for column in ["gender", "occupation", "zip"] {
        if let Some(value) = row.get(column) {
            user.attributes.insert(column.into(), AttributeValue::Categorical(value.to_owned()));
        }
    }
    Ok(user)
}

fn ml_latest_item(row: &Row, tags: &HashMap<String, Vec<String>>) -> Result<Item, FieldError> {
    let id = row.require("movieId")?;
    let mut item = Item::new(id, Category::Movie);
    item.title = row.get("title").unwrap_or_default().to_owned();
    item.tags = row
        .get("genres")
        .filter(|g| *g != "(no genres listed)")
        .map_or_else(Vec::new, |g| g.split('|').map(str::to_lowercase).collect());
    for tag in tags.get(id).into_iter().flatten() {
        if !item.tags.contains(tag) {
            item.tags.push(tag.clone());
        }
    }
    // Titles end in the release year: "Toy Story (1995)".
    item.published_at = item
        .title
        .trim_end()
        .strip_suffix(')')
        .and_then(|t| t.rsplit_once('('))
        .and_then(|(_, year)| year.parse().ok())
        .and_then(|year| Timestamp::from_ymd(year, 1, 1));
    Ok(item)
}

/// The most frequent community tags per movie from `tags.csv` (absent file: none).
fn community_tags(dir: &Path) -> Result<HashMap<String, Vec<String>>, ImportError> {
    let path: PathBuf = dir.join("tags.csv");
    let mut counts: HashMap<String, HashMap<String, u32>> = HashMap::new();
    if path.is_file() {
        let file = fs_err::File::open(&path).map_err(|e| ImportError::io(&path, e))?;
        let mut reader = csv::Reader::from_reader(file);
        for (line, record) in reader.records().enumerate() {
            let record = record.map_err(|e| ImportError::row(&path, line as u64 + 2, "", e.to_string()))?;
            let (Some(movie), Some(tag)) = (record.get(1), record.get(2)) else {
                continue;
            };
            let tag = tag.trim().to_lowercase();
            if !tag.is_empty() && tag.len() <= 64 {
                *counts.entry(movie.to_owned()).or_default().entry(tag).or_default() += 1;
            }
        }
    }
    Ok(counts
        .into_iter()
        .map(|(movie, tags)| {
            let mut tags: Vec<(String, u32)> = tags.into_iter().collect();
            tags.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            (movie, tags.into_iter().take(MAX_TAGS_PER_MOVIE).map(|(t, _)| t).collect())
        })
        .collect())
}

fn rating(row: &Row) -> Result<Event, FieldError> {
    let user = row.require("userId")?;
    let movie = row.require("movieId")?;
    let secs: i64 = row.parse("timestamp")?.ok_or_else(|| FieldError::new("timestamp", "required"))?;
    Ok(Event {
        event_id: Some(format!("ml-{user}-{movie}")),
        user_id: user.to_owned(),
        item_id: movie.to_owned(),
        kind: EventKind::Rate,
        value: Some(row.parse("rating")?.ok_or_else(|| FieldError::new("rating", "required"))?),
        ts: Timestamp::from_secs(secs),
        request_id: None,
        variant: None,
        context: None,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::File::create(dir.join(name)).unwrap().write_all(bytes).unwrap();
    }

    #[tokio::test]
    async fn ml100k_layout() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "u.data", b"1\t10\t4\t881250949\n2\t10\t3\t881250950\n");
        write(dir.path(), "u.user", b"1|24|M|technician|85711\n2|53|F|other|94043\n");
        let mut item =
            b"10|Caf\xe9 Society (1995)|01-Jan-1995||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n"
                .to_vec();
        item.extend_from_slice(b"11|Unknown (1990)|||http://y|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n");
        write(dir.path(), "u.item", &item);
        let t = reelrank_store::testing::sqlite().await.unwrap();
        let summary =
            import_movielens(crate::into(&t.store), dir.path(), &ProgressBar::hidden()).await.unwrap();
        assert_eq!((summary.items, summary.users, summary.events), (2, 2, 2));
        let movie = t.store.item("10").await.unwrap().unwrap();
        assert_eq!(movie.title, "Café Society (1995)");
        assert_eq!(movie.tags, ["action", "thriller"]);
        assert_eq!(movie.published_at, Timestamp::from_ymd(1995, 1, 1));
        let user = t.store.user("2").await.unwrap().unwrap();
        assert_eq!(user.attributes["occupation"], AttributeValue::Categorical("other".into()));
        let events = t.store.events_after(0, 10).await.unwrap();
        assert_eq!((events[0].event.kind, events[0].event.value), (EventKind::Rate, Some(4.0)));
        assert_eq!(events[0].event.ts, Timestamp::from_secs(881_250_949));
        // The side information alone, as offline evaluation reads it beside fixed rating splits.
        let (items, users) = movielens_side_info(dir.path()).await.unwrap();
        assert_eq!((items.len(), users.len()), (2, 2));
        assert_eq!(items[0].tags, ["action", "thriller"]);
        // Importing again stores no rating twice.
        import_movielens(crate::into(&t.store), dir.path(), &ProgressBar::hidden()).await.unwrap();
        assert_eq!(t.store.counts().await.unwrap().events, 2);
    }

    #[tokio::test]
    async fn ml_latest_layout() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "ratings.csv", b"userId,movieId,rating,timestamp\n1,1,4.5,964982703\n");
        write(
            dir.path(),
            "movies.csv",
            b"movieId,title,genres\n1,\"Toy Story, The (1995)\",Adventure|Animation\n2,Nothing,(no genres listed)\n",
        );
        write(dir.path(), "tags.csv", b"userId,movieId,tag,timestamp\n1,1,pixar,1\n2,1,Pixar,2\n3,1,fun,3\n");
        let t = reelrank_store::testing::sqlite().await.unwrap();
        let summary =
            import_movielens(crate::into(&t.store), dir.path(), &ProgressBar::hidden()).await.unwrap();
        assert_eq!((summary.items, summary.users, summary.events), (2, 0, 1));
        let movie = t.store.item("1").await.unwrap().unwrap();
        assert_eq!(movie.tags, ["adventure", "animation", "pixar", "fun"]);
        assert_eq!(movie.published_at, Timestamp::from_ymd(1995, 1, 1));
        assert!(t.store.item("2").await.unwrap().unwrap().tags.is_empty());
        assert_eq!(t.store.counts().await.unwrap().users, 1);
    }

    #[test]
    fn bad_release_dates_are_named() {
        assert_eq!(parse_ml_date("01-Foo-1995").unwrap_err().field, "release_date");
        assert_eq!(parse_ml_date("14-Feb-1997").unwrap(), Timestamp::from_ymd(1997, 2, 14).unwrap());
    }
}
