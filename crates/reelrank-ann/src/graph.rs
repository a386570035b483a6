//! An HNSW graph laid out for search, and the search loop over it.
//!
//! The graph is built by usearch (its concurrent insertion with the neighbour-selection
//! heuristic is the hard part, and well kept there) and then copied into flat arrays that the
//! search below walks. The search is ours because at a million vectors it is bound by memory
//! latency, not arithmetic: usearch's loop fetches one neighbour's vector at a time and keeps the
//! visited nodes in a hash set, so every hop waits on DRAM. Here each node's links and the
//! one-byte code of its vector (`bytes.rs`) sit in one block, nodes are numbered breadth-first
//! so that neighbours sit near each other, the codes of a node's unvisited neighbours are
//! prefetched together before any is scored, and the visited nodes are a tag per node, reused
//! across queries. The walk scores codes; the results it keeps are scored again from vectors
//! kept apart in half precision (`half.rs`), which is also what [`Graph::vector`] returns
//! (`docs/BENCHMARKS.md`, "Vector search").

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::path::Path;

use rayon::prelude::*;
use reelrank_features::kernels::prefetch;
use reelrank_features::{F16Bits, PersistError, TensorReader, TensorWriter};
use rustc_hash::FxHashMap;

use crate::bytes::{self, Scales};
use crate::half;

/// Padding of a node's neighbour list (lists are fixed-width rows).
const NONE: u32 = u32::MAX;

/// The links of one layer above the base: few nodes (each layer keeps about `1/M` of the one
/// below), so they are found through a map.
#[derive(Debug)]
struct Layer {
    width: usize,
    rows: FxHashMap<u32, u32>,
    links: Vec<u32>,
}

impl Layer {
    fn neighbours(&self, node: u32) -> &[u32] {
        match self.rows.get(&node) {
            Some(&row) => &self.links[row as usize * self.width..(row as usize + 1) * self.width],
            None => &[],
        }
    }
}

/// Nodes are numbered `0..n` (slots); the caller keeps what each slot stands for.
///
/// Each node's base-layer links and its vector's code sit side by side in one block, as in
/// hnswlib: stepping onto a node touches one place in memory (and one page) instead of two.
#[derive(Debug)]
pub(crate) struct Graph {
    dim: usize,
    len: usize,
    /// Number of base-layer links per node (usearch links up to `2M` there).
    base_width: usize,
    /// `[n × (base_width + ⌈dim / 4⌉)]`: each node's neighbour slots, padded with [`NONE`], then
    /// its vector's one-byte code, four to a word.
    blocks: Vec<u32>,
    /// How the codes were made.
    scales: Scales,
    /// `[n × dim]`: the vectors in half precision, read to score results and to return vectors.
    halves: Vec<u16>,
    /// Layers `1..`, bottom up.
    upper: Vec<Layer>,
    /// Where every search starts: a node of the top layer.
    entry: u32,
}

/// A slot with its inner product, ordered by score (then slot, for a total order).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Scored) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Scored) -> Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

/// Per-thread marks of the nodes a search has reached: a tag per node, and a new tag value per
/// search, so nothing is cleared between searches.
struct Visited {
    tags: Vec<u16>,
    current: u16,
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { tags: Vec::new(), current: 0 }) };
}

impl Visited {
    fn start(&mut self, nodes: usize) {
        if self.tags.len() < nodes {
            self.tags.resize(nodes, 0);
        }
        self.current = self.current.wrapping_add(1);
        if self.current == 0 {
            self.tags.fill(0);
            self.current = 1;
        }
    }

    /// Marks `node`; whether it was unmarked.
    fn first_visit(&mut self, node: u32) -> bool {
        let tag = &mut self.tags[node as usize];
        let first = *tag != self.current;
        *tag = self.current;
        first
    }

    fn seen(&self, node: u32) -> bool {
        self.tags[node as usize] == self.current
    }
}

/// The graph's vectors in a file, `[nodes × dim]` half floats.
const HALVES: &str = "graph.halves";

/// The same vectors as f32 (decoded from the halves), as files written before [`HALVES`] hold
/// them: still read.
const F32_VECTORS: &str = "graph.vectors";

impl Graph {
    /// A graph without nodes.
    pub(crate) fn empty(dim: usize) -> Graph {
        Graph {
            dim,
            len: 0,
            base_width: 0,
            blocks: Vec::new(),
            scales: Scales::fit(dim, &[]),
            halves: Vec::new(),
            upper: Vec::new(),
            entry: NONE,
        }
    }

    /// Copies the graph usearch built over `keys` (slot `i` is `keys[i]`, with vector
    /// `vectors[i·dim..]`), reading its links through usearch's public neighbour API.
    pub(crate) fn from_usearch(index: &usearch::Index, keys: &[u64], vectors: &[f32]) -> Graph {
        let dim = index.dimensions();
        let slot_of: FxHashMap<u64, u32> = keys.iter().enumerate().map(|(s, &k)| (k, s as u32)).collect();
        let links = |key: u64, level: usize| -> Vec<u32> {
            index.neighbors(key, level).map(|neighbour| slot_of[&neighbour]).collect()
        };
        let base_lists: Vec<Vec<u32>> = keys.par_iter().map(|&key| links(key, 0)).collect();
        let base_width = base_lists.iter().map(Vec::len).max().unwrap_or(0);
        let base: Vec<u32> = base_lists
            .iter()
            .flat_map(|list| list.iter().copied().chain(std::iter::repeat(NONE)).take(base_width))
            .collect();
        let levels: Vec<usize> = keys.par_iter().map(|&key| index.level_of_key(key)).collect();
        let top = levels.iter().copied().max().unwrap_or(0);
        let upper = (1..=top)
            .map(|level| {
                let lists: Vec<(u32, Vec<u32>)> = (0..keys.len())
                    .filter(|&slot| levels[slot] >= level)
                    .map(|slot| (slot as u32, links(keys[slot], level)))
                    .collect();
                let width = lists.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
                let mut layer =
                    Layer { width, rows: FxHashMap::default(), links: vec![NONE; lists.len() * width] };
                for (row, (slot, list)) in lists.iter().enumerate() {
                    layer.rows.insert(*slot, row as u32);
                    layer.links[row * width..row * width + list.len()].copy_from_slice(list);
                }
                layer
            })
            .collect();
        let entry = levels.iter().position(|&l| l == top).map_or(NONE, |slot| slot as u32);
        Graph::assemble(dim, base_width, &base, vectors, upper, entry)
    }

    /// Interleaves each node's links and its vector's code into its block, and keeps the
    /// vectors in half precision beside them.
    fn assemble(
        dim: usize,
        base_width: usize,
        base: &[u32],
        vectors: &[f32],
        upper: Vec<Layer>,
        entry: u32,
    ) -> Graph {
        let len = vectors.len() / dim.max(1);
        let scales = Scales::fit(dim, vectors);
        let mut blocks = Vec::with_capacity(len * (base_width + dim.div_ceil(4)));
        let mut codes = Vec::with_capacity(dim.div_ceil(4) * 4);
        for slot in 0..len {
            blocks.extend_from_slice(&base[slot * base_width..(slot + 1) * base_width]);
            codes.clear();
            codes.extend(scales.encode(&vectors[slot * dim..(slot + 1) * dim]).map(|c| c as u8));
            codes.resize(dim.div_ceil(4) * 4, 0);
            blocks.extend(
                codes.chunks_exact(4).map(|word| u32::from_ne_bytes([word[0], word[1], word[2], word[3]])),
            );
        }
        let halves = vectors.iter().map(|&x| half::encode(x)).collect();
        Graph { dim, len, base_width, blocks, scales, halves, upper, entry }
    }

    /// The same graph with its nodes renumbered in breadth-first order of the base layer from
    /// the entry, and the old slot of each new one.
    ///
    /// Builders number nodes in insertion order, which scatters a node's neighbours over the whole
    /// array: every hop of a search then lands on a new page (a TLB miss besides the cache miss).
    /// Breadth-first numbering puts a node's neighbours next to each other and near it, so hops
    /// share pages (graph reordering, Coleman et al., 2021).
    pub(crate) fn renumbered(&self) -> (Graph, Vec<u32>) {
        let n = self.len;
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let mut new_of = vec![NONE; n];
        // Roots after the entry pick up nodes no link reaches (possible after heavy pruning).
        for root in std::iter::once(self.entry).chain(0..n as u32) {
            if root == NONE || new_of[root as usize] != NONE {
                continue;
            }
            new_of[root as usize] = order.len() as u32;
            order.push(root);
            let mut next = order.len() - 1;
            while let Some(&node) = order.get(next) {
                next += 1;
                for &m in self.base_neighbours(node) {
                    if new_of[m as usize] == NONE {
                        new_of[m as usize] = order.len() as u32;
                        order.push(m);
                    }
                }
            }
        }
        let relabel = |link: u32| if link == NONE { NONE } else { new_of[link as usize] };
        let mut blocks = Vec::with_capacity(self.blocks.len());
        let mut halves = Vec::with_capacity(self.halves.len());
        for &old in &order {
            let block = self.block(old);
            blocks.extend(block[..self.base_width].iter().map(|&l| relabel(l)));
            blocks.extend_from_slice(&block[self.base_width..]);
            halves.extend_from_slice(self.halves(old));
        }
        let upper = self
            .upper
            .iter()
            .map(|layer| Layer {
                width: layer.width,
                rows: layer.rows.iter().map(|(&slot, &row)| (relabel(slot), row)).collect(),
                links: layer.links.iter().map(|&l| relabel(l)).collect(),
            })
            .collect();
        let graph =
            Graph { blocks, halves, scales: self.scales.clone(), upper, entry: relabel(self.entry), ..*self };
        (graph, order)
    }

    fn block(&self, node: u32) -> &[u32] {
        let stride = self.base_width + self.dim.div_ceil(4);
        &self.blocks[node as usize * stride..(node as usize + 1) * stride]
    }

    /// The code of `node`'s vector, read in place.
    fn codes(&self, node: u32) -> &[i8] {
        &bytemuck::cast_slice(&self.block(node)[self.base_width..])[..self.dim]
    }

    /// The inner product of the query with `node`'s code, the query `scaled` by
    /// [`Scales::scale`]: what steers the walk.
    fn coarse_score(&self, scaled: &[f32], node: u32) -> f32 {
        bytes::dot(scaled, self.codes(node))
    }

    /// The half-precision vector of `node`.
    fn halves(&self, node: u32) -> &[u16] {
        &self.halves[node as usize * self.dim..(node as usize + 1) * self.dim]
    }

    /// Width of the vectors.
    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The vector of `slot`, as stored (in half precision).
    pub(crate) fn vector(&self, slot: u32) -> Vec<f32> {
        self.halves(slot).iter().map(|&h| half::decode(h)).collect()
    }

    /// Bytes held by vectors and links.
    pub(crate) fn memory_bytes(&self) -> usize {
        let upper: usize = self.upper.iter().map(|l| l.links.len() * 4 + l.rows.len() * 16).sum();
        self.blocks.len() * 4 + self.halves.len() * 2 + upper
    }

    /// The base-layer links of `node`, without the padding.
    fn base_neighbours(&self, node: u32) -> &[u32] {
        let links = &self.block(node)[..self.base_width];
        &links[..links.iter().position(|&n| n == NONE).unwrap_or(links.len())]
    }

    /// Up to `expansion` `(score, slot)` pairs of the best slots `accept` allows, unordered.
    ///
    /// Greedy descent through the upper layers to the base layer's closest node, then HNSW's
    /// beam search there, both on the codes. Rejected nodes are still walked through (a filter
    /// costs no connectivity); the beam stops when its best unexplored node scores below the
    /// worst of `expansion` accepted results. The results are then scored from their
    /// half-precision vectors, so that the order the caller cuts at is not the codes'.
    pub(crate) fn search(
        &self,
        query: &[f32],
        expansion: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(f32, u32)> {
        if self.entry == NONE || expansion == 0 {
            return Vec::new();
        }
        let scaled = self.scales.scale(query);
        let mut current = Scored(self.coarse_score(&scaled, self.entry), self.entry);
        for layer in self.upper.iter().rev() {
            let mut moved = true;
            while moved {
                moved = false;
                for &n in layer.neighbours(current.1).iter().take_while(|&&n| n != NONE) {
                    let score = self.coarse_score(&scaled, n);
                    if score > current.0 {
                        current = Scored(score, n);
                        moved = true;
                    }
                }
            }
        }
        let mut results = VISITED.with_borrow_mut(|visited| {
            visited.start(self.len());
            self.beam(&scaled, expansion, current, accept, visited)
        });
        results.iter().for_each(|&(_, slot)| prefetch(self.halves(slot)));
        for (score, slot) in &mut results {
            *score = half::dot(query, self.halves(*slot));
        }
        results
    }

    fn beam(
        &self,
        scaled: &[f32],
        expansion: usize,
        start: Scored,
        accept: &dyn Fn(u32) -> bool,
        visited: &mut Visited,
    ) -> Vec<(f32, u32)> {
        let mut frontier = BinaryHeap::with_capacity(expansion * 4);
        let mut results: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(expansion + 1);
        visited.first_visit(start.1);
        frontier.push(start);
        if accept(start.1) {
            results.push(Reverse(start));
        }
        while let Some(closest) = frontier.pop() {
            let worst = results.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0);
            if results.len() >= expansion && closest.0 < worst {
                break;
            }
            let neighbours = self.base_neighbours(closest.1);
            for &n in neighbours {
                if !visited.seen(n) {
                    prefetch(&self.block(n)[self.base_width..]);
                }
            }
            for &n in neighbours {
                if !visited.first_visit(n) {
                    continue;
                }
                let score = self.coarse_score(scaled, n);
                let worst = results.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0);
                if results.len() < expansion || score > worst {
                    frontier.push(Scored(score, n));
                    if accept(n) {
                        results.push(Reverse(Scored(score, n)));
                        if results.len() > expansion {
                            results.pop();
                        }
                    }
                }
            }
            if let Some(next) = frontier.peek() {
                prefetch(&self.block(next.1)[..self.base_width]);
            }
        }
        results.into_iter().map(|Reverse(Scored(score, slot))| (score, slot)).collect()
    }

    /// Adds the graph's arrays to `out`: the vectors as the halves they are held in ([`HALVES`]).
    pub(crate) fn write(&self, out: &mut TensorWriter) {
        let n = self.len();
        let mut base = Vec::with_capacity(n * self.base_width);
        for slot in 0..n as u32 {
            base.extend_from_slice(&self.block(slot)[..self.base_width]);
        }
        let halves: Vec<F16Bits> = self.halves.iter().map(|&h| F16Bits(h)).collect();
        out.add(HALVES, vec![n, self.dim], &halves).add("graph.base", vec![n, self.base_width], &base).add(
            "graph.top",
            vec![2],
            &[self.entry, self.upper.len() as u32],
        );
        for (i, layer) in self.upper.iter().enumerate() {
            let mut slots = vec![0u32; layer.rows.len()];
            layer.rows.iter().for_each(|(&slot, &row)| slots[row as usize] = slot);
            out.add(&format!("graph.layer{}.slots", i + 1), vec![slots.len()], &slots).add(
                &format!("graph.layer{}.links", i + 1),
                vec![slots.len(), layer.width],
                &layer.links,
            );
        }
    }

    /// Reads arrays written by [`Graph::write`], checking that every link points at a node.
    pub(crate) fn read(arrays: &TensorReader, path: &Path) -> Result<Graph, PersistError> {
        let format = |message: String| PersistError::Format { path: path.to_owned(), message };
        let (shape, vectors) = match arrays.has(HALVES) {
            true => {
                let (shape, halves) = arrays.read::<F16Bits>(HALVES)?;
                (shape, halves.into_iter().map(|h| half::decode(h.0)).collect())
            }
            false => arrays.read::<f32>(F32_VECTORS)?,
        };
        let &[n, dim] = shape.as_slice() else {
            return Err(format(format!("graph vectors have shape {shape:?}, expected [nodes, dim]")));
        };
        let (shape, base) = arrays.read::<u32>("graph.base")?;
        let base_width = match shape.as_slice() {
            &[rows, width] if rows == n => width,
            _ => return Err(format(format!("graph links have shape {shape:?}, expected [{n}, width]"))),
        };
        let &[entry, layers] = arrays.values::<u32>("graph.top")?.as_slice() else {
            return Err(format("`graph.top` must hold the entry node and the number of layers".into()));
        };
        let layers = layers as usize;
        let mut upper = Vec::with_capacity(layers);
        for level in 1..=layers {
            let slots = arrays.values::<u32>(&format!("graph.layer{level}.slots"))?;
            let (shape, links) = arrays.read::<u32>(&format!("graph.layer{level}.links"))?;
            let width = shape.get(1).copied().unwrap_or(0);
            if shape.first() != Some(&slots.len()) || slots.iter().any(|&s| s as usize >= n) {
                return Err(format(format!("graph layer {level} does not match its nodes")));
            }
            let rows = slots.iter().enumerate().map(|(row, &slot)| (slot, row as u32)).collect();
            upper.push(Layer { width, rows, links });
        }
        let dangling = |links: &[u32]| links.iter().any(|&l| l != NONE && l as usize >= n);
        let entry_ok = if n == 0 { entry == NONE } else { (entry as usize) < n };
        if dangling(&base) || upper.iter().any(|l| dangling(&l.links)) || !entry_ok {
            return Err(format("a graph link points past the last node".into()));
        }
        if upper.last().is_some_and(|top| !top.rows.contains_key(&entry)) {
            return Err(format("the graph's entry is not on its top layer".into()));
        }
        Ok(Graph::assemble(dim, base_width, &base, &vectors, upper, entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::ClusteredVectors;

    fn built(n: usize, dim: usize) -> Graph {
        let options = usearch::IndexOptions {
            dimensions: dim,
            metric: usearch::MetricKind::IP,
            connectivity: 8,
            ..Default::default()
        };
        let index = usearch::Index::new(&options).unwrap();
        index.reserve(n).unwrap();
        let vectors = ClusteredVectors::new(dim, 20, 1).sample(n, 2);
        let keys: Vec<u64> = (0..n as u64).map(|k| k * 3 + 1).collect();
        for (&key, vector) in keys.iter().zip(vectors.chunks_exact(dim)) {
            index.add(key, vector).unwrap();
        }
        Graph::from_usearch(&index, &keys, &vectors)
    }

    #[test]
    fn the_codes_steer_the_walk_and_the_vectors_score_its_results() {
        let graph = built(4_000, 16);
        let flat: Vec<f32> = (0..4_000).flat_map(|slot| graph.vector(slot)).collect();
        for query in ClusteredVectors::new(16, 20, 1).sample(20, 3).chunks_exact(16) {
            let mut hits = graph.search(query, 40, &|_| true);
            for &(score, slot) in &hits {
                assert_eq!(
                    score,
                    half::dot(query, graph.halves(slot)),
                    "scored from the vector, not the code"
                );
            }
            hits.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut exact: Vec<(f32, u32)> = flat
                .chunks_exact(16)
                .enumerate()
                .map(|(slot, v)| (v.iter().zip(query).map(|(a, b)| a * b).sum(), slot as u32))
                .collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            let found = exact[..10].iter().filter(|e| hits[..10].iter().any(|h| h.1 == e.1)).count();
            assert!(found >= 9, "{found} of the exact top 10");
        }
    }

    /// Files written before the vectors were stored as halves hold them as f32 under
    /// [`F32_VECTORS`]; both layouts read as the same graph, whose halves are the written ones.
    #[test]
    fn files_with_half_or_f32_vectors_read_alike() {
        let graph = built(500, 8);
        let dir = tempfile::tempdir().unwrap();
        let mut current = TensorWriter::new();
        graph.write(&mut current);
        let path = dir.path().join("halves.safetensors");
        current.write(&path).unwrap();
        let arrays = TensorReader::open(&path).unwrap();
        let mut earlier = TensorWriter::new();
        let vectors: Vec<f32> = (0..graph.len() as u32).flat_map(|slot| graph.vector(slot)).collect();
        earlier.add(F32_VECTORS, vec![graph.len(), 8], &vectors);
        let top = arrays.values::<u32>("graph.top").unwrap();
        let layers =
            (1..=top[1]).flat_map(|l| [format!("graph.layer{l}.slots"), format!("graph.layer{l}.links")]);
        for name in ["graph.base".to_owned(), "graph.top".to_owned()].into_iter().chain(layers) {
            let (shape, values) = arrays.read::<u32>(&name).unwrap();
            earlier.add(&name, shape, &values);
        }
        let earlier_path = dir.path().join("f32.safetensors");
        earlier.write(&earlier_path).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < std::fs::metadata(&earlier_path).unwrap().len());
        let read = |path: &Path| Graph::read(&TensorReader::open(path).unwrap(), path).unwrap();
        let (from_halves, from_f32) = (read(&path), read(&earlier_path));
        let decoded = |g: &Graph| (0..g.len() as u32).flat_map(|slot| g.vector(slot)).collect::<Vec<_>>();
        assert_eq!(decoded(&from_halves), decoded(&graph), "the written halves (-0 read as 0)");
        assert_eq!(decoded(&from_f32), decoded(&graph));
        assert_eq!(from_halves.blocks, from_f32.blocks);
        assert_eq!(from_halves.upper.len(), graph.upper.len());
    }

    #[test]
    fn renumbering_puts_neighbours_near_and_changes_no_answer() {
        let graph = built(4_000, 16);
        let (renumbered, order) = graph.renumbered();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..4_000).collect::<Vec<u32>>(), "every node once");
        for (new, &old) in order.iter().enumerate() {
            assert_eq!(renumbered.vector(new as u32), graph.vector(old));
            let links: Vec<u32> = graph.base_neighbours(old).to_vec();
            let relinked: Vec<u32> =
                renumbered.base_neighbours(new as u32).iter().map(|&n| order[n as usize]).collect();
            assert_eq!(relinked, links);
        }
        let span = |g: &Graph| -> u64 {
            (0..g.len() as u32)
                .flat_map(|node| g.base_neighbours(node).iter().map(move |&n| u64::from(n.abs_diff(node))))
                .sum()
        };
        assert!(span(&renumbered) * 3 < span(&graph) * 2, "links got a third shorter");
        for query in ClusteredVectors::new(16, 20, 1).sample(20, 3).chunks_exact(16) {
            let sorted = |mut hits: Vec<(f32, u32)>| {
                hits.sort_by(|a, b| b.0.total_cmp(&a.0));
                hits
            };
            let before = sorted(graph.search(query, 30, &|slot| slot % 2 == 0));
            let after = sorted(renumbered.search(query, 30, &|slot| order[slot as usize] % 2 == 0));
            let after: Vec<(f32, u32)> =
                after.into_iter().map(|(s, slot)| (s, order[slot as usize])).collect();
            assert_eq!(after, before);
        }
    }
}
