//! What serving knows of each user's behaviour: what they have seen, what they said they do not
//! want, whom they follow, where they are in each series and their latest positives; and, over
//! all users, each item's recent heat for the trending source and each experiment variant's
//! online metrics. Kept current from the event
//! stream, so that a `not_interested` or a finished episode changes the very next response.

use std::collections::{HashMap, VecDeque};

use reelrank_core::{Category, Event, EventKind, Item, Timestamp, User};
use reelrank_features::PositiveRule;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::catalog::{Catalog, ItemIndex};
use crate::experiment::ExperimentStats;

/// How many of a user's latest positives are kept (item-to-item recall and explanations).
pub const RECENT_POSITIVES: usize = 20;

/// How many of the items a user saw last are never shown to them again: enough for weeks of
/// heavy scrolling, and a bound on what a user costs (about 10 bytes an item).
pub const SEEN_KEPT: usize = 10_000;

/// The items a user saw last (up to [`SEEN_KEPT`]), oldest forgotten first.
#[derive(Debug, Clone, Default)]
pub struct SeenItems {
    set: FxHashSet<ItemIndex>,
    order: VecDeque<ItemIndex>,
}

impl SeenItems {
    /// Records that the user saw `index`.
    pub fn insert(&mut self, index: ItemIndex) {
        if self.set.insert(index) {
            self.order.push_back(index);
            if self.order.len() > SEEN_KEPT {
                let oldest = self.order.pop_front().expect("over the bound, so not empty");
                self.set.remove(&oldest);
            }
        }
    }

    /// Whether the user saw `index` among their last [`SEEN_KEPT`] items.
    pub fn contains(&self, index: &ItemIndex) -> bool {
        self.set.contains(index)
    }

    /// The items remembered, in the order seen.
    pub fn oldest_first(&self) -> impl Iterator<Item = ItemIndex> + '_ {
        self.order.iter().copied()
    }

    /// Items remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl Extend<ItemIndex> for SeenItems {
    fn extend<T: IntoIterator<Item = ItemIndex>>(&mut self, items: T) {
        items.into_iter().for_each(|index| self.insert(index));
    }
}

impl FromIterator<ItemIndex> for SeenItems {
    fn from_iter<T: IntoIterator<Item = ItemIndex>>(items: T) -> SeenItems {
        let mut seen = SeenItems::default();
        seen.extend(items);
        seen
    }
}

impl<'a> Extend<&'a ItemIndex> for SeenItems {
    fn extend<T: IntoIterator<Item = &'a ItemIndex>>(&mut self, items: T) {
        items.into_iter().for_each(|&index| self.insert(index));
    }
}

/// One user's behaviour, as serving needs it.
#[derive(Debug, Clone, Default)]
pub struct UserActivity {
    /// Items served to or watched by the user lately: not recommended again.
    pub seen: SeenItems,
    /// Items the user marked `not_interested`.
    pub not_interested: FxHashSet<ItemIndex>,
    /// Creators of items the user marked `not_interested`, with how many times.
    pub disliked_creators: FxHashMap<String, u32>,
    /// Creators the user follows.
    pub followed: FxHashSet<String>,
    /// The highest episode the user played of each series.
    pub series: FxHashMap<String, u32>,
    /// The latest positives (item, what made it one), most recent last.
    pub positives: Vec<(ItemIndex, EventKind)>,
    /// When the user was last active: their latest event or feed (Unix ms).
    pub active_ms: i64,
    /// When their latest positive was made (Unix ms; 0: none yet).
    pub positive_ms: i64,
    /// The day (days since 1970, UTC) of `watch_ms_that_day`.
    pub watch_day: i64,
    /// Milliseconds watched on `watch_day` (minor mode caps it).
    pub watch_ms_that_day: f64,
}

impl UserActivity {
    /// Counts `event` on `item` (at `index`) as this user's; returns whether it is a positive
    /// by `rule`. Shared by the in-process state and the shared one, so both learn alike.
    pub fn record(&mut self, rule: &PositiveRule, item: &Item, index: ItemIndex, event: &Event) -> bool {
        self.active_ms = self.active_ms.max(event.ts.millis());
        if let (EventKind::Watch, Some(ms)) = (event.kind, event.value) {
            let day = event.ts.millis().div_euclid(Timestamp::DAY_MS);
            if day > self.watch_day {
                (self.watch_day, self.watch_ms_that_day) = (day, 0.0);
            }
            if day == self.watch_day {
                self.watch_ms_that_day += ms;
            }
        }
        match event.kind {
            EventKind::Impression
            | EventKind::Play
            | EventKind::Watch
            | EventKind::Finish
            | EventKind::Skip
            | EventKind::Rate => {
                self.seen.insert(index);
            }
            EventKind::NotInterested => {
                self.not_interested.insert(index);
                if let Some(creator) = &item.creator_id {
                    *self.disliked_creators.entry(creator.clone()).or_default() += 1;
                }
            }
            EventKind::Follow => {
                self.followed.extend(item.creator_id.clone());
            }
            EventKind::Like | EventKind::Share | EventKind::Comment | EventKind::Report => {}
        }
        let played = matches!(event.kind, EventKind::Play | EventKind::Watch | EventKind::Finish);
        if let (true, Some(series), Some(episode)) = (played, &item.series_id, item.episode) {
            let at = self.series.entry(series.clone()).or_default();
            *at = (*at).max(episode);
        }
        let positive = rule.is_positive(event, item.duration_s);
        if positive {
            self.positives.retain(|&(i, _)| i != index);
            if self.positives.len() == RECENT_POSITIVES {
                self.positives.remove(0);
            }
            self.positives.push((index, event.kind));
            self.positive_ms = self.positive_ms.max(event.ts.millis());
        }
        positive
    }

    /// Milliseconds watched on the day of `now`.
    pub fn watched_on(&self, now: Timestamp) -> f64 {
        if self.watch_day == now.millis().div_euclid(Timestamp::DAY_MS) {
            self.watch_ms_that_day
        } else {
            0.0
        }
    }

    /// The tags of the user's latest positives, the interests the engine associates with them,
    /// strongest first: each positive adds to each of its item's tags a weight that halves every
    /// ten positives back, scaled so the strongest is 1. With how many of those items carry each.
    pub fn interest_tags(&self, catalog: &Catalog) -> Vec<(String, f32, usize)> {
        let mut tags: FxHashMap<&str, (f32, usize)> = FxHashMap::default();
        for (back, &(index, _)) in self.positives.iter().rev().enumerate() {
            let weight = 0.5f32.powf(back as f32 / 10.0);
            for tag in &catalog.item(index).tags {
                let entry = tags.entry(tag.as_str()).or_default();
                (entry.0, entry.1) = (entry.0 + weight, entry.1 + 1);
            }
        }
        let strongest = tags.values().map(|t| t.0).fold(0.0, f32::max);
        let mut listed: Vec<(String, f32, usize)> = tags
            .into_iter()
            .map(|(tag, (weight, items))| (tag.to_owned(), weight / strongest, items))
            .collect();
        listed.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        listed
    }

    /// This activity without what `user`'s controls hide: positives on items of a hidden tag or
    /// a blocked creator, and follows of blocked creators.
    pub fn without_hidden(&self, user: &User, catalog: &Catalog) -> UserActivity {
        let controls = &user.controls;
        let mut kept = self.clone();
        kept.positives.retain(|&(index, _)| !controls.hides(catalog.item(index)));
        kept.followed.retain(|creator| !controls.blocked_creators.contains(creator));
        kept
    }
}

/// Every user's [`UserActivity`] and every item's heat.
#[derive(Debug, Clone)]
pub struct Activity {
    users: FxHashMap<String, UserActivity>,
    /// Each item's impressions, to anyone (by position; items added later start at 0).
    impressions: Vec<u32>,
    rule: PositiveRule,
    trending: Trending,
    experiments: ExperimentStats,
    /// When users reset their profiles (Unix ms): their events until then are not theirs any
    /// more.
    resets: FxHashMap<String, i64>,
    /// Whether each user's activity is held here (see [`Activity::sharing`]).
    keeps_users: bool,
    /// Whether item heat and impressions are counted here from the events, rather than
    /// installed from the shared state (see [`Activity::sharing`]).
    counts_items: bool,
}

impl Activity {
    /// No activity yet over a catalog of `items` items; heat halves every `heat_half_life_hours`.
    pub fn new(items: usize, heat_half_life_hours: f64) -> Activity {
        Activity {
            users: FxHashMap::default(),
            impressions: vec![0; items],
            rule: PositiveRule::default(),
            trending: Trending::new(items, heat_half_life_hours),
            experiments: ExperimentStats::default(),
            resets: FxHashMap::default(),
            keeps_users: true,
            counts_items: true,
        }
    }

    /// Like [`Activity::new`], for a replica that shares state with others: item heat and
    /// impressions are counted once for all replicas in the shared state and installed here
    /// ([`Activity::install_items`]) rather than counted from the events, so that every replica
    /// ranks trending items alike. Users' activity is held here only when `keep_users` (online
    /// learning reads it); otherwise replicas read it per request from the shared state, and a
    /// replica's memory does not grow with the users.
    pub fn sharing(items: usize, heat_half_life_hours: f64, keep_users: bool) -> Activity {
        Activity {
            keeps_users: keep_users,
            counts_items: false,
            ..Activity::new(items, heat_half_life_hours)
        }
    }

    /// Counts `event`; events on items outside `catalog` change nothing.
    pub fn record(&mut self, catalog: &Catalog, event: &Event) {
        let Some(index) = catalog.index(&event.item_id) else { return };
        let item = catalog.item(index);
        self.experiments.record(event, item.duration_s);
        if self.counts_items && event.kind == EventKind::Impression {
            if self.impressions.len() <= index as usize {
                self.impressions.resize(index as usize + 1, 0);
            }
            self.impressions[index as usize] += 1;
        }
        if self.reset_at(&event.user_id).is_some_and(|at| event.ts.millis() <= at) {
            return;
        }
        let positive = match self.keeps_users {
            true => {
                self.users.entry(event.user_id.clone()).or_default().record(&self.rule, item, index, event)
            }
            false => self.rule.is_positive(event, item.duration_s),
        };
        if positive && self.counts_items {
            self.trending.add(index, event.ts);
        }
    }

    /// When `user_id` last reset their profile, as applied here.
    pub fn reset_at(&self, user_id: &str) -> Option<i64> {
        self.resets.get(user_id).copied()
    }

    /// Forgets what `user_id` did until `at` (Unix ms), their profile reset: what they saw,
    /// marked, followed and liked. Their events stamped until then are ignored from now on (a
    /// load replaying the log after [`Activity::reset`] of every reset leaves them out too).
    pub fn reset(&mut self, user_id: &str, at: i64) {
        if self.reset_at(user_id).is_some_and(|applied| applied >= at) {
            return;
        }
        self.resets.insert(user_id.to_owned(), at);
        self.users.remove(user_id);
    }

    /// Marks items as served to `user_id` (a response's side effect).
    pub fn served(&mut self, user_id: &str, items: &[ItemIndex], now: Timestamp) {
        if !self.keeps_users {
            return;
        }
        let user = self.users.entry(user_id.to_owned()).or_default();
        user.seen.extend(items);
        user.active_ms = user.active_ms.max(now.millis());
    }

    /// Forgets the users not active for `idle_ms` before `now` (what they saw, follow and
    /// dislike): what serving keeps then grows with the users active lately, not with every user
    /// ever seen. Returns how many were forgotten.
    pub fn forget_idle(&mut self, now: Timestamp, idle_ms: i64) -> usize {
        let (cutoff, before) = (now.millis() - idle_ms, self.users.len());
        self.users.retain(|_, user| user.active_ms >= cutoff);
        before - self.users.len()
    }

    /// Forgets the items at `indices` (dropped from the catalog, see
    /// [`Catalog::without_gone`]): their heat and impressions, and their place in the users'
    /// positives, not-interested marks and the trending lists.
    pub fn forget_items(&mut self, indices: &[ItemIndex]) {
        let gone: FxHashSet<ItemIndex> = indices.iter().copied().collect();
        for user in self.users.values_mut() {
            user.positives.retain(|(i, _)| !gone.contains(i));
            user.not_interested.retain(|i| !gone.contains(i));
        }
        for &index in indices {
            if let Some(shown) = self.impressions.get_mut(index as usize) {
                *shown = 0;
            }
            if let Some(heat) = self.trending.heat.get_mut(index as usize) {
                *heat = 0.0;
            }
        }
        let lists = &mut self.trending.lists;
        lists.overall.retain(|i| !gone.contains(i));
        for list in lists.by_category.values_mut() {
            list.retain(|i| !gone.contains(i));
        }
    }

    /// Users remembered.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// The user's activity (empty for a user never seen).
    pub fn user(&self, user_id: &str) -> &UserActivity {
        static EMPTY: std::sync::OnceLock<UserActivity> = std::sync::OnceLock::new();
        self.users.get(user_id).unwrap_or_else(|| EMPTY.get_or_init(UserActivity::default))
    }

    /// How often the item has been shown, as the log tells.
    pub fn impressions(&self, index: ItemIndex) -> u32 {
        self.impressions.get(index as usize).copied().unwrap_or(0)
    }

    /// Item heat for the trending source.
    pub fn trending(&self) -> &Trending {
        &self.trending
    }

    /// The experiment variants' online metrics.
    pub fn experiments(&self) -> &ExperimentStats {
        &self.experiments
    }

    /// Re-sorts each category's trending list if a positive arrived since the last time.
    pub fn refresh_trending(&mut self, catalog: &Catalog) {
        if let Some(lists) = self.trending.sorted(catalog) {
            self.install_trending(lists);
        }
    }

    /// Installs lists sorted by [`Trending::sorted`] (unless newer ones are in place): servers
    /// sort under a read lock and take the write lock only for this.
    pub fn install_trending(&mut self, lists: TrendingLists) {
        if lists.as_of > self.trending.lists.as_of {
            self.trending.lists = lists;
        }
    }

    /// The last event of the item counts installed from the shared state (0: none yet).
    pub fn items_as_of(&self) -> i64 {
        self.trending.positives as i64
    }

    /// Puts item counts read from the shared state in place of the ones held (unless these are
    /// as new): heat, trending lists and impressions.
    pub fn install_items(&mut self, items: PlacedItemCounts) {
        if items.trending.positives > self.trending.positives {
            self.trending = items.trending;
            self.impressions = items.impressions;
        }
    }

    /// Updates the items whose counts changed since those held ([`ItemCounts::since`]); the
    /// trending lists are re-sorted apart ([`Trending::sorted`]). False when `changes` does not
    /// follow on from the counts held (read since another point, or heats kept as of another
    /// origin): the whole counts are to be installed instead.
    pub fn update_items(&mut self, changes: ItemCounts, catalog: &Catalog) -> bool {
        let origin_moved = self.trending.origin_ms.is_some() && self.trending.origin_ms != changes.origin_ms;
        if changes.since != self.items_as_of() || changes.since == 0 || origin_moved {
            return false;
        }
        changes.write_over(&mut self.trending, &mut self.impressions, catalog);
        true
    }
}

/// Items' heat and impressions as the shared state counted them, once for all replicas, items
/// by their id's key ([`reelrank_features::item_id_key`]): every item's, or those of the items
/// counted after event `since`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemCounts {
    /// The last event counted.
    pub as_of: i64,
    /// 0 when every item is here; otherwise the event after which the items here were counted
    /// (the others' counts are as they were then).
    pub since: i64,
    /// Where heats are kept as of (see [`heat_growth`]); `None` before the first positive.
    pub origin_ms: Option<i64>,
    /// Heat by item key, as of `origin_ms`.
    pub heat: Vec<(u64, f64)>,
    /// Impressions by item key.
    pub impressions: Vec<(u64, u32)>,
}

impl ItemCounts {
    /// The counts over `catalog` (items it does not hold are left out) with the trending lists
    /// sorted, ready for [`Activity::install_items`]: sorted before the write lock is taken.
    pub fn place(self, catalog: &Catalog, heat_half_life_hours: f64) -> PlacedItemCounts {
        let mut trending = Trending::new(catalog.len(), heat_half_life_hours);
        let mut impressions = vec![0; catalog.len()];
        self.write_over(&mut trending, &mut impressions, catalog);
        if let Some(lists) = trending.sorted(catalog) {
            trending.lists = lists;
        }
        PlacedItemCounts { trending, impressions }
    }

    /// Writes these counts over `trending`'s heats and `impressions` (by position in `catalog`,
    /// grown to it; items it does not hold are left out), with their origin and event.
    fn write_over(self, trending: &mut Trending, impressions: &mut Vec<u32>, catalog: &Catalog) {
        trending.origin_ms = self.origin_ms;
        trending.positives = self.as_of.max(0) as u64;
        trending.heat.resize(trending.heat.len().max(catalog.len()), 0.0);
        impressions.resize(impressions.len().max(catalog.len()), 0);
        for (key, heat) in self.heat {
            if let Some(index) = catalog.index_of_key(key) {
                trending.heat[index as usize] = heat;
            }
        }
        for (key, shown) in self.impressions {
            if let Some(index) = catalog.index_of_key(key) {
                impressions[index as usize] = shown;
            }
        }
    }
}

/// [`ItemCounts`] placed over a catalog.
#[derive(Debug)]
pub struct PlacedItemCounts {
    trending: Trending,
    impressions: Vec<u32>,
}

/// What a positive at `ts` adds to its item's heat kept as of `origin_ms`, heat halving every
/// `half_life_ms`: `2^((ts − origin) / half-life)`, so that heats never need decaying and stay
/// comparable with one another.
pub fn heat_growth(origin_ms: i64, ts: Timestamp, half_life_ms: f64) -> f64 {
    ((ts.millis() - origin_ms) as f64 / half_life_ms).exp2()
}

/// The hottest items of each category and of all, hottest first, as of a count of positives.
#[derive(Debug, Clone, Default)]
pub struct TrendingLists {
    by_category: HashMap<Category, Vec<ItemIndex>>,
    overall: Vec<ItemIndex>,
    as_of: u64,
}

/// Each item's positives, decayed with a half-life, and the hottest items of each category.
#[derive(Debug, Clone)]
pub struct Trending {
    /// Heat as of `origin_ms`: each positive adds `2^((t − origin) / half-life)`, so nothing has to
    /// be decayed as time passes and heats stay comparable.
    heat: Vec<f64>,
    origin_ms: Option<i64>,
    half_life_ms: f64,
    /// Positives counted so far; where the counts are installed from the shared state, the last
    /// event they counted. Either way it tells lists sorted since from older ones.
    positives: u64,
    /// The lists as last sorted.
    lists: TrendingLists,
}

/// How many items each trending list keeps.
const TRENDING_LIST: usize = 500;

impl Trending {
    fn new(items: usize, half_life_hours: f64) -> Trending {
        Trending {
            heat: vec![0.0; items],
            origin_ms: None,
            half_life_ms: half_life_hours * 3_600_000.0,
            positives: 0,
            lists: TrendingLists::default(),
        }
    }

    fn add(&mut self, index: ItemIndex, ts: Timestamp) {
        let origin = *self.origin_ms.get_or_insert(ts.millis());
        let growth = heat_growth(origin, ts, self.half_life_ms);
        // Items added to the catalog after this was sized get their heat on their first positive.
        if self.heat.len() <= index as usize {
            self.heat.resize(index as usize + 1, 0.0);
        }
        self.heat[index as usize] += growth;
        self.positives += 1;
    }

    /// The item's heat at `now`, in positives (each counted `0.5^(age / half-life)`).
    pub fn heat(&self, index: ItemIndex, now: Timestamp) -> f64 {
        let Some(origin) = self.origin_ms else { return 0.0 };
        let decay = ((origin - now.millis()) as f64 / self.half_life_ms).exp2();
        self.heat.get(index as usize).map_or(0.0, |h| h * decay)
    }

    /// The hottest items of `category` (all categories for `None`), hottest first.
    pub fn hottest(&self, category: Option<&Category>) -> &[ItemIndex] {
        match category {
            Some(category) => self.lists.by_category.get(category).map_or(&[], Vec::as_slice),
            None => &self.lists.overall,
        }
    }

    /// The lists re-sorted, when positives arrived since the current ones were sorted.
    pub fn sorted(&self, catalog: &Catalog) -> Option<TrendingLists> {
        if self.positives == self.lists.as_of {
            return None;
        }
        let mut hot: Vec<(ItemIndex, f64)> = (0..self.heat.len().min(catalog.len()) as ItemIndex)
            .filter(|&i| self.heat[i as usize] > 0.0)
            .map(|i| (i, self.heat[i as usize]))
            .collect();
        hot.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut lists = TrendingLists { as_of: self.positives, ..TrendingLists::default() };
        for &(index, _) in &hot {
            let list = lists.by_category.entry(catalog.item(index).category.clone()).or_default();
            if list.len() < TRENDING_LIST {
                list.push(index);
            }
        }
        lists.overall = hot.iter().take(TRENDING_LIST).map(|&(i, _)| i).collect();
        Some(lists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user: &str, item: &str, kind: EventKind, hours: i64) -> Event {
        Event::new(user, item, kind, Timestamp(hours * 3_600_000))
    }

    fn catalog() -> Catalog {
        let item = |id: &str, creator: &str, category: Category| Item {
            creator_id: Some(creator.into()),
            ..Item::new(id, category)
        };
        Catalog::new(vec![
            item("a", "c1", Category::Movie),
            item("b", "c2", Category::Movie),
            item("c", "c2", Category::Documentary),
        ])
    }

    #[test]
    fn events_change_what_serving_knows_of_the_user() {
        let catalog = catalog();
        let mut activity = Activity::new(catalog.len(), 24.0);
        for e in [
            event("u", "a", EventKind::Finish, 0),
            event("u", "b", EventKind::NotInterested, 1),
            event("u", "c", EventKind::Follow, 2),
            event("u", "unknown", EventKind::Like, 3),
        ] {
            activity.record(&catalog, &e);
        }
        let user = activity.user("u");
        let a = catalog.index("a").unwrap();
        assert!(user.seen.contains(&a) && user.positives == [(a, EventKind::Finish)]);
        assert!(user.not_interested.contains(&catalog.index("b").unwrap()));
        assert_eq!(user.disliked_creators.get("c2"), Some(&1));
        assert!(user.followed.contains("c2"));
        assert!(activity.user("nobody").seen.is_empty());
    }

    #[test]
    fn a_sharing_replica_serves_the_item_counts_installed_not_its_own() {
        let catalog = catalog();
        let (a, c) = (catalog.index("a").unwrap(), catalog.index("c").unwrap());
        let mut activity = Activity::sharing(catalog.len(), 24.0, false);
        activity.record(&catalog, &event("u", "a", EventKind::Finish, 0));
        activity.record(&catalog, &event("u", "a", EventKind::Impression, 0));
        activity.served("u", &[catalog.index("b").unwrap()], Timestamp(0));
        assert_eq!(activity.users(), 0);
        assert!(activity.user("u").seen.is_empty());
        assert_eq!((activity.impressions(a), activity.trending().heat(a, Timestamp(0))), (0, 0.0));

        let key = reelrank_features::item_id_key;
        let counts = ItemCounts {
            as_of: 7,
            origin_ms: Some(0),
            heat: vec![(key("c"), 2.0), (key("a"), 1.0), (key("not in the catalog"), 9.0)],
            impressions: vec![(key("a"), 3)],
            ..ItemCounts::default()
        };
        activity.install_items(counts.place(&catalog, 24.0));
        assert_eq!((activity.items_as_of(), activity.impressions(a)), (7, 3));
        assert!((activity.trending().heat(a, Timestamp(24 * 3_600_000)) - 0.5).abs() < 1e-9);
        assert_eq!(activity.trending().hottest(None), [c, a]);
        assert_eq!(activity.trending().hottest(Some(&Category::Movie)), [a]);
        // Counts older than those held are not installed.
        activity.install_items(ItemCounts { as_of: 6, ..ItemCounts::default() }.place(&catalog, 24.0));
        assert_eq!(activity.impressions(a), 3);

        // Later counts of the items counted since update those; others' are kept.
        let b = catalog.index("b").unwrap();
        let changes = |since| ItemCounts {
            as_of: 9,
            since,
            origin_ms: Some(0),
            heat: vec![(key("b"), 4.0)],
            impressions: vec![(key("b"), 1)],
        };
        assert!(!activity.update_items(changes(8), &catalog), "counts since another point");
        assert!(!activity.update_items(ItemCounts { origin_ms: Some(1), ..changes(7) }, &catalog));
        assert!(activity.update_items(changes(7), &catalog));
        assert_eq!((activity.items_as_of(), activity.impressions(a), activity.impressions(b)), (9, 3, 1));
        activity.refresh_trending(&catalog);
        assert_eq!(activity.trending().hottest(None), [b, c, a]);
    }

    #[test]
    fn a_reset_forgets_until_then_and_watch_time_counts_by_day() {
        let catalog = catalog();
        let mut activity = Activity::new(catalog.len(), 24.0);
        let watch = |hours, ms| Event { value: Some(ms), ..event("u", "a", EventKind::Watch, hours) };
        for e in [event("u", "a", EventKind::Finish, 1), watch(2, 60_000.0), watch(3, 30_000.0)] {
            activity.record(&catalog, &e);
        }
        assert_eq!(activity.user("u").watched_on(Timestamp(5 * 3_600_000)), 90_000.0);
        assert_eq!(activity.user("u").watched_on(Timestamp(25 * 3_600_000)), 0.0);
        let tags = Catalog::new(vec![Item {
            tags: vec!["x".into(), "y".into()],
            ..Item::new("t", Category::Movie)
        }]);
        let mut tagged = Activity::new(1, 24.0);
        tagged.record(&tags, &event("v", "t", EventKind::Like, 0));
        assert_eq!(
            tagged.user("v").interest_tags(&tags),
            [("x".to_owned(), 1.0, 1), ("y".to_owned(), 1.0, 1)]
        );

        activity.reset("u", 3 * 3_600_000);
        assert!(activity.user("u").positives.is_empty());
        // The log replayed, or late, up to the reset: ignored; after it: recorded.
        activity.record(&catalog, &event("u", "b", EventKind::Finish, 3));
        assert!(activity.user("u").seen.is_empty());
        activity.record(&catalog, &event("u", "b", EventKind::Finish, 4));
        assert_eq!(activity.user("u").positives.len(), 1);
        activity.reset("u", 2 * 3_600_000);
        assert_eq!(activity.user("u").positives.len(), 1, "an older reset changes nothing");
    }

    #[test]
    fn heat_decays_and_ranks_within_a_category() {
        let catalog = catalog();
        let mut activity = Activity::new(catalog.len(), 24.0);
        activity.record(&catalog, &event("u1", "a", EventKind::Like, 0));
        for user in ["u1", "u2"] {
            activity.record(&catalog, &event(user, "b", EventKind::Like, 24));
        }
        activity.refresh_trending(&catalog);
        let trending = activity.trending();
        let (a, b) = (catalog.index("a").unwrap(), catalog.index("b").unwrap());
        assert!((trending.heat(a, Timestamp(24 * 3_600_000)) - 0.5).abs() < 1e-9);
        assert!((trending.heat(b, Timestamp(48 * 3_600_000)) - 1.0).abs() < 1e-9);
        assert_eq!(trending.hottest(Some(&Category::Movie)), [b, a]);
        assert!(trending.hottest(Some(&Category::Documentary)).is_empty());
    }

    #[test]
    fn forgotten_items_leave_the_positives_heat_and_lists() {
        let catalog = catalog();
        let mut activity = Activity::new(catalog.len(), 24.0);
        let (a, b) = (catalog.index("a").unwrap(), catalog.index("b").unwrap());
        for (item, kind) in [("a", EventKind::Impression), ("a", EventKind::Like), ("b", EventKind::Like)] {
            activity.record(&catalog, &event("u", item, kind, 0));
        }
        activity.refresh_trending(&catalog);
        activity.forget_items(&[a]);
        assert_eq!(activity.user("u").positives, [(b, EventKind::Like)]);
        assert_eq!((activity.impressions(a), activity.trending().heat(a, Timestamp(0))), (0, 0.0));
        assert_eq!(activity.trending().hottest(None), [b]);
        assert_eq!(activity.trending().hottest(Some(&Category::Movie)), [b]);
    }

    #[test]
    fn the_seen_items_forget_the_oldest_past_their_bound() {
        let mut seen = SeenItems::default();
        seen.extend(0..SEEN_KEPT as ItemIndex);
        seen.insert(0);
        assert_eq!(seen.len(), SEEN_KEPT, "seeing an item again adds nothing");
        seen.insert(SEEN_KEPT as ItemIndex);
        assert!(!seen.contains(&0) && seen.contains(&1) && seen.contains(&(SEEN_KEPT as ItemIndex)));
        assert_eq!(seen.len(), SEEN_KEPT);
    }

    #[test]
    fn idle_users_are_forgotten() {
        let catalog = catalog();
        let mut activity = Activity::new(catalog.len(), 24.0);
        activity.record(&catalog, &event("old", "a", EventKind::Finish, 0));
        activity.record(&catalog, &event("recent", "a", EventKind::Finish, 40));
        activity.served("fed", &[1], Timestamp(47 * 3_600_000));
        assert_eq!(activity.forget_idle(Timestamp(48 * 3_600_000), 24 * 3_600_000), 1);
        assert!(activity.user("old").seen.is_empty() && !activity.user("recent").seen.is_empty());
        assert_eq!(activity.users(), 2);
    }
}
