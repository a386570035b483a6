//! The pipeline a feed request runs: candidate sources → hydrate → filter → score → re-rank →
//! select. Pure over its inputs (catalog, activity, models): the caller applies the side
//! effects (the served set, the impression log), so the same request on the same state always
//! gives the same feed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use reelrank_core::{EventContext, Timestamp, User};
use reelrank_features::{describe_engagement, feature_key};
use reelrank_models::Value;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use crate::activity::{Activity, UserActivity};
use crate::catalog::{Catalog, ItemIndex};
use crate::explain::reasons;
use crate::filters::{Filter, FilterConfig, FilterInput};
use crate::rank::Ranker;
use crate::rerank::{select, DiversityConfig, Ranked};
use crate::retrieval::Retrieval;
use crate::sources::{gather, Candidate, Source, SourceConfig, SourceInput, Sources};

/// Every stage's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// How many candidates each source proposes.
    pub sources: SourceConfig,
    /// What the filters allow.
    pub filters: FilterConfig,
    /// Caps, MMR and exploration.
    pub diversity: DiversityConfig,
    /// Minor mode.
    pub minors: MinorConfig,
}

/// Minor mode, for users marked minors or younger than 18 by birth year: besides age ratings
/// capped below 18 (the age-rating filter), a daily watch-time cap after which their feed is
/// empty until the next day (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinorConfig {
    /// Minutes a minor may watch a day before their feed stops (0: no cap).
    pub daily_watch_minutes: f64,
}

impl Default for MinorConfig {
    fn default() -> MinorConfig {
        MinorConfig { daily_watch_minutes: 60.0 }
    }
}

/// The trained models a pipeline serves, swapped as one (shared between experiment variants).
#[derive(Default, Clone)]
pub struct Models {
    /// Names the models in responses (`model_version`).
    pub version: String,
    /// The two-tower model and its index.
    pub retrieval: Option<Arc<Retrieval>>,
    /// The Wide&Deep value model.
    pub ranker: Option<Arc<Ranker>>,
}

/// What the pipeline reads of behaviour: the asking user's own (held in process or fetched from
/// the state replicas share) and everyone's (item heat and impressions).
#[derive(Debug, Clone, Copy)]
pub struct Behaviour<'a> {
    /// The asking user's activity.
    pub user: &'a UserActivity,
    /// Every user's, as far as items are concerned.
    pub everyone: &'a Activity,
}

impl<'a> Behaviour<'a> {
    /// `user_id`'s behaviour as `activity` holds it.
    pub fn of(activity: &'a Activity, user_id: &str) -> Behaviour<'a> {
        Behaviour { user: activity.user(user_id), everyone: activity }
    }
}

/// One feed request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Seeds the exploration slots, so a request can be replayed.
    pub request_id: &'a str,
    /// Who asks.
    pub user_id: &'a str,
    /// Their record, when there is one.
    pub user: Option<&'a User>,
    /// How many items.
    pub n: usize,
    /// Item ids not to return.
    pub exclude: &'a [String],
    /// Where the feed is shown.
    pub context: Option<&'a EventContext>,
    /// When.
    pub now: Timestamp,
}

impl<'a> Request<'a> {
    /// Whether the user lets the feed be personalised (users without a record do).
    pub fn personalised(&self) -> bool {
        self.user.is_none_or(User::personalized)
    }

    /// The user's activity as their feed may use it: without what their controls hide.
    fn activity(&self, of_user: &'a UserActivity, catalog: &Catalog) -> Cow<'a, UserActivity> {
        match self
            .user
            .filter(|u| !u.controls.hidden_tags.is_empty() || !u.controls.blocked_creators.is_empty())
        {
            Some(user) => Cow::Owned(of_user.without_hidden(user, catalog)),
            None => Cow::Borrowed(of_user),
        }
    }

    /// Whether minor mode stops the feed: the user is a minor who has watched their daily cap.
    fn watch_capped(&self, user_activity: &UserActivity, minors: &MinorConfig) -> bool {
        minors.daily_watch_minutes > 0.0
            && self.user.is_some_and(|u| u.is_minor(self.now))
            && user_activity.watched_on(self.now) >= minors.daily_watch_minutes * 60_000.0
    }

    fn sources(
        &self,
        catalog: &'a Catalog,
        everyone: &'a Activity,
        user_activity: &'a UserActivity,
        models: &'a Models,
    ) -> SourceInput<'a> {
        SourceInput {
            catalog,
            activity: user_activity,
            trending: everyone.trending(),
            retrieval: models.retrieval.as_deref(),
            user_id: self.user_id,
            user: self.user,
            context: self.context,
            now: self.now,
        }
    }

    fn filter_input(&self, activity: &'a UserActivity, exclude: &'a FxHashSet<ItemIndex>) -> FilterInput<'a> {
        FilterInput { user_id: self.user_id, user: self.user, activity, exclude, now: self.now }
    }
}

/// One returned item.
#[derive(Debug, Clone)]
pub struct Recommended {
    /// Its position in the catalog.
    pub index: ItemIndex,
    /// What it is ranked by: its value, or its heat when the feed is not personalised.
    pub score: f32,
    /// The most specific source that proposed it.
    pub source: Source,
    /// Every source that proposed it.
    pub proposed_by: Sources,
    /// Why, in words for the user.
    pub reasons: Vec<String>,
    /// The value model's head probabilities and weights (for operators), when it ranked the item.
    pub value: Option<Value>,
    /// Whether an exploration slot chose it.
    pub explored: bool,
}

/// A feed.
#[derive(Debug, Clone)]
pub struct Recommendation {
    /// The items, in feed order.
    pub items: Vec<Recommended>,
    /// Whether the feed was personalised (the user may have turned it off).
    pub personalised: bool,
    /// Candidates each source proposed.
    pub proposed: BTreeMap<Source, usize>,
    /// Candidates each filter removed.
    pub filtered: BTreeMap<Filter, usize>,
    /// Whether minor mode's daily watch cap left the feed empty.
    pub watch_capped: bool,
}

/// Runs the pipeline for `request`.
pub fn recommend(
    catalog: &Catalog,
    behaviour: Behaviour<'_>,
    models: &Models,
    config: &PipelineConfig,
    request: &Request<'_>,
) -> Recommendation {
    let user_activity = &*request.activity(behaviour.user, catalog);
    let personalised = request.personalised();
    let (mut proposed, mut filtered) = (BTreeMap::new(), BTreeMap::new());
    if request.watch_capped(user_activity, &config.minors) {
        return Recommendation { items: Vec::new(), personalised, proposed, filtered, watch_capped: true };
    }
    let sources = request.sources(catalog, behaviour.everyone, user_activity, models);
    let exclude: FxHashSet<ItemIndex> = request.exclude.iter().filter_map(|id| catalog.index(id)).collect();
    let input = request.filter_input(user_activity, &exclude);
    let mut candidates = Vec::new();
    // A user who has seen most of what the sources propose gets a second, wider round rather than
    // a short feed.
    for widen in [1, WIDER_ROUND] {
        proposed.clear();
        filtered.clear();
        candidates.clear();
        for (candidate, rejected) in
            propose(catalog, &sources, &input, &config.sources.widened(widen), &config.filters, personalised)
        {
            *proposed.entry(candidate.source).or_default() += 1;
            match rejected {
                Some(filter) => *filtered.entry(filter).or_default() += 1,
                None => candidates.push(candidate),
            }
        }
        if candidates.len() >= request.n {
            break;
        }
    }

    let trending = behaviour.everyone.trending();
    let heat = |i: ItemIndex| trending.heat(i, request.now);
    let indices: Vec<ItemIndex> = candidates.iter().map(|c| c.index).collect();
    let values = match (&models.ranker, personalised) {
        (Some(ranker), true) => Some(ranker.values(
            catalog,
            request.user_id,
            request.user,
            request.context,
            request.now,
            &indices,
        )),
        _ => None,
    };
    let scores: Vec<f32> = candidates
        .iter()
        .enumerate()
        .map(|(at, c)| {
            let item = catalog.item(c.index);
            // Each `not_interested` on a creator's items halves the creator's other items.
            let disliked = item.creator_id.as_ref().and_then(|c| user_activity.disliked_creators.get(c));
            let demotion = 0.5f32.powi(disliked.map_or(0, |&n| n.min(30) as i32));
            let score = match &values {
                Some(values) => values.scores[at],
                None => heat(c.index).ln_1p() as f32,
            };
            if score >= 0.0 {
                score * demotion
            } else {
                score / demotion
            }
        })
        .collect();

    let vectors: Vec<Option<Vec<f32>>> =
        indices.iter().map(|&i| models.retrieval.as_ref().and_then(|r| r.vector(catalog.key(i)))).collect();
    let follow_up_ms = (config.diversity.follow_up_minutes * 60_000.0) as i64;
    let just_liked = user_activity
        .positives
        .last()
        .map(|&(positive, _)| positive)
        .filter(|_| personalised && request.now.millis() - user_activity.positive_ms <= follow_up_ms);
    let ranked: Vec<Ranked<'_>> = candidates
        .iter()
        .zip(&scores)
        .zip(&vectors)
        .map(|((c, &score), vector)| {
            let fresh = c.proposed_by.contains(Source::Fresh);
            Ranked {
                score,
                vector: vector.as_deref(),
                facets: catalog.facets(c.index),
                explorable: fresh || heat(c.index) < LONG_TAIL_HEAT,
                fresh,
                impressions: behaviour.everyone.impressions(c.index),
                follow_up: just_liked.is_some_and(|positive| {
                    c.because == Some(positive)
                        || c.trending_in.as_ref() == Some(&catalog.item(positive).category)
                }),
            }
        })
        .collect();
    let seed = feature_key("request", request.request_id);
    let items = select(&ranked, request.n, &config.diversity, seed)
        .into_iter()
        .map(|slot| {
            let candidate = &candidates[slot.candidate];
            Recommended {
                index: candidate.index,
                score: scores[slot.candidate],
                source: candidate.source,
                proposed_by: candidate.proposed_by,
                reasons: reasons(catalog, user_activity, candidate, slot.explored),
                value: values.as_ref().map(|v| v.value(slot.candidate)),
                explored: slot.explored,
            }
        })
        .collect();
    Recommendation { items, personalised, proposed, filtered, watch_capped: false }
}

/// What the sources propose for `request` (the first round of [`recommend`]), each candidate
/// with the first filter that removes it (`None`: it goes on to ranking). For operators asking
/// what a source retrieves for a user, before ranking and re-ranking pick a few of them.
pub fn candidates(
    catalog: &Catalog,
    behaviour: Behaviour<'_>,
    models: &Models,
    config: &PipelineConfig,
    request: &Request<'_>,
) -> Vec<(Candidate, Option<Filter>)> {
    let exclude: FxHashSet<ItemIndex> = request.exclude.iter().filter_map(|id| catalog.index(id)).collect();
    let user_activity = &*request.activity(behaviour.user, catalog);
    let input = request.filter_input(user_activity, &exclude);
    let sources = request.sources(catalog, behaviour.everyone, user_activity, models);
    propose(catalog, &sources, &input, &config.sources, &config.filters, request.personalised())
}

/// Every candidate of `sources`, with the first filter that removes it.
fn propose(
    catalog: &Catalog,
    sources: &SourceInput<'_>,
    input: &FilterInput<'_>,
    proposing: &SourceConfig,
    filters: &FilterConfig,
    personalised: bool,
) -> Vec<(Candidate, Option<Filter>)> {
    gather(sources, proposing, personalised)
        .into_iter()
        .map(|c| {
            let rejected = Filter::first_rejecting(catalog.item(c.index), c.index, input, filters);
            (c, rejected)
        })
        .collect()
}

/// How much more each source proposes in the second round of a user who has seen most of the
/// first.
const WIDER_ROUND: usize = 4;

/// Heat (decayed positives) below which an item counts as long-tail for exploration.
const LONG_TAIL_HEAT: f64 = 1.0;

/// Why an item would or would not be in a user's feed.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The source that proposes it for this request, if any does.
    pub source: Option<Source>,
    /// Every filter that removes it.
    pub filtered_by: Vec<Filter>,
    /// Why it would be shown, in words for the user (empty when no source proposes it).
    pub reasons: Vec<String>,
    /// The value model's verdict (for operators), when a ranker is loaded and the feed is
    /// personalised.
    pub value: Option<Value>,
    /// The item's engagement as the ranking features read it now (see
    /// [`reelrank_features::describe_engagement`]), when a ranker is loaded.
    pub engagement: Option<Vec<(&'static str, f32)>>,
}

/// Explains the item at `index` for `request` (whose `n` and `exclude` are ignored).
pub fn explain(
    catalog: &Catalog,
    behaviour: Behaviour<'_>,
    models: &Models,
    config: &PipelineConfig,
    request: &Request<'_>,
    index: ItemIndex,
) -> Explanation {
    let user_activity = &*request.activity(behaviour.user, catalog);
    let personalised = request.personalised();
    let sources = request.sources(catalog, behaviour.everyone, user_activity, models);
    let candidate = gather(&sources, &config.sources, personalised).into_iter().find(|c| c.index == index);
    let exclude = FxHashSet::default();
    let input = request.filter_input(user_activity, &exclude);
    let item = catalog.item(index);
    let filtered_by =
        Filter::ALL.into_iter().filter(|f| f.rejects(item, index, &input, &config.filters)).collect();
    let value = match (&models.ranker, personalised) {
        (Some(ranker), true) => ranker
            .values(catalog, request.user_id, request.user, request.context, request.now, &[index])
            .value(0)
            .into(),
        _ => None,
    };
    Explanation {
        source: candidate.as_ref().map(|c| c.source),
        filtered_by,
        reasons: candidate.map(|c| reasons(catalog, user_activity, &c, false)).unwrap_or_default(),
        value,
        engagement: models
            .ranker
            .as_ref()
            .map(|ranker| describe_engagement(&ranker.item_engagement(&item.item_id, request.now))),
    }
}
