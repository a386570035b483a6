//! Items' daily figures, kept as events arrive, so a chart of any period adds up a few days'
//! totals instead of rescanning the log.
//!
//! Each account counts once per item, day and kind of contribution (an effective play, a like,
//! a comment, a share), and at most `max_per_user_day` contributions of one account count in a
//! day: replaying one item all day, or liking everything, moves a chart no more than one
//! viewer's honest day does. The contributions of the last `open_days` days are remembered per
//! account, so those of an account found to be fake later are taken back out; older days are
//! closed (an event that late is not counted).

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::day::Day;
use crate::tally::Tally;

/// An item's figures over some days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tallies {
    /// Effective plays.
    pub effective_plays: u64,
    /// Likes.
    pub likes: u64,
    /// Comments.
    pub comments: u64,
    /// Shares.
    pub shares: u64,
}

impl Tallies {
    fn slot(&mut self, tally: Tally) -> &mut u64 {
        match tally {
            Tally::EffectivePlay => &mut self.effective_plays,
            Tally::Like => &mut self.likes,
            Tally::Comment => &mut self.comments,
            Tally::Share => &mut self.shares,
        }
    }

    /// Adds `other`'s figures.
    pub fn add(&mut self, other: &Tallies) {
        self.effective_plays += other.effective_plays;
        self.likes += other.likes;
        self.comments += other.comments;
        self.shares += other.shares;
    }
}

/// Why a contribution did not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The account already made it that day.
    Repeated,
    /// The account reached its daily cap.
    OverCap,
    /// Its day is closed.
    Closed,
}

/// What one account contributed in the open days.
#[derive(Debug, Default)]
struct Trail {
    contributions: Vec<(Day, u32, Tally)>,
    per_day: Vec<(Day, u32)>,
}

/// Items' daily figures and the open days' contributions by account.
#[derive(Debug)]
pub struct Ledger {
    days: BTreeMap<Day, FxHashMap<u32, Tallies>>,
    counted: FxHashSet<(u64, u32, Day, Tally)>,
    trails: FxHashMap<u64, Trail>,
    newest: Option<Day>,
    open_days: i32,
    history_days: i32,
    max_per_user_day: u32,
}

impl Ledger {
    /// An empty ledger keeping `open_days` days open and `history_days` days of figures,
    /// counting at most `max_per_user_day` contributions of an account a day.
    pub fn new(open_days: i32, history_days: i32, max_per_user_day: u32) -> Ledger {
        Ledger {
            days: BTreeMap::new(),
            counted: FxHashSet::default(),
            trails: FxHashMap::default(),
            newest: None,
            open_days: open_days.max(1),
            history_days: history_days.max(open_days.max(1)),
            max_per_user_day,
        }
    }

    /// The newest day with an event.
    pub fn newest(&self) -> Option<Day> {
        self.newest
    }

    fn first_open(&self) -> Option<Day> {
        self.newest.map(|newest| newest.plus(1 - self.open_days))
    }

    /// Counts `tally` by account `user` on `item` on `day`, unless it is refused.
    pub fn record(&mut self, user: u64, item: u32, day: Day, tally: Tally) -> Result<(), Refusal> {
        if self.first_open().is_some_and(|first| day < first) {
            return Err(Refusal::Closed);
        }
        if self.newest.is_none_or(|newest| day > newest) {
            self.newest = Some(day);
            self.close_old_days();
        }
        if self.counted.contains(&(user, item, day, tally)) {
            return Err(Refusal::Repeated);
        }
        let trail = self.trails.entry(user).or_default();
        let today = match trail.per_day.iter_mut().find(|(d, _)| *d == day) {
            Some((_, count)) => count,
            None => {
                trail.per_day.push((day, 0));
                &mut trail.per_day.last_mut().expect("just pushed").1
            }
        };
        if *today >= self.max_per_user_day {
            return Err(Refusal::OverCap);
        }
        *today += 1;
        trail.contributions.push((day, item, tally));
        self.counted.insert((user, item, day, tally));
        *self.days.entry(day).or_default().entry(item).or_default().slot(tally) += 1;
        Ok(())
    }

    /// Takes back everything `user` contributed in the open days; returns how many
    /// contributions that was.
    pub fn retract(&mut self, user: u64) -> u64 {
        let Some(trail) = self.trails.remove(&user) else { return 0 };
        for &(day, item, tally) in &trail.contributions {
            self.counted.remove(&(user, item, day, tally));
            if let Some(tallies) = self.days.get_mut(&day).and_then(|items| items.get_mut(&item)) {
                *tallies.slot(tally) -= 1;
            }
        }
        trail.contributions.len() as u64
    }

    /// Forgets which account contributed what on days that are no longer open, and the figures of
    /// days past the history kept.
    fn close_old_days(&mut self) {
        let Some(first) = self.first_open() else { return };
        let kept_from = first.plus(self.open_days - self.history_days);
        self.days = self.days.split_off(&kept_from);
        self.counted.retain(|&(_, _, day, _)| day >= first);
        self.trails.retain(|_, trail| {
            trail.contributions.retain(|&(day, _, _)| day >= first);
            trail.per_day.retain(|&(day, _)| day >= first);
            !trail.contributions.is_empty()
        });
    }

    /// Each item's figures over `days`, for the items `keep` accepts.
    pub fn totals(&self, from: Day, to: Day, keep: impl Fn(u32) -> bool) -> FxHashMap<u32, Tallies> {
        let mut totals: FxHashMap<u32, Tallies> = FxHashMap::default();
        for items in self.days.range(from..=to).map(|(_, items)| items) {
            for (&item, tallies) in items.iter().filter(|(&item, _)| keep(item)) {
                totals.entry(item).or_default().add(tallies);
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plays(ledger: &Ledger, day: Day, item: u32) -> u64 {
        ledger.totals(day, day, |_| true).get(&item).map_or(0, |t| t.effective_plays)
    }

    #[test]
    fn an_account_counts_once_per_item_kind_and_day() {
        let mut ledger = Ledger::new(14, 400, 100);
        assert_eq!(ledger.record(1, 7, Day(10), Tally::EffectivePlay), Ok(()));
        assert_eq!(ledger.record(1, 7, Day(10), Tally::EffectivePlay), Err(Refusal::Repeated));
        assert_eq!(ledger.record(1, 7, Day(10), Tally::Like), Ok(()));
        assert_eq!(ledger.record(1, 7, Day(11), Tally::EffectivePlay), Ok(()));
        assert_eq!(ledger.record(2, 7, Day(10), Tally::EffectivePlay), Ok(()));
        assert_eq!(plays(&ledger, Day(10), 7), 2);
        let week = ledger.totals(Day(10), Day(16), |_| true);
        assert_eq!(week[&7], Tallies { effective_plays: 3, likes: 1, comments: 0, shares: 0 });
        assert!(ledger.totals(Day(10), Day(16), |item| item != 7).is_empty());
    }

    #[test]
    fn the_daily_cap_and_closed_days_refuse() {
        let mut ledger = Ledger::new(3, 400, 2);
        assert_eq!(ledger.record(1, 1, Day(10), Tally::EffectivePlay), Ok(()));
        assert_eq!(ledger.record(1, 2, Day(10), Tally::EffectivePlay), Ok(()));
        assert_eq!(ledger.record(1, 3, Day(10), Tally::EffectivePlay), Err(Refusal::OverCap));
        assert_eq!(ledger.record(1, 3, Day(11), Tally::EffectivePlay), Ok(()));
        assert_eq!(ledger.record(2, 3, Day(12), Tally::EffectivePlay), Ok(()));
        // Day 10 is still open (days 10 - 12); day 13 closes it.
        assert_eq!(ledger.record(3, 3, Day(10), Tally::EffectivePlay), Ok(()));
        assert_eq!(ledger.record(3, 3, Day(13), Tally::EffectivePlay), Ok(()));
        assert_eq!(ledger.record(4, 3, Day(10), Tally::EffectivePlay), Err(Refusal::Closed));
        assert_eq!(plays(&ledger, Day(10), 3), 1);
    }

    #[test]
    fn a_retraction_takes_back_the_open_days_only() {
        let mut ledger = Ledger::new(2, 400, 100);
        ledger.record(1, 1, Day(10), Tally::EffectivePlay).unwrap();
        ledger.record(1, 1, Day(11), Tally::EffectivePlay).unwrap();
        ledger.record(1, 1, Day(12), Tally::Share).unwrap();
        ledger.record(2, 1, Day(12), Tally::EffectivePlay).unwrap();
        // Day 10 closed when day 12 arrived: it stays counted.
        assert_eq!(ledger.retract(1), 2);
        assert_eq!(ledger.retract(1), 0);
        assert_eq!(plays(&ledger, Day(10), 1), 1);
        assert_eq!(plays(&ledger, Day(11), 1), 0);
        // Figures are kept for the history's days only.
        let mut short = Ledger::new(2, 3, 100);
        for day in 10..14 {
            short.record(1, 1, Day(day), Tally::EffectivePlay).unwrap();
        }
        assert_eq!(short.totals(Day(0), Day(20), |_| true)[&1].effective_plays, 3);
        let last = ledger.totals(Day(12), Day(12), |_| true);
        assert_eq!(last[&1], Tallies { effective_plays: 1, likes: 0, comments: 0, shares: 0 });
    }
}
