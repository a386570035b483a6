//! What happened after an item was shown: the event log joined into impressions with outcomes,
//! the ranking model's labels.
//!
//! An outcome (play, watch, like, …) joins the impression of the same `request_id` and item; an
//! outcome without a request id joins the user's latest impression of the item. An outcome with no
//! impression to join still says the user saw the item: it becomes an *implicit* impression (logs
//! imported from systems that record no impressions have only those).
//!
//! Watch time is debiased by duration: a watch is an *effective play* when it reaches the median
//! watch time of plays of items in the same duration bucket ([`WatchQuantiles`]), so that a
//! 90-minute film and a 2-minute episode are judged against their own kind.

use std::collections::{BTreeMap, HashMap};

use reelrank_core::{Event, EventContext, EventKind, Timestamp};
use serde::{Deserialize, Serialize};

use crate::schema::numeric_bucket;

/// The actions a ranking model predicts, in head order. `effective_play` comes from watch time
/// ([`WatchQuantiles`]); the others are event kinds of the same name.
pub const ACTIONS: [&str; 9] =
    ["effective_play", "finish", "like", "comment", "share", "follow", "skip", "not_interested", "report"];

/// Position of `effective_play` in [`ACTIONS`].
pub const EFFECTIVE_PLAY: usize = 0;

/// Position of `skip` in [`ACTIONS`]: the one action that does not imply playback.
const SKIP: usize = 6;

/// The head of an event kind that is its own action.
fn action_of(kind: EventKind) -> Option<usize> {
    let name = kind.as_str();
    ACTIONS.iter().skip(1).position(|&a| a == name).map(|p| p + 1)
}

/// One item shown to one user, with what the user then did.
#[derive(Debug, Clone, PartialEq)]
pub struct Impression {
    /// Who saw it.
    pub user_id: String,
    /// What was shown.
    pub item_id: String,
    /// When it was shown (for an implicit impression: its first outcome's time).
    pub ts: Timestamp,
    /// Where it was shown.
    pub context: Option<EventContext>,
    /// Whether playback started.
    pub played: bool,
    /// Longest watch time reported, in milliseconds.
    pub watch_ms: f64,
    /// Bit `1 << a` set when action `a` of [`ACTIONS`] happened (`effective_play` is set by
    /// [`WatchQuantiles::label`]).
    pub actions: u16,
    /// No impression event was logged: the outcome implies the user saw the item.
    pub implicit: bool,
}

impl Impression {
    fn new(event: &Event, implicit: bool) -> Impression {
        Impression {
            user_id: event.user_id.clone(),
            item_id: event.item_id.clone(),
            ts: event.ts,
            context: event.context.clone(),
            played: false,
            watch_ms: 0.0,
            actions: 0,
            implicit,
        }
    }

    /// Whether action `a` of [`ACTIONS`] happened.
    pub fn did(&self, action: usize) -> bool {
        self.actions & (1 << action) != 0
    }

    fn record(&mut self, event: &Event) {
        match event.kind {
            EventKind::Play => self.played = true,
            EventKind::Watch => {
                self.played = true;
                self.watch_ms = self.watch_ms.max(event.value.unwrap_or(0.0));
            }
            kind => {
                if let Some(a) = action_of(kind) {
                    self.actions |= 1 << a;
                    self.played |= a != SKIP;
                }
            }
        }
    }
}

/// Joins `events` (in log order) into impressions, in the order they were shown. Ratings are
/// ignored: they are not behaviour a feed observes.
pub fn join_impressions<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<Impression> {
    let mut impressions: Vec<Impression> = Vec::new();
    let mut by_request: HashMap<(String, String), usize> = HashMap::new();
    let mut latest: HashMap<(String, String), usize> = HashMap::new();
    for event in events {
        if event.kind == EventKind::Rate {
            continue;
        }
        let pair = (event.user_id.clone(), event.item_id.clone());
        let request = event.request_id.as_ref().map(|r| (r.clone(), event.item_id.clone()));
        if event.kind == EventKind::Impression {
            let index = impressions.len();
            impressions.push(Impression::new(event, false));
            if let Some(request) = request {
                by_request.insert(request, index);
            }
            latest.insert(pair, index);
            continue;
        }
        let joined = match &request {
            Some(request) => by_request.get(request).copied(),
            None => latest.get(&pair).copied(),
        };
        let index = joined.unwrap_or_else(|| {
            let index = impressions.len();
            impressions.push(Impression::new(event, true));
            if let Some(request) = request {
                by_request.insert(request, index);
            }
            latest.insert(pair, index);
            index
        });
        impressions[index].record(event);
    }
    impressions.sort_by_key(|i| i.ts);
    impressions
}

/// Per duration bucket, the median watch time of plays: the threshold of an effective play.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchQuantiles {
    /// ([`numeric_bucket`] of the duration in seconds or `None` when unknown, threshold in ms),
    /// sorted by bucket.
    thresholds: Vec<(Option<i64>, f64)>,
}

impl WatchQuantiles {
    /// The medians of the played `impressions`' watch times, per duration bucket of their items
    /// (`duration_s` gives an item's duration when known).
    pub fn fit(impressions: &[Impression], duration_s: impl Fn(&str) -> Option<f64>) -> WatchQuantiles {
        let mut watches: BTreeMap<Option<i64>, Vec<f64>> = BTreeMap::new();
        for i in impressions.iter().filter(|i| i.watch_ms > 0.0) {
            watches.entry(duration_s(&i.item_id).map(numeric_bucket)).or_default().push(i.watch_ms);
        }
        let thresholds = watches
            .into_iter()
            .map(|(bucket, mut ms)| {
                ms.sort_by(f64::total_cmp);
                (bucket, ms[ms.len() / 2])
            })
            .collect();
        WatchQuantiles { thresholds }
    }

    /// Whether `watch_ms` of an item lasting `duration_s` is an effective play: at least its
    /// bucket's median (any watch, in a bucket never seen).
    pub fn is_effective(&self, duration_s: Option<f64>, watch_ms: f64) -> bool {
        let bucket = duration_s.map(numeric_bucket);
        let threshold =
            self.thresholds.binary_search_by_key(&bucket, |&(b, _)| b).map_or(0.0, |i| self.thresholds[i].1);
        watch_ms > 0.0 && watch_ms >= threshold
    }

    /// Sets or clears `impression`'s effective-play action.
    pub fn label(&self, impression: &mut Impression, duration_s: Option<f64>) {
        let bit = 1 << EFFECTIVE_PLAY;
        if self.is_effective(duration_s, impression.watch_ms) {
            impression.actions |= bit;
        } else {
            impression.actions &= !bit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, item: &str, ts: i64, request: Option<&str>, value: Option<f64>) -> Event {
        Event { value, request_id: request.map(str::to_owned), ..Event::new("u", item, kind, Timestamp(ts)) }
    }

    #[test]
    fn outcomes_join_their_impression() {
        let events = [
            event(EventKind::Impression, "a", 1, Some("r1"), None),
            event(EventKind::Impression, "b", 2, Some("r1"), None),
            event(EventKind::Impression, "a", 3, Some("r2"), None),
            event(EventKind::Like, "a", 4, Some("r1"), None),
            event(EventKind::Watch, "a", 5, Some("r1"), Some(9_000.0)),
            // No request id: the latest impression of b.
            event(EventKind::Skip, "b", 6, None, None),
            // Nothing to join: an implicit impression.
            event(EventKind::Share, "c", 7, None, None),
            event(EventKind::Rate, "a", 8, None, Some(5.0)),
        ];
        let joined = join_impressions(&events);
        assert_eq!(joined.len(), 4);
        let like = ACTIONS.iter().position(|&a| a == "like").unwrap();
        let skip = SKIP;
        assert_eq!(ACTIONS[SKIP], "skip");
        let share = ACTIONS.iter().position(|&a| a == "share").unwrap();
        assert!(joined[0].did(like) && joined[0].played && joined[0].watch_ms == 9_000.0);
        assert!(joined[1].did(skip) && !joined[1].played);
        assert_eq!(joined[2].actions, 0, "the second showing of a had no outcome");
        assert!(joined[3].implicit && joined[3].did(share) && joined[3].item_id == "c");
    }

    #[test]
    fn effective_play_is_judged_within_a_duration_bucket() {
        let mut impressions = Vec::new();
        // Two-minute episodes watched 30, 60, 90 s; 90-minute films watched 10, 20, 40 minutes.
        for (item, watch_s) in
            [("ep", 30.0), ("ep", 60.0), ("ep", 90.0), ("film", 600.0), ("film", 1200.0), ("film", 2400.0)]
        {
            let mut i = Impression::new(&event(EventKind::Impression, item, 0, None, None), false);
            i.watch_ms = watch_s * 1000.0;
            impressions.push(i);
        }
        let duration = |item: &str| Some(if item == "ep" { 120.0 } else { 5400.0 });
        let quantiles = WatchQuantiles::fit(&impressions, duration);
        // 60 s of an episode and 20 minutes of a film are both median plays: effective.
        assert!(quantiles.is_effective(Some(120.0), 60_000.0));
        assert!(quantiles.is_effective(Some(5400.0), 1_200_000.0));
        // 10 minutes of a film is more than a whole episode, yet short for a film.
        assert!(!quantiles.is_effective(Some(5400.0), 600_000.0));
        assert!(!quantiles.is_effective(Some(120.0), 30_000.0));
        assert!(!quantiles.is_effective(Some(120.0), 0.0), "no watch is never effective");
        assert!(quantiles.is_effective(None, 1.0), "an unseen bucket counts any watch");
        let mut first = impressions[1].clone();
        quantiles.label(&mut first, duration("ep"));
        assert!(first.did(EFFECTIVE_PLAY));
    }
}
