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

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap;

use reelrank_core::{Event, EventContext, EventKind, Timestamp};
use serde::{Deserialize, Serialize};

use crate::hashing::{feature_key, splitmix64};
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
    /// No impression event was logged: the outcome implies the user saw the item.
    pub implicit: bool,
    /// What the user did with it.
    pub outcome: Outcome,
}

/// What a user did with an item shown: the part of an [`Impression`] its outcome events fill in.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    /// Whether playback started.
    pub played: bool,
    /// Longest watch time reported, in milliseconds.
    pub watch_ms: f64,
    /// Bit `1 << a` set when action `a` of [`ACTIONS`] happened (`effective_play` is set by
    /// [`WatchQuantiles::label`]).
    pub actions: u16,
}

impl Impression {
    /// Whether action `a` of [`ACTIONS`] happened.
    pub fn did(&self, action: usize) -> bool {
        self.outcome.did(action)
    }

    /// One label per action of [`ACTIONS`]: whether it happened (the ranking model's heads).
    pub fn labels(&self) -> Vec<Option<bool>> {
        (0..ACTIONS.len()).map(|a| Some(self.did(a))).collect()
    }
}

impl Outcome {
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
    let mut joiner = ImpressionJoiner::new(i64::MAX);
    for event in events {
        joiner.push(event, true, |_| {});
    }
    let mut impressions = joiner.close_all();
    impressions.sort_by_key(|i| i.ts);
    impressions
}

/// Joins events into impressions as they arrive: the streaming form of [`join_impressions`], for
/// state that follows the log within a second. An impression stays open to its outcomes for a
/// window after it was shown; an outcome after that starts an implicit impression, as one with
/// nothing to join does.
///
/// Every impression served passes here and stays open for the window, so an open one is kept
/// compact: its keys, time and outcome, and its ids and context only when asked
/// ([`ImpressionJoiner::push`]'s `keep`: training's join keeps all, a learner those it waits for).
#[derive(Debug, Clone)]
pub struct ImpressionJoiner {
    window_ms: i64,
    /// Open impressions in the order they were opened (and are closed), numbered from `first`.
    /// A queue rather than a map keyed by number: growing it moves the impressions once, where a
    /// map would rehash them all while the serving state's lock is held.
    open: VecDeque<OpenImpression>,
    /// The number of `open[0]`.
    first: u64,
    /// Open impressions by their request key, and the latest of each (user id, item id) by its
    /// key: keys rather than strings, as every served impression passes here.
    by_request: FxHashMap<u64, u64>,
    latest: FxHashMap<u64, u64>,
}

/// An impression open to its outcomes.
#[derive(Debug, Clone)]
struct OpenImpression {
    ts: Timestamp,
    outcome: Outcome,
    implicit: bool,
    /// The key of (user id, item id), and the request key when it has a request id.
    pair: u64,
    request: Option<u64>,
    /// Who saw what where, when asked to be kept.
    shown: Option<Box<Shown>>,
}

/// The ids and context of an open impression.
#[derive(Debug, Clone)]
struct Shown {
    user_id: String,
    item_id: String,
    context: Option<EventContext>,
}

impl OpenImpression {
    /// The whole impression, when it was kept.
    fn impression(&self) -> Option<Impression> {
        let shown = self.shown.as_deref()?;
        Some(Impression {
            user_id: shown.user_id.clone(),
            item_id: shown.item_id.clone(),
            ts: self.ts,
            context: shown.context.clone(),
            implicit: self.implicit,
            outcome: self.outcome,
        })
    }
}

/// What one event changed: the impression it opened or joined, as it is now, and what it had
/// done before (nothing when `opened`).
#[derive(Debug, Clone, Copy)]
pub struct Joined<'a> {
    /// The impression's number in this joiner, to find it again while it is open
    /// ([`ImpressionJoiner::get`]).
    pub id: u64,
    /// Who was shown the item: the event's user (an outcome joins only its own user's
    /// impressions of its own item).
    pub user_id: &'a str,
    /// What was shown: the event's item.
    pub item_id: &'a str,
    /// The impression's outcome after the event.
    pub outcome: Outcome,
    /// Whether the impression is implicit (opened by an outcome).
    pub implicit: bool,
    /// Whether the event opened it (an impression event, or an outcome with nothing to join).
    pub opened: bool,
    /// Whether playback had started before the event.
    pub played_before: bool,
    /// [`Outcome::actions`] before the event.
    pub actions_before: u16,
}

impl ImpressionJoiner {
    /// A joiner that keeps impressions open for `window_ms` after they were shown.
    pub fn new(window_ms: i64) -> ImpressionJoiner {
        ImpressionJoiner {
            window_ms,
            open: VecDeque::new(),
            first: 0,
            by_request: FxHashMap::default(),
            latest: FxHashMap::default(),
        }
    }

    /// How long impressions stay open after they were shown.
    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// Keeps impressions open for `window_ms` from now on (the open ones included).
    pub fn set_window(&mut self, window_ms: i64) {
        self.window_ms = window_ms;
    }

    /// Joins `event` (events come in log order), `label` marking the derived actions of the
    /// outcome it touched (see [`WatchQuantiles::label`]); ratings change nothing. An impression
    /// the event opens keeps its ids and context when `keep` is set, for [`ImpressionJoiner::get`]
    /// and the closing calls to return it.
    pub fn push<'e>(
        &mut self,
        event: &'e Event,
        keep: bool,
        label: impl Fn(&mut Outcome),
    ) -> Option<Joined<'e>> {
        if event.kind == EventKind::Rate {
            return None;
        }
        let pair = feature_key(&event.user_id, &event.item_id);
        // The request id with the user and item: a request's outcomes join only its own user's
        // impressions.
        let request = event.request_id.as_ref().map(|r| splitmix64(pair ^ feature_key(r, &event.item_id)));
        let joined = match (&request, event.kind) {
            (_, EventKind::Impression) => None,
            (Some(request), _) => self.by_request.get(request).copied(),
            (None, _) => self.latest.get(&pair).copied(),
        };
        let (id, opened) = match joined {
            Some(id) => (id, false),
            None => {
                let id = self.first + self.open.len() as u64;
                if let Some(request) = request {
                    self.by_request.insert(request, id);
                }
                let shown = keep.then(|| {
                    Box::new(Shown {
                        user_id: event.user_id.clone(),
                        item_id: event.item_id.clone(),
                        context: event.context.clone(),
                    })
                });
                let implicit = event.kind != EventKind::Impression;
                let outcome = Outcome::default();
                self.open.push_back(OpenImpression { ts: event.ts, outcome, implicit, pair, request, shown });
                self.latest.insert(pair, id);
                (id, true)
            }
        };
        let at = (id - self.first) as usize;
        let open = self.open.get_mut(at).expect("joined impressions are open");
        let before = open.outcome;
        open.outcome.record(event);
        label(&mut open.outcome);
        Some(Joined {
            id,
            user_id: &event.user_id,
            item_id: &event.item_id,
            outcome: open.outcome,
            implicit: open.implicit,
            opened,
            played_before: before.played,
            actions_before: before.actions,
        })
    }

    /// The open impression numbered `id` ([`Joined::id`]) as it is now, when it was kept; `None`
    /// once closed.
    pub fn get(&self, id: u64) -> Option<Impression> {
        let at = usize::try_from(id.checked_sub(self.first)?).ok()?;
        self.open.get(at)?.impression()
    }

    /// Closes the impressions shown before `now_ms - window`, returning the kept ones in the order
    /// they were opened: their outcomes are in.
    pub fn close_before(&mut self, now_ms: i64) -> Vec<Impression> {
        let cutoff = now_ms.saturating_sub(self.window_ms);
        let mut closed = Vec::new();
        while self.open.front().is_some_and(|open| open.ts.millis() < cutoff) {
            closed.extend(self.close_first());
        }
        closed
    }

    /// Closes every open impression, returning the kept ones in the order they were opened.
    pub fn close_all(&mut self) -> Vec<Impression> {
        (0..self.open.len()).filter_map(|_| self.close_first()).collect()
    }

    /// Closes the first open impression, returning it when it was kept.
    fn close_first(&mut self) -> Option<Impression> {
        let open = self.open.pop_front().expect("called with impressions open");
        let id = self.first;
        self.first += 1;
        if let Some(request) = open.request {
            if self.by_request.get(&request) == Some(&id) {
                self.by_request.remove(&request);
            }
        }
        if self.latest.get(&open.pair) == Some(&id) {
            self.latest.remove(&open.pair);
        }
        open.impression()
    }
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
        for i in impressions.iter().filter(|i| i.outcome.watch_ms > 0.0) {
            watches.entry(duration_s(&i.item_id).map(numeric_bucket)).or_default().push(i.outcome.watch_ms);
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

    /// Sets or clears the effective-play action of `outcome`, of an item lasting `duration_s`.
    pub fn label(&self, outcome: &mut Outcome, duration_s: Option<f64>) {
        let bit = 1 << EFFECTIVE_PLAY;
        if self.is_effective(duration_s, outcome.watch_ms) {
            outcome.actions |= bit;
        } else {
            outcome.actions &= !bit;
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
        assert!(joined[0].did(like) && joined[0].outcome.played && joined[0].outcome.watch_ms == 9_000.0);
        assert!(joined[1].did(skip) && !joined[1].outcome.played);
        assert_eq!(joined[2].outcome.actions, 0, "the second showing of a had no outcome");
        assert!(joined[3].implicit && joined[3].did(share) && joined[3].item_id == "c");
    }

    #[test]
    fn the_streaming_join_reports_what_each_event_added_and_closes_after_its_window() {
        let like = ACTIONS.iter().position(|&a| a == "like").unwrap();
        let mut joiner = ImpressionJoiner::new(100);
        let mut push = |e: Event| {
            joiner
                .push(&e, true, |_| {})
                .map(|j| (j.opened, j.played_before, j.actions_before, j.outcome.actions))
        };
        assert_eq!(push(event(EventKind::Impression, "a", 0, Some("r1"), None)), Some((true, false, 0, 0)));
        assert_eq!(push(event(EventKind::Play, "a", 10, Some("r1"), None)), Some((false, false, 0, 0)));
        assert_eq!(
            push(event(EventKind::Like, "a", 20, Some("r1"), None)),
            Some((false, true, 0, 1 << like))
        );
        assert_eq!(push(event(EventKind::Rate, "a", 30, None, Some(4.0))), None);
        assert!(joiner.close_before(50).is_empty(), "still within its window");
        let closed = joiner.close_before(101);
        assert_eq!(closed.len(), 1);
        assert!(closed[0].outcome.played && closed[0].did(like));
        // A late outcome has nothing open to join: it opens an implicit impression.
        let late = event(EventKind::Like, "a", 150, Some("r1"), None);
        let late = joiner.push(&late, true, |_| {}).unwrap();
        assert!(late.opened && late.implicit);
        assert_eq!(joiner.close_all().len(), 1);
    }

    /// An impression not kept is joined all the same (what each event added is reported) but
    /// has nothing to hand back; a request's outcome joins only its own user's impression.
    #[test]
    fn impressions_not_kept_are_joined_and_requests_belong_to_their_user() {
        let mut joiner = ImpressionJoiner::new(100);
        let (shown, played) = (
            event(EventKind::Impression, "a", 0, Some("r1"), None),
            event(EventKind::Play, "a", 10, Some("r1"), None),
        );
        let shown = joiner.push(&shown, false, |_| {}).unwrap().id;
        let played = joiner.push(&played, false, |_| {}).unwrap();
        assert_eq!((played.id, played.opened, played.outcome.played), (shown, false, true));
        assert_eq!(joiner.get(shown), None, "not kept");
        let other = Event { user_id: "v".into(), ..event(EventKind::Like, "a", 20, Some("r1"), None) };
        let liked = joiner.push(&other, true, |_| {}).unwrap();
        assert!(
            liked.opened && liked.implicit && liked.user_id == "v",
            "another user's request opens its own"
        );
        assert_eq!(joiner.get(liked.id).map(|i| i.user_id), Some("v".to_owned()));
        assert_eq!(joiner.close_all().len(), 1, "only the kept impression comes back");
    }

    #[test]
    fn effective_play_is_judged_within_a_duration_bucket() {
        let mut impressions = Vec::new();
        // Two-minute episodes watched 30, 60, 90 s; 90-minute films watched 10, 20, 40 minutes.
        for (item, watch_s) in
            [("ep", 30.0), ("ep", 60.0), ("ep", 90.0), ("film", 600.0), ("film", 1200.0), ("film", 2400.0)]
        {
            let outcome = Outcome { played: true, watch_ms: watch_s * 1000.0, actions: 0 };
            let (user_id, item_id) = ("u".to_owned(), item.to_owned());
            impressions.push(Impression {
                user_id,
                item_id,
                ts: Timestamp(0),
                context: None,
                implicit: false,
                outcome,
            });
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
        quantiles.label(&mut first.outcome, duration("ep"));
        assert!(first.did(EFFECTIVE_PLAY));
    }
}
