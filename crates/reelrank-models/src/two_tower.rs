//! The two-tower recall model: a user tower and an item tower map features into one space, and
//! candidates are the items nearest to the user.
//!
//! Each tower pools the embedding rows of its input bags (weighted mean per slot), concatenates the
//! slots and runs an MLP whose output is L2-normalised: `u = f(x_user) / ‖f(x_user)‖`,
//! `v = g(x_item) / ‖g(x_item)‖`, score `= u·v`. The user tower has extra slots: the context of
//! the request (hour, page, device) when the training events carried one, and the user's recent
//! positive items, recency-weighted and read from the same item-id rows as the item tower, so
//! history and candidates live in one vocabulary.
//!
//! Training is in-batch sampled softmax over `B` positive (user, item) pairs, optionally with `M`
//! extra items drawn uniformly from the catalog (mixed negative sampling, which reaches the long
//! tail that in-batch negatives rarely show): `logit[a, b] = u_a·v_b / τ − log Q(item_b)`, where
//! `Q` is the expected number of times the item appears among the batch's `B + M` candidates — from
//! a streaming [`FrequencyEstimator`] for the in-batch part, `M / items` for the uniform part — so
//! popular items are not over-penalised as negatives. A candidate equal to the row's positive (an
//! accidental hit) is masked. Each distinct candidate item is one column whose logit carries
//! `ln(occurrences)` — the same softmax with less tower and GEMM work (see `Candidates`). Embedding rows learn with row-wise Adagrad (only the batch's rows),
//! the MLPs with Adam.
//!
//! Cold start comes from the feature design: an id the table has not admitted reads the shared
//! default row, so a new item's vector is made of its category, tags, creator, duration and
//! language, and a new user's of their attributes and context.

use std::collections::HashMap;
use std::path::Path;

use multiversion::multiversion;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;
use reelrank_features::{
    read_manifest, write_manifest, Bag, EmbeddingConfig, EmbeddingTable, GradientBuffer, MemoryUse,
    PersistError, TensorReader, TensorWriter,
};
use serde::{Deserialize, Serialize};

use crate::dense::{matmul, AdamStep, Mlp};
use crate::frequency::FrequencyEstimator;
use crate::pooling::{pool, Pooled};
use crate::Interactions;

/// Settings of the two-tower model and its training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwoTowerConfig {
    /// Hidden width of both MLPs.
    pub hidden_dim: usize,
    /// Width of the output vectors.
    pub output_dim: usize,
    /// Softmax temperature τ.
    pub temperature: f32,
    /// Weight of the logQ correction (1 = the full `− log q`, 0 = none).
    pub logq_weight: f32,
    /// Positive pairs per batch (also the number of in-batch negatives).
    pub batch_size: usize,
    /// Most epochs; callers stop earlier on validation.
    pub max_epochs: usize,
    /// Adam learning rate of the MLPs.
    pub learning_rate: f32,
    /// The user's most recent positives in the history slot.
    pub history_len: usize,
    /// Weight of a history item relative to the next more recent one (1 = a plain mean).
    pub history_decay: f32,
    /// Extra negatives per batch drawn uniformly from the catalog, beside the in-batch ones.
    pub uniform_negatives: usize,
    /// Share of training examples whose user and item ids read the shared default row instead of
    /// their own, so that the feature slots learn to stand in for an id: what new users and items
    /// (whose ids read that row) are described by.
    pub id_dropout: f32,
    /// The embedding table.
    pub embedding: EmbeddingConfig,
    /// Seed of initialisation and shuffling.
    pub seed: u64,
}

impl Default for TwoTowerConfig {
    fn default() -> TwoTowerConfig {
        TwoTowerConfig {
            hidden_dim: 128,
            output_dim: 64,
            temperature: 0.2,
            logq_weight: 1.0,
            batch_size: 1024,
            max_epochs: 40,
            learning_rate: 1e-3,
            history_len: 50,
            history_decay: 1.0,
            uniform_negatives: 1024,
            id_dropout: 0.0,
            embedding: EmbeddingConfig { dim: 32, learning_rate: 0.05, ..EmbeddingConfig::default() },
            seed: 42,
        }
    }
}

/// Features of every user and item, by dense index.
#[derive(Debug, Clone, Default)]
pub struct TowerInputs {
    /// Per user, its fixed slots (id, attributes, ...): the same number for every user.
    pub user_slots: Vec<Vec<Bag>>,
    /// Per item, its slots (id, category, tags, ...): the same number for every item.
    pub item_slots: Vec<Vec<Bag>>,
    /// Key of each item's id embedding, read by the history slot.
    pub item_keys: Vec<u64>,
    /// The context (hour, page, device keys) of each positive `(user, item)`, where events carried
    /// one; when empty, the model has no context slot.
    pub contexts: HashMap<(u32, u32), Bag>,
}

impl TowerInputs {
    fn item_slot_count(&self) -> usize {
        self.item_slots.first().map_or(0, Vec::len)
    }

    fn context(&self, user: u32, item: u32) -> &[(u64, f32)] {
        self.contexts.get(&(user, item)).map_or(&[], Vec::as_slice)
    }

    /// Item-id keys of the last `len` of `items` (oldest first), leaving out `except` (a training
    /// target).
    fn history_keys(&self, items: &[u32], len: usize, except: Option<u32>) -> Vec<u64> {
        let recent = &items[items.len().saturating_sub(len + 1)..];
        let mut keys: Vec<u64> =
            recent.iter().filter(|&&i| Some(i) != except).map(|&i| self.item_keys[i as usize]).collect();
        keys.drain(..keys.len().saturating_sub(len));
        keys
    }
}

/// A positive pair for [`TwoTower::learn`], with the user's tower inputs as they were just
/// before it.
#[derive(Debug, Clone, Copy)]
pub struct TowerExample<'a> {
    /// The user's fixed slots (see `reelrank_features::UserSchema`).
    pub user_slots: &'a [Bag],
    /// The context bag of the event.
    pub context: &'a [(u64, f32)],
    /// Item-id keys of the user's earlier positives, most recent last.
    pub history: &'a [u64],
    /// The item's id key.
    pub item_key: u64,
    /// The item's bags.
    pub item: &'a [Bag],
}

/// The history slot: the last `len` of `keys` (most recent last), each weighing `decay` times the
/// next more recent one.
fn history_bag(keys: &[u64], len: usize, decay: f32) -> Bag {
    let mut weight = 1.0;
    let mut bag = Vec::with_capacity(len.min(keys.len()));
    for &key in keys.iter().rev().take(len) {
        bag.push((key, weight));
        weight *= decay;
    }
    bag
}

/// A trained (or training) two-tower model.
#[derive(Debug, Clone)]
pub struct TwoTower {
    config: TwoTowerConfig,
    /// Whether the user tower has a context slot (the training events carried context).
    context_slot: bool,
    table: EmbeddingTable,
    user_mlp: Mlp,
    item_mlp: Mlp,
    adam: AdamStep,
    /// The logits of the last training batch, kept to reuse the allocation (not saved).
    logits: Vec<f32>,
}

impl TwoTower {
    /// An untrained model: `user_slots` fixed user slots (the context and history slots are
    /// added), `item_slots` item slots.
    fn new(config: TwoTowerConfig, user_slots: usize, context_slot: bool, item_slots: usize) -> TwoTower {
        let d = config.embedding.dim;
        let user_inputs = (user_slots + usize::from(context_slot) + 1) * d;
        let user_mlp = Mlp::new(&[user_inputs, config.hidden_dim, config.output_dim], config.seed);
        let item_mlp = Mlp::new(&[item_slots * d, config.hidden_dim, config.output_dim], config.seed + 1);
        let adam = AdamStep::new(config.learning_rate);
        let table = EmbeddingTable::new(config.embedding.clone());
        TwoTower { table, context_slot, user_mlp, item_mlp, adam, config, logits: Vec::new() }
    }

    /// The settings it was built with.
    pub fn config(&self) -> &TwoTowerConfig {
        &self.config
    }

    /// The embedding table (shared by both towers).
    pub fn table(&self) -> &EmbeddingTable {
        &self.table
    }

    /// Trains on every positive pair of `positives`, calling `after_epoch(epoch, mean loss, model)`
    /// after each epoch; training stops when it returns `false` or after `max_epochs`.
    pub fn fit(
        inputs: &TowerInputs,
        positives: &Interactions,
        config: &TwoTowerConfig,
        mut after_epoch: impl FnMut(usize, f32, &TwoTower) -> bool,
    ) -> TwoTower {
        let fixed_user_slots = inputs.user_slots.first().map_or(0, Vec::len);
        let context_slot = !inputs.contexts.is_empty();
        let mut model =
            TwoTower::new(config.clone(), fixed_user_slots, context_slot, inputs.item_slot_count());
        let mut pairs: Vec<(u32, u32)> = (0..positives.num_users() as u32)
            .flat_map(|u| positives.items_of(u).iter().map(move |&i| (u, i)))
            .collect();
        let mut frequency = FrequencyEstimator::new(positives.num_items(), 0.05);
        let mut rng = Pcg64Mcg::seed_from_u64(config.seed);
        for epoch in 0..config.max_epochs {
            pairs.shuffle(&mut rng);
            let mut loss_sum = 0.0;
            let batches = pairs.chunks(config.batch_size);
            let num_batches = batches.len();
            for batch in batches {
                let items: Vec<u32> = batch.iter().map(|p| p.1).collect();
                frequency.observe_batch(&items);
                loss_sum += model.train_batch(inputs, positives, batch, &frequency, &mut rng, epoch as i64);
            }
            if !after_epoch(epoch, loss_sum / num_batches.max(1) as f32, &model) {
                break;
            }
        }
        model
    }

    /// The user tower's slots: fixed slots, then context (if the model has the slot), then history.
    fn user_bags(&self, fixed: &[Bag], context: &[(u64, f32)], history: &[u64]) -> Vec<Bag> {
        let mut slots = fixed.to_vec();
        if self.context_slot {
            slots.push(context.to_vec());
        }
        slots.push(history_bag(history, self.config.history_len, self.config.history_decay));
        slots
    }

    /// One optimisation step on a batch of positive pairs; returns the mean loss. `rng` draws the
    /// uniform negatives and the id dropout.
    fn train_batch(
        &mut self,
        inputs: &TowerInputs,
        positives: &Interactions,
        batch: &[(u32, u32)],
        frequency: &FrequencyEstimator,
        rng: &mut Pcg64Mcg,
        now: i64,
    ) -> f32 {
        let uniform: Vec<u32> = (0..self.config.uniform_negatives)
            .map(|_| rng.random_range(0..positives.num_items() as u32))
            .collect();
        let n = batch.len();
        let user_bags: Vec<Vec<Bag>> = batch
            .iter()
            .map(|&(u, i)| {
                let history = inputs.history_keys(positives.items_of(u), self.config.history_len, Some(i));
                self.user_bags(&inputs.user_slots[u as usize], inputs.context(u, i), &history)
            })
            .collect();
        let candidates = Candidates::new(batch.iter().map(|p| p.1), &uniform);
        let width = candidates.items.len();
        let item_bags: Vec<&[Bag]> =
            candidates.items.iter().map(|&i| inputs.item_slots[i as usize].as_slice()).collect();
        let mut drop_ids = |count: usize| -> Vec<bool> {
            (0..count)
                .map(|_| self.config.id_dropout > 0.0 && rng.random::<f32>() < self.config.id_dropout)
                .collect()
        };
        let (users_dropped, items_dropped) = (drop_ids(n), drop_ids(width));
        let log_q: Vec<f32> = candidates
            .items
            .iter()
            .map(|&i| frequency.log_probability_with_uniform(i, uniform.len()))
            .collect();
        self.step(&user_bags, &item_bags, &candidates, &log_q, (&users_dropped, &items_dropped), now, true)
    }

    /// Starts the embedding rows' idle clock at `now_ms` (see [`EmbeddingTable::restamp`]): call
    /// once before learning online with expiry.
    pub fn start_idle_clock(&mut self, now_ms: i64) {
        self.table.restamp(now_ms);
    }

    /// Evicts the embedding rows not touched for `idle_ms` before `now_ms` (users and items gone
    /// quiet fall back to their attributes' rows); returns how many went.
    pub fn evict_idle(&mut self, now_ms: i64, idle_ms: i64) -> usize {
        self.table.evict_idle(now_ms, idle_ms)
    }

    /// What the embedding table holds.
    pub fn table_memory(&self) -> MemoryUse {
        self.table.memory()
    }

    /// One online step on positives that just happened, each against the others and against
    /// `negatives` (items drawn uniformly from the catalog, with their keys), `log_q(key)` being
    /// the log of how often the stream's batches hold the item (see [`FrequencyEstimator`]);
    /// returns the mean loss. Only the rows the batch touches move, and the towers' dense layers
    /// when `dense` is set: a server keeps them still between retrainings, so that the vectors
    /// it indexed stay comparable with the user vectors it computes. No id dropout: it
    /// regularises epochs over a fixed log, while an online example is seen once.
    pub fn learn(
        &mut self,
        batch: &[TowerExample<'_>],
        negatives: &[(u64, &[Bag])],
        log_q: impl Fn(u64) -> f32,
        now_ms: i64,
        dense: bool,
    ) -> f32 {
        let user_bags: Vec<Vec<Bag>> =
            batch.iter().map(|e| self.user_bags(e.user_slots, e.context, e.history)).collect();
        let keys: Vec<u64> = negatives.iter().map(|&(key, _)| key).collect();
        let candidates = Candidates::new(batch.iter().map(|e| e.item_key), &keys);
        let bags: HashMap<u64, &[Bag]> =
            batch.iter().map(|e| (e.item_key, e.item)).chain(negatives.iter().copied()).collect();
        let item_bags: Vec<&[Bag]> = candidates.items.iter().map(|key| bags[key]).collect();
        let log_q: Vec<f32> = candidates.items.iter().map(|&key| log_q(key)).collect();
        let (users, items) = (vec![false; batch.len()], vec![false; item_bags.len()]);
        self.step(&user_bags, &item_bags, &candidates, &log_q, (&users, &items), now_ms, dense)
    }

    /// The optimisation step shared by training and online learning: `user_bags` per batch row,
    /// `item_bags` and `log_q` per candidate column; the id slot of rows and columns flagged in
    /// `dropped` reads the default row; the dense layers step only when `dense` is set. Returns
    /// the mean loss.
    #[allow(clippy::too_many_arguments)]
    fn step<K: Copy + Eq + std::hash::Hash + Sync>(
        &mut self,
        user_bags: &[Vec<Bag>],
        item_bags: &[&[Bag]],
        candidates: &Candidates<K>,
        log_q: &[f32],
        dropped: (&[bool], &[bool]),
        now: i64,
        dense: bool,
    ) -> f32 {
        let (n, width, dim) = (user_bags.len(), item_bags.len(), self.config.output_dim);
        let pooled_users = self.pool_train(user_bags.iter().map(Vec::as_slice), dropped.0, now);
        let pooled_items = self.pool_train(item_bags.iter().copied(), dropped.1, now);
        // The towers are independent until the logits: each runs on its own core when two are free.
        let (xu, xv) = (&pooled_users.x, &pooled_items.x);
        let (user_mlp, item_mlp) = (&mut self.user_mlp, &mut self.item_mlp);
        let (raw_u, raw_v) =
            rayon::join(move || user_mlp.forward_train(xu, n), move || item_mlp.forward_train(xv, width));
        let (u, u_norms) = normalise(raw_u, dim);
        let (v, v_norms) = normalise(raw_v, dim);

        // scores[a, b] = u_a · v_b, overwritten by the product (β = 0): no need to clear the buffer.
        let mut logits = std::mem::take(&mut self.logits);
        logits.resize(n * width, 0.0);
        matmul(&u, false, &v, true, &mut logits, (n, dim, width), false);
        let inv_tau = 1.0 / self.config.temperature;
        let log_q: Vec<f32> = log_q.iter().map(|q| self.config.logq_weight * q).collect();
        let loss = candidates.softmax_grad(&mut logits, inv_tau, &log_q, n);
        // d(u·v/τ): du = G·v/τ, dv = Gᵀ·u/τ.
        let mut du = vec![0.0f32; n * dim];
        let mut dv = vec![0.0f32; width * dim];
        rayon::join(
            || matmul(&logits, false, &v, false, &mut du, (n, width, dim), false),
            || matmul(&logits, true, &u, false, &mut dv, (width, n, dim), false),
        );
        self.logits = logits;
        du.iter_mut().chain(dv.iter_mut()).for_each(|g| *g *= inv_tau);
        let (gu, gv) =
            (normalise_backward(&u, &u_norms, &du, dim), normalise_backward(&v, &v_norms, &dv, dim));
        let (user_mlp, item_mlp) = (&mut self.user_mlp, &mut self.item_mlp);
        let (dx_u, dx_v) = rayon::join(move || user_mlp.backward(&gu), move || item_mlp.backward(&gv));

        let mut grads = GradientBuffer::new(self.config.embedding.dim);
        pooled_users.scatter(dx_u, &mut grads);
        pooled_items.scatter(dx_v, &mut grads);
        self.table.apply(&mut grads, now);
        if dense {
            self.adam.t += 1;
            let (user_mlp, item_mlp, adam) = (&mut self.user_mlp, &mut self.item_mlp, &self.adam);
            rayon::join(|| user_mlp.step(adam), || item_mlp.step(adam));
        } else {
            self.user_mlp.discard_gradients();
            self.item_mlp.discard_gradients();
        }
        loss / n as f32
    }

    fn user_slots(&self) -> usize {
        self.user_mlp.layers[0].inputs / self.config.embedding.dim
    }

    fn item_slots(&self) -> usize {
        self.item_mlp.layers[0].inputs / self.config.embedding.dim
    }

    /// Pools a batch's bags (see [`Pooled::push`]); the id slot of examples flagged in
    /// `id_dropped` reads the default row.
    fn pool_train<'a>(
        &mut self,
        examples: impl Iterator<Item = &'a [Bag]>,
        id_dropped: &[bool],
        now: i64,
    ) -> Pooled {
        let mut pooled = Pooled::default();
        for (slots, &drop_id) in examples.zip(id_dropped) {
            pooled.push(&mut self.table, slots, drop_id, now);
        }
        pooled
    }

    /// A user's vector from their fixed slots (see `reelrank_features::UserSchema`), the request's
    /// context bag (ignored by a model trained without context) and the item-id keys of their
    /// positives, most recent last. Unknown ids read the default row, so a new user's vector comes
    /// from their attributes and context.
    pub fn user_vector(&self, user_slots: &[Bag], context: &[(u64, f32)], history: &[u64]) -> Vec<f32> {
        let bags = self.user_bags(user_slots, context, history);
        let slots: Vec<&[(u64, f32)]> = bags.iter().map(Vec::as_slice).collect();
        let mut x = Vec::new();
        pool(&self.table, &slots, &mut x);
        normalise(&self.user_mlp.forward(&x, 1), self.config.output_dim).0
    }

    /// Whether the user tower reads a context slot.
    pub fn has_context(&self) -> bool {
        self.context_slot
    }

    /// Vectors of many items at once, `[items × output_dim]`.
    pub fn item_vectors(&self, item_slots: &[Vec<Bag>]) -> Vec<f32> {
        let mut x = Vec::new();
        for slots in item_slots {
            let slots: Vec<&[(u64, f32)]> = slots.iter().map(Vec::as_slice).collect();
            pool(&self.table, &slots, &mut x);
        }
        normalise(&self.item_mlp.forward(&x, item_slots.len()), self.config.output_dim).0
    }

    /// Width of the output vectors.
    pub fn output_dim(&self) -> usize {
        self.config.output_dim
    }
}

/// Version of the two-tower model's on-disk layout; other versions are refused.
pub const TWO_TOWER_FORMAT_VERSION: u32 = 2;

/// `two_tower.json`: what rebuilds the model around its arrays.
#[derive(Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    config: TwoTowerConfig,
    /// Fixed user slots (before context and history).
    user_slots: usize,
    context_slot: bool,
    item_slots: usize,
}

impl TwoTower {
    /// Writes the model into `dir`: `two_tower.json` (format version, config, slot counts),
    /// `towers.safetensors` (MLP weights) and `embeddings.{safetensors,json}` (the table).
    pub fn save(&self, dir: &Path) -> Result<(), PersistError> {
        self.table.save(dir, "embeddings")?;
        let mut arrays = TensorWriter::new();
        self.user_mlp.write(&mut arrays, "user");
        self.item_mlp.write(&mut arrays, "item");
        arrays.write(&dir.join("towers.safetensors"))?;
        let manifest = Manifest {
            format_version: TWO_TOWER_FORMAT_VERSION,
            config: self.config.clone(),
            user_slots: self.user_slots() - usize::from(self.context_slot) - 1,
            context_slot: self.context_slot,
            item_slots: self.item_slots(),
        };
        write_manifest(&dir.join("two_tower.json"), &manifest)
    }

    /// Reads a model written by [`TwoTower::save`].
    pub fn load(dir: &Path) -> Result<TwoTower, PersistError> {
        let manifest: Manifest = read_manifest(&dir.join("two_tower.json"), TWO_TOWER_FORMAT_VERSION)?;
        let mut model =
            TwoTower::new(manifest.config, manifest.user_slots, manifest.context_slot, manifest.item_slots);
        model.table = EmbeddingTable::load(dir, "embeddings")?;
        let path = dir.join("towers.safetensors");
        let arrays = TensorReader::open(&path)?;
        model.user_mlp.read(&arrays, "user", &path)?;
        model.item_mlp.read(&arrays, "item", &path)?;
        Ok(model)
    }
}

/// Scores every item of a catalog by its dot product with the user's vector (exact search, for
/// evaluation and small catalogs).
pub struct TwoTowerRetriever<'a> {
    model: &'a TwoTower,
    inputs: &'a TowerInputs,
    item_vectors: Vec<f32>,
}

impl<'a> TwoTowerRetriever<'a> {
    /// Computes the vectors of every item of `inputs`.
    pub fn new(model: &'a TwoTower, inputs: &'a TowerInputs) -> TwoTowerRetriever<'a> {
        TwoTowerRetriever { item_vectors: model.item_vectors(&inputs.item_slots), model, inputs }
    }
}

impl crate::Retriever for TwoTowerRetriever<'_> {
    /// The user's context is that of their latest positive (a request's context at serving time).
    fn score_items(&self, user: u32, history: &[u32], scores: &mut [f32]) {
        let context = history.last().map_or(&[][..], |&last| self.inputs.context(user, last));
        let keys = self.inputs.history_keys(history, self.model.config.history_len, None);
        let u = self.model.user_vector(&self.inputs.user_slots[user as usize], context, &keys);
        let n = scores.len();
        matmul(&self.item_vectors, false, &u, false, scores, (n, u.len(), 1), false);
    }
}

/// The distinct items among a batch's candidates (its positives, then the uniform draws), one
/// logit column each. A softmax with one column per occurrence equals a softmax over distinct
/// columns whose logits carry `ln(occurrences)`, and the gradient of a merged column is the sum of
/// its occurrences' gradients; so the item tower and the logit GEMMs run on distinct items only
/// (about half of a batch of 1,024 on ml-100k, where popular items repeat). A row's own positive
/// counts once: its other occurrences are accidental hits, which the per-occurrence form masks.
#[derive(Debug)]
struct Candidates<K> {
    items: Vec<K>,
    /// `ln(occurrences)` of each column.
    log_counts: Vec<f32>,
    /// The column of each batch row's positive.
    targets: Vec<usize>,
}

impl<K: Copy + Eq + std::hash::Hash + Sync> Candidates<K> {
    fn new(positives: impl Iterator<Item = K>, uniform: &[K]) -> Candidates<K> {
        let mut column_of: HashMap<K, usize> = HashMap::new();
        let (mut items, mut counts) = (Vec::new(), Vec::<u32>::new());
        let mut add = |item: K| -> usize {
            let column = *column_of.entry(item).or_insert_with(|| {
                items.push(item);
                counts.push(0);
                items.len() - 1
            });
            counts[column] += 1;
            column
        };
        let targets: Vec<usize> = positives.map(&mut add).collect();
        uniform.iter().for_each(|&item| {
            add(item);
        });
        let log_counts = counts.iter().map(|&c| (c as f32).ln()).collect();
        Candidates { items, log_counts, targets }
    }

    /// Turns `scores` (`[rows × columns]`, `u_a·v_b`) into `dL/dlogits` in place, where
    /// `logit = score·inv_tau − log_q + ln(occurrences)`, and returns the summed loss of the rows.
    fn softmax_grad(&self, scores: &mut [f32], inv_tau: f32, log_q: &[f32], rows: usize) -> f32 {
        let bias: Vec<f32> = self.log_counts.iter().zip(log_q).map(|(c, q)| c - q).collect();
        let losses: Vec<f32> = scores
            .par_chunks_mut(self.items.len())
            .zip(self.targets.par_iter())
            .map(|(row, &target)| {
                for (l, b) in row.iter_mut().zip(&bias) {
                    *l = *l * inv_tau + b;
                }
                row[target] -= self.log_counts[target];
                softmax_cross_entropy_grad(row, target, rows)
            })
            .collect();
        losses.iter().sum()
    }
}

/// Turns a row of logits into `dL/dlogits = (softmax − onehot(target)) / n` in place and returns
/// the row's cross-entropy `−log softmax[target]`.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
fn softmax_cross_entropy_grad(row: &mut [f32], target: usize, n: usize) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let target_logit = row[target];
    // Eight partial sums let the compiler vectorise the exponentials and the reduction.
    let mut partial = [0.0f32; 8];
    for chunk in row.chunks_mut(8) {
        for (l, acc) in chunk.iter_mut().zip(&mut partial) {
            *l = fast_exp(*l - max);
            *acc += *l;
        }
    }
    let sum: f32 = partial.iter().sum();
    let scale = 1.0 / (sum * n as f32);
    row.iter_mut().for_each(|l| *l *= scale);
    row[target] -= 1.0 / n as f32;
    max + sum.ln() - target_logit
}

/// `e^x` for `x ≤ 0` to about 2 ulp, branch- and call-free so it vectorises (libm's `expf` is a
/// call per element and dominated the softmax). Range reduction `x = k·ln2 + r`, `|r| ≤ ln2/2`, then
/// a degree-6 polynomial for `e^r` and the exponent bits for `2^k`; inputs below −87 give ~1e-38.
/// Rounding adds 1.5·2²³, which leaves `k` in the low mantissa bits: no `round` call, no
/// saturating float-to-int conversion.
#[inline]
fn fast_exp(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let shifted = x * std::f32::consts::LOG2_E + SHIFT;
    let k = shifted - SHIFT;
    let r = x - k * 0.693_145_75 - k * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    let k_bits = shifted.to_bits().wrapping_sub(SHIFT.to_bits());
    p * f32::from_bits(k_bits.wrapping_add(127) << 23)
}

/// Row-wise L2 normalisation; returns the unit rows and the norms.
fn normalise(x: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let mut out = x.to_vec();
    let mut norms = Vec::with_capacity(x.len() / dim);
    for row in out.chunks_exact_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
        norms.push(norm);
    }
    (out, norms)
}

/// Gradient through `y = x/‖x‖`: `dx = (dy − y (y·dy)) / ‖x‖`.
fn normalise_backward(y: &[f32], norms: &[f32], dy: &[f32], dim: usize) -> Vec<f32> {
    let mut dx = Vec::with_capacity(dy.len());
    for ((y, dy), norm) in y.chunks_exact(dim).zip(dy.chunks_exact(dim)).zip(norms) {
        let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
        dx.extend(y.iter().zip(dy).map(|(y, d)| (d - y * dot) / norm));
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_libm() {
        for i in 0..=8700 {
            let x = -(i as f32) * 0.01;
            let (fast, exact) = (fast_exp(x), x.exp());
            assert!((fast - exact).abs() <= 4.0 * f32::EPSILON * exact, "{x}: {fast} vs {exact}");
        }
        assert!(fast_exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn softmax_gradient_matches_finite_differences() {
        let logits = [0.3f32, -1.0, 2.0, f32::NEG_INFINITY, 0.5];
        let loss = |l: &[f32]| -> f32 { softmax_cross_entropy_grad(&mut l.to_vec(), 2, 1) };
        let mut grad = logits.to_vec();
        let value = softmax_cross_entropy_grad(&mut grad, 2, 1);
        let exact: f32 = -(2.0f32.exp() / logits.iter().map(|l| l.exp()).sum::<f32>()).ln();
        assert!((value - exact).abs() < 1e-5);
        for i in [0, 1, 2, 4] {
            let (mut plus, mut minus) = (logits, logits);
            plus[i] += 1e-2;
            minus[i] -= 1e-2;
            let numeric = (loss(&plus) - loss(&minus)) / 2e-2;
            assert!((numeric - grad[i]).abs() < 1e-3, "{i}: {numeric} vs {}", grad[i]);
        }
        assert!(grad[3].abs() < 1e-30, "masked logits get no gradient");
    }

    /// Merged columns against the per-occurrence softmax with accidental hits masked.
    #[test]
    fn distinct_columns_give_the_per_occurrence_softmax() {
        let (positives, uniform) = ([7u32, 3, 7], [3u32, 9, 7]);
        let score = |a: usize, item: u32| ((a as f32 + 1.0) * item as f32).sin();
        let log_q = |item: u32| 0.1 * item as f32;
        let inv_tau = 2.0;
        let candidates = Candidates::new(positives.iter().copied(), &uniform);
        assert_eq!(
            (candidates.items.as_slice(), candidates.targets.as_slice()),
            ([7, 3, 9].as_slice(), [0, 1, 0].as_slice())
        );

        let occurrences: Vec<u32> = positives.iter().chain(&uniform).copied().collect();
        let (mut expected_loss, mut expected_grad) = (0.0, vec![0.0f32; 3 * 3]);
        for (a, &positive) in positives.iter().enumerate() {
            let mut row: Vec<f32> = occurrences
                .iter()
                .enumerate()
                .map(|(b, &i)| {
                    if b != a && i == positive {
                        f32::NEG_INFINITY
                    } else {
                        score(a, i) * inv_tau - log_q(i)
                    }
                })
                .collect();
            expected_loss += softmax_cross_entropy_grad(&mut row, a, positives.len());
            for (g, &i) in row.iter().zip(&occurrences) {
                let column = candidates.items.iter().position(|&c| c == i).unwrap();
                expected_grad[a * 3 + column] += g;
            }
        }
        let mut grad: Vec<f32> =
            (0..3).flat_map(|a| candidates.items.iter().map(move |&i| score(a, i))).collect();
        let q: Vec<f32> = candidates.items.iter().map(|&i| log_q(i)).collect();
        let loss = candidates.softmax_grad(&mut grad, inv_tau, &q, positives.len());
        assert!((loss - expected_loss).abs() < 1e-5, "{loss} vs {expected_loss}");
        for (g, e) in grad.iter().zip(&expected_grad) {
            assert!((g - e).abs() < 1e-6, "{grad:?} vs {expected_grad:?}");
        }
    }

    #[test]
    fn normalisation_gradient_matches_finite_differences() {
        let x = [0.3f32, -1.2, 0.7];
        let r = [0.5f32, 0.1, -0.4];
        let loss = |x: &[f32]| -> f32 { normalise(x, 3).0.iter().zip(&r).map(|(a, b)| a * b).sum() };
        let (y, norms) = normalise(&x, 3);
        let dx = normalise_backward(&y, &norms, &r, 3);
        for i in 0..3 {
            let (mut plus, mut minus) = (x, x);
            plus[i] += 1e-3;
            minus[i] -= 1e-3;
            let numeric = (loss(&plus) - loss(&minus)) / 2e-3;
            assert!((numeric - dx[i]).abs() < 1e-3, "{i}: {numeric} vs {}", dx[i]);
        }
    }

    /// Two communities of users, each liking its own half of the items: after training, users rank
    /// their community's items above the other half.
    #[test]
    fn learns_to_separate_communities() {
        let (num_users, num_items) = (40u32, 20u32);
        let mut pairs = Vec::new();
        for u in 0..num_users {
            let side = u % 2;
            for i in (0..num_items).filter(|i| i % 2 == side) {
                if (u + i) % 3 != 0 {
                    pairs.push((u, i));
                }
            }
        }
        let positives = Interactions::from_pairs(num_users as usize, num_items as usize, &pairs);
        let key = |field: &str, id: u32| reelrank_features::feature_key(field, &id.to_string());
        let inputs = TowerInputs {
            user_slots: (0..num_users).map(|u| vec![vec![(key("user", u), 1.0)]]).collect(),
            item_slots: (0..num_items).map(|i| vec![vec![(key("item", i), 1.0)]]).collect(),
            item_keys: (0..num_items).map(|i| key("item", i)).collect(),
            ..TowerInputs::default()
        };
        let config = small(32, 60);
        let mut losses = Vec::new();
        let model = TwoTower::fit(&inputs, &positives, &config, |_, loss, _| {
            losses.push(loss);
            true
        });
        assert!(losses.last().unwrap() < &(losses[0] * 0.8), "loss falls: {losses:?}");
        let items = model.item_vectors(&inputs.item_slots);
        let mut correct = 0;
        for u in 0..num_users {
            let history = inputs.history_keys(positives.items_of(u), 50, None);
            let user = model.user_vector(&inputs.user_slots[u as usize], &[], &history);
            let score = |i: u32| -> f32 {
                user.iter().zip(&items[i as usize * 64..][..64]).map(|(a, b)| a * b).sum()
            };
            let own: f32 = (0..num_items).filter(|i| i % 2 == u % 2).map(score).sum();
            let other: f32 = (0..num_items).filter(|i| i % 2 != u % 2).map(score).sum();
            correct += usize::from(own > other);
        }
        assert_eq!(correct, num_users as usize);
    }

    use reelrank_features::kernels::dot;

    /// Settings for the small models of these tests: in-batch negatives only.
    fn small(batch_size: usize, max_epochs: usize) -> TwoTowerConfig {
        TwoTowerConfig { batch_size, max_epochs, uniform_negatives: 0, ..TwoTowerConfig::default() }
    }

    /// Users of two sides each like the items of their side's category; ids are per user and
    /// per item, so only the category and side features generalise.
    fn two_sided() -> (TowerInputs, Interactions) {
        let key = reelrank_features::feature_key;
        let side = |n: u32| if n.is_multiple_of(2) { "a" } else { "b" };
        let (num_users, num_items) = (60u32, 40u32);
        let pairs: Vec<(u32, u32)> = (0..num_users)
            .flat_map(|u| {
                (0..num_items).filter(move |i| i % 2 == u % 2 && (u + i) % 3 != 0).map(move |i| (u, i))
            })
            .collect();
        let inputs = TowerInputs {
            user_slots: (0..num_users)
                .map(|u| {
                    vec![vec![(key("user", &u.to_string()), 1.0)], vec![(key("user.side", side(u)), 1.0)]]
                })
                .collect(),
            item_slots: (0..num_items)
                .map(|i| {
                    vec![vec![(key("item", &i.to_string()), 1.0)], vec![(key("item.category", side(i)), 1.0)]]
                })
                .collect(),
            item_keys: (0..num_items).map(|i| key("item", &i.to_string())).collect(),
            ..TowerInputs::default()
        };
        (inputs, Interactions::from_pairs(num_users as usize, num_items as usize, &pairs))
    }

    #[test]
    fn new_items_and_users_get_vectors_from_their_features() {
        let (inputs, positives) = two_sided();
        let config = TwoTowerConfig { id_dropout: 0.2, ..small(32, 40) };
        let model = TwoTower::fit(&inputs, &positives, &config, |_, _, _| true);
        let key = reelrank_features::feature_key;
        // Never-seen ids: only the category (items) and side (users) carry information.
        let new_item =
            |side: &str| vec![vec![(key("item", "new"), 1.0)], vec![(key("item.category", side), 1.0)]];
        let items = model.item_vectors(&[new_item("a"), new_item("b")]);
        let (a, b) = items.split_at(64);
        for side in ["a", "b"] {
            let user = model.user_vector(
                &[vec![(key("user", "newcomer"), 1.0)], vec![(key("user.side", side), 1.0)]],
                &[],
                &[],
            );
            let (own, other) = if side == "a" { (a, b) } else { (b, a) };
            assert!(
                dot(&user, own) > dot(&user, other) + 0.1,
                "side {side}: {} vs {}",
                dot(&user, own),
                dot(&user, other)
            );
        }
    }

    #[test]
    fn uniform_negatives_train_too() {
        let (inputs, positives) = two_sided();
        let config = TwoTowerConfig { uniform_negatives: 16, ..small(32, 30) };
        let model = TwoTower::fit(&inputs, &positives, &config, |_, _, _| true);
        let again = TwoTower::fit(&inputs, &positives, &config, |_, _, _| true);
        let items = model.item_vectors(&inputs.item_slots);
        assert_eq!(items, again.item_vectors(&inputs.item_slots), "deterministic for a seed");
        let user = model.user_vector(
            &inputs.user_slots[0],
            &[],
            &inputs.history_keys(positives.items_of(0), 50, None),
        );
        let score = |i: usize| dot(&user, &items[i * 64..(i + 1) * 64]);
        let own: f32 = (0..40).filter(|i| i % 2 == 0).map(score).sum();
        let other: f32 = (0..40).filter(|i| i % 2 == 1).map(score).sum();
        assert!(own > other + 1.0, "own {own} other {other}");
    }

    /// A new item of side a's category that side b's users take to: online steps on their
    /// positives bring it to side b, which its category alone would not.
    #[test]
    fn online_steps_bring_a_new_item_to_the_users_who_take_to_it() {
        let (inputs, positives) = two_sided();
        let mut model = TwoTower::fit(&inputs, &positives, &small(32, 30), |_, _, _| true);
        let key = reelrank_features::feature_key;
        let viral_key = key("item", "viral");
        let viral = vec![vec![(viral_key, 1.0)], vec![(key("item.category", "a"), 1.0)]];
        let score = |model: &TwoTower, u: usize| {
            let history = inputs.history_keys(positives.items_of(u as u32), 50, None);
            let user = model.user_vector(&inputs.user_slots[u], &[], &history);
            dot(&user, &model.item_vectors(std::slice::from_ref(&viral)))
        };
        let before = score(&model, 1);
        let histories: Vec<Vec<u64>> =
            (0..60).map(|u| inputs.history_keys(positives.items_of(u), 50, None)).collect();
        for step in 0..20 {
            let batch: Vec<TowerExample<'_>> = (1..60)
                .step_by(2)
                .skip(step % 3)
                .step_by(3)
                .map(|u| TowerExample {
                    user_slots: &inputs.user_slots[u],
                    context: &[],
                    history: &histories[u],
                    item_key: viral_key,
                    item: &viral,
                })
                .collect();
            let negatives: Vec<(u64, &[Bag])> =
                (0..8).map(|i| (inputs.item_keys[i], inputs.item_slots[i].as_slice())).collect();
            model.learn(&batch, &negatives, |_| -2.0, step as i64, true);
        }
        let after = score(&model, 1);
        assert!(after > before + 0.2, "a side-b user's score of the item: {before} -> {after}");
    }

    /// Every user likes items 0–9 in the morning and 10–19 in the evening: only the context slot
    /// can tell which half to rank first.
    #[test]
    fn the_context_slot_shifts_the_user_vector() {
        let key = reelrank_features::feature_key;
        let morning = vec![(key("context.page", "morning"), 1.0)];
        let evening = vec![(key("context.page", "evening"), 1.0)];
        let (num_users, num_items) = (30u32, 20u32);
        let pairs: Vec<(u32, u32)> =
            (0..num_users).flat_map(|u| (0..num_items).map(move |i| (u, i))).collect();
        let inputs = TowerInputs {
            user_slots: (0..num_users).map(|u| vec![vec![(key("user", &u.to_string()), 1.0)]]).collect(),
            item_slots: (0..num_items).map(|i| vec![vec![(key("item", &i.to_string()), 1.0)]]).collect(),
            item_keys: (0..num_items).map(|i| key("item", &i.to_string())).collect(),
            contexts: pairs
                .iter()
                .map(|&(u, i)| ((u, i), if i < 10 { morning.clone() } else { evening.clone() }))
                .collect(),
        };
        let positives = Interactions::from_pairs(num_users as usize, num_items as usize, &pairs);
        let config = small(32, 30);
        let model = TwoTower::fit(&inputs, &positives, &config, |_, _, _| true);
        assert!(model.has_context());
        let items = model.item_vectors(&inputs.item_slots);
        let history = inputs.history_keys(positives.items_of(0), 50, None);
        let half = |user: &[f32], range: std::ops::Range<usize>| -> f32 {
            range.map(|i| dot(user, &items[i * 64..(i + 1) * 64])).sum()
        };
        let in_the_morning = model.user_vector(&inputs.user_slots[0], &morning, &history);
        let in_the_evening = model.user_vector(&inputs.user_slots[0], &evening, &history);
        assert!(half(&in_the_morning, 0..10) > half(&in_the_morning, 10..20));
        assert!(half(&in_the_evening, 10..20) > half(&in_the_evening, 0..10));
    }

    #[test]
    fn history_weights_decay_with_age() {
        assert_eq!(history_bag(&[1, 2, 3], 2, 0.5), vec![(3, 1.0), (2, 0.5)]);
        let inputs = TowerInputs { item_keys: vec![10, 11, 12, 13], ..TowerInputs::default() };
        assert_eq!(inputs.history_keys(&[0, 1, 2, 3], 2, Some(3)), [11, 12], "the target is left out");
        assert_eq!(inputs.history_keys(&[0, 1, 2, 3], 2, None), [12, 13]);
    }

    #[test]
    fn save_then_load_gives_identical_scores() {
        let positives = Interactions::from_pairs(3, 4, &[(0, 1), (1, 2), (2, 3), (0, 2)]);
        let inputs = TowerInputs {
            user_slots: (0..3).map(|u| vec![vec![(100 + u, 1.0)]]).collect(),
            item_slots: (0..4).map(|i| vec![vec![(i, 1.0)], vec![(50, 1.0)]]).collect(),
            item_keys: (0..4).collect(),
            ..TowerInputs::default()
        };
        let config = small(2, 3);
        let model = TwoTower::fit(&inputs, &positives, &config, |_, _, _| true);
        let dir = tempfile::tempdir().unwrap();
        model.save(dir.path()).unwrap();
        let loaded = TwoTower::load(dir.path()).unwrap();
        assert_eq!(loaded.item_vectors(&inputs.item_slots), model.item_vectors(&inputs.item_slots));
        for u in 0..3 {
            let slots = &inputs.user_slots[u as usize];
            let history = inputs.history_keys(positives.items_of(u), 50, None);
            assert_eq!(loaded.user_vector(slots, &[], &history), model.user_vector(slots, &[], &history));
        }
        let manifest = dir.path().join("two_tower.json");
        let text = std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("\"format_version\": 2", "\"format_version\": 7");
        std::fs::write(&manifest, text).unwrap();
        assert!(matches!(TwoTower::load(dir.path()), Err(PersistError::Version { found: 7, .. })));
    }

    #[test]
    fn training_is_deterministic_for_a_seed() {
        let positives = Interactions::from_pairs(3, 4, &[(0, 1), (1, 2), (2, 3), (0, 2)]);
        let inputs = TowerInputs {
            user_slots: (0..3).map(|u| vec![vec![(100 + u, 1.0)]]).collect(),
            item_slots: (0..4).map(|i| vec![vec![(i, 1.0)]]).collect(),
            item_keys: (0..4).collect(),
            ..TowerInputs::default()
        };
        let config = small(2, 3);
        let a = TwoTower::fit(&inputs, &positives, &config, |_, _, _| true);
        let b = TwoTower::fit(&inputs, &positives, &config, |_, _, _| true);
        assert_eq!(a.item_vectors(&inputs.item_slots), b.item_vectors(&inputs.item_slots));
    }
}
