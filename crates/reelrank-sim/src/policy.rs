//! The logging policy: what the platform's existing recommender shows next.
//!
//! It mixes trending items (by Zipf popularity), items of one of the user's current interests, uploads
//! of followed creators, fresh uploads and random items; series are mostly promoted through their
//! first episode. It knows the user's current interests, as a mature recommender roughly would, so that
//! logged data holds signal, but it ignores quality, language and category tastes beyond what
//! popularity carries, so a recommender that learns from the feedback can beat it.

use rand::Rng;
use reelrank_core::Timestamp;

use crate::affinity::TopicMix;
use crate::catalog::Catalog;
use crate::rng::SimRng;
use crate::users::Viewer;

/// Cumulative shares of the sources: popular, interest, followed, fresh; the rest is random.
const POPULAR: f64 = 0.35;
const INTEREST: f64 = POPULAR + 0.35;
const FOLLOWED: f64 = INTEREST + 0.10;
const FRESH: f64 = FOLLOWED + 0.10;
/// How far back "fresh" reaches.
const FRESH_WINDOW_MS: i64 = 3 * Timestamp::DAY_MS;
/// Chance that an episode drawn from a source is replaced by its series' first episode.
const SERIES_ENTRY: f64 = 0.85;
/// Draws before giving up on finding something showable and new to the session.
const TRIES: usize = 12;

/// What the policy needs to know about the moment it serves.
pub(crate) struct Request<'a> {
    pub viewer: &'a Viewer,
    pub interests: &'a TopicMix,
    pub followed: &'a [u32],
    pub ts: i64,
    /// Items already shown in this session.
    pub shown: &'a [u32],
}

/// The next item to show, or `None` when nothing suitable turned up.
pub(crate) fn next_item(catalog: &Catalog, request: &Request, rng: &mut SimRng) -> Option<u32> {
    (0..TRIES).find_map(|_| {
        let item = candidate(catalog, request, rng)?;
        let showable =
            catalog.entries[item as usize].servable(request.ts, request.viewer.region, request.viewer.age);
        (showable && !request.shown.contains(&item)).then_some(item)
    })
}

fn candidate(catalog: &Catalog, request: &Request, rng: &mut SimRng) -> Option<u32> {
    let item = source(catalog, request, rng)?;
    Some(if rng.random::<f64>() < SERIES_ENTRY { catalog.series_start(item) } else { item })
}

fn source(catalog: &Catalog, request: &Request, rng: &mut SimRng) -> Option<u32> {
    let source = rng.random::<f64>();
    if source < POPULAR {
        catalog.popular.sample(rng).map(|i| i as u32)
    } else if source < INTEREST {
        let (members, weights) = &catalog.by_topic[usize::from(interest(request.interests, rng)?)];
        weights.sample(rng).map(|i| members[i])
    } else if source < FOLLOWED {
        let creator = *request.followed.get(rng.random_range(0..request.followed.len().max(1)))?;
        uniform(&catalog.by_creator[creator as usize], rng)
    } else if source < FRESH {
        uniform(catalog.fresh_between(request.ts - FRESH_WINDOW_MS, request.ts + 1), rng)
    } else {
        let items = catalog.entries.len() as u32;
        (items > 0).then(|| rng.random_range(0..items))
    }
}

/// One of the user's interests, drawn by weight.
fn interest(interests: &TopicMix, rng: &mut SimRng) -> Option<u8> {
    let mut x = rng.random::<f32>();
    let mut last = None;
    for (topic, weight) in interests.iter() {
        if x < weight {
            return Some(topic);
        }
        x -= weight;
        last = Some(topic);
    }
    last
}

fn uniform(items: &[u32], rng: &mut SimRng) -> Option<u32> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())])
}
