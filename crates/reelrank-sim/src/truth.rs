//! The ground-truth files: what the simulated users really like, for scoring recommendations.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io;
use std::path::Path;

use rayon::prelude::*;
use reelrank_core::Timestamp;

use crate::affinity::{Taste, TopicMix};
use crate::csv_out::create_csv;
use crate::vocab::CATEGORIES;
use crate::Simulation;

/// Items listed per user in `truth_affinity.csv`.
const TOP_ITEMS: usize = 100;

/// Writes `truth_users.csv`, `truth_items.csv` and `truth_affinity.csv` into `dir`.
pub(crate) fn write(sim: &Simulation, dir: &Path) -> io::Result<()> {
    fs_err::create_dir_all(dir)?;
    let config = &sim.config;
    let last_day = config.days.saturating_sub(1);
    let interests: Vec<TopicMix> = sim
        .audience
        .viewers
        .par_iter()
        .enumerate()
        .map(|(u, viewer)| viewer.interests_on(config, u, last_day))
        .collect();
    write_users(sim, &interests, dir)?;
    write_items(sim, dir)?;
    write_affinity(sim, &interests, dir)
}

fn topic_columns(sim: &Simulation) -> impl Iterator<Item = String> {
    (0..sim.config.topic_count()).map(|t| format!("t{t}"))
}

/// User id, interest weights per topic (`t0..`), then liking per category (`c_series..`).
fn write_users(sim: &Simulation, interests: &[TopicMix], dir: &Path) -> io::Result<()> {
    let mut out = create_csv(dir, "truth_users.csv")?;
    let category_columns = CATEGORIES.iter().map(|c| format!("c_{}", c.category));
    out.write_record(["user_id".to_owned()].into_iter().chain(topic_columns(sim)).chain(category_columns))?;
    for ((user, mix), viewer) in sim.users().iter().zip(interests).zip(&sim.audience.viewers) {
        let likings = viewer.category_pref.iter().map(|&c| number(c));
        out.write_record([user.user_id.clone()].into_iter().chain(weight_cells(sim, mix)).chain(likings))?;
    }
    out.flush()
}

/// Item id, quality, then topic weights (`t0..`).
fn write_items(sim: &Simulation, dir: &Path) -> io::Result<()> {
    let mut out = create_csv(dir, "truth_items.csv")?;
    out.write_record(["item_id".to_owned(), "quality".to_owned()].into_iter().chain(topic_columns(sim)))?;
    for (item, entry) in sim.items().iter().zip(&sim.catalog.entries) {
        let head = [item.item_id.clone(), number(entry.quality)];
        out.write_record(head.into_iter().chain(weight_cells(sim, &entry.topics)))?;
    }
    out.flush()
}

/// Each user's best items at the end of the run, ranked from 1.
fn write_affinity(sim: &Simulation, interests: &[TopicMix], dir: &Path) -> io::Result<()> {
    let config = &sim.config;
    let end = config.start.millis() + i64::from(config.days) * Timestamp::DAY_MS - 1;
    let tops: Vec<Vec<(u32, f64)>> =
        (0..interests.len()).into_par_iter().map(|u| top_items(sim, u, &interests[u], end)).collect();
    let mut out = create_csv(dir, "truth_affinity.csv")?;
    out.write_record(["user_id", "item_id", "affinity", "rank"])?;
    for (user, top) in sim.users().iter().zip(tops) {
        for (rank, (item, score)) in top.into_iter().enumerate() {
            let item_id = &sim.items()[item as usize].item_id;
            out.write_record([&user.user_id, item_id, &format!("{score:.6}"), &(rank + 1).to_string()])?;
        }
    }
    out.flush()
}

/// A latent number as written: six decimals, enough to recompute the affinity to about 1e-5.
fn number(x: f32) -> String {
    format!("{x:.6}")
}

/// A mixture as one weight per topic of the run.
fn weight_cells<'a>(sim: &Simulation, mix: &'a TopicMix) -> impl Iterator<Item = String> + 'a {
    (0..sim.config.topic_count()).map(|t| number(mix.weight(t as u8)))
}

/// The best starters by affinity that user index `user` may be shown at `ts`, best first (ties by item).
fn top_items(sim: &Simulation, user: usize, interests: &TopicMix, ts: i64) -> Vec<(u32, f64)> {
    let viewer = &sim.audience.viewers[user];
    let taste = Taste::new(viewer, interests);
    let entries = &sim.catalog.entries;
    // Keep the best by logit, which orders like the affinity, in a min-heap; the worst kept is on top.
    let mut best = BinaryHeap::with_capacity(TOP_ITEMS + 1);
    for (i, entry) in entries.iter().enumerate() {
        if entry.episode > 1 || !entry.servable(ts, viewer.region, viewer.age) {
            continue;
        }
        let candidate = Reverse(Ranked(taste.logit(entry), i as u32));
        if best.len() < TOP_ITEMS {
            best.push(candidate);
        } else if let Some(mut worst) = best.peek_mut() {
            if candidate < *worst {
                *worst = candidate;
            }
        }
    }
    best.into_sorted_vec()
        .into_iter()
        .map(|Reverse(Ranked(_, i))| (i, taste.affinity(&entries[i as usize])))
        .collect()
}

/// A score and an item, ordered by score, ties going to the lower item.
struct Ranked(f64, u32);

impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::tests::{read, Scratch};
    use crate::{write_csv, SimConfig};

    /// Recomputes the affinity from the written files alone, with the documented formula.
    #[test]
    fn files_recompute_the_affinity() {
        let sim = Simulation::new(SimConfig { users: 50, items: 900, days: 3, ..SimConfig::default() });
        let scratch = Scratch::new("truth");
        let dir = scratch.0.as_path();
        write_csv(&sim, dir).unwrap();
        sim.write_truth(dir).unwrap();
        let topics = sim.config.topic_count();
        let numbers = |row: &csv::StringRecord, from: usize, n: usize| -> Vec<f64> {
            (from..from + n).map(|i| row[i].parse().unwrap()).collect()
        };

        let (headers, rows) = read(dir, "truth_users.csv");
        let expected: Vec<String> = ["user_id".to_owned()]
            .into_iter()
            .chain((0..topics).map(|t| format!("t{t}")))
            .chain(
                ["series", "variety", "movie", "documentary", "animation", "micro_drama", "short_video"]
                    .map(|c| format!("c_{c}")),
            )
            .collect();
        assert_eq!(headers, expected);
        let categories = &headers[1 + topics..];
        let users: HashMap<String, (Vec<f64>, Vec<f64>)> = rows
            .iter()
            .map(|r| (r[0].to_owned(), (numbers(r, 1, topics), numbers(r, 1 + topics, CATEGORIES.len()))))
            .collect();
        let (headers, rows) = read(dir, "truth_items.csv");
        assert_eq!(headers[..2], ["item_id", "quality"]);
        assert_eq!(headers[2..], expected[1..1 + topics]);
        let items: HashMap<String, (f64, Vec<f64>)> =
            rows.iter().map(|r| (r[0].to_owned(), (r[1].parse().unwrap(), numbers(r, 2, topics)))).collect();
        let (_, rows) = read(dir, "users.csv");
        let user_language: HashMap<String, String> =
            rows.iter().map(|r| (r[0].to_owned(), r[2].to_owned())).collect();
        let (_, rows) = read(dir, "items.csv");
        let item_public: HashMap<String, (String, String)> =
            rows.iter().map(|r| (r[0].to_owned(), (r[1].to_owned(), r[6].to_owned()))).collect();

        let (headers, rows) = read(dir, "truth_affinity.csv");
        assert_eq!(headers, ["user_id", "item_id", "affinity", "rank"]);
        assert!(rows.len() > sim.users().len() * 90, "{} rows", rows.len());
        let mut previous: Option<(String, usize, f64)> = None;
        for row in &rows {
            let (w, c) = &users[&row[0]];
            let (quality, v) = &items[&row[1]];
            let (category, language) = &item_public[&row[1]];
            let max = w.iter().copied().fold(0.0, f64::max);
            let topic = w.iter().zip(v).map(|(w, v)| w * v).sum::<f64>() / max;
            let category = c[categories.iter().position(|h| h[2..] == *category).unwrap()];
            let language = if *language == user_language[&row[0]] {
                1.0
            } else if language == "en" {
                0.3
            } else {
                0.0
            };
            let z = -5.0 + 4.0 * topic + 1.5 * category + 3.0 * quality + language;
            let recomputed = 1.0 / (1.0 + (-z).exp());
            let (affinity, rank): (f64, usize) = (row[2].parse().unwrap(), row[3].parse().unwrap());
            assert!((affinity - recomputed).abs() < 1e-4, "{affinity} vs {recomputed}");
            let user: usize = row[0][1..].parse().unwrap();
            let item: usize = row[1][1..].parse().unwrap();
            assert!((affinity - sim.affinity(user, item, sim.config.days - 1)).abs() < 1e-5);
            assert_eq!(sim.items()[item].episode.unwrap_or(1), 1, "starters only");
            match &previous {
                Some((u, r, a)) if *u == row[0] => assert!(rank == r + 1 && affinity <= *a),
                _ => assert_eq!(rank, 1),
            }
            assert!(rank <= TOP_ITEMS);
            previous = Some((row[0].to_owned(), rank, affinity));
        }
    }
}
