//! The retrieval side a server loads: the two-tower model, the user schema it was trained with
//! and the ANN index of every catalog item's vector, saved and loaded as one directory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use reelrank_ann::{AdaptiveIndex, IndexConfig, VectorIndex};
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
    /// Every catalog item's vector, keyed by [`item_id_key`].
    pub index: AdaptiveIndex,
    /// Recently asked items' nearest neighbours (they change only with the model): a user's
    /// latest positives are looked up on every refresh.
    neighbours: RwLock<HashMap<u64, Neighbours>>,
}

/// An item's nearest items with their similarity, best first.
pub type Neighbours = Arc<[(u64, f32)]>;

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
        const CHUNK: usize = 10_000;
        let keys: Vec<u64> = items.iter().map(|i| item_id_key(&i.item_id)).collect();
        let mut vectors = Vec::with_capacity(items.len() * model.output_dim());
        for chunk in items.chunks(CHUNK) {
            let bags: Vec<_> = chunk.iter().map(|item| item_bags(item, now)).collect();
            vectors.extend(model.item_vectors(&bags));
        }
        let index = AdaptiveIndex::build(model.output_dim(), config.clone(), &keys, &vectors)?;
        Ok(Retrieval::new(model, user_schema, index))
    }

    fn new(model: TwoTower, user_schema: UserSchema, index: AdaptiveIndex) -> Retrieval {
        Retrieval { model, user_schema, index, neighbours: RwLock::default() }
    }

    /// Adds the vectors of `items` the index lacks (items ingested after training), from their
    /// content features at `now`; returns how many.
    pub fn index_missing(&mut self, items: &[Item], now: Timestamp) -> reelrank_ann::Result<usize> {
        let missing: Vec<&Item> =
            items.iter().filter(|i| self.index.vector(item_id_key(&i.item_id)).is_none()).collect();
        let bags: Vec<_> = missing.iter().map(|item| item_bags(item, now)).collect();
        let vectors = self.model.item_vectors(&bags);
        for (item, vector) in missing.iter().zip(vectors.chunks_exact(self.model.output_dim())) {
            self.index.upsert(item_id_key(&item.item_id), vector)?;
        }
        Ok(missing.len())
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
        let history: Vec<u64> =
            activity.positives.iter().map(|&(i, _)| item_id_key(&catalog.item(i).item_id)).collect();
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
        let Some(vector) = self.index.vector(key) else { return Arc::from([]) };
        let found: Neighbours = self
            .index
            .search_all(&vector, n + 1)
            .into_iter()
            .filter(|&(other, _)| other != key)
            .take(n)
            .collect();
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
        match self.index.vector(key) {
            Some(_) => self.neighbours(key, n).iter().take(n).copied().collect(),
            None => {
                let vector = self.model.item_vectors(&[item_bags(item, now)]);
                self.index.search(&vector, n, &|other| other != key)
            }
        }
    }
}
