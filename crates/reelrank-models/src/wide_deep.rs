//! The Wide&Deep ranking model (Cheng et al., 2016) with one output per user action.
//!
//! - **Wide**: a sparse linear model over single feature keys and their declared crosses
//!   ([`reelrank_features::WideSchema`]), learned with FTRL-Proximal ([`Ftrl`]): it memorises
//!   pairs seen often enough, and L1 keeps the rest at exactly zero.
//! - **Deep**: the example's slots pooled through our embedding table (row-wise Adagrad, only the
//!   batch's rows), concatenated with normalised dense features, then a shared MLP whose last layer
//!   has one logit per head (multi-task, shared bottom): it generalises to users and items seen
//!   rarely or never, through their attributes.
//!
//! `logit[head] = wide[head] + deep[head]`, `P(action) = σ(logit)`, trained with binary
//! cross-entropy on every head whose label the example carries. Either part can be switched off,
//! for ablations.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;
use reelrank_features::{
    read_manifest, write_manifest, Bag, CandidateFeatures, EmbeddingConfig, EmbeddingTable, GradientBuffer,
    MemoryUse, PersistError, RequestFeatures, TensorReader, TensorWriter, WideSchema,
};
use serde::{Deserialize, Serialize};

use crate::dense::{matmul, AdamStep, Mlp};
use crate::ftrl::{Ftrl, FtrlConfig, Located};
use crate::pooling::{pool, Pooled};
use reelrank_features::kernels::{axpy, prefetch};

/// Settings of a Wide&Deep model; saved with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WideDeepConfig {
    /// The embedding table of the deep part.
    pub embedding: EmbeddingConfig,
    /// Hidden layer widths of the shared MLP.
    pub hidden: Vec<usize>,
    /// Adam learning rate of the MLP.
    pub learning_rate: f32,
    /// FTRL-Proximal settings of the wide part.
    pub ftrl: FtrlConfig,
    /// Examples per step.
    pub batch_size: usize,
    /// Epochs at most.
    pub max_epochs: usize,
    /// Seed of initial weights and shuffling.
    pub seed: u64,
    /// Whether the wide part contributes (off: deep only).
    pub wide: bool,
    /// Whether the deep part contributes (off: wide only).
    pub deep: bool,
    /// Probability that a training example's first slot (the user id) reads the table's default
    /// row, as an id never seen does: the deep part then learns to score new users from their
    /// attributes, which a test period full of new users needs.
    pub id_dropout: f32,
    /// Dropout rate after each hidden layer of the MLP in training.
    pub dropout: f32,
}

impl Default for WideDeepConfig {
    fn default() -> WideDeepConfig {
        WideDeepConfig {
            embedding: EmbeddingConfig { dim: 16, learning_rate: 0.005, ..EmbeddingConfig::default() },
            hidden: vec![256, 128, 64],
            learning_rate: 1e-3,
            ftrl: FtrlConfig::default(),
            batch_size: 1024,
            max_epochs: 20,
            seed: 0,
            wide: true,
            deep: true,
            id_dropout: 0.2,
            dropout: 0.0,
        }
    }
}

/// What a model's examples look like: fixed when it is built, saved with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankingSchema {
    /// The heads' names, in output order.
    pub heads: Vec<String>,
    /// The crosses of [`RankingExample::wide`].
    pub wide: WideSchema,
    /// Leading example slots that describe the request (user, context); the rest describe the
    /// candidate. Serving computes the request's share of the first layer once per request.
    pub request_slots: usize,
    /// Leading dense features that describe the request; the rest describe the candidate.
    pub request_dense: usize,
}

/// One (user, item) example: its inputs and the labels it carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankingExample {
    /// Slots pooled by the deep part: the request's, then the candidate's (see [`RankingSchema`]).
    pub slots: Vec<Bag>,
    /// Normalised dense features: the request's, then the candidate's.
    pub dense: Vec<f32>,
    /// Wide keys (see [`WideSchema::keys`]).
    pub wide: Vec<u64>,
    /// One label per head; `None` where the example says nothing about that action.
    pub labels: Vec<Option<bool>>,
    /// Added to every head's logit in training only: the log-odds correction of an example whose
    /// negatives were sampled rather than shown, so the model learns the unsampled odds.
    pub offset: f32,
}

impl RankingExample {
    /// The example of showing `candidate` in `request`, with one label per head; the dense
    /// features are the raw rates, to be standardised.
    pub fn new(
        request: RequestFeatures,
        candidate: CandidateFeatures,
        labels: Vec<Option<bool>>,
    ) -> RankingExample {
        RankingExample {
            slots: request.slots.into_iter().chain(candidate.slots).collect(),
            dense: request.dense.into_iter().chain(candidate.dense).collect(),
            wide: candidate.wide,
            labels,
            offset: 0.0,
        }
    }
}

/// One candidate of a request, for [`WideDeep::score_candidates`].
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Its [`WideDeep::candidate_part`].
    pub part: &'a [f32],
    /// Its dense features (the candidate side of an example's).
    pub dense: &'a [f32],
    /// Its wide keys.
    pub wide: &'a [u64],
}

/// A trained (or training) Wide&Deep model.
#[derive(Debug, Clone)]
pub struct WideDeep {
    config: WideDeepConfig,
    schema: RankingSchema,
    /// The example slots the deep part pools: those some training example filled (a slot no
    /// example fills has nothing to learn from, and would only widen the first layer).
    slots: Vec<usize>,
    dense: usize,
    table: EmbeddingTable,
    mlp: Mlp,
    wide: Ftrl,
    adam: AdamStep,
}

impl WideDeep {
    /// An untrained model for examples that follow `schema`, pooling the example slots at
    /// positions `slots`, with `dense` dense features.
    pub fn new(config: WideDeepConfig, schema: RankingSchema, slots: Vec<usize>, dense: usize) -> WideDeep {
        let sizes: Vec<usize> = std::iter::once(slots.len() * config.embedding.dim + dense)
            .chain(config.hidden.iter().copied())
            .chain(std::iter::once(schema.heads.len()))
            .collect();
        WideDeep {
            table: EmbeddingTable::new(EmbeddingConfig { seed: config.seed, ..config.embedding.clone() }),
            mlp: Mlp::new(&sizes, config.seed).with_dropout(config.dropout),
            wide: Ftrl::new(config.ftrl, schema.heads.len()),
            adam: AdamStep::new(config.learning_rate),
            config,
            schema,
            slots,
            dense,
        }
    }

    /// Trains on `examples` (shape taken from the first), calling `after_epoch(epoch, mean loss,
    /// model)` after each epoch; stops when it returns `false` or after `max_epochs`.
    pub fn fit(
        examples: &[RankingExample],
        schema: &RankingSchema,
        config: &WideDeepConfig,
        mut after_epoch: impl FnMut(usize, f32, &WideDeep) -> bool,
    ) -> WideDeep {
        let (width, dense) = examples.first().map_or((0, 0), |e| (e.slots.len(), e.dense.len()));
        let slots = (0..width).filter(|&s| examples.iter().any(|e| !e.slots[s].is_empty())).collect();
        let mut model = WideDeep::new(config.clone(), schema.clone(), slots, dense);
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let mut rng = Pcg64Mcg::seed_from_u64(config.seed);
        for epoch in 0..config.max_epochs {
            order.shuffle(&mut rng);
            let mut loss_sum = 0.0;
            let batches = order.chunks(config.batch_size.max(1));
            let num_batches = batches.len();
            for batch in batches {
                let batch: Vec<&RankingExample> = batch.iter().map(|&i| &examples[i]).collect();
                let drop_id: Vec<bool> =
                    batch.iter().map(|_| rng.random::<f32>() < config.id_dropout).collect();
                loss_sum += model.train_batch(&batch, &drop_id, epoch as i64, true);
            }
            if !after_epoch(epoch, loss_sum / num_batches.max(1) as f32, &model) {
                break;
            }
        }
        model
    }

    /// One online step on `batch` (examples whose outcomes arrived by `now_ms`): the sparse rows
    /// and wide weights they touch move; the MLP's gradients accumulate, and are applied (all
    /// those accumulated since the last time) when `dense` is set, so a server can move the MLP
    /// at a lower rate than the rows. Returns the batch's mean loss. No id dropout: it
    /// regularises epochs over a fixed log, while an online example is seen once.
    pub fn learn(&mut self, batch: &[&RankingExample], now_ms: i64, dense: bool) -> f32 {
        self.train_batch(batch, &vec![false; batch.len()], now_ms, dense)
    }

    /// Restamps every embedding row as touched at `now_ms` (Unix ms), starting the idle clock of
    /// a model whose rows were stamped with epoch numbers in training.
    pub fn start_idle_clock(&mut self, now_ms: i64) {
        self.table.restamp(now_ms);
    }

    /// Evicts the embedding rows not touched for `idle_ms` before `now_ms` (ids gone quiet fall
    /// back to the default row); returns how many went. The wide weights are a fixed-size hashed
    /// table and need no eviction.
    pub fn evict_idle(&mut self, now_ms: i64, idle_ms: i64) -> usize {
        self.table.evict_idle(now_ms, idle_ms)
    }

    /// What the embedding table holds.
    pub fn table_memory(&self) -> MemoryUse {
        self.table.memory()
    }

    /// One step on a batch; returns its mean loss over the labels it carries. Examples flagged in
    /// `drop_id` read the default row for their first slot; the MLP steps when `dense` is set.
    fn train_batch(&mut self, batch: &[&RankingExample], drop_id: &[bool], now: i64, dense: bool) -> f32 {
        let (rows, heads) = (batch.len(), self.schema.heads.len());
        let mut logits = Vec::new();
        let mut pooled = Pooled::default();
        if self.config.deep {
            pooled.x.reserve(rows * self.mlp.layers[0].inputs);
            for (i, (example, &drop)) in batch.iter().zip(drop_id).enumerate() {
                // Shuffled examples are scattered in memory, each a few arrays behind pointers:
                // ask for the arrays of those a little ahead, then for their bags' contents.
                if let Some(ahead) = batch.get(i + 8) {
                    prefetch(&ahead.slots);
                    prefetch(&ahead.dense);
                    prefetch(&ahead.wide);
                }
                if let Some(ahead) = batch.get(i + 4) {
                    ahead.slots.iter().for_each(|bag| prefetch(bag));
                }
                let slots = self.slots.iter().map(|&s| &example.slots[s]);
                pooled.push(&mut self.table, slots, drop, now);
                pooled.x.extend_from_slice(&example.dense);
            }
            logits.extend_from_slice(self.mlp.forward_train(&pooled.x, rows));
        }
        logits.resize(rows * heads, 0.0);
        let wide_at = match self.config.wide {
            true => self.wide.locate(batch.iter().map(|e| e.wide.as_slice())),
            false => Located::default(),
        };
        self.wide.add_logits(&wide_at, &mut logits);
        // dL/dlogit = σ(logit) − label on labelled heads, 0 elsewhere.
        let mut loss = 0.0;
        let mut labelled = 0usize;
        let mut grads = logits;
        for (example, row) in batch.iter().zip(grads.chunks_exact_mut(heads)) {
            for (g, label) in row.iter_mut().zip(&example.labels) {
                let Some(label) = *label else {
                    *g = 0.0;
                    continue;
                };
                let logit = *g + example.offset;
                let (p, y) = (sigmoid(logit), f32::from(u8::from(label)));
                loss += binary_cross_entropy(logit, label);
                labelled += 1;
                *g = p - y;
            }
        }
        let (wide, mlp, table) = (&mut self.wide, &mut self.mlp, &mut self.table);
        let use_deep = self.config.deep;
        // The wide update (per example, as FTRL is meant) and the deep backward pass are
        // independent: each gets a core when two are free.
        rayon::join(
            || wide.update(&wide_at, &grads),
            || {
                if use_deep {
                    let scaled: Vec<f32> = grads.iter().map(|g| g / rows as f32).collect();
                    let dx = mlp.backward(&scaled);
                    let mut embedding_grads = GradientBuffer::new(table.dim());
                    pooled.scatter(dx, &mut embedding_grads);
                    table.apply(&mut embedding_grads, now);
                }
            },
        );
        if use_deep && dense {
            self.adam.t += 1;
            self.mlp.step(&self.adam);
        }
        loss / labelled.max(1) as f32
    }

    /// Probabilities `[examples × heads]`.
    pub fn predict(&self, examples: &[RankingExample]) -> Vec<f32> {
        let heads = self.schema.heads.len();
        examples
            .par_chunks(256)
            .flat_map_iter(|chunk| {
                let mut logits = vec![0.0f32; chunk.len() * heads];
                if self.config.deep {
                    let mut x = Vec::with_capacity(chunk.len() * self.mlp.layers[0].inputs);
                    for example in chunk {
                        let slots: Vec<&[(u64, f32)]> =
                            self.slots.iter().map(|&s| example.slots[s].as_slice()).collect();
                        pool(&self.table, &slots, &mut x);
                        x.extend_from_slice(&example.dense);
                    }
                    logits = self.mlp.forward(&x, chunk.len());
                }
                if self.config.wide {
                    let at = self.wide.locate(chunk.iter().map(|e| e.wide.as_slice()));
                    self.wide.add_logits(&at, &mut logits);
                }
                logits.into_iter().map(sigmoid)
            })
            .collect()
    }

    /// The first layer's share of a request: its bias plus the weights times the request's pooled
    /// slots and dense features (`slots` and `dense`: the request side of an example). Computed
    /// once per request rather than once per candidate.
    pub fn request_part(&self, slots: &[Bag], dense: &[f32]) -> Vec<f32> {
        let first = &self.mlp.layers[0];
        let mut part = first.bias().to_vec();
        let request_slots = self.schema.request_slots;
        let pooled = self.slots.iter().enumerate().filter(|(_, &s)| s < request_slots);
        self.add_slots(&mut part, pooled.map(|(p, &s)| (p, &slots[s])));
        let first_dense = self.first_dense_input();
        for (j, &value) in dense.iter().enumerate().take(self.schema.request_dense) {
            axpy(value, self.first_layer_rows(first_dense + j..first_dense + j + 1), &mut part);
        }
        part
    }

    /// The first layer's share of a candidate's slots (`slots`: the candidate side of an
    /// example). It depends only on the item and the model, so serving can cache it per item;
    /// the candidate's dense features (counters that move all day) are added in
    /// [`WideDeep::score_candidates`].
    pub fn candidate_part(&self, slots: &[Bag]) -> Vec<f32> {
        let mut part = vec![0.0; self.mlp.layers[0].outputs];
        let request_slots = self.schema.request_slots;
        let pooled = self.slots.iter().enumerate().filter(|(_, &s)| s >= request_slots);
        self.add_slots(&mut part, pooled.map(|(p, &s)| (p, &slots[s - request_slots])));
        part
    }

    /// Adds the first layer's weights times each `(position among the pooled slots, bag)`.
    fn add_slots<'a>(&self, part: &mut [f32], slots: impl Iterator<Item = (usize, &'a Bag)>) {
        let d = self.table.dim();
        let mut x = Vec::with_capacity(d);
        for (position, bag) in slots {
            x.clear();
            pool(&self.table, &[bag.as_slice()], &mut x);
            for (c, &value) in x.iter().enumerate() {
                let input = position * d + c;
                axpy(value, self.first_layer_rows(input..input + 1), part);
            }
        }
    }

    /// What first-layer `inputs` add to each hidden unit, per unit of input: one row each.
    fn first_layer_rows(&self, inputs: std::ops::Range<usize>) -> &[f32] {
        let hidden = self.mlp.layers[0].outputs;
        &self.mlp.layers[0].weights()[inputs.start * hidden..inputs.end * hidden]
    }

    /// The first layer's first dense input (after the pooled slots).
    fn first_dense_input(&self) -> usize {
        self.slots.len() * self.table.dim()
    }

    /// Probabilities `[candidates × heads]` for one request from its [`WideDeep::request_part`]:
    /// each candidate brings its cached [`WideDeep::candidate_part`], its dense features and its
    /// wide keys. Equal to [`WideDeep::predict`] on the same examples, without recomputing the
    /// request's share and the items' embeddings for every candidate.
    pub fn score_candidates(&self, request_part: &[f32], candidates: &[Candidate<'_>]) -> Vec<f32> {
        let heads = self.schema.heads.len();
        let mut logits = vec![0.0f32; candidates.len() * heads];
        if self.config.deep {
            // The first layer's rows of the candidates' dense features, which are contiguous.
            let hidden = request_part.len();
            let dense = candidates.first().map_or(0, |c| c.dense.len());
            let first_dense = self.first_dense_input() + self.schema.request_dense;
            let rows = self.first_layer_rows(first_dense..first_dense + dense);
            // Blocks of candidates: big enough for the GEMMs to run near full speed, small enough
            // to stay in cache (256 measured faster than 64 and than one block of 500).
            const BLOCK: usize = 256;
            for (block, out) in candidates.chunks(BLOCK).zip(logits.chunks_mut(BLOCK * heads)) {
                let mut first = Vec::with_capacity(block.len() * hidden);
                let mut block_dense = Vec::with_capacity(block.len() * dense);
                for candidate in block {
                    let start = first.len();
                    first.extend_from_slice(request_part);
                    axpy(1.0, candidate.part, &mut first[start..]);
                    block_dense.extend_from_slice(candidate.dense);
                }
                // The candidates' dense features through their columns: one small GEMM.
                matmul(&block_dense, false, rows, false, &mut first, (block.len(), dense, hidden), true);
                out.copy_from_slice(&self.mlp.serve_from_first(first, block.len()));
            }
        }
        if self.config.wide {
            self.wide.add_logits(&self.wide.locate(candidates.iter().map(|c| c.wide)), &mut logits);
        }
        logits.into_iter().map(sigmoid).collect()
    }

    /// The heads' names, in output order.
    pub fn heads(&self) -> &[String] {
        &self.schema.heads
    }

    /// What the model's examples look like.
    pub fn schema(&self) -> &RankingSchema {
        &self.schema
    }
}

/// `1 / (1 + e^−x)`.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `−log σ(logit)` for a positive, `−log(1 − σ(logit))` for a negative, stable for large logits.
fn binary_cross_entropy(logit: f32, label: bool) -> f32 {
    let z = if label { logit } else { -logit };
    (-z).max(0.0) + (-z.abs()).exp().ln_1p()
}

/// Version of the Wide&Deep model's on-disk layout; other versions are refused.
pub const WIDE_DEEP_FORMAT_VERSION: u32 = 1;

/// `wide_deep.json`: what rebuilds the model around its arrays.
#[derive(Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    config: WideDeepConfig,
    schema: RankingSchema,
    slots: Vec<usize>,
    dense: usize,
}

impl WideDeep {
    /// Writes the model into `dir`: `wide_deep.json` (format version, config, schema, shapes),
    /// `dense.safetensors` (MLP weights and the wide part's FTRL state) and
    /// `embeddings.{safetensors,json}` (the table).
    pub fn save(&self, dir: &Path) -> Result<(), PersistError> {
        self.table.save(dir, "embeddings")?;
        let mut arrays = TensorWriter::new();
        self.mlp.write(&mut arrays, "mlp");
        let (coordinates, z, n) = self.wide.state();
        let heads = self.schema.heads.len();
        arrays.add("wide.coordinates", vec![coordinates.len()], &coordinates);
        arrays.add("wide.z", vec![coordinates.len(), heads], &z);
        arrays.add("wide.n", vec![coordinates.len(), heads], &n);
        arrays.write(&dir.join("dense.safetensors"))?;
        let manifest = Manifest {
            format_version: WIDE_DEEP_FORMAT_VERSION,
            config: self.config.clone(),
            schema: self.schema.clone(),
            slots: self.slots.clone(),
            dense: self.dense,
        };
        write_manifest(&dir.join("wide_deep.json"), &manifest)
    }

    /// Reads a model written by [`WideDeep::save`].
    pub fn load(dir: &Path) -> Result<WideDeep, PersistError> {
        let m: Manifest = read_manifest(&dir.join("wide_deep.json"), WIDE_DEEP_FORMAT_VERSION)?;
        let mut model = WideDeep::new(m.config, m.schema, m.slots, m.dense);
        model.table = EmbeddingTable::load(dir, "embeddings")?;
        let path = dir.join("dense.safetensors");
        let arrays = TensorReader::open(&path)?;
        let format = |message: String| PersistError::Format { path: path.clone(), message };
        model.mlp.read(&arrays, "mlp", &path)?;
        let coordinates: Vec<u32> = arrays.values("wide.coordinates")?;
        let (z, n): (Vec<f32>, Vec<f32>) = (arrays.values("wide.z")?, arrays.values("wide.n")?);
        model.wide = Ftrl::from_state(model.config.ftrl, model.schema.heads.len(), &coordinates, &z, &n)
            .ok_or_else(|| {
                format("wide.z and wide.n do not fit wide.coordinates, the heads and the table size".into())
            })?;
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use reelrank_features::feature_key;

    use super::*;

    /// Users of two groups; group A likes category x and dislikes y, group B the reverse. A second
    /// head ("finish") is labelled on half the examples only.
    fn examples(count: usize) -> Vec<RankingExample> {
        (0..count)
            .map(|i| {
                let group = if i % 2 == 0 { "a" } else { "b" };
                let category = if (i / 2) % 2 == 0 { "x" } else { "y" };
                let likes = (group == "a") == (category == "x");
                let (g, c) = (feature_key("user.group", group), feature_key("item.category", category));
                RankingExample {
                    slots: vec![
                        vec![(feature_key("user", &(i % 40).to_string()), 1.0)],
                        vec![(g, 1.0)],
                        vec![(c, 1.0)],
                    ],
                    dense: vec![0.5, if category == "x" { 1.0 } else { -1.0 }],
                    wide: vec![g, c, reelrank_features::cross_key(g, c)],
                    labels: vec![Some(likes), (i % 3 == 0).then_some(likes)],
                    offset: 0.0,
                }
            })
            .collect()
    }

    fn config(wide: bool, deep: bool) -> WideDeepConfig {
        WideDeepConfig {
            hidden: vec![16],
            batch_size: 32,
            max_epochs: 15,
            learning_rate: 0.01,
            wide,
            deep,
            ..WideDeepConfig::default()
        }
    }

    fn fit(config: &WideDeepConfig) -> WideDeep {
        let schema = RankingSchema {
            heads: vec!["like".to_string(), "finish".to_string()],
            wide: WideSchema { user_item: vec![], history: 0 },
            request_slots: 2,
            request_dense: 1,
        };
        WideDeep::fit(&examples(640), &schema, config, |_, _, _| true)
    }

    #[test]
    fn wide_deep_and_both_learn_an_interaction() {
        let test = examples(8);
        for (wide, deep) in [(true, false), (false, true), (true, true)] {
            let model = fit(&config(wide, deep));
            let p = model.predict(&test);
            for (example, row) in test.iter().zip(p.chunks_exact(2)) {
                let likes = example.labels[0].unwrap();
                assert_eq!(row[0] > 0.5, likes, "wide {wide}, deep {deep}: {row:?}");
                assert_eq!(row[1] > 0.5, likes, "the sparsely labelled head learns too: {row:?}");
            }
        }
    }

    #[test]
    fn the_offset_is_learnt_around_not_served() {
        // Labels that are half positive whatever the features (they change every 40 examples,
        // the features' period), trained under an offset of -ln 4 (as if each negative stood for
        // four): the served probability is the uncorrected odds 4:1.
        let shifted: Vec<RankingExample> = examples(640)
            .into_iter()
            .enumerate()
            .map(|(i, e)| RankingExample {
                labels: vec![Some((i / 40) % 2 == 0); 2],
                offset: -(4f32.ln()),
                ..e
            })
            .collect();
        let schema = fit(&config(false, true)).schema().clone();
        let model = WideDeep::fit(&shifted, &schema, &config(false, true), |_, _, _| true);
        let p = model.predict(&examples(40));
        let mean = p.iter().sum::<f32>() / p.len() as f32;
        assert!((mean - 0.8).abs() < 0.05, "{mean}");
    }

    #[test]
    fn save_then_load_gives_identical_scores() {
        let model = fit(&config(true, true));
        let dir = tempfile::tempdir().unwrap();
        model.save(dir.path()).unwrap();
        let loaded = WideDeep::load(dir.path()).unwrap();
        let test = examples(20);
        assert_eq!(model.predict(&test), loaded.predict(&test));
        assert_eq!(loaded.heads(), ["like", "finish"]);
    }

    #[test]
    fn scoring_from_cached_parts_equals_predict() {
        let model = fit(&config(true, true));
        let test = examples(12);
        let expected = model.predict(&test);
        for (example, want) in test.iter().zip(expected.chunks_exact(2)) {
            let (request_slots, request_dense) = (model.schema().request_slots, model.schema().request_dense);
            let request =
                model.request_part(&example.slots[..request_slots], &example.dense[..request_dense]);
            let part = model.candidate_part(&example.slots[request_slots..]);
            let candidate =
                Candidate { part: &part, dense: &example.dense[request_dense..], wide: &example.wide };
            let got = model.score_candidates(&request, &[candidate, candidate]);
            for (g, w) in got.iter().zip(want.iter().chain(want)) {
                assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
            }
        }
    }

    /// Hidden layers 64 wide run in bfloat16 where the CPU has the instructions (`bf16.rs`).
    #[test]
    fn scoring_in_bfloat16_stays_close_to_predict() {
        let model = fit(&WideDeepConfig { hidden: vec![128, 64], ..config(true, true) });
        let (request_slots, request_dense) = (model.schema().request_slots, model.schema().request_dense);
        let test = examples(14);
        // One request of the first user with the other thirteen examples' items as candidates
        // (three blocks of four rows and one row left over), against the same pairs predicted.
        let user = &test[0];
        let pairs: Vec<RankingExample> = test[1..]
            .iter()
            .map(|e| RankingExample {
                slots: [&user.slots[..request_slots], &e.slots[request_slots..]].concat(),
                dense: [&user.dense[..request_dense], &e.dense[request_dense..]].concat(),
                ..e.clone()
            })
            .collect();
        let expected = model.predict(&pairs);
        let parts: Vec<Vec<f32>> =
            pairs.iter().map(|e| model.candidate_part(&e.slots[request_slots..])).collect();
        let request = model.request_part(&user.slots[..request_slots], &user.dense[..request_dense]);
        let candidates: Vec<Candidate<'_>> = pairs
            .iter()
            .zip(&parts)
            .map(|(e, part)| Candidate { part, dense: &e.dense[request_dense..], wide: &e.wide })
            .collect();
        let got = model.score_candidates(&request, &candidates);
        assert_eq!(got.len(), expected.len());
        for (g, w) in got.iter().zip(&expected) {
            assert!((g - w).abs() < 1e-2, "{got:?} vs {expected:?}");
        }
    }

    #[test]
    fn training_is_deterministic_for_a_seed() {
        let test = examples(20);
        assert_eq!(fit(&config(true, true)).predict(&test), fit(&config(true, true)).predict(&test));
    }

    #[test]
    fn cross_entropy_is_stable_and_correct() {
        assert!((binary_cross_entropy(0.0, true) - std::f32::consts::LN_2).abs() < 1e-6);
        assert!((binary_cross_entropy(2.0, false) - (1.0 - sigmoid(2.0)).ln().abs()).abs() < 1e-5);
        assert!(binary_cross_entropy(-200.0, true).is_finite());
    }
}
