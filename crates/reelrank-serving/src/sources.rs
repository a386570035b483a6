//! Candidate sources: each proposes items for a request and names itself, so that every
//! returned item can say where it came from. The two-tower ANN search is the main source; the
//! others cover what it cannot: items like the ones just enjoyed, what is hot in the user's
//! categories, new items that have no behaviour yet, followed creators and the next episode.

use rustc_hash::{FxHashMap, FxHashSet};

use reelrank_core::{Category, EventContext, Timestamp, User};
use serde::{Deserialize, Serialize};

use crate::activity::{SeenItems, Trending, UserActivity};
use crate::catalog::{Catalog, ItemIndex};
use crate::retrieval::Retrieval;

/// Where a candidate came from. Variants are in order of precedence: an item proposed by several
/// sources keeps the most specific, whose reason says most to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The next episode of a series the user is watching.
    NextEpisode,
    /// New items of a creator the user follows.
    FollowedCreator,
    /// Nearest items to one of the user's latest positives.
    SimilarToRecent,
    /// Newly published items (new-item exploration).
    Fresh,
    /// Hottest items of one of the user's categories, or of all.
    Trending,
    /// Nearest items to the user's vector (two-tower model, ANN index).
    TwoTower,
}

impl Source {
    /// Every source, in order of precedence.
    pub const ALL: [Source; 6] = [
        Source::NextEpisode,
        Source::FollowedCreator,
        Source::SimilarToRecent,
        Source::Fresh,
        Source::Trending,
        Source::TwoTower,
    ];

    /// The wire name (`two_tower`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::TwoTower => "two_tower",
            Source::SimilarToRecent => "similar_to_recent",
            Source::Trending => "trending",
            Source::Fresh => "fresh",
            Source::FollowedCreator => "followed_creator",
            Source::NextEpisode => "next_episode",
        }
    }
}

/// One proposed item.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The item.
    pub index: ItemIndex,
    /// The most specific source that proposed it.
    pub source: Source,
    /// The user's positive it is like (for [`Source::SimilarToRecent`]).
    pub because: Option<ItemIndex>,
    /// The category it is hot in (for [`Source::Trending`]).
    pub trending_in: Option<Category>,
    /// Every source that proposed it, `source` among them.
    pub proposed_by: Sources,
}

/// A set of sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sources(u8);

impl Sources {
    /// The set of `source` alone.
    pub fn of(source: Source) -> Sources {
        Sources(1 << source as u8)
    }

    /// Whether `source` is in the set.
    pub fn contains(self, source: Source) -> bool {
        self.0 & Sources::of(source).0 != 0
    }

    /// The sources in the set, in order of precedence.
    pub fn iter(self) -> impl Iterator<Item = Source> {
        Source::ALL.into_iter().filter(move |&s| self.contains(s))
    }

    fn with(self, other: Sources) -> Sources {
        Sources(self.0 | other.0)
    }
}

/// The most seen items whose keys are put in a set for the graph search's filter (see
/// [`unseen_filter`]): past it, reading every seen item's key costs more than looking up the
/// nodes the search checks.
const SEEN_KEYS_AT_MOST: usize = 2_000;

/// How many candidates each source proposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// Nearest items to the user's vector.
    pub two_tower: usize,
    /// Latest positives whose neighbours are proposed...
    pub recent_positives: usize,
    /// ...and how many neighbours of each.
    pub similar_per_positive: usize,
    /// Categories of the user's latest positives whose hottest items are proposed (besides the
    /// overall list)...
    pub trending_categories: usize,
    /// ...and how many items of each list.
    pub trending: usize,
    /// Newest items proposed...
    pub fresh: usize,
    /// ...among those published at most this many hours ago.
    pub fresh_max_age_hours: f64,
    /// Newest items proposed per followed creator.
    pub per_followed_creator: usize,
}

impl SourceConfig {
    /// Every quota times `factor`.
    pub fn widened(&self, factor: usize) -> SourceConfig {
        SourceConfig {
            two_tower: self.two_tower * factor,
            recent_positives: self.recent_positives * factor,
            similar_per_positive: self.similar_per_positive * factor,
            trending_categories: self.trending_categories * factor,
            trending: self.trending * factor,
            fresh: self.fresh * factor,
            fresh_max_age_hours: self.fresh_max_age_hours * factor as f64,
            per_followed_creator: self.per_followed_creator * factor,
        }
    }
}

impl Default for SourceConfig {
    fn default() -> SourceConfig {
        SourceConfig {
            two_tower: 200,
            recent_positives: 5,
            similar_per_positive: 20,
            trending_categories: 3,
            trending: 50,
            fresh: 50,
            fresh_max_age_hours: 72.0,
            per_followed_creator: 5,
        }
    }
}

/// What the sources read.
pub struct SourceInput<'a> {
    /// The catalog.
    pub catalog: &'a Catalog,
    /// The user's behaviour.
    pub activity: &'a UserActivity,
    /// Item heat.
    pub trending: &'a Trending,
    /// The retrieval model, once one is trained.
    pub retrieval: Option<&'a Retrieval>,
    /// Who asks.
    pub user_id: &'a str,
    /// Their record.
    pub user: Option<&'a User>,
    /// Where.
    pub context: Option<&'a EventContext>,
    /// When.
    pub now: Timestamp,
}

impl SourceInput<'_> {
    /// The item to propose for `index`: itself, or for an episode, the episode the user would
    /// watch next in its series (the first when they have not started it, none when they have
    /// finished it): a series is never entered in the middle.
    pub fn entry_point(&self, index: ItemIndex) -> Option<ItemIndex> {
        let item = self.catalog.item(index);
        let (Some(series), Some(_)) = (&item.series_id, item.episode) else { return Some(index) };
        let watched = self.activity.series.get(series).copied().unwrap_or(0);
        self.catalog.next_episode(series, watched)
    }
}

/// Whether the item of a key is not among `seen`: the graph search's filter. It runs for every
/// node that enters the search's results, about a thousand per search: looking each up in the
/// catalog's map by key was a cache miss apiece, 7 % of the server's CPU at 1M items. For at most
/// `keys_at_most` seen items, their keys are put in a small set instead, which costs a read per
/// seen item. Keys the catalog lacks pass either way (the sources drop them).
fn unseen_filter<'a>(
    catalog: &'a Catalog,
    seen: &'a SeenItems,
    keys_at_most: usize,
) -> impl Fn(u64) -> bool + 'a {
    let keys: Option<FxHashSet<u64>> =
        (seen.len() <= keys_at_most).then(|| seen.oldest_first().map(|i| catalog.key(i)).collect());
    move |key| match &keys {
        Some(keys) => !keys.contains(&key),
        None => catalog.index_of_key(key).is_none_or(|i| !seen.contains(&i)),
    }
}

/// Candidates of every source, each item once (with its most specific source). A user with
/// personalisation off gets only trending and fresh items.
pub fn gather(input: &SourceInput<'_>, config: &SourceConfig, personalised: bool) -> Vec<Candidate> {
    let mut gathered = Gathered { input, candidates: Vec::new(), position: FxHashMap::default() };
    if personalised {
        if let Some(retrieval) = input.retrieval {
            let vector = retrieval.user_vector(
                input.catalog,
                input.user_id,
                input.user,
                input.activity,
                input.context,
            );
            // Skipping seen items inside the graph search keeps its candidate list at the quota;
            // searching unfiltered for the quota plus what may have been seen cost a quarter
            // more requests/s at 1M items (the list grows with the user's history).
            let unseen = unseen_filter(input.catalog, &input.activity.seen, SEEN_KEYS_AT_MOST);
            let found = retrieval.search(&vector, config.two_tower, &unseen);
            let nearest: Vec<u64> = found.into_iter().map(|(key, _)| key).collect();
            for key in nearest {
                gathered.add(input.catalog.index_of_key(key), Source::TwoTower, None, None);
            }
            let recent = input.activity.positives.iter().rev().take(config.recent_positives);
            for &(positive, _) in recent {
                let key = input.catalog.key(positive);
                let neighbours = retrieval.neighbours(key, config.similar_per_positive);
                for &(key, _) in neighbours.iter().take(config.similar_per_positive) {
                    gathered.add(
                        input.catalog.index_of_key(key),
                        Source::SimilarToRecent,
                        Some(positive),
                        None,
                    );
                }
            }
        }
    }
    let mut categories: Vec<Option<&Category>> = Vec::new();
    if personalised {
        for &(positive, _) in input.activity.positives.iter().rev() {
            let category = Some(&input.catalog.item(positive).category);
            if categories.len() < config.trending_categories && !categories.contains(&category) {
                categories.push(category);
            }
        }
    }
    categories.push(None);
    for category in categories {
        for &index in input.trending.hottest(category).iter().take(config.trending) {
            let hot_in = category.cloned().unwrap_or_else(|| input.catalog.item(index).category.clone());
            gathered.add(Some(index), Source::Trending, None, Some(hot_in));
        }
    }
    // Newest first, from the last published by now (episodes are often scheduled ahead).
    let published = |i: ItemIndex| input.catalog.item(i).published_at.map_or(i64::MIN, |t| t.millis());
    let newest = input.catalog.newest();
    let released = newest.partition_point(|&i| published(i) > input.now.millis());
    let oldest = input.now.millis() - (config.fresh_max_age_hours * 3_600_000.0) as i64;
    for &index in newest[released..].iter().take_while(|&&i| published(i) >= oldest).take(config.fresh) {
        gathered.add(Some(index), Source::Fresh, None, None);
    }
    if personalised {
        let mut creators: Vec<&String> = input.activity.followed.iter().collect();
        creators.sort();
        for creator in creators {
            for &index in input.catalog.by_creator(creator).iter().take(config.per_followed_creator) {
                gathered.add(Some(index), Source::FollowedCreator, None, None);
            }
        }
        let mut series: Vec<(&String, &u32)> = input.activity.series.iter().collect();
        series.sort();
        for (series, &episode) in series {
            let next = input.catalog.next_episode(series, episode);
            gathered.add(next, Source::NextEpisode, None, None);
        }
    }
    gathered.candidates
}

/// Candidates in the order proposed, each item once.
struct Gathered<'a> {
    input: &'a SourceInput<'a>,
    candidates: Vec<Candidate>,
    position: FxHashMap<ItemIndex, usize>,
}

impl Gathered<'_> {
    /// Adds `index` (when there is one), or rather its series' entry point for the user (see
    /// [`SourceInput::entry_point`]); an item already proposed keeps the more specific of the two
    /// sources (a next episode that the ANN search found too is still a next episode).
    fn add(
        &mut self,
        index: Option<ItemIndex>,
        source: Source,
        because: Option<ItemIndex>,
        trending_in: Option<Category>,
    ) {
        let Some(index) = index.and_then(|i| self.input.entry_point(i)) else { return };
        let mut candidate =
            Candidate { index, source, because, trending_in, proposed_by: Sources::of(source) };
        match self.position.get(&index) {
            Some(&at) if self.candidates[at].source <= source => {
                let kept = &mut self.candidates[at];
                kept.proposed_by = kept.proposed_by.with(candidate.proposed_by);
            }
            Some(&at) => {
                candidate.proposed_by = candidate.proposed_by.with(self.candidates[at].proposed_by);
                self.candidates[at] = candidate;
            }
            None => {
                self.position.insert(index, self.candidates.len());
                self.candidates.push(candidate);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use reelrank_core::Item;
    use reelrank_features::item_id_key;

    use super::*;
    use crate::activity::Activity;

    #[test]
    fn a_set_of_sources_lists_them_in_precedence_order() {
        let both = Sources::of(Source::TwoTower).with(Sources::of(Source::SimilarToRecent));
        assert_eq!(both.iter().collect::<Vec<_>>(), [Source::SimilarToRecent, Source::TwoTower]);
        assert!(both.contains(Source::TwoTower) && !both.contains(Source::Fresh));
        assert_eq!(Sources::default().iter().count(), 0);
    }

    /// The sources' input for user `u`, who has no record, without a retrieval model.
    fn anonymous_input<'a>(
        catalog: &'a Catalog,
        user: &'a UserActivity,
        activity: &'a Activity,
        now: Timestamp,
    ) -> SourceInput<'a> {
        SourceInput {
            catalog,
            activity: user,
            trending: activity.trending(),
            retrieval: None,
            user_id: "u",
            user: None,
            context: None,
            now,
        }
    }

    #[test]
    fn a_series_is_entered_at_the_users_next_episode() {
        let episode = |n: u32| Item {
            series_id: Some("s".into()),
            episode: Some(n),
            ..Item::new(format!("e{n}"), Category::MicroDrama)
        };
        let catalog =
            Catalog::new(vec![episode(1), episode(2), episode(3), Item::new("film", Category::Movie)]);
        let activity = Activity::new(catalog.len(), 24.0);
        let entry = |series: &[(&str, u32)]| {
            let user = UserActivity {
                series: series.iter().map(|&(s, e)| (s.to_owned(), e)).collect(),
                ..UserActivity::default()
            };
            let input = anonymous_input(&catalog, &user, &activity, Timestamp(0));
            let third = catalog.index("e3").unwrap();
            (input.entry_point(third).map(|i| catalog.item(i).item_id.clone()), input.entry_point(3))
        };
        assert_eq!(entry(&[]), (Some("e1".into()), Some(3)), "new viewers start at episode 1; films pass");
        assert_eq!(entry(&[("s", 1)]).0, Some("e2".into()));
        assert_eq!(entry(&[("s", 3)]).0, None, "a finished series is not proposed again");
    }

    #[test]
    fn the_seen_filter_answers_alike_by_key_set_and_by_catalog_lookup() {
        let catalog =
            Catalog::new((0..50).map(|n| Item::new(format!("i{n}"), Category::ShortVideo)).collect());
        let seen = SeenItems::from_iter([3, 17, 49]);
        let keys: Vec<u64> =
            (0..50).map(|i| catalog.key(i)).chain([item_id_key("not in the catalog")]).collect();
        let (by_set, by_lookup) = (unseen_filter(&catalog, &seen, 3), unseen_filter(&catalog, &seen, 2));
        for &key in &keys {
            assert_eq!(by_set(key), by_lookup(key), "key {key}");
        }
        let passed = keys.iter().filter(|&&key| by_set(key)).count();
        assert_eq!(passed, 48, "the three seen items are held back, the unknown key passes");
    }

    #[test]
    fn fresh_items_are_the_newest_already_published_within_the_age_limit() {
        let hour = |h: i64| Some(Timestamp(h * 3_600_000));
        let item = |id: &str, published_at| Item { published_at, ..Item::new(id, Category::ShortVideo) };
        let catalog = Catalog::new(vec![
            item("scheduled", hour(200)),
            item("old", hour(10)),
            item("new", hour(99)),
            item("newer", hour(100)),
            item("undated", None),
            item("later", hour(150)),
        ]);
        let activity = Activity::new(catalog.len(), 24.0);
        let user = UserActivity::default();
        let input = anonymous_input(&catalog, &user, &activity, Timestamp(100 * 3_600_000));
        let config = SourceConfig { fresh: 5, fresh_max_age_hours: 48.0, ..SourceConfig::default() };
        let fresh: Vec<&str> = gather(&input, &config, false)
            .into_iter()
            .filter(|c| c.source == Source::Fresh)
            .map(|c| catalog.item(c.index).item_id.as_str())
            .collect();
        assert_eq!(fresh, ["newer", "new"]);
    }
}
