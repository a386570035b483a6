//! What one user does on one day: sessions of impressions served by the logging policy, and the
//! user's response to each, driven by the ground-truth affinity.
//!
//! Each `(day, user)` draws from its own random stream, and the only state carried from one day to
//! the next is the user's own [`UserState`], so users can be simulated in parallel in any order.

use rand::Rng;
use rand_distr::{Distribution, LogNormal, Poisson};
use reelrank_core::{EventKind, Timestamp};

use crate::affinity::{Taste, TopicMix};
use crate::catalog::{Entry, NO_SERIES};
use crate::event::{Page, SimEvent};
use crate::policy::{next_item, Request};
use crate::rng::{rng, Cdf, SimRng, Stream};
use crate::users::Viewer;
use crate::vocab::{HOURLY_SESSIONS, REGIONS};
use crate::Simulation;

const HOUR_MS: i64 = 3_600_000;
/// Watched less than this, a play counts as a skip.
const SKIP_MS: i64 = 3_000;
/// Chance that a session opens with the series the user is in the middle of.
const CONTINUE_WATCHING: f64 = 0.5;
/// Chance that the player queues the next episode after a finished one.
const AUTOPLAY_NEXT: f64 = 0.9;
/// Chance of staying for another impression after one that was watched, and after one that was not.
const STAY_AFTER_WATCH: f64 = 0.94;
const STAY_AFTER_SKIP: f64 = 0.90;
/// Safety cap on impressions per session (also keeps `pos` within `u16`).
const MAX_IMPRESSIONS: u16 = 2_000;
/// Followed creators remembered; the oldest is forgotten first.
const MAX_FOLLOWED: usize = 64;

/// What a user carries from one day to the next.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserState {
    /// The next episode of the series the user is watching.
    watching: Option<u32>,
    /// Followed creators, oldest first.
    followed: Vec<u32>,
}

/// Appends the events of user `user` on day `day` to `out`, in generation order.
pub(crate) fn user_day(
    sim: &Simulation,
    user: usize,
    day: u32,
    state: &mut UserState,
    out: &mut Vec<SimEvent>,
) {
    let config = &sim.config;
    let viewer = &sim.audience.viewers[user];
    let mut rng = rng(config.seed, Stream::Behaviour, u64::from(day), user as u64);
    let lambda = config.sessions_per_day * viewer.activity;
    let sessions = match Poisson::new(lambda) {
        Ok(poisson) => (poisson.sample(&mut rng) as usize).min(usize::from(u16::MAX)),
        Err(_) => 0,
    };
    if sessions == 0 {
        return;
    }
    let day_start = config.start.millis() + i64::from(day) * Timestamp::DAY_MS;
    let offset_h = REGIONS[usize::from(viewer.region)].utc_offset_h;
    let hours = Cdf::new(HOURLY_SESSIONS);
    let mut starts: Vec<i64> = (0..sessions)
        .map(|_| {
            let local_hour = hours.sample(&mut rng).expect("weights are positive") as i64;
            day_start + (local_hour - offset_h).rem_euclid(24) * HOUR_MS + rng.random_range(0..HOUR_MS)
        })
        .collect();
    starts.sort_unstable();

    let interests = viewer.interests_on(config, user, day);
    let mut day = UserDay {
        sim,
        viewer,
        taste: Taste::new(viewer, &interests),
        interests,
        user: user as u32,
        day_end: day_start + Timestamp::DAY_MS,
        rng,
        state,
        out,
        seq: 0,
        shown: Vec::new(),
    };
    let mut free_at = day_start;
    for (session, start) in starts.into_iter().enumerate() {
        let begin = start.max(free_at);
        if begin >= day.day_end {
            break;
        }
        free_at = day.session(session as u16, begin) + 60_000;
    }
}

struct UserDay<'a> {
    sim: &'a Simulation,
    viewer: &'a Viewer,
    interests: TopicMix,
    taste: Taste,
    user: u32,
    /// Nothing happens at or after this instant: the day's batch ends there.
    day_end: i64,
    rng: SimRng,
    state: &'a mut UserState,
    out: &'a mut Vec<SimEvent>,
    seq: u32,
    /// Items shown in the current session.
    shown: Vec<u32>,
}

/// How one impression went.
struct Outcome {
    /// When the user moved on.
    end: i64,
    watched: bool,
    finished: bool,
}

impl UserDay<'_> {
    /// Runs one session starting at `t`; returns when it ended.
    fn session(&mut self, session: u16, mut t: i64) -> i64 {
        let catalog = &self.sim.catalog;
        let began = t;
        let budget = LogNormal::new((12.0 * 60_000.0f64).ln(), 0.8).expect("valid").sample(&mut self.rng);
        self.shown.clear();
        let mut queued = self.state.watching.filter(|_| self.rng.random::<f64>() < CONTINUE_WATCHING);
        for pos in 0..MAX_IMPRESSIONS {
            let (item, page) = match queued.take().filter(|&i| self.showable(i, t)) {
                Some(item) => (item, Page::Series),
                None => {
                    let request = Request {
                        viewer: self.viewer,
                        interests: &self.interests,
                        followed: &self.state.followed,
                        ts: t,
                        shown: &self.shown,
                    };
                    match next_item(catalog, &request, &mut self.rng) {
                        Some(item) => (item, Page::Feed),
                        None => break,
                    }
                }
            };
            self.shown.push(item);
            let outcome = self.impression(item, page, session, pos, t);
            t = outcome.end;
            if outcome.finished && catalog.entries[item as usize].series != NO_SERIES {
                self.state.watching = catalog.next_episode(item);
                queued = self.state.watching.filter(|_| self.rng.random::<f64>() < AUTOPLAY_NEXT);
            } else if page == Page::Series && !outcome.watched {
                self.state.watching = None;
            }
            let stay = if outcome.watched { STAY_AFTER_WATCH } else { STAY_AFTER_SKIP };
            if t >= self.day_end || (t - began) as f64 > budget || self.rng.random::<f64>() >= stay {
                break;
            }
        }
        t
    }

    fn showable(&self, item: u32, t: i64) -> bool {
        !self.shown.contains(&item)
            && self.sim.catalog.entries[item as usize].servable(t, self.viewer.region, self.viewer.age)
    }

    /// Shows `item` at `t0` and plays out the user's response.
    fn impression(&mut self, item: u32, page: Page, session: u16, pos: u16, t0: i64) -> Outcome {
        let sim = self.sim;
        let entry: &Entry = &sim.catalog.entries[item as usize];
        let affinity = self.taste.affinity(entry);
        let quality = f64::from(entry.quality);
        // Coming from a finished episode, the user is hooked: more likely to play and to finish.
        let hooked = page == Page::Series;
        let emit = |this: &mut Self, ts: i64, kind: EventKind, value_ms: u32| {
            this.out.push(SimEvent {
                ts: ts.min(this.day_end - 1),
                user: this.user,
                item,
                seq: this.seq,
                value_ms,
                session,
                pos,
                kind,
                page,
            });
            this.seq += 1;
        };
        emit(self, t0, EventKind::Impression, 0);

        let duration = f64::from(entry.duration_ms);
        // Long items are started and finished less often: before affinity and quality come in, about
        // 9 in 10 clips are finished, 1 in 2 half-hour episodes and 3 in 10 feature films.
        let length = 1.0 / (1.0 + (duration / 1_800_000.0).powf(0.6));
        let p_play = if hooked {
            0.6 + 0.35 * affinity
        } else {
            (0.05 + 0.8 * affinity + 0.1 * quality) * (0.4 + 0.6 * length)
        };
        let mut outcome = Outcome { end: t0, watched: false, finished: false };
        if self.rng.random::<f64>() < p_play {
            let t1 = t0 + self.rng.random_range(200..1500);
            emit(self, t1, EventKind::Play, 0);
            let drive = if hooked { 0.5 + 0.5 * affinity } else { affinity };
            let p_finish = drive * length * (0.6 + 0.4 * quality);
            outcome.finished = self.rng.random::<f64>() < p_finish;
            let planned = if outcome.finished {
                duration
            } else {
                // Share watched before leaving: mostly early drops at low affinity or on long items,
                // though a started play shows at least half a second.
                let shape = (0.15 + 2.0 * affinity) * length;
                (self.rng.random::<f64>().powf(1.0 / shape) * 0.97 * duration).max(500.0)
            };
            let watched = (planned as i64).min(self.day_end - 1 - t1).max(0);
            outcome.finished &= watched as f64 >= planned;
            outcome.watched = watched >= SKIP_MS;
            if outcome.watched {
                let engaged = watched as f64 / duration;
                let a2 = affinity * affinity;
                for (kind, p) in [
                    (EventKind::Like, 0.01 + 0.30 * a2),
                    (EventKind::Comment, 0.003 + 0.04 * a2),
                    (EventKind::Share, 0.002 + 0.05 * a2 * affinity),
                    (EventKind::Follow, 0.002 + 0.05 * a2),
                ] {
                    if self.rng.random::<f64>() < p * engaged && self.interact(kind, entry.creator) {
                        let at = t1 + (watched as f64 * self.rng.random_range(0.3..1.0)) as i64;
                        emit(self, at, kind, 0);
                    }
                }
            }
            outcome.end = t1 + watched;
            emit(self, outcome.end, EventKind::Watch, watched as u32);
            if outcome.finished {
                emit(self, outcome.end, EventKind::Finish, 0);
            }
            if !outcome.watched {
                emit(self, outcome.end, EventKind::Skip, 0);
            }
        } else {
            outcome.end = t0 + self.rng.random_range(400..2500);
            emit(self, outcome.end, EventKind::Skip, 0);
        }
        if !outcome.watched && affinity < 0.2 && self.rng.random::<f64>() < 0.04 {
            outcome.end += 300;
            emit(self, outcome.end, EventKind::NotInterested, 0);
        }
        if quality < 0.15 && self.rng.random::<f64>() < 0.02 {
            outcome.end += 500;
            emit(self, outcome.end, EventKind::Report, 0);
        }
        outcome.end += self.rng.random_range(300..2000);
        outcome
    }

    /// Applies an interaction to the user's state; `false` when it makes no sense (following a
    /// creator already followed).
    fn interact(&mut self, kind: EventKind, creator: u32) -> bool {
        if kind != EventKind::Follow {
            return true;
        }
        let followed = &mut self.state.followed;
        if followed.contains(&creator) {
            return false;
        }
        if followed.len() == MAX_FOLLOWED {
            followed.remove(0);
        }
        followed.push(creator);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::tests::fixture;

    #[test]
    fn impressions_only_show_servable_items() {
        let (sim, days) = fixture();
        let mut shown = 0;
        for e in days.iter().flatten().filter(|e| e.kind == EventKind::Impression) {
            let viewer = &sim.audience.viewers[e.user as usize];
            assert!(sim.catalog.entries[e.item as usize].servable(e.ts, viewer.region, viewer.age));
            shown += 1;
        }
        assert!(shown > 10_000);
    }

    /// Impressions in order per user, each with whether it was finished.
    fn impressions_by_user(days: &[Vec<SimEvent>]) -> HashMap<(usize, u32), Vec<(SimEvent, bool)>> {
        let mut by_user: HashMap<(usize, u32), Vec<(SimEvent, bool)>> = HashMap::new();
        for (day, events) in days.iter().enumerate() {
            for e in events {
                let seen = by_user.entry((day, e.user)).or_default();
                match e.kind {
                    EventKind::Impression => seen.push((*e, false)),
                    EventKind::Finish => seen.last_mut().expect("after its impression").1 = true,
                    _ => {}
                }
            }
        }
        by_user
    }

    #[test]
    fn finished_episodes_are_followed_by_the_next() {
        let (sim, days) = fixture();
        let (mut after_finish, mut finishes, mut after_other, mut others) = (0, 0, 0, 0);
        for seen in impressions_by_user(days).values() {
            for pair in seen.windows(2) {
                let ((shown, finished), (next, _)) = (pair[0], pair[1]);
                let Some(following) = sim.catalog.next_episode(shown.item) else {
                    continue;
                };
                let hit = next.item == following;
                if finished {
                    finishes += 1;
                    after_finish += usize::from(hit);
                } else {
                    others += 1;
                    after_other += usize::from(hit);
                }
            }
        }
        let after_finish = after_finish as f64 / finishes as f64;
        let after_other = after_other as f64 / others as f64;
        assert!(finishes > 200, "{finishes}");
        assert!(after_finish > 0.6 && after_finish > 10.0 * after_other, "{after_finish} vs {after_other}");
    }

    #[test]
    fn affinity_drives_behaviour() {
        let (sim, days) = fixture();
        let mut scored: Vec<(f64, bool)> = Vec::new();
        for ((day, user), seen) in impressions_by_user(days) {
            let viewer = &sim.audience.viewers[user as usize];
            let taste = Taste::new(viewer, &viewer.interests_on(&sim.config, user as usize, day as u32));
            for (e, finished) in seen.into_iter().filter(|(e, _)| e.page == Page::Feed) {
                let entry = &sim.catalog.entries[e.item as usize];
                scored.push((taste.affinity(entry), finished));
            }
        }
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        let decile = scored.len() / 10;
        let rate = |part: &[(f64, bool)]| part.iter().filter(|s| s.1).count() as f64 / part.len() as f64;
        let (low, high) = (rate(&scored[..decile]), rate(&scored[scored.len() - decile..]));
        assert!(high > low + 0.3, "finish rate {low} in the bottom decile, {high} in the top");
    }
}
