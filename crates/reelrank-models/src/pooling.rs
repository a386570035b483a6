//! Weighted-mean pooling of feature bags through an embedding table: the input layer of the
//! two-tower and Wide&Deep models, and its backward pass onto the table's rows.

use reelrank_features::kernels::axpy;
use reelrank_features::{Bag, EmbeddingTable, GradientBuffer};

/// A batch's pooled inputs, with what backward needs.
#[derive(Debug, Default)]
pub(crate) struct Pooled {
    /// The inputs, example after example.
    pub x: Vec<f32>,
    /// (offset in `x`, row, normalised weight) of every pooled key.
    trace: Vec<(usize, u32, f32)>,
}

impl Pooled {
    /// Appends one example's slots (each the weighted mean of its keys' rows; an empty bag, a
    /// feature the record lacks, pools to zeros), admitting the keys to the table on the way (its
    /// frequency filter). With `drop_id` the first slot reads the default row instead.
    pub fn push<'a>(
        &mut self,
        table: &mut EmbeddingTable,
        slots: impl IntoIterator<Item = &'a Bag>,
        drop_id: bool,
        now: i64,
    ) {
        let d = table.dim();
        for (slot, bag) in slots.into_iter().enumerate() {
            let total: f32 = bag.iter().map(|(_, w)| w).sum::<f32>().max(f32::MIN_POSITIVE);
            let start = self.x.len();
            self.x.resize(start + d, 0.0);
            for &(key, weight) in bag {
                let row = if slot == 0 && drop_id { 0 } else { table.observe(key, now) };
                let w = weight / total;
                axpy(w, table.row(row), &mut self.x[start..]);
                self.trace.push((start, row, w));
            }
        }
    }

    /// Adds every pooled key's share of `dx` (the gradient of `x`) to its row's gradient.
    pub fn scatter(&self, dx: &[f32], grads: &mut GradientBuffer) {
        let d = grads.dim();
        for &(start, row, weight) in &self.trace {
            grads.add(row, &dx[start..start + d], weight);
        }
    }
}

/// Appends the pooled slots of one example to `x` without touching the table (serving): unknown
/// keys read the default row.
pub(crate) fn pool(table: &EmbeddingTable, slots: &[&[(u64, f32)]], x: &mut Vec<f32>) {
    let d = table.dim();
    for bag in slots {
        let total: f32 = bag.iter().map(|(_, w)| w).sum::<f32>().max(f32::MIN_POSITIVE);
        let start = x.len();
        x.resize(start + d, 0.0);
        for &(key, weight) in bag.iter() {
            axpy(weight / total, table.lookup(key), &mut x[start..]);
        }
    }
}
