//! A farm of scripted accounts pushing one item, to measure what fake traffic does to charts
//! and training. Every account runs the same script on a timer: it plays the target, then one of
//! a few cover items, and so on round the clock, each play finished, with a little jitter on the
//! timer. That is the cheap farm a chart manipulator rents; the guard in `reelrank-charts` is
//! measured against it.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use reelrank_core::{Event, EventKind, Timestamp};

/// The farm.
#[derive(Debug, Clone, PartialEq)]
pub struct BotFarm {
    /// Accounts, named `bot{n}`.
    pub accounts: usize,
    /// The item pushed: every other play.
    pub target: String,
    /// Items played between, in turn, to look like viewing.
    pub cover: Vec<String>,
    /// Plays per account and day.
    pub plays_per_day: u32,
    /// Seed of the timers' jitter.
    pub seed: u64,
}

impl BotFarm {
    /// The farm's events on the day starting at `midnight` (Unix ms), in time order: per play a
    /// `play` and, 30 s later, a `finish`.
    pub fn events(&self, midnight: Timestamp) -> Vec<Event> {
        let interval = Timestamp::DAY_MS / i64::from(self.plays_per_day.max(1));
        let mut events = Vec::new();
        for account in 0..self.accounts {
            let mut rng =
                Pcg64Mcg::seed_from_u64(self.seed ^ ((account as u64) << 20) ^ midnight.millis() as u64);
            let user = format!("bot{account}");
            let offset = rng.random_range(0..interval);
            for play in 0..i64::from(self.plays_per_day) {
                let jitter = rng.random_range(-interval / 20..=interval / 20);
                let ts = (midnight.millis() + offset + play * interval + jitter).max(midnight.millis());
                let item = match (play % 2, self.cover.len()) {
                    (1, n) if n > 0 => &self.cover[(play as usize / 2) % n],
                    _ => &self.target,
                };
                events.push(Event::new(user.clone(), item.clone(), EventKind::Play, Timestamp(ts)));
                events.push(Event::new(
                    user.clone(),
                    item.clone(),
                    EventKind::Finish,
                    Timestamp(ts + 30_000),
                ));
            }
        }
        events.sort_by_key(|event| event.ts);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_account_plays_its_quota_mostly_the_target() {
        let farm = BotFarm {
            accounts: 3,
            target: "i1".into(),
            cover: vec!["i2".into(), "i3".into()],
            plays_per_day: 10,
            seed: 7,
        };
        let midnight = Timestamp::from_ymd(2026, 1, 5).unwrap();
        let events = farm.events(midnight);
        let plays: Vec<&Event> = events.iter().filter(|e| e.kind == EventKind::Play).collect();
        assert_eq!(plays.len(), 30);
        assert_eq!(plays.iter().filter(|e| e.item_id == "i1").count(), 15);
        assert!(events.windows(2).all(|w| w[0].ts <= w[1].ts));
        assert!(plays
            .iter()
            .all(|e| e.ts >= midnight && e.ts.millis() < midnight.millis() + Timestamp::DAY_MS));
        assert_eq!(farm.events(midnight), events);
    }
}
