//! The retrieval side a server loads: the two-tower model, the user schema it was trained with
//! and the ANN index of every catalog item's vector, saved and loaded as one directory.
//!
//! Items that arrive or change while serving are embedded at once into a small exact index of
//! fresh vectors, which shadows the graph's (the way search engines keep a small appendable
//! segment beside their large immutable ones): the graph is never written while requests read
//! it, and readers take no lock to see fresh vectors, only an atomic pointer load.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use reelrank_ann::{AdaptiveIndex, FlatIndex, IndexConfig, VectorIndex};
use reelrank_core::{EventContext, Item, Timestamp, User};
use reelrank_features::{context_bag, item_bags, item_id_key, PersistError, UserSchema};
use reelrank_models::TwoTower;

use crate::activity::UserActivity;
use crate::catalog::Catalog;

/// The two-tower model, the user schema it was trained with and the index of item vectors.
pub struct Retrieval {
    /// The model.
    pub model: TwoTower,
    /// The user attributes its user tower reads.
    pub user_schema: UserSchema,
    /// Every catalog item's vector as of the load, keyed by [`item_id_key`]; shared with the
    /// retrievals published from this one by online learning.
    index: Arc<AdaptiveIndex>,
    /// Vectors of the items added or changed since the load: they take precedence over the
    /// graph's. Replaced whole on each change (a few thousand vectors, copied in microseconds).
    fresh: ArcSwap<FlatIndex>,
    /// Recently asked items' nearest neighbours (they change only with the model): a user's
    /// latest positives are looked up on every refresh.
    neighbours: RwLock<HashMap<u64, Neighbours>>,
}

/// An item's nearest items with their similarity, best first.
pub type Neighbours = Arc<[(u64, f32)]>;

/// The best `k` of the graph's hits and the fresh ones, best first (ties by ascending key).
fn merge(mut found: Vec<(u64, f32)>, fresh: Vec<(u64, f32)>, k: usize) -> Vec<(u64, f32)> {
    found.extend(fresh);
    found.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    found.truncate(k);
    found
}

/// Extra hits [`Retrieval::search_all`] asks the graph for, to make up for shadowed keys.
const SHADOW_MARGIN: usize = 8;

/// Fresh vectors online learning adds for items the graph holds (see [`Retrieval::with_model`]):
/// an exact scan of 20,000 vectors takes about as long as a graph search.
pub const FRESH_LIMIT: usize = 20_000;

/// Items whose neighbours [`Retrieval::neighbours`] keeps; the cache starts over when full.
const NEIGHBOUR_CACHE_ITEMS: usize = 100_000;

impl Retrieval {
    /// Indexes every item of `items` (their vectors from their content features at `now`, so
    /// items nobody has engaged with yet are found too), in chunks to bound memory.
    pub fn build(
        model: TwoTower,
        user_schema: UserSchema,
        items: &[Item],
        config: &IndexConfig,
        now: Timestamp,
    ) -> reelrank_ann::Result<Retrieval> {
        let empty = AdaptiveIndex::new(model.output_dim(), config.clone());
        let mut retrieval = Retrieval::new(model, user_schema, empty);
        let (keys, vectors): (Vec<u64>, Vec<Vec<f32>>) =
            retrieval.vectors(&items.iter().collect::<Vec<_>>(), now).into_iter().unzip();
        retrieval.index = Arc::new(AdaptiveIndex::build(
            retrieval.model.output_dim(),
            config.clone(),
            &keys,
            &vectors.concat(),
        )?);
        Ok(retrieval)
    }

    fn new(model: TwoTower, user_schema: UserSchema, index: AdaptiveIndex) -> Retrieval {
        let fresh = ArcSwap::from_pointee(FlatIndex::new(model.output_dim()));
        Retrieval { model, user_schema, index: Arc::new(index), fresh, neighbours: RwLock::default() }
    }

    /// This retrieval with `model` (the same model, having learned online) and fresh vectors for
    /// `learned` from it at `now`; the graph is shared, and so are the other fresh vectors and the
    /// cached neighbours of items that did not change. Items the graph holds get fresh vectors
    /// only while there are fewer than [`FRESH_LIMIT`]: past it, searches would cost more than the
    /// graph's, and those items keep their indexed vectors until the next retraining re-indexes.
    pub fn with_model(
        &self,
        model: TwoTower,
        learned: &[&Item],
        now: Timestamp,
    ) -> reelrank_ann::Result<Retrieval> {
        let fresh = self.fresh.load();
        let mut room = FRESH_LIMIT.saturating_sub(fresh.len());
        let changed: Vec<&Item> = learned
            .iter()
            .copied()
            .filter(|item| {
                let key = item_id_key(&item.item_id);
                let free = fresh.get(key).is_some() || !self.index.contains(key);
                let kept = free || room > 0;
                room -= usize::from(kept && !free);
                kept
            })
            .collect();
        let retrieval = Retrieval {
            model,
            user_schema: self.user_schema.clone(),
            index: self.index.clone(),
            fresh: ArcSwap::new(self.fresh.load_full()),
            neighbours: RwLock::new(self.neighbours.read().expect("neighbour cache").clone()),
        };
        retrieval.index_changed(&changed, now)?;
        Ok(retrieval)
    }

    /// Adds the vectors of `items` the index lacks (items ingested after training), from their
    /// content features at `now`; returns how many. Run after loading, before the retrieval is
    /// shared: the graph is written in place.
    pub fn index_missing(&mut self, items: &[Item], now: Timestamp) -> reelrank_ann::Result<usize> {
        let missing: Vec<&Item> =
            items.iter().filter(|i| !self.index.contains(item_id_key(&i.item_id))).collect();
        let vectors = self.vectors(&missing, now);
        let index = Arc::get_mut(&mut self.index).expect("index_missing runs before the index is shared");
        for (key, vector) in vectors {
            index.upsert(key, &vector)?;
        }
        Ok(missing.len())
    }

    /// Embeds `items` (new or changed while serving) from their content features at `now`, so
    /// that the next search finds them where they now belong; forgets their cached neighbours.
    pub fn index_changed(&self, items: &[&Item], now: Timestamp) -> reelrank_ann::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut fresh = FlatIndex::clone(&self.fresh.load());
        let vectors = self.vectors(items, now);
        for (key, vector) in &vectors {
            fresh.upsert(*key, vector)?;
        }
        self.fresh.store(Arc::new(fresh));
        let mut cache = self.neighbours.write().expect("neighbour cache");
        for (key, _) in &vectors {
            cache.remove(key);
        }
        Ok(())
    }

    /// Forgets the fresh vectors and cached neighbours of the items `keys` (dropped from the
    /// catalog). The graph keeps their vectors until the next training re-indexes; searches
    /// step over them, as over any item the catalog does not serve.
    pub fn forget(&self, keys: &[u64]) {
        let held = self.fresh.load();
        if keys.iter().any(|&key| held.get(key).is_some()) {
            let mut fresh = FlatIndex::clone(&held);
            for &key in keys {
                fresh.remove(key);
            }
            self.fresh.store(Arc::new(fresh));
        }
        let mut cache = self.neighbours.write().expect("neighbour cache");
        for key in keys {
            cache.remove(key);
        }
    }

    /// Each item's key and vector from its content features at `now`.
    fn vectors(&self, items: &[&Item], now: Timestamp) -> Vec<(u64, Vec<f32>)> {
        const CHUNK: usize = 10_000;
        let mut keyed = Vec::with_capacity(items.len());
        for chunk in items.chunks(CHUNK) {
            let bags: Vec<_> = chunk.iter().map(|item| item_bags(item, now)).collect();
            let vectors = self.model.item_vectors(&bags);
            let keys = chunk.iter().map(|item| item_id_key(&item.item_id));
            keyed.extend(keys.zip(vectors.chunks_exact(self.model.output_dim()).map(<[f32]>::to_vec)));
        }
        keyed
    }

    /// The keys of the items whose fresh vectors shadow the graph's.
    pub fn fresh_keys(&self) -> Vec<u64> {
        self.fresh.load().iter().map(|(key, _)| key).collect()
    }

    /// The index as built or loaded, without the fresh vectors.
    pub fn index(&self) -> &AdaptiveIndex {
        &self.index
    }

    /// The item's vector (the fresh one, if it changed since the load).
    pub fn vector(&self, key: u64) -> Option<Vec<f32>> {
        match self.fresh.load().get(key) {
            Some(vector) => Some(vector.to_vec()),
            None => self.index.vector(key),
        }
    }

    /// Up to `k` `(key, inner product)` pairs among keys that `filter` accepts, best first: the
    /// graph's, less the keys with a fresh vector, merged with the fresh ones.
    pub fn search(&self, query: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)> {
        let fresh = self.fresh.load();
        if fresh.is_empty() {
            return self.index.search(query, k, filter);
        }
        let found = self.index.search(query, k, &|key| fresh.get(key).is_none() && filter(key));
        merge(found, fresh.search(query, k, filter), k)
    }

    /// [`Retrieval::search`] over every key, with the graph's unfiltered search (the fastest: a
    /// filter costs a call per visited node): a few more are asked for, and the shadowed keys
    /// among them dropped. When more than [`SHADOW_MARGIN`] of them are shadowed, fewer than `k`
    /// may come back, which the neighbour lists this serves can afford.
    fn search_all(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        let fresh = self.fresh.load();
        if fresh.is_empty() {
            return self.index.search_all(query, k);
        }
        let mut found = self.index.search_all(query, k + SHADOW_MARGIN);
        found.retain(|&(key, _)| fresh.get(key).is_none());
        merge(found, fresh.search_all(query, k), k)
    }

    /// Writes the model, the user schema and the index (`index/`) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), PersistError> {
        self.model.save(dir)?;
        self.user_schema.save(dir)?;
        self.index.save(&dir.join("index"))
    }

    /// Reads what [`Retrieval::save`] wrote.
    pub fn load(dir: &Path) -> Result<Retrieval, PersistError> {
        Ok(Retrieval::new(
            TwoTower::load(dir)?,
            UserSchema::load(dir)?,
            AdaptiveIndex::load(&dir.join("index"))?,
        ))
    }

    /// The user's vector at a request in `context`, from their latest positives.
    pub fn user_vector(
        &self,
        catalog: &Catalog,
        user_id: &str,
        user: Option<&User>,
        activity: &UserActivity,
        context: Option<&EventContext>,
    ) -> Vec<f32> {
        let slots = match user {
            Some(user) => self.user_schema.bags(user),
            None => self.user_schema.anonymous_bags(user_id),
        };
        let history: Vec<u64> = activity.positives.iter().map(|&(i, _)| catalog.key(i)).collect();
        self.model.user_vector(&slots, &context.map(context_bag).unwrap_or_default(), &history)
    }

    /// At least the `n` items nearest to the indexed item `key`, best first (none when it is not
    /// indexed), from the cache when it was asked for lately.
    pub fn neighbours(&self, key: u64, n: usize) -> Neighbours {
        if let Some(hit) = self.neighbours.read().expect("neighbour cache").get(&key) {
            if hit.len() >= n.min(self.index.len().saturating_sub(1)) {
                return hit.clone();
            }
        }
        let Some(vector) = self.vector(key) else { return Arc::from([]) };
        let found: Neighbours =
            self.search_all(&vector, n + 1).into_iter().filter(|&(other, _)| other != key).take(n).collect();
        let mut cache = self.neighbours.write().expect("neighbour cache");
        if cache.len() >= NEIGHBOUR_CACHE_ITEMS {
            cache.clear();
        }
        cache.insert(key, found.clone());
        found
    }

    /// The `n` items nearest to the item `item` (by its indexed vector, or for an item indexed
    /// after training, by the vector of its content features), with their similarity.
    pub fn similar(&self, item: &Item, n: usize, now: Timestamp) -> Vec<(u64, f32)> {
        let key = item_id_key(&item.item_id);
        match self.vector(key) {
            Some(_) => self.neighbours(key, n).iter().take(n).copied().collect(),
            None => {
                let vector = self.model.item_vectors(&[item_bags(item, now)]);
                self.search(&vector, n, &|other| other != key)
            }
        }
    }
}
