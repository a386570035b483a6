//! A deterministic simulator of a short-video and micro-drama platform, for demos, tests and
//! benchmarks of reelrank.
//!
//! It generates creators and a catalog (short videos, micro-drama and drama series, films, shows),
//! users with public attributes and hidden tastes, and then their behaviour day by day: sessions of
//! impressions chosen by a logging policy standing in for the platform's existing recommender, and
//! plays, watch time, finishes, likes, shares, comments, follows, skips, "not interested" and
//! reports in response. Everything follows from [`SimConfig::seed`]: the same configuration gives the
//! same data, byte for byte, on any number of threads.
//!
//! The data is meant to be learnable and measurable: behaviour is driven by a hidden affinity that a
//! recommender can recover from the logs (popularity alone does not capture it), and that affinity is
//! exposed ([`Simulation::affinity`], [`Simulation::write_truth`]) so recommendations can be scored
//! against the truth rather than against the logging policy's biases.
//!
//! # The affinity formula
//!
//! For user `u` on day `d` and item `i`:
//!
//! ```text
//! topic    = Σ_t w[u,d,t] · v[i,t] / max_t w[u,d,t]    user interest weights w (sum 1) on day d,
//!                                                       item topic weights v (sum 1); in [0, 1]
//! category = c[u, category(i)]                          the user's liking for the category, in [0, 1]
//!                                                       (favourite category = 1)
//! language = 1 if language(i) = language(u), 0.3 if language(i) = "en", else 0
//! z        = -5 + 4·topic + 1.5·category + 3·quality(i) + 1·language
//! affinity = 1 / (1 + e^-z)
//! ```
//!
//! `truth_users.csv` holds `w` on the last day (columns `t0..`) and `c` (columns `c_series..`), and
//! `truth_items.csv` holds the quality and `v`; the languages and categories are public in `users.csv`
//! and `items.csv`. Together they recompute the affinity. Of the public attributes, `device` and `age`
//! lean `c` (TV viewers and older ones prefer long-form content), and `gender` and `age` lean which
//! topics a user is interested in.
//!
//! Interests drift: every day each weight is multiplied by `exp(N(0, 0.25²))` and, with probability
//! [`SimConfig::drift`], one interest is replaced by a new topic; weights are then renormalised.
//!
//! # Behaviour in brief
//!
//! Per day a user has `Poisson(sessions_per_day × activity)` sessions (activity is lognormal with
//! mean 1), starting at local hours that peak at lunch and in the evening. The probability to play an
//! impression rises with affinity and quality; the share watched rises with affinity and falls with
//! the item's length; watching under 3 s is a skip. After a finished episode the player usually
//! queues the next one (page `series`), and a hooked viewer mostly continues, so episode order is
//! visible in the data. Ids: items `i{n}`, users `u{n}`, creators `c{n}`, series `s{n}`, events
//! `e{day}-{user}-{k}`, and `r{day}-{user}-{session}-{position}` as the request id shared by an
//! impression and its outcomes. The context hour is the user's local hour.
//!
//! ```
//! use reelrank_sim::{SimConfig, Simulation};
//! let sim = Simulation::new(SimConfig { users: 20, items: 300, days: 2, ..SimConfig::default() });
//! let mut days = 0;
//! let events = sim.run(|_day, events| {
//!     days += 1;
//!     assert!(events.windows(2).all(|w| w[0].ts <= w[1].ts));
//!     Ok::<_, std::convert::Infallible>(())
//! }).unwrap();
//! assert_eq!(days, 2);
//! assert!(events > 0);
//! ```
#![warn(missing_docs)]

mod affinity;
mod behaviour;
mod bots;
mod catalog;
mod csv_out;
mod event;
mod policy;
mod rng;
mod truth;
mod users;
mod vocab;

use std::io;
use std::path::Path;

use rayon::prelude::*;
use reelrank_core::{Event, Item, Timestamp, User};

use crate::behaviour::UserState;
use crate::catalog::Catalog;
use crate::event::SimEvent;
use crate::users::{Audience, DEVICES};
use crate::vocab::{REGIONS, TOPICS};

pub use crate::bots::BotFarm;
pub use crate::csv_out::{write_csv, SimSummary};

/// What to simulate. Sizes and the seed are all most callers set.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of users.
    pub users: usize,
    /// Number of items, episodes included.
    pub items: usize,
    /// Number of simulated days.
    pub days: u32,
    /// Seed of everything; the same config gives the same data.
    pub seed: u64,
    /// Midnight (UTC) of the first simulated day.
    pub start: Timestamp,
    /// Number of latent topics (clamped to 2..=32).
    pub topics: usize,
    /// Mean sessions per user and day (scaled by each user's activity).
    pub sessions_per_day: f64,
    /// Daily probability that a user swaps one interest for a new one.
    pub drift: f64,
    /// Share of the catalog published before `start`; the rest comes online during the run.
    pub catalog_at_start: f64,
}

impl Default for SimConfig {
    /// A week of 1000 users on 5000 items, which gives a few hundred thousand events.
    fn default() -> SimConfig {
        SimConfig {
            users: 1000,
            items: 5000,
            days: 7,
            seed: 42,
            start: Timestamp::from_ymd(2026, 1, 5).expect("valid date"),
            topics: 24,
            sessions_per_day: 2.0,
            drift: 0.1,
            catalog_at_start: 0.75,
        }
    }
}

impl SimConfig {
    /// `topics` within the supported range.
    pub(crate) fn topic_count(&self) -> usize {
        self.topics.clamp(2, TOPICS.len())
    }
}

/// A generated platform: catalog, users and their hidden truth, ready to produce behaviour.
pub struct Simulation {
    config: SimConfig,
    catalog: Catalog,
    audience: Audience,
}

impl Simulation {
    /// Generates creators, the catalog, the users and their latent tastes.
    pub fn new(config: SimConfig) -> Simulation {
        let catalog = Catalog::generate(&config);
        let audience = Audience::generate(&config);
        Simulation { config, catalog, audience }
    }

    /// The configuration this simulation was made from.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The catalog; the item with id `i{n}` is at index `n`.
    pub fn items(&self) -> &[Item] {
        &self.catalog.items
    }

    /// The users; the user with id `u{n}` is at index `n`.
    pub fn users(&self) -> &[User] {
        &self.audience.users
    }

    /// The whole log in memory, in time order: for evaluations and tests on platforms small enough
    /// to hold it.
    pub fn all_events(&self) -> Vec<Event> {
        let mut events = Vec::new();
        let _ = self.run(|_, day| {
            events.extend_from_slice(day);
            Ok::<_, std::convert::Infallible>(())
        });
        events
    }

    /// Generates the behaviour day by day, calling `sink` once per day with that day's events sorted
    /// by time (ties by user, then in the order they happened). Stops at the first error of `sink`;
    /// returns the number of events. The result does not depend on the number of threads.
    pub fn run<E>(&self, mut sink: impl FnMut(u32, &[Event]) -> Result<(), E>) -> Result<u64, E> {
        self.run_compact(|day, events| {
            let events: Vec<Event> = events.par_iter().map(|e| e.to_event(day, self)).collect();
            sink(day, &events)
        })
    }

    /// Ground-truth affinity in (0, 1) of user index `user` for item index `item` on `day` (after
    /// that day's drift): the quantity behind all behaviour, defined in the crate documentation.
    ///
    /// # Panics
    /// If `user` or `item` is out of range.
    pub fn affinity(&self, user: usize, item: usize, day: u32) -> f64 {
        let viewer = &self.audience.viewers[user];
        let interests = viewer.interests_on(&self.config, user, day);
        affinity::Taste::new(viewer, &interests).affinity(&self.catalog.entries[item])
    }

    /// Writes the ground truth into `dir`: `truth_users.csv` (each user's interest weights per topic
    /// on the last day, columns `t0..`, then category likings, columns `c_series..`), `truth_items.csv`
    /// (quality, then topic weights `t0..`, per item) and
    /// `truth_affinity.csv` (each user's 100 best items by last-day affinity: `user_id, item_id,
    /// affinity, rank`) among the starters (standalone items and first episodes, so that one series cannot
    /// fill the list) that the user may be shown at the end of the run. The [crate documentation](crate)
    /// gives the formula that connects them.
    pub fn write_truth(&self, dir: &Path) -> io::Result<()> {
        truth::write(self, dir)
    }

    /// Like [`Simulation::run`], on the compact events.
    pub(crate) fn run_compact<E>(
        &self,
        mut sink: impl FnMut(u32, &[SimEvent]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut states = vec![UserState::default(); self.config.users];
        let mut total = 0;
        for day in 0..self.config.days {
            let events = self.day_events(day, &mut states);
            total += events.len() as u64;
            sink(day, &events)?;
        }
        Ok(total)
    }

    /// All events of `day`, sorted, advancing every user's state.
    fn day_events(&self, day: u32, states: &mut [UserState]) -> Vec<SimEvent> {
        const USERS_PER_TASK: usize = 64;
        let parts: Vec<Vec<SimEvent>> = states
            .par_chunks_mut(USERS_PER_TASK)
            .enumerate()
            .map(|(chunk, states)| {
                let mut out = Vec::new();
                for (i, state) in states.iter_mut().enumerate() {
                    behaviour::user_day(self, chunk * USERS_PER_TASK + i, day, state, &mut out);
                }
                out
            })
            .collect();
        let mut events = parts.concat();
        events.par_sort_unstable_by_key(SimEvent::order_key);
        events
    }

    /// The device class of user index `user`.
    pub(crate) fn device_of(&self, user: usize) -> &'static str {
        DEVICES[usize::from(self.audience.viewers[user].device)]
    }

    /// The hour of day at `ts` where user index `user` lives.
    pub(crate) fn local_hour(&self, user: usize, ts: i64) -> u8 {
        let offset_h = REGIONS[usize::from(self.audience.viewers[user].region)].utc_offset_h;
        ((ts + offset_h * 3_600_000).rem_euclid(Timestamp::DAY_MS) / 3_600_000) as u8
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::{HashMap, HashSet};
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use reelrank_core::{EventKind, Validate};

    use super::*;

    /// A small simulation shared by the tests, with its events per day.
    pub(crate) fn fixture() -> &'static (Simulation, Vec<Vec<SimEvent>>) {
        static RUN: OnceLock<(Simulation, Vec<Vec<SimEvent>>)> = OnceLock::new();
        RUN.get_or_init(|| {
            let sim = Simulation::new(SimConfig { users: 400, items: 3000, days: 6, ..SimConfig::default() });
            let mut days = Vec::new();
            sim.run_compact(|_, events| {
                days.push(events.to_vec());
                Ok::<_, ()>(())
            })
            .unwrap();
            (sim, days)
        })
    }

    /// A scratch directory, removed on drop.
    pub(crate) struct Scratch(pub PathBuf);

    impl Scratch {
        pub(crate) fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("reelrank-sim-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The header and rows of a CSV file.
    pub(crate) fn read(dir: &Path, name: &str) -> (Vec<String>, Vec<csv::StringRecord>) {
        let mut reader = csv::Reader::from_path(dir.join(name)).unwrap();
        let headers = reader.headers().unwrap().iter().map(str::to_owned).collect();
        (headers, reader.records().map(Result::unwrap).collect())
    }

    fn collect(config: SimConfig) -> Vec<Event> {
        let mut all = Vec::new();
        let n = Simulation::new(config)
            .run(|_, events| {
                all.extend_from_slice(events);
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(n, all.len() as u64);
        all
    }

    #[test]
    fn same_seed_same_events_on_any_thread_count() {
        let config = SimConfig { users: 80, items: 1000, days: 3, ..SimConfig::default() };
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| collect(config.clone()))
        };
        let one = on(1);
        assert!(one.len() > 1000);
        assert_eq!(one, on(3));
        let other = collect(SimConfig { seed: 7, ..config });
        assert_ne!(one, other);
    }

    #[test]
    fn everything_validates() {
        let (sim, days) = fixture();
        for item in sim.items() {
            assert!(item.validate().is_empty(), "{item:?}: {:?}", item.validate());
        }
        for user in sim.users() {
            assert!(user.validate().is_empty(), "{user:?}: {:?}", user.validate());
        }
        for (day, events) in days.iter().enumerate() {
            for e in events {
                let event = e.to_event(day as u32, sim);
                assert!(event.validate().is_empty(), "{event:?}: {:?}", event.validate());
            }
        }
    }

    #[test]
    fn days_are_sorted_with_unique_ids() {
        let (sim, days) = fixture();
        let start = sim.config.start.millis();
        let mut ids = HashSet::new();
        for (day, events) in days.iter().enumerate() {
            let day_start = start + day as i64 * Timestamp::DAY_MS;
            assert!(events.windows(2).all(|w| w[0].order_key() < w[1].order_key()));
            assert!(events.iter().all(|e| (day_start..day_start + Timestamp::DAY_MS).contains(&e.ts)));
            for e in events {
                let mut id = Vec::new();
                e.write_event_id(day as u32, &mut id);
                assert!(ids.insert(id));
            }
        }
    }

    #[test]
    fn outcomes_join_their_impression() {
        let (_, days) = fixture();
        for events in days {
            let impressions: HashMap<_, _> = events
                .iter()
                .filter(|e| e.kind == EventKind::Impression)
                .map(|e| ((e.user, e.session, e.pos), (e.item, e.ts)))
                .collect();
            assert_eq!(impressions.len(), events.iter().filter(|e| e.kind == EventKind::Impression).count());
            for e in events.iter().filter(|e| e.kind != EventKind::Impression) {
                let (item, ts) = impressions[&(e.user, e.session, e.pos)];
                assert_eq!(item, e.item);
                assert!(ts <= e.ts);
            }
        }
    }

    /// The point of the simulator: a recommender that learns from the logs beats popularity. Here a
    /// crude one, scoring items by the tags of what each user finished, against the most finished items.
    #[test]
    fn learning_from_logs_beats_popularity() {
        let (sim, days) = fixture();
        let mut finishes: HashMap<u32, u32> = HashMap::new();
        let mut profiles: HashMap<u32, HashMap<&str, f64>> = HashMap::new();
        for e in days.iter().flatten().filter(|e| e.kind == EventKind::Finish) {
            *finishes.entry(e.item).or_default() += 1;
            let profile = profiles.entry(e.user).or_default();
            for tag in &sim.items()[e.item as usize].tags {
                *profile.entry(tag).or_default() += 1.0;
            }
        }
        let starters: Vec<u32> = sim.catalog.starters.clone();
        let mut popular = starters.clone();
        popular.sort_by_key(|i| (std::cmp::Reverse(finishes.get(i).copied().unwrap_or(0)), *i));
        let last = sim.config.days - 1;
        let mean_affinity = |user: u32, items: &[u32]| {
            items.iter().map(|&i| sim.affinity(user as usize, i as usize, last)).sum::<f64>()
                / items.len() as f64
        };
        let (mut by_popularity, mut by_profile) = (0.0, 0.0);
        for (&user, profile) in &profiles {
            let mut scored: Vec<(f64, u32)> = starters
                .iter()
                .map(|&i| {
                    let tags = &sim.items()[i as usize].tags;
                    (tags.iter().map(|t| profile.get(t.as_str()).unwrap_or(&0.0)).sum(), i)
                })
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mine: Vec<u32> = scored[..20].iter().map(|&(_, i)| i).collect();
            by_popularity += mean_affinity(user, &popular[..20]);
            by_profile += mean_affinity(user, &mine);
        }
        let n = profiles.len() as f64;
        let (by_popularity, by_profile) = (by_popularity / n, by_profile / n);
        assert!(
            by_profile > by_popularity + 0.15,
            "mean affinity of the top 20: {by_popularity} by popularity, {by_profile} by profile"
        );
    }
}
