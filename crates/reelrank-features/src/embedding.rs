//! Sparse embedding tables: one row per admitted 64-bit key, trained row by row.
//!
//! Why our own: a dense table (`[vocabulary × dim]` in a tensor library) needs a vocabulary, shares
//! rows through modulo hashing, and its gradient is a dense tensor over the whole table; with
//! millions of ids that costs seconds per step. Here:
//!
//! - **Collisionless**: a hash map from the full key to a row (as in ByteDance's Monolith).
//! - **Sparse updates**: [`GradientBuffer`] collects the gradients of the rows a batch touched, and
//!   [`EmbeddingTable::apply`] updates only those rows with row-wise Adagrad — one accumulator per row,
//!   `a += mean(g²)`, `w -= lr · g / (√a + ε)` — so optimizer state costs one float per row.
//! - **Frequency filter**: a key gets its own row only after `min_count` sightings; until then it
//!   reads and trains the shared default row (row 0), so one-off ids cannot bloat the table.
//! - **Expiry**: rows (and pending counts) not touched for `expire_after_ms` are evicted and their
//!   slots reused, so memory stays flat over a stream with a churning catalog.
//! - **Deterministic initialisation** from the key and the seed: a row's starting value does not
//!   depend on the order keys arrive in.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::hashing::splitmix64;

/// Added to the accumulator's square root: keeps the first steps finite.
const EPSILON: f32 = 1e-8;

/// Settings of one table; saved with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// Width of a row.
    pub dim: usize,
    /// New rows start uniform in `±init_scale`.
    pub init_scale: f32,
    /// Adagrad learning rate.
    pub learning_rate: f32,
    /// Sightings before a key gets its own row (1 = at once).
    pub min_count: u32,
    /// Rows not touched for this many milliseconds are evicted; `None` keeps them forever.
    pub expire_after_ms: Option<i64>,
    /// Seed of the initial values.
    pub seed: u64,
}

impl Default for EmbeddingConfig {
    fn default() -> EmbeddingConfig {
        EmbeddingConfig {
            dim: 64,
            init_scale: 0.05,
            learning_rate: 0.05,
            min_count: 1,
            expire_after_ms: None,
            seed: 0,
        }
    }
}

/// How much memory a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryUse {
    /// Rows with their own key (the default row not counted).
    pub rows: usize,
    /// Keys seen but not yet admitted.
    pub pending: usize,
    /// Bytes held by rows, optimizer state, timestamps and the maps (allocated capacity).
    pub bytes: usize,
}

/// A sparse embedding table.
#[derive(Debug, Clone)]
pub struct EmbeddingTable {
    pub(crate) config: EmbeddingConfig,
    /// Key → row. Keys are already hashes, so the map uses a cheap multiplicative hasher (Fx)
    /// instead of SipHash, which dominated lookups.
    pub(crate) rows: FxHashMap<u64, u32>,
    /// Key of each row; row 0 (the shared default row) and free rows hold `FREE`.
    pub(crate) keys: Vec<u64>,
    pub(crate) weights: Vec<f32>,
    pub(crate) accumulators: Vec<f32>,
    pub(crate) last_touch: Vec<i64>,
    pub(crate) free: Vec<u32>,
    /// Not-yet-admitted keys: (sightings, last seen).
    pub(crate) pending: FxHashMap<u64, (u32, i64)>,
}

/// Marks the key of the default row and of free rows.
pub(crate) const FREE: u64 = u64::MAX;

impl EmbeddingTable {
    /// An empty table holding only the default row.
    pub fn new(config: EmbeddingConfig) -> EmbeddingTable {
        let mut table = EmbeddingTable {
            rows: FxHashMap::default(),
            keys: vec![FREE],
            weights: Vec::new(),
            accumulators: vec![0.0],
            last_touch: vec![0],
            free: Vec::new(),
            pending: FxHashMap::default(),
            config,
        };
        table.weights = vec![0.0; table.config.dim];
        table.initialise(0, table.config.seed);
        table
    }

    /// The table's settings.
    pub fn config(&self) -> &EmbeddingConfig {
        &self.config
    }

    /// Width of a row.
    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// Counts a sighting of `key` at `now_ms`, giving it a row once it passes the frequency filter.
    /// Returns the key's row (0, the default row, while it is filtered).
    pub fn observe(&mut self, key: u64, now_ms: i64) -> u32 {
        if let Some(&row) = self.rows.get(&key) {
            self.last_touch[row as usize] = now_ms;
            return row;
        }
        let seen = self.pending.entry(key).or_insert((0, now_ms));
        seen.0 += 1;
        seen.1 = now_ms;
        if seen.0 < self.config.min_count {
            return 0;
        }
        self.pending.remove(&key);
        self.admit(key, now_ms)
    }

    fn admit(&mut self, key: u64, now_ms: i64) -> u32 {
        let row = match self.free.pop() {
            Some(row) => row,
            None => {
                let row = self.keys.len() as u32;
                self.keys.push(FREE);
                self.weights.resize(self.weights.len() + self.config.dim, 0.0);
                self.accumulators.push(0.0);
                self.last_touch.push(0);
                row
            }
        };
        self.keys[row as usize] = key;
        self.accumulators[row as usize] = 0.0;
        self.last_touch[row as usize] = now_ms;
        self.initialise(row, key ^ self.config.seed);
        self.rows.insert(key, row);
        row
    }

    /// Fills a row with uniform values in `±init_scale` drawn from `seed`.
    fn initialise(&mut self, row: u32, seed: u64) {
        let scale = self.config.init_scale;
        let mut state = seed;
        for w in self.row_mut(row) {
            state = splitmix64(state);
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            *w = (2.0 * unit - 1.0) * scale;
        }
    }

    /// The row a key reads: its own, or the default row 0 while it is filtered or unknown.
    pub fn row_of(&self, key: u64) -> u32 {
        self.rows.get(&key).copied().unwrap_or(0)
    }

    /// The values of a row.
    pub fn row(&self, row: u32) -> &[f32] {
        let dim = self.config.dim;
        &self.weights[row as usize * dim..(row as usize + 1) * dim]
    }

    fn row_mut(&mut self, row: u32) -> &mut [f32] {
        let dim = self.config.dim;
        &mut self.weights[row as usize * dim..(row as usize + 1) * dim]
    }

    /// The embedding `key` reads.
    pub fn lookup(&self, key: u64) -> &[f32] {
        self.row(self.row_of(key))
    }

    /// Whether `key` has a row of its own.
    pub fn contains(&self, key: u64) -> bool {
        self.rows.contains_key(&key)
    }

    /// Applies the gradients collected in `grads` with row-wise Adagrad, touching only their rows,
    /// and clears the buffer.
    pub fn apply(&mut self, grads: &mut GradientBuffer, now_ms: i64) {
        let dim = self.config.dim;
        let lr = self.config.learning_rate;
        for (row, g) in grads.iter() {
            let mean_square = crate::kernels::sum_of_squares(g) / dim as f32;
            let acc = &mut self.accumulators[row as usize];
            *acc += mean_square;
            let step = lr / (acc.sqrt() + EPSILON);
            crate::kernels::axpy(-step, g, &mut self.weights[row as usize * dim..(row as usize + 1) * dim]);
            self.last_touch[row as usize] = now_ms;
        }
        grads.clear();
    }

    /// Evicts rows and pending counts not touched since `now_ms - expire_after_ms`; returns how
    /// many rows went. Their slots are reused by later admissions.
    pub fn evict_expired(&mut self, now_ms: i64) -> usize {
        match self.config.expire_after_ms {
            Some(ttl) => self.evict_idle(now_ms, ttl),
            None => 0,
        }
    }

    /// Counts every row and pending key as touched at `now_ms`: a table trained offline, whose
    /// touches are stamped in training steps, starts its idle clock when it starts serving.
    pub fn restamp(&mut self, now_ms: i64) {
        self.last_touch.fill(now_ms);
        self.pending.values_mut().for_each(|(_, seen)| *seen = now_ms);
    }

    /// Evicts rows and pending counts not touched for `idle_ms` before `now_ms`; returns how
    /// many rows went. Their slots are reused by later admissions.
    pub fn evict_idle(&mut self, now_ms: i64, idle_ms: i64) -> usize {
        let cutoff = now_ms - idle_ms;
        let expired: Vec<(u64, u32)> = self
            .rows
            .iter()
            .filter(|(_, &row)| self.last_touch[row as usize] < cutoff)
            .map(|(&k, &r)| (k, r))
            .collect();
        for &(key, row) in &expired {
            self.rows.remove(&key);
            self.keys[row as usize] = FREE;
            self.free.push(row);
        }
        self.pending.retain(|_, (_, seen)| *seen >= cutoff);
        expired.len()
    }

    /// Rows, pending keys and bytes held.
    pub fn memory(&self) -> MemoryUse {
        // A hashbrown entry costs its key and value plus one control byte.
        let map_bytes = self.rows.capacity() * (8 + 4 + 1) + self.pending.capacity() * (8 + 12 + 1);
        let bytes = self.weights.capacity() * 4
            + self.accumulators.capacity() * 4
            + self.last_touch.capacity() * 8
            + self.keys.capacity() * 8
            + self.free.capacity() * 4
            + map_bytes;
        MemoryUse { rows: self.rows.len(), pending: self.pending.len(), bytes }
    }
}

/// Gradients of the rows one batch touched, summed per row.
///
/// Rows are found through a dense index (`row → slot`, four bytes per table row) rather than a
/// hash map: a batch adds tens of thousands of row gradients (every history item of every
/// example), and hashing each one cost more than the arithmetic.
#[derive(Debug, Clone)]
pub struct GradientBuffer {
    dim: usize,
    /// Slot of each row, `NONE` when the row has no gradient.
    slot_of_row: Vec<u32>,
    /// Rows with a gradient, in slot order.
    rows: Vec<u32>,
    values: Vec<f32>,
}

const NONE: u32 = u32::MAX;

impl GradientBuffer {
    /// An empty buffer for rows of width `dim`.
    pub fn new(dim: usize) -> GradientBuffer {
        GradientBuffer { dim, slot_of_row: Vec::new(), rows: Vec::new(), values: Vec::new() }
    }

    /// Adds `scale · grad` to `row`'s gradient.
    pub fn add(&mut self, row: u32, grad: &[f32], scale: f32) {
        debug_assert_eq!(grad.len(), self.dim);
        let r = row as usize;
        if r >= self.slot_of_row.len() {
            self.slot_of_row.resize(r + 1, NONE);
        }
        let slot = match self.slot_of_row[r] {
            NONE => {
                let slot = self.rows.len();
                self.slot_of_row[r] = slot as u32;
                self.rows.push(row);
                self.values.resize(self.values.len() + self.dim, 0.0);
                slot
            }
            slot => slot as usize,
        };
        crate::kernels::axpy(scale, grad, &mut self.values[slot * self.dim..(slot + 1) * self.dim]);
    }

    /// `(row, summed gradient)` of every touched row.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &[f32])> {
        self.rows.iter().copied().zip(self.values.chunks_exact(self.dim.max(1)))
    }

    /// Width of a row's gradient.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of distinct rows with a gradient.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row has a gradient.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Forgets all gradients, keeping the allocations.
    pub fn clear(&mut self) {
        for &row in &self.rows {
            self.slot_of_row[row as usize] = NONE;
        }
        self.rows.clear();
        self.values.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(min_count: u32, expire_after_ms: Option<i64>) -> EmbeddingTable {
        EmbeddingTable::new(EmbeddingConfig {
            dim: 4,
            min_count,
            expire_after_ms,
            ..EmbeddingConfig::default()
        })
    }

    #[test]
    fn updates_touch_only_the_batch_rows() {
        let mut t = table(1, None);
        let rows: Vec<u32> = (0..100u64).map(|k| t.observe(k, 0)).collect();
        let before = t.weights.clone();
        let mut grads = GradientBuffer::new(4);
        grads.add(rows[3], &[1.0, 0.0, -1.0, 2.0], 1.0);
        grads.add(rows[70], &[0.5; 4], 1.0);
        t.apply(&mut grads, 1);
        assert!(grads.is_empty());
        for row in 0..t.keys.len() as u32 {
            let changed = t.row(row) != &before[row as usize * 4..row as usize * 4 + 4];
            assert_eq!(changed, row == rows[3] || row == rows[70], "row {row}");
        }
    }

    #[test]
    fn rowwise_adagrad_matches_hand_computation() {
        let mut t = table(1, None);
        let row = t.observe(7, 0);
        let w0 = t.row(row).to_vec();
        let g = [0.2f32, -0.4, 0.0, 0.4];
        let mut grads = GradientBuffer::new(4);
        // Two adds to one row are summed: 0.5·g + 0.5·g = g.
        grads.add(row, &g, 0.5);
        grads.add(row, &g, 0.5);
        t.apply(&mut grads, 0);
        // a = mean(g²) = (0.04 + 0.16 + 0 + 0.16) / 4 = 0.09; step = 0.05 / 0.3.
        let step = 0.05 / (0.09f32.sqrt() + 1e-8);
        for i in 0..4 {
            assert!((t.row(row)[i] - (w0[i] - step * g[i])).abs() < 1e-6);
        }
        assert!((t.accumulators[row as usize] - 0.09).abs() < 1e-7);
        let w1 = t.row(row).to_vec();
        grads.add(row, &g, 1.0);
        t.apply(&mut grads, 0);
        // a = 0.18: the second step is smaller by √2.
        let step2 = 0.05 / (0.18f32.sqrt() + 1e-8);
        assert!((t.row(row)[0] - (w1[0] - step2 * g[0])).abs() < 1e-6);
    }

    #[test]
    fn frequency_filter_shares_the_default_row_until_admission() {
        let mut t = table(3, None);
        assert_eq!(t.observe(42, 0), 0);
        assert_eq!(t.observe(42, 1), 0);
        assert!(!t.contains(42));
        assert_eq!(t.lookup(42), t.row(0));
        let row = t.observe(42, 2);
        assert_ne!(row, 0);
        assert!(t.contains(42));
        assert_eq!(t.memory().rows, 1);
        assert_eq!(t.memory().pending, 0);
    }

    #[test]
    fn a_restamped_table_starts_its_idle_clock_then() {
        // Trained offline: touches stamped with epoch numbers, far in the past as times.
        let mut t = table(2, None);
        t.observe(1, 0);
        t.observe(1, 1);
        t.observe(2, 1);
        let now = 1_767_225_600_000;
        t.restamp(now);
        assert_eq!(t.evict_idle(now + 10, 1000), 0, "nothing is idle yet");
        t.observe(3, now + 500);
        t.observe(3, now + 600);
        assert_eq!(t.evict_idle(now + 1200, 1000), 1, "only the row trained offline went");
        assert!(!t.contains(1) && t.contains(3));
        assert_eq!(t.memory().pending, 0, "the pending key went too");
    }

    #[test]
    fn expiry_evicts_idle_rows_and_reuses_their_slots() {
        let mut t = table(1, Some(1000));
        let old = t.observe(1, 0);
        let fresh = t.observe(2, 900);
        let idle = t.observe(3, 100);
        assert_eq!(t.evict_expired(1500), 2, "rows last touched at 0 and 100 expire");
        assert!(!t.contains(1) && t.contains(2) && !t.contains(3));
        assert_eq!(t.row_of(2), fresh);
        let reused = t.observe(4, 1600);
        assert!(reused == old || reused == idle, "a freed slot is reused, not a new one");
        assert_eq!(t.keys.len(), 4, "default row + three slots, no growth");
    }

    #[test]
    fn initialisation_is_deterministic_per_key() {
        let mut a = table(1, None);
        let mut b = table(1, None);
        a.observe(5, 0);
        a.observe(9, 0);
        b.observe(9, 0);
        b.observe(5, 0);
        assert_eq!(a.lookup(9), b.lookup(9));
        assert_ne!(a.lookup(9), a.lookup(5));
        assert!(a.lookup(9).iter().all(|w| w.abs() <= 0.05));
    }
}
