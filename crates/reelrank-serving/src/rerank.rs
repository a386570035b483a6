//! Re-ranking: turns the ranked candidates into the feed. Greedy, slot by slot: within any
//! window of consecutive slots a creator, a category and a series may appear only so often;
//! among what the caps allow, maximal marginal relevance trades the value against similarity to
//! what is already chosen; and a share of slots, drawn with the request's own seed, goes to
//! exploration: to the least shown candidate still in its starting pool of impressions (the way
//! short-video platforms give every new upload a first audience, so that its own engagement can
//! then rank it), otherwise to the best fresh or long-tail candidate.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use reelrank_features::kernels::dot;
use serde::{Deserialize, Serialize};

use crate::catalog::Facets;

/// How the feed is diversified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiversityConfig {
    /// Off returns the candidates in value order.
    pub enabled: bool,
    /// Consecutive slots the caps count over.
    pub window: usize,
    /// Items of one creator within a window.
    pub max_per_creator: usize,
    /// Items of one category within a window.
    pub max_per_category: usize,
    /// Items of one series within a window.
    pub max_per_series: usize,
    /// MMR's weight on value against novelty (1 = value only).
    pub mmr_lambda: f32,
    /// Share of slots given to exploration.
    pub exploration_share: f32,
    /// Impressions an explorable item is guaranteed before it competes on its value alone:
    /// exploration slots go to the least shown item below this.
    pub starting_impressions: u32,
    /// Slots at the top of the feed for the best items like the user's latest positive (its
    /// nearest items, or the hottest of its category), when
    /// that positive is at most `follow_up_minutes` old: the next feed answers what was just
    /// enjoyed, before the models have learned from it (they may rank a new interest low against
    /// a long history).
    pub follow_up_slots: usize,
    /// How long a positive is followed up.
    pub follow_up_minutes: f64,
}

impl Default for DiversityConfig {
    fn default() -> DiversityConfig {
        DiversityConfig {
            enabled: true,
            window: 6,
            max_per_creator: 2,
            max_per_category: 5,
            max_per_series: 1,
            mmr_lambda: 0.9,
            exploration_share: 0.05,
            starting_impressions: 200,
            follow_up_slots: 2,
            follow_up_minutes: 30.0,
        }
    }
}

/// A ranked candidate as re-ranking sees it.
#[derive(Debug, Clone)]
pub struct Ranked<'a> {
    /// Its value.
    pub score: f32,
    /// Its unit vector, when the index has one.
    pub vector: Option<&'a [f32]>,
    /// Its creator, category and series.
    pub facets: Facets,
    /// Whether an exploration slot may take it (fresh or long-tail).
    pub explorable: bool,
    /// Whether it is newly published: among equally shown items of the starting pool, the new
    /// ones are explored first (a new upload has no other way in; a long-tail item was in the
    /// catalog all along).
    pub fresh: bool,
    /// How often it has been shown, to anyone.
    pub impressions: u32,
    /// Whether it is like the positive the user has just made (see
    /// [`DiversityConfig::follow_up_slots`]).
    pub follow_up: bool,
}

/// One filled slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Position of the chosen candidate in the input.
    pub candidate: usize,
    /// Whether an exploration slot chose it.
    pub explored: bool,
}

/// Up to `n` slots filled from `ranked`; `seed` fixes the exploration slots.
pub fn select(ranked: &[Ranked<'_>], n: usize, config: &DiversityConfig, seed: u64) -> Vec<Slot> {
    let mut order: Vec<usize> = (0..ranked.len()).collect();
    order.sort_by(|&a, &b| ranked[b].score.total_cmp(&ranked[a].score).then(a.cmp(&b)));
    if !config.enabled {
        return order.into_iter().take(n).map(|candidate| Slot { candidate, explored: false }).collect();
    }
    let (low, high) = order.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &i| {
        (lo.min(ranked[i].score), hi.max(ranked[i].score))
    });
    let spread = (high - low).max(f32::EPSILON);
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut similarity = vec![0.0f32; ranked.len()];
    let mut taken = vec![false; ranked.len()];
    let mut slots: Vec<Slot> = Vec::with_capacity(n);
    let mut followed_up = 0;
    // Which candidates the caps allow at this slot, worked out once per slot: the slot's choices
    // below ask it of every candidate up to four times.
    let mut open = vec![false; ranked.len()];
    while slots.len() < n.min(ranked.len()) {
        let explore = rng.random::<f32>() < config.exploration_share;
        let recent = &slots[slots.len().saturating_sub(config.window.saturating_sub(1))..];
        for (i, open) in open.iter_mut().enumerate() {
            *open = !taken[i] && within_caps(ranked, recent, i, config);
        }
        let allowed = |i: usize| open[i];
        let mmr = |i: usize| {
            config.mmr_lambda * (ranked[i].score - low) / spread - (1.0 - config.mmr_lambda) * similarity[i]
        };
        // The highest MMR, the lowest position among equals; each candidate's MMR computed once.
        let best = |eligible: &dyn Fn(usize) -> bool| {
            let mut best: Option<(f32, usize)> = None;
            for &i in order.iter().filter(|&&i| eligible(i)) {
                let value = mmr(i);
                if best.is_none_or(|(top, at)| value.total_cmp(&top).then(at.cmp(&i)).is_gt()) {
                    best = Some((value, i));
                }
            }
            best.map(|(_, i)| i)
        };
        let explorable = |i: usize| allowed(i) && ranked[i].explorable;
        let starting = |i: usize| explorable(i) && ranked[i].impressions < config.starting_impressions;
        // The least shown first, then the new, and among equals the most valuable (`order` is by
        // value).
        let least_shown = || {
            order
                .iter()
                .copied()
                .filter(|&i| starting(i))
                .min_by_key(|&i| (ranked[i].impressions, !ranked[i].fresh))
        };
        let explored = if explore { least_shown().or_else(|| best(&explorable)) } else { None };
        let follow_up = || match followed_up < config.follow_up_slots {
            true => best(&|i| allowed(i) && ranked[i].follow_up),
            false => None,
        };
        let Some(chosen) =
            explored.or_else(follow_up).or_else(|| best(&allowed)).or_else(|| best(&|i| !taken[i]))
        else {
            break;
        };
        followed_up += usize::from(ranked[chosen].follow_up);
        taken[chosen] = true;
        slots.push(Slot { candidate: chosen, explored: explored.is_some() });
        if let Some(v) = ranked[chosen].vector {
            for (i, other) in ranked.iter().enumerate() {
                if let (Some(u), false) = (other.vector, taken[i]) {
                    similarity[i] = similarity[i].max(dot(u, v));
                }
            }
        }
    }
    slots
}

/// Whether adding candidate `i` after `recent` keeps every cap.
fn within_caps(ranked: &[Ranked<'_>], recent: &[Slot], i: usize, config: &DiversityConfig) -> bool {
    let c = ranked[i].facets;
    // One pass over the window (a few slots), for every candidate of every slot.
    let (mut category, mut creator, mut series) = (0, 0, 0);
    for slot in recent {
        let o = ranked[slot.candidate].facets;
        category += usize::from(o.category == c.category);
        creator += usize::from(o.creator == c.creator);
        series += usize::from(o.series == c.series);
    }
    category < config.max_per_category
        && (c.creator.is_none() || creator < config.max_per_creator)
        && (c.series.is_none() || series < config.max_per_series)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked<'a>(score: f32, creator: u32, category: u32) -> Ranked<'a> {
        let facets = Facets { creator: Some(creator), category, series: None };
        Ranked {
            score,
            vector: None,
            facets,
            explorable: false,
            fresh: false,
            impressions: 1000,
            follow_up: false,
        }
    }

    const DRAMA: u32 = 0;
    const MOVIE: u32 = 1;

    #[test]
    fn caps_spread_a_creator_and_a_category_over_the_window() {
        let candidates = vec![
            ranked(0.9, 0, DRAMA),
            ranked(0.8, 0, DRAMA),
            ranked(0.7, 1, DRAMA),
            ranked(0.6, 2, DRAMA),
            ranked(0.5, 3, DRAMA),
            ranked(0.4, 4, MOVIE),
        ];
        let config = DiversityConfig {
            window: 4,
            max_per_creator: 1,
            max_per_category: 3,
            exploration_share: 0.0,
            ..Default::default()
        };
        let order: Vec<usize> = select(&candidates, 6, &config, 1).iter().map(|s| s.candidate).collect();
        assert_eq!(order, [0, 2, 3, 5, 1, 4]);
        let off = DiversityConfig { enabled: false, ..config };
        let plain: Vec<usize> = select(&candidates, 3, &off, 1).iter().map(|s| s.candidate).collect();
        assert_eq!(plain, [0, 1, 2]);
    }

    #[test]
    fn mmr_passes_over_a_near_duplicate() {
        let (x, y) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        let mut candidates = vec![ranked(1.0, 0, 0), ranked(0.95, 1, 1), ranked(0.7, 2, 2)];
        candidates[0].vector = Some(&x);
        candidates[1].vector = Some(&x);
        candidates[2].vector = Some(&y);
        let config = DiversityConfig { mmr_lambda: 0.5, exploration_share: 0.0, ..Default::default() };
        let order: Vec<usize> = select(&candidates, 3, &config, 1).iter().map(|s| s.candidate).collect();
        assert_eq!(order, [0, 2, 1]);
    }

    #[test]
    fn items_like_the_latest_positive_take_the_first_slots_the_caps_allow() {
        let mut candidates: Vec<Ranked<'_>> =
            (0..10).map(|i| ranked(1.0 - i as f32 / 100.0, i, i % 3)).collect();
        for i in [5, 6, 8] {
            candidates[i].follow_up = true;
            candidates[i].facets.category = 7;
        }
        candidates[6].facets.creator = Some(5);
        let config = DiversityConfig { exploration_share: 0.0, max_per_creator: 1, ..Default::default() };
        let order: Vec<usize> = select(&candidates, 5, &config, 1).iter().map(|s| s.candidate).collect();
        assert_eq!(order, [5, 8, 0, 1, 2], "6 shares 5's creator; two follow-up slots");
        let none = DiversityConfig { follow_up_slots: 0, ..config };
        assert_eq!(select(&candidates, 1, &none, 1)[0].candidate, 0);
    }

    #[test]
    fn exploration_slots_are_reproducible_per_seed_and_take_explorable_items() {
        let mut candidates: Vec<Ranked<'_>> =
            (0..40).map(|i| ranked(1.0 - i as f32 / 100.0, 0, i % 2)).collect();
        for (i, c) in candidates.iter_mut().enumerate() {
            c.facets.creator = None;
            c.explorable = i >= 30;
        }
        let config = DiversityConfig { exploration_share: 0.5, max_per_category: 10, ..Default::default() };
        let first = select(&candidates, 10, &config, 7);
        assert_eq!(first, select(&candidates, 10, &config, 7));
        let explored: Vec<&Slot> = first.iter().filter(|s| s.explored).collect();
        assert!(!explored.is_empty() && explored.iter().all(|s| s.candidate >= 30));
    }

    #[test]
    fn exploration_serves_the_least_shown_item_of_its_starting_pool_first() {
        let mut candidates: Vec<Ranked<'_>> =
            (0..20).map(|i| ranked(1.0 - i as f32 / 100.0, i, i % 5)).collect();
        for (i, c) in candidates.iter_mut().enumerate() {
            c.explorable = i >= 10;
        }
        // Two new items, one shown a few times already, and a long-tail item never shown; the
        // other long-tail items are past their pool.
        (candidates[18].impressions, candidates[19].impressions, candidates[17].impressions) = (3, 0, 0);
        (candidates[18].fresh, candidates[19].fresh) = (true, true);
        let config = DiversityConfig { exploration_share: 1.0, ..Default::default() };
        let slots = select(&candidates, 4, &config, 7);
        let chosen: Vec<usize> = slots.iter().map(|s| s.candidate).collect();
        assert_eq!(
            chosen,
            [19, 17, 18, 10],
            "the new before the long tail when equally shown, then the best explorable"
        );
        assert!(slots.iter().all(|s| s.explored));
    }
}
