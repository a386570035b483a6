//! Fake traffic: accounts that play like machines, found from what they do, so that their events
//! count neither in charts nor in training.
//!
//! Three signals, each one enough on its own, each set far from what a viewer does:
//! - **rate**: more plays within one clock hour than a viewer swiping all hour makes;
//! - **regularity**: the gaps between an account's latest plays vary too little — a viewer's gaps
//!   follow what they watch and when they have time, a script's follow its timer. The spread is
//!   robust (median absolute deviation over the median), so a script restarted now and then, or
//!   paused overnight, still shows its timer;
//! - **duplicates**: several accounts open a day with the same few items, effectively played — a
//!   farm running one script. A platform whose new users all get the same first items and finish
//!   them may need a longer opening (`duplicate_opening`).
//!
//! Accounts idle for longer than the guard remembers are forgotten (`forget_after_days`); the
//! excluded ones stay excluded.
//!
//! What it does not find: a farm of accounts that each play a little, at random times, with
//! items of their own. Against those the ledger's rules hold ([`crate::ledger`]: an account counts
//! once per item and day, and up to a cap a day), so each account weighs as one viewer.

use std::collections::VecDeque;

use reelrank_core::{Event, EventKind, Timestamp};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::day::Day;

/// How the guard tells machines: the `[serving.charts.guard]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Off, every account counts.
    pub enabled: bool,
    /// More plays than this within one clock hour is a machine (one every 6 s, all hour).
    pub max_plays_per_hour: u32,
    /// The latest gaps between plays judged for regularity (none before there are this many).
    pub regular_gaps: usize,
    /// Gaps whose spread (1.4826 × median absolute deviation, the standard deviation of normal
    /// gaps) is under this share of their median are a timer's.
    pub regular_max_spread: f64,
    /// How many distinct items effectively played make a day's opening.
    pub duplicate_opening: usize,
    /// How many accounts opening a day with the same items make a farm.
    pub duplicate_accounts: usize,
    /// Accounts idle this many days are forgotten (not the excluded ones).
    pub forget_after_days: i32,
}

impl Default for GuardConfig {
    fn default() -> GuardConfig {
        GuardConfig {
            enabled: true,
            max_plays_per_hour: 600,
            regular_gaps: 30,
            regular_max_spread: 0.1,
            duplicate_opening: 4,
            duplicate_accounts: 5,
            forget_after_days: 14,
        }
    }
}

/// Why an account was excluded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum Reason {
    /// Too many plays in one hour.
    Rate {
        /// Plays in that hour.
        plays_in_hour: u32,
    },
    /// Plays at a timer's regular gaps.
    Regular {
        /// The gaps' median, in seconds.
        median_secs: f64,
        /// Their spread over their median.
        spread: f64,
    },
    /// One of several accounts opening a day with the same items.
    Duplicate {
        /// Accounts with that opening when this one was excluded.
        accounts: usize,
    },
}

/// An excluded account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExcludedAccount {
    /// The account.
    pub user_id: String,
    /// Why and what it cost it.
    #[serde(flatten)]
    pub exclusion: Exclusion,
}

/// Why and when an account was excluded, and what it cost it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exclusion {
    /// Why.
    pub reason: Reason,
    /// When (the time of the event that showed it).
    pub at: Timestamp,
    /// Its events ignored since.
    pub events_ignored: u64,
    /// Its contributions to the open days' figures taken back.
    pub contributions_retracted: u64,
}

/// The median of `gaps` and their spread over it (0 when the median is 0: plays all at once).
fn spread(gaps: &VecDeque<f32>) -> (f64, f64) {
    let median = |values: &mut Vec<f32>| {
        values.sort_unstable_by(f32::total_cmp);
        f64::from(values[values.len() / 2])
    };
    let mut values: Vec<f32> = gaps.iter().copied().collect();
    let middle = median(&mut values);
    let mut deviations: Vec<f32> = values.iter().map(|&g| (f64::from(g) - middle).abs() as f32).collect();
    let mad = median(&mut deviations);
    (middle, if middle > 0.0 { 1.4826 * mad / middle } else { 0.0 })
}

/// What the guard follows of one account.
#[derive(Debug)]
struct Conduct {
    user_id: Box<str>,
    hour: i64,
    plays_in_hour: u32,
    last_play_ms: Option<i64>,
    gaps: VecDeque<f32>,
    day: Day,
    opening: Vec<u32>,
}

/// Accounts' conduct and the ones excluded.
#[derive(Debug)]
pub struct Guard {
    config: GuardConfig,
    conduct: FxHashMap<u64, Conduct>,
    /// Accounts by (day, opening fingerprint).
    openings: FxHashMap<(Day, u64), Vec<u64>>,
    newest: Option<Day>,
    excluded: FxHashMap<u64, ExcludedAccount>,
}

impl Guard {
    /// A guard that has seen nothing.
    pub fn new(config: GuardConfig) -> Guard {
        Guard {
            config,
            conduct: FxHashMap::default(),
            openings: FxHashMap::default(),
            newest: None,
            excluded: FxHashMap::default(),
        }
    }

    /// Whether account `user` is excluded.
    pub fn is_excluded(&self, user: u64) -> bool {
        self.excluded.contains_key(&user)
    }

    /// Counts an event of an excluded account as ignored.
    pub fn ignored(&mut self, user: u64) {
        if let Some(account) = self.excluded.get_mut(&user) {
            account.exclusion.events_ignored += 1;
        }
    }

    /// Records that `count` contributions of excluded account `user` were taken back.
    pub fn retracted(&mut self, user: u64, count: u64) {
        if let Some(account) = self.excluded.get_mut(&user) {
            account.exclusion.contributions_retracted += count;
        }
    }

    /// The excluded accounts.
    pub fn exclusions(&self) -> impl Iterator<Item = &ExcludedAccount> {
        self.excluded.values()
    }

    /// Follows `event` of account `user` (its key; not excluded), `effective` naming the item
    /// when the event is an effective play of it; returns the accounts it shows to be machines.
    pub fn observe(&mut self, user: u64, event: &Event, effective: Option<u32>) -> Vec<u64> {
        if !self.config.enabled {
            return Vec::new();
        }
        let ts = event.ts.millis();
        let day = Day::of(event.ts);
        if self.newest.is_none_or(|newest| day > newest) {
            self.newest = Some(day);
            // A farm opens its day together: yesterday's openings are kept for the night's edge.
            self.openings.retain(|&(d, _), _| d >= day.plus(-1));
            let idle = day.plus(-self.config.forget_after_days);
            self.conduct.retain(|_, conduct| conduct.day >= idle);
        }
        let config = &self.config;
        let conduct = self.conduct.entry(user).or_insert_with(|| Conduct {
            user_id: event.user_id.as_str().into(),
            hour: i64::MIN,
            plays_in_hour: 0,
            last_play_ms: None,
            gaps: VecDeque::new(),
            day,
            opening: Vec::new(),
        });
        let mut found = Vec::new();
        if event.kind == EventKind::Play {
            let hour = ts.div_euclid(3_600_000);
            if hour == conduct.hour {
                conduct.plays_in_hour += 1;
            } else {
                (conduct.hour, conduct.plays_in_hour) = (hour, 1);
            }
            if let Some(last) = conduct.last_play_ms {
                if conduct.gaps.len() == config.regular_gaps {
                    conduct.gaps.pop_front();
                }
                conduct.gaps.push_back((ts - last).max(0) as f32 / 1000.0);
            }
            conduct.last_play_ms = Some(ts);
            if conduct.plays_in_hour > config.max_plays_per_hour {
                found.push((user, Reason::Rate { plays_in_hour: conduct.plays_in_hour }));
            } else if conduct.gaps.len() >= config.regular_gaps.max(1) {
                let (median_secs, spread) = spread(&conduct.gaps);
                if spread < config.regular_max_spread {
                    found.push((user, Reason::Regular { median_secs, spread }));
                }
            }
        }
        if conduct.day != day {
            conduct.day = day;
            conduct.opening.clear();
        }
        if let Some(item) = effective {
            if conduct.opening.len() < config.duplicate_opening && !conduct.opening.contains(&item) {
                conduct.opening.push(item);
                if conduct.opening.len() == config.duplicate_opening {
                    let group = self.openings.entry((day, fingerprint(&conduct.opening))).or_default();
                    group.push(user);
                    if group.len() >= config.duplicate_accounts {
                        let accounts = group.len();
                        found.extend(group.iter().map(|&u| (u, Reason::Duplicate { accounts })));
                    }
                }
            }
        }
        found
            .into_iter()
            .filter_map(|(user, reason)| {
                if self.excluded.contains_key(&user) {
                    return None;
                }
                let user_id =
                    self.conduct.get(&user).map_or_else(|| event.user_id.clone(), |c| c.user_id.to_string());
                let exclusion =
                    Exclusion { reason, at: event.ts, events_ignored: 0, contributions_retracted: 0 };
                self.excluded.insert(user, ExcludedAccount { user_id, exclusion });
                Some(user)
            })
            .collect()
    }
}

/// The same for the same items in any order.
fn fingerprint(items: &[u32]) -> u64 {
    let mut sorted = items.to_vec();
    sorted.sort_unstable();
    sorted.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &item| {
        (hash ^ u64::from(item)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(user: &str, item: &str, secs: i64) -> Event {
        Event::new(user, item, EventKind::Play, Timestamp::from_secs(secs))
    }

    #[test]
    fn a_timer_is_regular_and_a_viewer_is_not() {
        let mut guard = Guard::new(GuardConfig::default());
        let mut found = Vec::new();
        for k in 0..40 {
            found.extend(guard.observe(1, &play("bot", "i", k * 300 + (k % 3) * 5), None));
        }
        assert_eq!(found, vec![1]);
        assert!(matches!(guard.excluded[&1].exclusion.reason, Reason::Regular { median_secs: 305.0, .. }));
        // A viewer's plays: a session of short gaps, then hours apart.
        let mut t = 0;
        for k in 0..200 {
            t += if k % 20 == 19 { 20_000 } else { 10 + (k * 37) % 90 };
            assert!(guard.observe(2, &play("viewer", "i", t), None).is_empty());
        }
    }

    #[test]
    fn too_many_plays_in_an_hour_is_a_machine() {
        let config = GuardConfig { max_plays_per_hour: 10, ..GuardConfig::default() };
        let mut guard = Guard::new(config);
        let found: Vec<u64> = (0..11).flat_map(|k| guard.observe(1, &play("u", "i", k * k), None)).collect();
        assert_eq!(found, vec![1]);
        assert_eq!(guard.excluded[&1].exclusion.reason, Reason::Rate { plays_in_hour: 11 });
        assert_eq!(guard.excluded[&1].user_id, "u");
    }

    #[test]
    fn accounts_opening_a_day_alike_are_a_farm() {
        let config = GuardConfig { duplicate_opening: 3, duplicate_accounts: 3, ..GuardConfig::default() };
        let mut guard = Guard::new(config);
        let finish = |user: &str, secs| Event::new(user, "i", EventKind::Finish, Timestamp::from_secs(secs));
        let mut found = Vec::new();
        for user in 0..4u64 {
            // Each opens with items 1, 2, 3 in its own order; account 3 repeats item 1 first.
            let mut items = vec![1, 2, 3];
            items.rotate_left(user as usize % 3);
            if user == 3 {
                items.insert(0, 1);
            }
            for (k, item) in items.into_iter().enumerate() {
                found.extend(guard.observe(user, &finish("u", k as i64 * 1000 + user as i64), Some(item)));
            }
        }
        assert_eq!(found, vec![0, 1, 2, 3]);
        assert_eq!(guard.excluded[&3].exclusion.reason, Reason::Duplicate { accounts: 4 });
        // The same opening the next day starts a new count.
        assert!(guard.observe(9, &finish("u", 86_400), Some(1)).is_empty());
        let disabled = GuardConfig { enabled: false, max_plays_per_hour: 0, ..GuardConfig::default() };
        assert!(Guard::new(disabled).observe(1, &play("u", "i", 0), None).is_empty());
    }
}
