//! Charts like the industry's weekly lists: per category and period, items ranked by
//! **effective-play market share** (an item's effective plays over all of its category's in the
//! period), with a **heat index**, the **rank change** against the period before (`↑1`, `↓2`,
//! `New`) and **days online**.
//!
//! [`Charts`] is fed the event log in order ([`Charts::record`]) and keeps each day's figures per
//! item ([`ledger`]), so a chart adds up the days it covers and never rescans history. Accounts
//! behaving like machines are excluded as they show it, their open days' contributions taken
//! back ([`guard`]); the same exclusions keep their events out of training.

#![warn(missing_docs)]

mod board;
pub mod day;
pub mod guard;
pub mod ledger;
mod request;
mod tally;

use std::hash::{Hash, Hasher};

use reelrank_core::{Category, Event, Item};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

pub use crate::board::{change, HeatWeights};
pub use crate::day::{Day, Period, Span};
use crate::guard::Guard;
pub use crate::guard::{ExcludedAccount, Exclusion, GuardConfig, Reason};
use crate::ledger::{Ledger, Refusal};
pub use crate::request::{ChartRequest, RequestError, DEFAULT_ROWS, MAX_ROWS};
pub use crate::tally::{EffectiveRule, Tally};

/// The `[serving.charts]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChartConfig {
    /// When a play is effective.
    pub effective: EffectiveRule,
    /// Contributions of one account counted per day, at most.
    pub max_counted_per_user_day: u32,
    /// Days back from the newest that late events still reach and exclusions still retract.
    pub open_days: i32,
    /// Days back from the newest whose figures are kept (charts of older periods come out empty).
    pub history_days: i32,
    /// The heat index's weights.
    pub heat: HeatWeights,
    /// How fake traffic is found.
    pub guard: GuardConfig,
}

impl Default for ChartConfig {
    fn default() -> ChartConfig {
        ChartConfig {
            effective: EffectiveRule::default(),
            max_counted_per_user_day: 200,
            open_days: 14,
            history_days: 400,
            heat: HeatWeights::default(),
            guard: GuardConfig::default(),
        }
    }
}

/// What a chart is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartQuery {
    /// One category, or all.
    pub category: Option<Category>,
    /// The days covered.
    pub period: Period,
    /// Rows returned, at most.
    pub limit: usize,
}

/// A chart.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// The category, or `null` for all.
    pub category: Option<String>,
    /// `day`, `week` or `range`.
    pub period: &'static str,
    /// The first day covered.
    pub from: Day,
    /// The last day covered.
    pub to: Day,
    /// Effective plays of the category in the period: what shares are of.
    pub effective_plays: u64,
    /// Items with an effective play in the period (rows beyond the limit included).
    pub items_ranked: usize,
    /// The best items, first to last.
    pub rows: Vec<ChartRow>,
}

/// One item's line in a chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChartRow {
    /// Its place, from 1.
    pub rank: u32,
    /// Against the period before: `↑n`, `↓n`, `=` or `New`.
    pub change: String,
    /// Its place in the period before, if it had one.
    pub previous_rank: Option<u32>,
    /// The item.
    pub item_id: String,
    /// Its title.
    pub title: String,
    /// Its category.
    pub category: String,
    /// Its effective plays over the category's.
    pub share: f64,
    /// Its heat index, 0 to 100 (see [`HeatWeights`]).
    pub heat: f64,
    /// Its effective plays.
    pub effective_plays: u64,
    /// Its likes.
    pub likes: u64,
    /// Its comments.
    pub comments: u64,
    /// Its shares.
    pub shares: u64,
    /// Days from its publication (or its first counted play) to the period's last day, both
    /// counted.
    pub days_online: i32,
    /// Where it may be shown (empty: everywhere).
    pub regions: Vec<String>,
}

/// Contributions the ledger did not count, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Refusals {
    /// Made again by the same account on the same item and day.
    pub repeated: u64,
    /// Past an account's daily cap.
    pub over_cap: u64,
    /// On a day already closed.
    pub closed: u64,
}

/// What a chart shows of an item, as of its first counted contribution.
#[derive(Debug)]
struct Entry {
    item_id: String,
    title: String,
    category: Category,
    online_from: Day,
    regions: Vec<String>,
}

/// Item ids numbered in the order they were first counted.
#[derive(Debug, Default)]
struct Names {
    keys: FxHashMap<Box<str>, u32>,
}

impl Names {
    fn key(&mut self, name: &str) -> (u32, bool) {
        if let Some(&key) = self.keys.get(name) {
            return (key, false);
        }
        let key = self.keys.len() as u32;
        self.keys.insert(name.into(), key);
        (key, true)
    }
}

/// An account's key: a 64-bit hash of its id, so that what is kept per account is dropped with
/// it (an id table would grow with every account ever seen).
fn user_key(user_id: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    user_id.hash(&mut hasher);
    hasher.finish()
}

/// Every chart's figures, kept from the event log.
#[derive(Debug)]
pub struct Charts {
    config: ChartConfig,
    items: Names,
    entries: Vec<Entry>,
    ledger: Ledger,
    guard: Guard,
    refusals: Refusals,
}

impl Charts {
    /// Charts of no event yet.
    pub fn new(config: ChartConfig) -> Charts {
        Charts {
            ledger: Ledger::new(config.open_days, config.history_days, config.max_counted_per_user_day),
            guard: Guard::new(config.guard.clone()),
            config,
            items: Names::default(),
            entries: Vec::new(),
            refusals: Refusals::default(),
        }
    }

    /// Follows the log's next event, on `item` (`None`: an item no chart shows, whose events
    /// still tell how the account behaves); returns whether the event counts, that is whether
    /// its account is not excluded.
    pub fn record(&mut self, event: &Event, item: Option<&Item>) -> bool {
        let user = user_key(&event.user_id);
        if self.guard.is_excluded(user) {
            self.guard.ignored(user);
            return false;
        }
        let day = Day::of(event.ts);
        let counted = item.and_then(|item| {
            let tally = self.config.effective.tally(event, item.duration_s)?;
            Some((tally, self.item_key(item, day)))
        });
        let effective = counted.filter(|&(tally, _)| tally == Tally::EffectivePlay).map(|(_, key)| key);
        for found in self.guard.observe(user, event, effective) {
            let retracted = self.ledger.retract(found);
            self.guard.retracted(found, retracted);
        }
        if self.guard.is_excluded(user) {
            self.guard.ignored(user);
            return false;
        }
        if let Some((tally, key)) = counted {
            match self.ledger.record(user, key, day, tally) {
                Ok(()) => {}
                Err(Refusal::Repeated) => self.refusals.repeated += 1,
                Err(Refusal::OverCap) => self.refusals.over_cap += 1,
                Err(Refusal::Closed) => self.refusals.closed += 1,
            }
        }
        true
    }

    fn item_key(&mut self, item: &Item, day: Day) -> u32 {
        let (key, new) = self.items.key(&item.item_id);
        if new {
            self.entries.push(Entry {
                item_id: item.item_id.clone(),
                title: item.title.clone(),
                category: item.category.clone(),
                online_from: item.published_at.map_or(day, Day::of),
                regions: item.regions.clone(),
            });
        } else if item.published_at.is_none() {
            let entry = &mut self.entries[key as usize];
            entry.online_from = entry.online_from.min(day);
        }
        key
    }

    /// The newest day with an event.
    pub fn newest_day(&self) -> Option<Day> {
        self.ledger.newest()
    }

    /// The chart `query` asks for, over the items `shown` accepts (by id): those still in the
    /// catalog, not taken down.
    pub fn chart(&self, query: &ChartQuery, shown: impl Fn(&str) -> bool) -> Chart {
        let span = query.period.span();
        let keep = |key: u32| {
            let entry = &self.entries[key as usize];
            query.category.as_ref().is_none_or(|c| *c == entry.category) && shown(&entry.item_id)
        };
        let items = board::Items { keep, id: |key: u32| self.entries[key as usize].item_id.as_str() };
        let (placings, total) = board::placings(&self.ledger, span, items, &self.config.heat);
        let items_ranked = placings.len();
        let rows = placings
            .into_iter()
            .take(query.limit)
            .map(|p| {
                let entry = &self.entries[p.item as usize];
                ChartRow {
                    rank: p.rank,
                    change: change(p.rank, p.previous_rank),
                    previous_rank: p.previous_rank,
                    item_id: entry.item_id.clone(),
                    title: entry.title.clone(),
                    category: entry.category.as_str().to_owned(),
                    share: p.share,
                    heat: p.heat,
                    effective_plays: p.tallies.effective_plays,
                    likes: p.tallies.likes,
                    comments: p.tallies.comments,
                    shares: p.tallies.shares,
                    days_online: (span.to.0 - entry.online_from.0 + 1).max(1),
                    regions: entry.regions.clone(),
                }
            })
            .collect();
        Chart {
            category: query.category.as_ref().map(|c| c.as_str().to_owned()),
            period: query.period.name(),
            from: span.from,
            to: span.to,
            effective_plays: total,
            items_ranked,
            rows,
        }
    }

    /// Whether `user_id`'s events are excluded.
    pub fn is_excluded(&self, user_id: &str) -> bool {
        self.guard.is_excluded(user_key(user_id))
    }

    /// The excluded accounts, in the order they were found.
    pub fn excluded(&self) -> Vec<ExcludedAccount> {
        let mut accounts: Vec<ExcludedAccount> = self.guard.exclusions().cloned().collect();
        accounts.sort_by(|a, b| a.exclusion.at.cmp(&b.exclusion.at).then_with(|| a.user_id.cmp(&b.user_id)));
        accounts
    }

    /// Contributions not counted, by cause.
    pub fn refusals(&self) -> Refusals {
        self.refusals
    }
}
