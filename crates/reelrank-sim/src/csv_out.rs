//! Writing a simulation as the CSV files of `docs/CSV.md`.
//!
//! Items and users go through the `csv` crate. Events, by far the bulk, are formatted by hand straight
//! from the compact events into byte buffers, several chunks at a time in parallel, then written in
//! order: no per-event allocation, and the file is the same whatever the number of threads.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use rayon::prelude::*;
use reelrank_core::{AttributeValue, EventKind, Item, Timestamp, User};

use crate::event::{write_id, SimEvent};
use crate::Simulation;

/// Events formatted by one parallel task.
const ROWS_PER_TASK: usize = 16_384;
/// Tasks formatted before their bytes are written out, bounding memory on large days.
const TASKS_PER_WRITE: usize = 16;
const EVENTS_HEADER: &[u8] = b"event_id,user_id,item_id,kind,ts,value,request_id,device,page,hour\n";

/// What [`write_csv`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSummary {
    /// Rows of `users.csv`.
    pub users: usize,
    /// Rows of `items.csv`.
    pub items: usize,
    /// Rows of `events.csv`.
    pub events: u64,
    /// Events per kind.
    pub by_kind: BTreeMap<EventKind, u64>,
}

/// Runs the simulation and writes `items.csv`, `users.csv` and `events.csv` (layout in `docs/CSV.md`)
/// into `dir`, creating it if needed. The truth files are [`Simulation::write_truth`]'s job: ranking
/// every item for every user costs more than the events themselves on large catalogs.
pub fn write_csv(sim: &Simulation, dir: &Path) -> io::Result<SimSummary> {
    fs_err::create_dir_all(dir)?;
    write_items(sim.items(), dir)?;
    write_users(sim.users(), dir)?;
    let path = dir.join("events.csv");
    let mut out = BufWriter::with_capacity(1 << 20, fs_err::File::create(&path)?);
    out.write_all(EVENTS_HEADER)?;
    let mut counts = [0u64; EventKind::ALL.len()];
    let events = sim.run_compact(|day, events| {
        for e in events {
            counts[e.kind.code() as usize] += 1;
        }
        for batch in events.chunks(ROWS_PER_TASK * TASKS_PER_WRITE) {
            let parts: Vec<Vec<u8>> =
                batch.par_chunks(ROWS_PER_TASK).map(|chunk| format_events(sim, day, chunk)).collect();
            for part in parts {
                out.write_all(&part)?;
            }
        }
        Ok::<_, io::Error>(())
    })?;
    out.flush()?;
    Ok(SimSummary {
        users: sim.users().len(),
        items: sim.items().len(),
        events,
        by_kind: EventKind::ALL.into_iter().zip(counts).filter(|&(_, n)| n > 0).collect(),
    })
}

/// A CSV writer on a new file `dir/name`.
pub(crate) fn create_csv(dir: &Path, name: &str) -> io::Result<csv::Writer<BufWriter<fs_err::File>>> {
    Ok(csv::Writer::from_writer(BufWriter::new(fs_err::File::create(dir.join(name))?)))
}

fn write_items(items: &[Item], dir: &Path) -> io::Result<()> {
    let mut out = create_csv(dir, "items.csv")?;
    out.write_record([
        "item_id",
        "category",
        "title",
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
    ])?;
    for item in items {
        out.write_record([
            item.item_id.clone(),
            item.category.to_string(),
            item.title.clone(),
            item.tags.join("|"),
            cell(&item.creator_id),
            cell(&item.duration_s),
            cell(&item.language),
            item.regions.join("|"),
            cell(&item.available_from),
            cell(&item.available_until),
            cell(&item.published_at),
            cell(&item.series_id),
            cell(&item.episode),
            cell(&item.age_rating),
            item.status.map_or_else(String::new, |s| s.as_str().to_owned()),
            item.flags.join("|"),
        ])?;
    }
    out.flush()
}

/// Writes the fixed columns, then one `cat:`/`num:`/`multi:` column per attribute name seen.
fn write_users(users: &[User], dir: &Path) -> io::Result<()> {
    let mut attributes = BTreeMap::new();
    for user in users {
        for (name, value) in &user.attributes {
            let prefix = match value {
                AttributeValue::Numeric(_) => "num",
                AttributeValue::Categorical(_) => "cat",
                AttributeValue::Multi(_) => "multi",
            };
            attributes.entry(name.as_str()).or_insert(prefix);
        }
    }
    let mut out = create_csv(dir, "users.csv")?;
    let fixed = ["user_id", "region", "language", "birth_year"].map(str::to_owned);
    out.write_record(fixed.into_iter().chain(attributes.iter().map(|(n, p)| format!("{p}:{n}"))))?;
    for user in users {
        let fixed = [user.user_id.clone(), cell(&user.region), cell(&user.language), cell(&user.birth_year)];
        let values = attributes.keys().map(|name| match user.attributes.get(*name) {
            Some(AttributeValue::Numeric(x)) => x.to_string(),
            Some(AttributeValue::Categorical(s)) => s.clone(),
            Some(AttributeValue::Multi(values)) => values.join("|"),
            None => String::new(),
        });
        out.write_record(fixed.into_iter().chain(values))?;
    }
    out.flush()
}

/// An optional value as a cell: empty when absent.
fn cell<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(String::new, T::to_string)
}

/// Formats events as CSV rows. Every field is an id, a number, a timestamp or a fixed ASCII word, so
/// nothing needs quoting.
fn format_events(sim: &Simulation, day: u32, events: &[SimEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 112);
    let mut digits = itoa::Buffer::new();
    let mut clock = Rfc3339::default();
    for e in events {
        e.write_event_id(day, &mut out);
        out.push(b',');
        write_id(&mut out, b'u', &[e.user.into()]);
        out.push(b',');
        write_id(&mut out, b'i', &[e.item.into()]);
        out.push(b',');
        out.extend_from_slice(e.kind.as_str().as_bytes());
        out.push(b',');
        clock.write(e.ts, &mut out);
        out.push(b',');
        if let Some(value) = e.value() {
            out.extend_from_slice(digits.format(value).as_bytes());
        }
        out.push(b',');
        e.write_request_id(day, &mut out);
        out.push(b',');
        out.extend_from_slice(sim.device_of(e.user as usize).as_bytes());
        out.push(b',');
        out.extend_from_slice(e.page.as_str().as_bytes());
        out.push(b',');
        out.extend_from_slice(digits.format(sim.local_hour(e.user as usize, e.ts)).as_bytes());
        out.push(b'\n');
    }
    out
}

/// RFC 3339 formatting in UTC with milliseconds (`2026-01-05T19:04:05.123Z`), remembering the date
/// of the previous call since consecutive events share it. Years must be within 0..=9999.
#[derive(Default)]
struct Rfc3339 {
    /// Days since the epoch of `date`, which holds `YYYY-MM-DDT`.
    day: Option<i64>,
    date: [u8; 11],
}

impl Rfc3339 {
    fn write(&mut self, ms: i64, out: &mut Vec<u8>) {
        let day = ms.div_euclid(Timestamp::DAY_MS);
        if self.day != Some(day) {
            let (y, m, d) = civil_from_days(day);
            let mut date = [b'0'; 11];
            put_digits(&mut date[0..4], y as u32);
            date[4] = b'-';
            put_digits(&mut date[5..7], m);
            date[7] = b'-';
            put_digits(&mut date[8..10], d);
            date[10] = b'T';
            self.date = date;
            self.day = Some(day);
        }
        let rem = ms.rem_euclid(Timestamp::DAY_MS) as u32;
        let mut time = *b"00:00:00.000Z";
        put_digits(&mut time[0..2], rem / 3_600_000);
        put_digits(&mut time[3..5], rem / 60_000 % 60);
        put_digits(&mut time[6..8], rem / 1000 % 60);
        put_digits(&mut time[9..12], rem % 1000);
        out.extend_from_slice(&self.date);
        out.extend_from_slice(&time);
    }
}

/// Writes `value` zero-padded into `slot` (as many low digits as fit).
fn put_digits(slot: &mut [u8], mut value: u32) {
    for byte in slot.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to the proleptic Gregorian (year, month, day), after Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{read, Scratch};
    use crate::SimConfig;

    fn optional(text: &str) -> Option<&str> {
        (!text.is_empty()).then_some(text)
    }

    #[test]
    fn files_parse_back() {
        let sim = Simulation::new(SimConfig { users: 60, items: 800, days: 2, ..SimConfig::default() });
        let scratch = Scratch::new("parse-back");
        let dir = scratch.0.as_path();
        let summary = write_csv(&sim, dir).unwrap();

        let (headers, rows) = read(dir, "items.csv");
        assert_eq!(
            headers,
            "item_id,category,title,tags,creator_id,duration_s,language,regions,available_from,\
             available_until,published_at,series_id,episode,age_rating,status,flags"
                .split(',')
                .collect::<Vec<_>>()
        );
        assert_eq!(rows.len(), summary.items);
        for (row, item) in rows.iter().zip(sim.items()) {
            assert_eq!(row[0], item.item_id);
            assert_eq!(row[1], *item.category.as_str());
            assert_eq!(row[2], item.title);
            assert_eq!(row[3].split('|').collect::<Vec<_>>(), item.tags);
            assert_eq!(row[5].parse::<f64>().ok(), item.duration_s);
            assert_eq!(optional(&row[9]).map(|t| Timestamp::parse(t).unwrap()), item.available_until);
            assert_eq!(Timestamp::parse(&row[10]), item.published_at);
            assert_eq!(optional(&row[12]).map(|n| n.parse().unwrap()), item.episode);
            assert_eq!(&row[14], "approved");
        }

        let (headers, rows) = read(dir, "users.csv");
        assert_eq!(
            headers,
            [
                "user_id",
                "region",
                "language",
                "birth_year",
                "num:age",
                "cat:device",
                "cat:gender",
                "cat:occupation"
            ]
        );
        assert_eq!(rows.len(), summary.users);
        for (row, user) in rows.iter().zip(sim.users()) {
            assert_eq!(row[0], user.user_id);
            assert_eq!(row[3].parse().ok(), user.birth_year);
            assert_eq!(Some(&AttributeValue::Numeric(row[4].parse().unwrap())), user.attributes.get("age"));
        }

        let events = sim.all_events();
        let (headers, rows) = read(dir, "events.csv");
        assert_eq!(
            headers,
            "event_id,user_id,item_id,kind,ts,value,request_id,device,page,hour"
                .split(',')
                .collect::<Vec<_>>()
        );
        assert_eq!(rows.len() as u64, summary.events);
        assert_eq!(events.len() as u64, summary.events);
        assert_eq!(summary.by_kind.values().sum::<u64>(), summary.events);
        for (row, event) in rows.iter().zip(&events) {
            let context = event.context.as_ref().unwrap();
            assert_eq!(Some(&row[0]), event.event_id.as_deref());
            assert_eq!((&row[1], &row[2]), (event.user_id.as_str(), event.item_id.as_str()));
            assert_eq!(EventKind::from_name(&row[3]), Some(event.kind));
            assert_eq!(Timestamp::parse(&row[4]), Some(event.ts));
            assert_eq!(optional(&row[5]).map(|v| v.parse().unwrap()), event.value);
            assert_eq!(Some(&row[6]), event.request_id.as_deref());
            assert_eq!(Some(&row[7]), context.device.as_deref());
            assert_eq!(Some(&row[8]), context.page.as_deref());
            assert_eq!(row[9].parse().ok(), context.hour);
        }
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        let mut clock = Rfc3339::default();
        for text in [
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "2026-01-05T07:08:09.010Z",
            "2026-12-31T12:00:00.500Z",
            "2100-03-01T00:00:00.001Z",
        ] {
            let ts = Timestamp::parse(text).unwrap();
            let mut out = Vec::new();
            clock.write(ts.millis(), &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), text);
        }
    }
}
