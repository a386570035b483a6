//! The catalog as serving reads it: items by position, and the lookups the candidate sources
//! need (by id, by vector key, by creator, by series, newest first), built once per catalog
//! snapshot so that a request never scans the catalog.

use std::sync::Arc;

use reelrank_core::{Item, Timestamp};
use reelrank_features::item_id_key;
use rustc_hash::{FxHashMap, FxHashSet};

/// Position of an item in a [`Catalog`].
pub type ItemIndex = u32;

/// What re-ranking spreads out (an item's creator, category and series) as ids numbered per
/// catalog: re-ranking compares them for every candidate at every slot, where comparing the
/// strings cost a tenth of its time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facets {
    /// Who made it.
    pub creator: Option<u32>,
    /// Its category.
    pub category: u32,
    /// Its series.
    pub series: Option<u32>,
}

/// Numbers facets in order of first appearance, per kind; kept with the catalog so that items
/// added later get the ids of their older peers.
#[derive(Debug, Clone, Default)]
struct FacetIds {
    creators: FxHashMap<String, u32>,
    categories: FxHashMap<String, u32>,
    series: FxHashMap<String, u32>,
}

impl FacetIds {
    fn facets(&mut self, item: &Item) -> Facets {
        fn id(ids: &mut FxHashMap<String, u32>, value: &str) -> u32 {
            if let Some(&id) = ids.get(value) {
                return id;
            }
            let id = ids.len() as u32;
            ids.insert(value.to_owned(), id);
            id
        }
        Facets {
            creator: item.creator_id.as_deref().map(|c| id(&mut self.creators, c)),
            category: id(&mut self.categories, item.category.as_str()),
            series: item.series_id.as_deref().map(|s| id(&mut self.series, s)),
        }
    }
}

/// A catalog snapshot with its lookups. Items keep their position for the catalog's life (a
/// changed item is replaced in place, a new one appended, a gone one dropped to a tombstone), so
/// that positions held elsewhere (users' activity, item heat, caches) stay valid across
/// [`Catalog::with_changes`] and [`Catalog::without_gone`].
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Shared with the catalogs derived from this one: a change copies pointers, not items.
    items: Vec<Arc<Item>>,
    /// Positions by [`item_id_key`]: the key the vector index returns, and 64 bits of the id
    /// (ids are checked on lookup).
    by_key: FxHashMap<u64, ItemIndex>,
    /// [`item_id_key`] by position, so that a request does not hash ids again (its sources,
    /// ranker and re-ranking each key the same few hundred items).
    keys: Vec<u64>,
    /// Each creator's items, newest first.
    by_creator: FxHashMap<String, Vec<ItemIndex>>,
    /// Each series' episodes, by episode number.
    episodes: FxHashMap<String, Vec<(u32, ItemIndex)>>,
    /// Items with a publication time, newest first.
    newest: Vec<ItemIndex>,
    facets: Vec<Facets>,
    facet_ids: FacetIds,
    /// Positions dropped by [`Catalog::without_gone`].
    dropped: usize,
}

/// What a dropped position holds: no id (no lookup finds it) and taken down (no filter lets it
/// through), one allocation shared by all of them.
fn tombstone() -> &'static Arc<Item> {
    static TOMBSTONE: std::sync::OnceLock<Arc<Item>> = std::sync::OnceLock::new();
    TOMBSTONE.get_or_init(|| {
        let nothing = Item::new("", reelrank_core::Category::Other(String::new()));
        Arc::new(Item { status: Some(reelrank_core::ModerationStatus::Removed), ..nothing })
    })
}

/// What [`Catalog::with_changes`] did.
#[derive(Debug, Default)]
pub struct CatalogChanges {
    /// Positions of the items that were not in the catalog.
    pub added: Vec<ItemIndex>,
    /// Positions of the items that changed.
    pub replaced: Vec<ItemIndex>,
}

impl CatalogChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.replaced.is_empty()
    }
}

impl Catalog {
    /// The snapshot of `items` (ids are unique, as the store keeps them).
    pub fn new(items: Vec<Item>) -> Catalog {
        let mut catalog = Catalog::default();
        catalog.insert(items);
        catalog
    }

    /// This catalog with `items` added or, where an item of the same id is held and differs,
    /// replaced in place; the items' lookups are updated, the rest is shared. Items equal to the
    /// held ones change nothing, so a reader may pass items it has seen before; new items that
    /// are already gone at `now` ([`Item::is_gone`]) are not added.
    pub fn with_changes(&self, items: Vec<Item>, now: Timestamp) -> (Catalog, CatalogChanges) {
        // The last version of each item, in order of first appearance.
        let mut latest: FxHashMap<String, usize> = FxHashMap::default();
        let mut unique: Vec<Item> = Vec::with_capacity(items.len());
        for item in items {
            match latest.get(&item.item_id) {
                Some(&at) => unique[at] = item,
                None => {
                    latest.insert(item.item_id.clone(), unique.len());
                    unique.push(item);
                }
            }
        }
        let changed: Vec<Item> = unique
            .into_iter()
            .filter(|item| match self.index(&item.item_id) {
                Some(i) => *self.items[i as usize] != *item,
                None => !item.is_gone(now),
            })
            .collect();
        let mut catalog = self.clone();
        let changes = catalog.insert(changed);
        (catalog, changes)
    }

    /// This catalog without the items gone at `now` ([`Item::is_gone`]: taken down, refused, past
    /// their licence), and their positions. A gone item is filtered out of every feed anyway;
    /// dropping it frees the item and its lookups, so that what serving holds follows the live
    /// catalog rather than every item ever published. Its position stays taken (by a shared
    /// tombstone), so positions held elsewhere never point at another item; the next load leaves
    /// gone items out altogether. If the item comes back, it is added at a new position. `None`
    /// when no item is gone (the catalog is not copied then).
    pub fn without_gone(&self, now: Timestamp) -> Option<(Catalog, Vec<ItemIndex>)> {
        let gone: Vec<ItemIndex> = (0..self.items.len() as ItemIndex)
            .filter(|&i| !self.is_dropped(i) && self.items[i as usize].is_gone(now))
            .collect();
        if gone.is_empty() {
            return None;
        }
        let mut catalog = self.clone();
        catalog.unlist(&gone);
        let tombstone_key = item_id_key(&tombstone().item_id);
        for &index in &gone {
            catalog.by_key.remove(&catalog.keys[index as usize]);
            catalog.items[index as usize] = tombstone().clone();
            catalog.keys[index as usize] = tombstone_key;
        }
        catalog.dropped += gone.len();
        Some((catalog, gone))
    }

    /// Whether the position was dropped by [`Catalog::without_gone`].
    pub fn is_dropped(&self, index: ItemIndex) -> bool {
        Arc::ptr_eq(&self.items[index as usize], tombstone())
    }

    /// Items held: positions less those dropped.
    pub fn held(&self) -> usize {
        self.items.len() - self.dropped
    }

    /// Adds or replaces `items` (ids unique) and updates the lookups they are in.
    fn insert(&mut self, items: Vec<Item>) -> CatalogChanges {
        let mut changes = CatalogChanges::default();
        let mut replacements = Vec::new();
        for item in items {
            let facets = self.facet_ids.facets(&item);
            let item = Arc::new(item);
            match self.index(&item.item_id) {
                Some(index) => {
                    replacements.push((index, item, facets));
                    changes.replaced.push(index);
                }
                None => {
                    let index = self.items.len() as ItemIndex;
                    let key = item_id_key(&item.item_id);
                    self.by_key.insert(key, index);
                    self.keys.push(key);
                    self.items.push(item);
                    self.facets.push(facets);
                    changes.added.push(index);
                }
            }
        }
        self.unlist(&changes.replaced);
        for (index, item, facets) in replacements {
            self.items[index as usize] = item;
            self.facets[index as usize] = facets;
        }
        let listed: Vec<ItemIndex> = changes.added.iter().chain(&changes.replaced).copied().collect();
        self.list(&listed);
        changes
    }

    /// Removes the items at `indices` from the creator, series and newest lists.
    fn unlist(&mut self, indices: &[ItemIndex]) {
        let gone: FxHashSet<ItemIndex> = indices.iter().copied().collect();
        for &index in indices {
            let item = &self.items[index as usize];
            if let Some(list) = item.creator_id.as_ref().and_then(|c| self.by_creator.get_mut(c)) {
                list.retain(|i| !gone.contains(i));
            }
            if let Some(list) = item.series_id.as_ref().and_then(|s| self.episodes.get_mut(s)) {
                list.retain(|(_, i)| !gone.contains(i));
            }
        }
        if !gone.is_empty() {
            self.newest.retain(|i| !gone.contains(i));
        }
    }

    /// Adds the items at `indices` to the creator, series and newest lists, keeping their order.
    fn list(&mut self, indices: &[ItemIndex]) {
        let items = &self.items;
        let newest_first = |i: &ItemIndex| std::cmp::Reverse(items[*i as usize].published_at);
        let mut creators = FxHashSet::default();
        let mut series = FxHashSet::default();
        let mut published = Vec::new();
        for &index in indices {
            let item = &items[index as usize];
            if let Some(creator) = &item.creator_id {
                self.by_creator.entry(creator.clone()).or_default().push(index);
                creators.insert(creator.as_str());
            }
            if let (Some(id), Some(episode)) = (&item.series_id, item.episode) {
                self.episodes.entry(id.clone()).or_default().push((episode, index));
                series.insert(id.as_str());
            }
            if item.published_at.is_some() {
                published.push(index);
            }
        }
        for creator in creators {
            self.by_creator.get_mut(creator).expect("listed above").sort_by_key(newest_first);
        }
        for id in series {
            self.episodes.get_mut(id).expect("listed above").sort_unstable();
        }
        // Merged rather than re-sorted: a change touches a few items of a long list.
        published.sort_by_key(newest_first);
        let mut merged = Vec::with_capacity(self.newest.len() + published.len());
        let (mut old, mut new) = (self.newest.iter().peekable(), published.iter().peekable());
        while let (Some(&&a), Some(&&b)) = (old.peek(), new.peek()) {
            if newest_first(&b) < newest_first(&a) {
                merged.push(b);
                new.next();
            } else {
                merged.push(a);
                old.next();
            }
        }
        merged.extend(old.chain(new));
        self.newest = merged;
    }

    /// The item's creator, category and series as ids of this catalog.
    pub fn facets(&self, index: ItemIndex) -> Facets {
        self.facets[index as usize]
    }

    /// The item at `index`.
    pub fn item(&self, index: ItemIndex) -> &Item {
        &self.items[index as usize]
    }

    /// The [`item_id_key`] of the item at `index`.
    pub fn key(&self, index: ItemIndex) -> u64 {
        self.keys[index as usize]
    }

    /// Number of positions (dropped ones included: see [`Catalog::held`]).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The position of the item `item_id`.
    pub fn index(&self, item_id: &str) -> Option<ItemIndex> {
        self.index_of_key(item_id_key(item_id)).filter(|&i| self.items[i as usize].item_id == item_id)
    }

    /// The position of the item whose [`item_id_key`] is `key` (what the vector index returns).
    pub fn index_of_key(&self, key: u64) -> Option<ItemIndex> {
        self.by_key.get(&key).copied()
    }

    /// The creator's items, newest first.
    pub fn by_creator(&self, creator_id: &str) -> &[ItemIndex] {
        self.by_creator.get(creator_id).map_or(&[], Vec::as_slice)
    }

    /// The first episode of `series_id` after episode `after`.
    pub fn next_episode(&self, series_id: &str, after: u32) -> Option<ItemIndex> {
        let episodes = self.episodes.get(series_id)?;
        let at = episodes.partition_point(|&(episode, _)| episode <= after);
        episodes.get(at).map(|&(_, index)| index)
    }

    /// Items with a publication time, newest first.
    pub fn newest(&self) -> &[ItemIndex] {
        &self.newest
    }
}

#[cfg(test)]
mod tests {
    use reelrank_core::{Category, ModerationStatus};

    use super::*;

    #[test]
    fn lookups_find_creators_episodes_and_the_newest() {
        let episode = |id: &str, n: u32, day: i64| Item {
            series_id: Some("s".into()),
            episode: Some(n),
            creator_id: Some("c".into()),
            published_at: Some(Timestamp(day * Timestamp::DAY_MS)),
            ..Item::new(id, Category::MicroDrama)
        };
        let catalog = Catalog::new(vec![
            episode("e2", 2, 2),
            episode("e1", 1, 1),
            episode("e3", 3, 3),
            Item::new("other", Category::Movie),
        ]);
        let id = |i: ItemIndex| catalog.item(i).item_id.as_str();
        assert_eq!(catalog.next_episode("s", 1).map(id), Some("e2"));
        assert_eq!(catalog.next_episode("s", 0).map(id), Some("e1"));
        assert_eq!(catalog.next_episode("s", 3), None);
        assert_eq!(catalog.by_creator("c").iter().map(|&i| id(i)).collect::<Vec<_>>(), ["e3", "e2", "e1"]);
        assert_eq!(catalog.newest().len(), 3);
        assert_eq!(catalog.index_of_key(item_id_key("other")), catalog.index("other"));
    }

    #[test]
    fn changes_add_and_replace_in_place_and_keep_the_lookups() {
        let item = |id: &str, creator: &str, day: i64| Item {
            creator_id: Some(creator.into()),
            published_at: Some(Timestamp(day * Timestamp::DAY_MS)),
            ..Item::new(id, Category::ShortVideo)
        };
        let catalog = Catalog::new(vec![item("a", "c", 1), item("b", "c", 3), item("z", "d", 2)]);
        let moved = Item { creator_id: Some("d".into()), ..item("b", "c", 3) };
        let gone = Item { status: Some(ModerationStatus::Removed), ..item("gone", "c", 2) };
        let now = Timestamp(5 * Timestamp::DAY_MS);
        let (next, changes) = catalog.with_changes(
            vec![item("a", "c", 1), item("n", "c", 2), moved.clone(), item("n", "c", 4), gone],
            now,
        );
        assert_eq!((changes.added.as_slice(), changes.replaced.as_slice()), (&[3][..], &[1][..]));
        let ids = |c: &Catalog, list: &[ItemIndex]| {
            list.iter().map(|&i| c.item(i).item_id.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ids(&next, next.newest()), ["n", "b", "z", "a"], "merged by publication time");
        assert_eq!(ids(&next, next.by_creator("c")), ["n", "a"]);
        assert_eq!(ids(&next, next.by_creator("d")), ["b", "z"]);
        assert_eq!(next.facets(1).creator, next.facets(2).creator, "a moved item takes its new creator's id");
        assert_eq!((next.index("b"), next.item(1)), (Some(1), &moved));
        // The catalog changed from is untouched, and unchanged items change nothing.
        assert_eq!((catalog.len(), ids(&catalog, catalog.by_creator("c")).len()), (3, 2));
        assert!(next.with_changes(vec![moved], now).1.is_empty());
        assert_eq!(next.index("gone"), None, "a new item already taken down is not added");
        // A held item taken down is replaced in place, so the filters see it.
        let taken_down = Item { status: Some(ModerationStatus::Removed), ..item("a", "c", 1) };
        assert_eq!(next.with_changes(vec![taken_down], now).1.replaced, [0]);
    }

    #[test]
    fn gone_items_are_dropped_to_a_tombstone_and_their_position_is_never_reused() {
        let item = |id: &str, day: i64| Item {
            creator_id: Some("c".into()),
            published_at: Some(Timestamp(day * Timestamp::DAY_MS)),
            ..Item::new(id, Category::ShortVideo)
        };
        let expiring =
            Item { available_until: Some(Timestamp(4 * Timestamp::DAY_MS)), ..item("expiring", 2) };
        let catalog = Catalog::new(vec![item("a", 1), expiring, item("b", 3)]);
        let removed = Item { status: Some(ModerationStatus::Removed), ..item("a", 1) };
        let now = Timestamp(5 * Timestamp::DAY_MS);
        let (catalog, _) = catalog.with_changes(vec![removed], now);
        let (dropped, gone) = catalog.without_gone(now).unwrap();
        assert_eq!(gone, [0, 1]);
        assert_eq!((dropped.len(), dropped.held()), (3, 1));
        assert!(dropped.is_dropped(0) && dropped.is_dropped(1) && !dropped.is_dropped(2));
        assert_eq!((dropped.index("a"), dropped.index("expiring")), (None, None));
        assert_eq!(dropped.index_of_key(item_id_key("a")), None);
        assert_eq!(dropped.item(0).status, Some(ModerationStatus::Removed));
        assert_eq!(dropped.by_creator("c"), [2]);
        assert_eq!(dropped.newest(), [2]);
        assert!(dropped.without_gone(now).is_none(), "dropped once");
        // An item that comes back takes a new position.
        let (back, changes) = dropped.with_changes(vec![item("a", 6)], now);
        assert_eq!((changes.added.as_slice(), back.index("a"), back.held()), (&[3][..], Some(3), 2));
    }
}
