//! The catalog as serving reads it: items by position, and the lookups the candidate sources
//! need (by id, by vector key, by creator, by series, newest first), built once per catalog
//! snapshot so that a request never scans the catalog.

use reelrank_core::Item;
use reelrank_features::item_id_key;
use rustc_hash::FxHashMap;

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

impl Facets {
    /// Each item's facets, numbered in order of first appearance.
    fn number<'a>(items: &'a [Item]) -> Vec<Facets> {
        let mut ids: FxHashMap<(u8, &'a str), u32> = FxHashMap::default();
        let mut id = |kind: u8, value: &'a str| {
            let next = ids.len() as u32;
            *ids.entry((kind, value)).or_insert(next)
        };
        let mut facets = Vec::with_capacity(items.len());
        for item in items {
            facets.push(Facets {
                creator: item.creator_id.as_deref().map(|c| id(0, c)),
                category: id(1, item.category.as_str()),
                series: item.series_id.as_deref().map(|s| id(2, s)),
            });
        }
        facets
    }
}

/// An immutable catalog snapshot with its lookups.
#[derive(Debug, Default)]
pub struct Catalog {
    items: Vec<Item>,
    by_id: FxHashMap<String, ItemIndex>,
    by_key: FxHashMap<u64, ItemIndex>,
    /// Each creator's items, newest first.
    by_creator: FxHashMap<String, Vec<ItemIndex>>,
    /// Each series' episodes, by episode number.
    episodes: FxHashMap<String, Vec<(u32, ItemIndex)>>,
    /// Items with a publication time, newest first.
    newest: Vec<ItemIndex>,
    facets: Vec<Facets>,
}

impl Catalog {
    /// The snapshot of `items` (ids are unique, as the store keeps them).
    pub fn new(items: Vec<Item>) -> Catalog {
        let mut catalog = Catalog::default();
        let published = |i: &ItemIndex, items: &[Item]| items[*i as usize].published_at.map(|t| t.millis());
        catalog.facets = Facets::number(&items);
        for (i, item) in items.iter().enumerate() {
            let index = i as ItemIndex;
            catalog.by_id.insert(item.item_id.clone(), index);
            catalog.by_key.insert(item_id_key(&item.item_id), index);
            if let Some(creator) = &item.creator_id {
                catalog.by_creator.entry(creator.clone()).or_default().push(index);
            }
            if let (Some(series), Some(episode)) = (&item.series_id, item.episode) {
                catalog.episodes.entry(series.clone()).or_default().push((episode, index));
            }
            if item.published_at.is_some() {
                catalog.newest.push(index);
            }
        }
        for list in catalog.by_creator.values_mut() {
            list.sort_by_key(|i| std::cmp::Reverse(published(i, &items)));
        }
        catalog.episodes.values_mut().for_each(|episodes| episodes.sort_unstable());
        catalog.newest.sort_by_key(|i| std::cmp::Reverse(published(i, &items)));
        catalog.items = items;
        catalog
    }

    /// The item's creator, category and series as ids of this catalog.
    pub fn facets(&self, index: ItemIndex) -> Facets {
        self.facets[index as usize]
    }

    /// The item at `index`.
    pub fn item(&self, index: ItemIndex) -> &Item {
        &self.items[index as usize]
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The position of the item `item_id`.
    pub fn index(&self, item_id: &str) -> Option<ItemIndex> {
        self.by_id.get(item_id).copied()
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
    use reelrank_core::{Category, Timestamp};

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
}
