//! The pipeline on a simulated platform with models trained on its log: what must never be
//! served is never served, refreshes do not repeat, feedback and opt-outs act on the next request.

use std::collections::HashSet;
use std::sync::OnceLock;

use reelrank_ann::IndexConfig;
use reelrank_core::{Event, EventKind, Item, ModerationStatus, Timestamp, User};
use reelrank_eval::{tower_inputs, ImpressionConfig, ImpressionSet, Rating, RetrievalTask, Split};
use reelrank_features::{item_id_key, join_impressions, PositiveRule, RankingFeatures, UserSchema, ACTIONS};
use reelrank_models::{TwoTower, TwoTowerConfig, ValueWeights, WideDeep, WideDeepConfig};
use reelrank_serving::{
    recommend, Activity, Behaviour, Catalog, Filter, ItemIndex, Models, OnlinePositive, PipelineConfig,
    Ranker, RankingLearner, Request, Retrieval, Source, TowerLearner, UserActivity, WaitingConfig,
};
use reelrank_sim::{SimConfig, Simulation};

/// A simulated platform, its catalog with some items that must never be served, and models
/// trained on its log.
struct Platform {
    catalog: Catalog,
    users: Vec<User>,
    activity: Activity,
    models: Models,
    /// Items that no request may return, whoever asks.
    forbidden: HashSet<String>,
    now: Timestamp,
    /// What builds another ranker: the ranking model, its features and the log.
    ranking: (WideDeep, RankingFeatures, Vec<Event>),
}

fn platform() -> &'static Platform {
    static PLATFORM: OnceLock<Platform> = OnceLock::new();
    PLATFORM.get_or_init(|| {
        let sim = Simulation::new(SimConfig { users: 200, items: 2_000, days: 3, ..SimConfig::default() });
        let events = sim.all_events();
        let now = Timestamp(sim.config().start.millis() + 3 * Timestamp::DAY_MS);
        let mut items: Vec<Item> = sim.items().to_vec();
        let mut forbidden = HashSet::new();
        // Every 10th item breaks one rule that applies to every user.
        for (n, item) in items.iter_mut().enumerate().filter(|(n, _)| n % 10 == 3) {
            match (n / 10) % 4 {
                0 => item.status = Some(ModerationStatus::Removed),
                1 => item.flags.push("rumor".into()),
                2 => item.available_until = Some(Timestamp(now.millis() - 1)),
                _ => item.available_from = Some(Timestamp(now.millis() + Timestamp::DAY_MS)),
            }
            forbidden.insert(item.item_id.clone());
        }
        let users = sim.users().to_vec();

        let rule = PositiveRule::default();
        let durations: std::collections::HashMap<&str, Option<f64>> =
            items.iter().map(|i| (i.item_id.as_str(), i.duration_s)).collect();
        let positives: Vec<Rating> = events
            .iter()
            .filter(|e| durations.get(e.item_id.as_str()).is_some_and(|&d| rule.is_positive(e, d)))
            .map(Rating::from_positive_event)
            .collect();
        let split = Split { train: positives, test: Vec::new(), retrieval_test: Vec::new() };
        let task = RetrievalTask::new(&split);
        let inputs = tower_inputs(&task.data, &items, &users, now);
        let config = TwoTowerConfig { max_epochs: 2, ..TwoTowerConfig::default() };
        let two_tower = TwoTower::fit(&inputs, &task.data.positives, &config, |_, _, _| true);
        let retrieval =
            Retrieval::build(two_tower, UserSchema::from_users(&users), &items, &IndexConfig::default(), now)
                .expect("index");

        let set =
            ImpressionSet::new(join_impressions(&events), &items, &users, now, &ImpressionConfig::default());
        let config = WideDeepConfig { max_epochs: 1, ..WideDeepConfig::default() };
        let wide_deep = WideDeep::fit(&set.examples, &set.schema, &config, |_, _, _| true);

        let catalog = Catalog::new(items);
        let ranker =
            Ranker::new(wide_deep.clone(), set.features.clone(), ValueWeights::default(), &catalog, &events);
        let mut activity = Activity::new(catalog.len(), 72.0);
        for event in &events {
            activity.record(&catalog, event);
        }
        activity.refresh_trending(&catalog);
        let models = Models {
            version: "test".into(),
            retrieval: Some(std::sync::Arc::new(retrieval)),
            ranker: Some(std::sync::Arc::new(ranker)),
        };
        Platform {
            catalog,
            users,
            activity,
            models,
            forbidden,
            now,
            ranking: (wide_deep, set.features, events),
        }
    })
}

fn request<'a>(platform: &'a Platform, user: &'a User, request_id: &'a str, n: usize) -> Request<'a> {
    Request {
        request_id,
        user_id: &user.user_id,
        user: Some(user),
        n,
        exclude: &[],
        context: None,
        now: platform.now,
    }
}

fn ids(platform: &Platform, feed: &reelrank_serving::Recommendation) -> Vec<String> {
    feed.items.iter().map(|r| platform.catalog.item(r.index).item_id.clone()).collect()
}

#[test]
fn filtered_items_never_appear_and_every_item_is_explained() {
    let platform = platform();
    let config = PipelineConfig::default();
    let (mut sources, mut removed) = (HashSet::new(), 0);
    for (n, user) in platform.users.iter().enumerate().take(60) {
        let request_id = format!("r{n}");
        let feed = recommend(
            &platform.catalog,
            Behaviour::of(&platform.activity, &user.user_id),
            &platform.models,
            &config,
            &request(platform, user, &request_id, 20),
        );
        assert_eq!(feed.items.len(), 20, "a full feed for {}", user.user_id);
        for (id, item) in ids(platform, &feed).iter().zip(&feed.items) {
            assert!(!platform.forbidden.contains(id), "{id} served to {}", user.user_id);
            assert!(!platform.activity.user(&user.user_id).seen.contains(&item.index), "{id} seen before");
            assert!(!item.reasons.is_empty() && item.value.is_some(), "{id} unexplained");
            sources.insert(item.source);
        }
        for filter in [Filter::Moderation, Filter::Licence] {
            removed += feed.filtered.get(&filter).copied().unwrap_or(0);
        }
    }
    assert!(removed > 0, "no forbidden item was ever proposed: the test proves nothing");
    assert!(sources.contains(&Source::TwoTower) && sources.len() >= 3, "sources used: {sources:?}");
}

#[test]
fn fifty_refreshes_never_repeat_an_item() {
    let platform = platform();
    let mut activity = platform.activity.clone();
    let user = &platform.users[7];
    let mut shown = HashSet::new();
    for refresh in 0..50 {
        let request_id = format!("refresh{refresh}");
        let feed = recommend(
            &platform.catalog,
            Behaviour::of(&activity, &user.user_id),
            &platform.models,
            &PipelineConfig::default(),
            &request(platform, user, &request_id, 10),
        );
        assert!(!feed.items.is_empty(), "refresh {refresh} is empty");
        for item in &feed.items {
            assert!(
                shown.insert(item.index),
                "refresh {refresh} repeated {}",
                platform.catalog.item(item.index).item_id
            );
        }
        let served: Vec<_> = feed.items.iter().map(|r| r.index).collect();
        activity.served(&user.user_id, &served, platform.now);
    }
}

#[test]
fn not_interested_removes_the_item_and_lowers_its_creator() {
    let platform = platform();
    let mut activity = platform.activity.clone();
    let user = &platform.users[11];
    let config = PipelineConfig::default();
    let before = recommend(
        &platform.catalog,
        Behaviour::of(&activity, &user.user_id),
        &platform.models,
        &config,
        &request(platform, user, "same", 200),
    );
    let rejected = before
        .items
        .iter()
        .find(|r| {
            let creator = platform.catalog.item(r.index).creator_id.as_deref();
            before
                .items
                .iter()
                .filter(|o| platform.catalog.item(o.index).creator_id.as_deref() == creator)
                .count()
                > 1
        })
        .expect("a creator with two items in the feed");
    let item = platform.catalog.item(rejected.index);
    let event = Event::new(&user.user_id, &item.item_id, EventKind::NotInterested, platform.now);
    activity.record(&platform.catalog, &event);
    let after = recommend(
        &platform.catalog,
        Behaviour::of(&activity, &user.user_id),
        &platform.models,
        &config,
        &request(platform, user, "same", 200),
    );
    assert!(after.items.iter().all(|r| r.index != rejected.index), "the item came back");
    let creator = item.creator_id.as_deref();
    let mut compared = 0;
    for old in before.items.iter().filter(|r| {
        r.index != rejected.index && platform.catalog.item(r.index).creator_id.as_deref() == creator
    }) {
        if let Some(new) = after.items.iter().find(|r| r.index == old.index) {
            assert!(new.score < old.score || old.score <= 0.0, "the creator's item kept its score");
            compared += 1;
        }
    }
    assert!(compared > 0, "no other item of the creator to compare");
}

#[test]
fn personalisation_off_takes_effect_on_the_next_request() {
    let platform = platform();
    let user = &platform.users[3];
    let on = recommend(
        &platform.catalog,
        Behaviour::of(&platform.activity, &user.user_id),
        &platform.models,
        &PipelineConfig::default(),
        &request(platform, user, "a", 20),
    );
    assert!(on.personalised && on.items.iter().any(|r| r.value.is_some()));
    let off_user = User { personalization: Some(false), ..user.clone() };
    let off = recommend(
        &platform.catalog,
        Behaviour::of(&platform.activity, &user.user_id),
        &platform.models,
        &PipelineConfig::default(),
        &request(platform, &off_user, "a", 20),
    );
    assert!(!off.personalised && !off.items.is_empty());
    for item in &off.items {
        assert!(
            matches!(item.source, Source::Trending | Source::Fresh),
            "{:?} in a non-personalised feed",
            item.source
        );
        assert!(item.value.is_none());
        assert!(!platform.forbidden.contains(&platform.catalog.item(item.index).item_id));
    }
}

/// Forty users are shown an item and like it: the next request's features count them (the
/// item's showings and like rate) and its scores move, without a new model.
#[test]
fn the_ranker_counts_new_events_for_the_next_request() {
    let platform = platform();
    let (model, features, events) = &platform.ranking;
    let ranker =
        Ranker::new(model.clone(), features.clone(), ValueWeights::default(), &platform.catalog, events);
    let (user, item) = (&platform.users[0], 7);
    let item_id = &platform.catalog.item(item).item_id;
    let like = 2 + ACTIONS.iter().position(|&a| a == "like").unwrap();
    let score = |ranker: &Ranker| {
        ranker.values(&platform.catalog, &user.user_id, Some(user), None, platform.now, &[item]).scores[0]
    };
    let (counters, value) = (ranker.item_engagement(item_id, platform.now), score(&ranker));
    let shown_and_liked: Vec<Event> = (0..40)
        .flat_map(|n| {
            let ts = Timestamp(platform.now.millis() - 60_000 + n);
            [EventKind::Impression, EventKind::Play, EventKind::Like].map(|kind| Event {
                request_id: Some(format!("boost-{n}")),
                ..Event::new(format!("fan{n}"), item_id.clone(), kind, ts)
            })
        })
        .collect();
    ranker.observe(&platform.catalog, &shown_and_liked);
    let after = ranker.item_engagement(item_id, platform.now);
    assert!(after[0] > counters[0] + 1.0, "showings (log): {} -> {}", counters[0], after[0]);
    assert!(after[like] > counters[like] + 0.3, "like rate: {} -> {}", counters[like], after[like]);
    assert_ne!(score(&ranker), value, "the item's value follows its counters");
}

#[test]
fn items_added_while_serving_are_searched_with_their_fresh_vectors() {
    let platform = platform();
    let shared = platform.models.retrieval.as_deref().expect("two-tower");
    let items: Vec<Item> =
        (0..platform.catalog.len() as u32).map(|i| platform.catalog.item(i).clone()).collect();
    let config = IndexConfig::default();
    let retrieval =
        Retrieval::build(shared.model.clone(), shared.user_schema.clone(), &items, &config, platform.now)
            .expect("index");
    let old = items[0].clone();
    let twin = Item { item_id: "added-while-serving".into(), ..old.clone() };
    let changed = Item { tags: vec!["nothing-like-before".into()], ..old.clone() };
    let (twin_key, old_key) = (item_id_key(&twin.item_id), item_id_key(&old.item_id));
    let before = retrieval.vector(old_key).expect("indexed at build");
    assert!(retrieval.vector(twin_key).is_none());

    retrieval.index_changed(&[&twin, &changed], platform.now).unwrap();
    let twin_vector = retrieval.vector(twin_key).expect("fresh vector");
    assert_eq!(retrieval.search(&twin_vector, 1, &|_| true)[0].0, twin_key);
    assert_ne!(retrieval.vector(old_key).unwrap(), before, "the changed item's vector is its new one");
    // The changed item is found once, by its new vector, and not at all where its old one was.
    let near_new = retrieval.search(&retrieval.vector(old_key).unwrap(), 50, &|_| true);
    assert_eq!(near_new.iter().filter(|&&(key, _)| key == old_key).count(), 1);
    let near_old = retrieval.search(&before, 50, &|_| true);
    assert!(near_old.iter().all(|&(key, score)| key != old_key || score < 0.999 * dot(&before, &before)));
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Ten items of the creator with the most items: what a user takes to in the online tests.
fn prolific_creators_items(catalog: &Catalog) -> Vec<ItemIndex> {
    let creator = (0..catalog.len() as u32)
        .filter_map(|i| catalog.item(i).creator_id.clone())
        .max_by_key(|c| catalog.by_creator(c).len())
        .expect("creators");
    catalog.by_creator(&creator).iter().copied().take(10).collect()
}

#[test]
fn the_online_learner_publishes_a_model_moved_toward_the_new_positives() {
    let platform = platform();
    let serving = platform.models.retrieval.as_deref().expect("two-tower");
    let catalog = &platform.catalog;
    let user = &platform.users[0];
    // The user takes to the items of one creator, finishing each a few times over.
    let liked = prolific_creators_items(catalog);
    let (rule, nobody) = (PositiveRule::default(), UserActivity::default());
    let positives: Vec<OnlinePositive> = (0..5)
        .flat_map(|_| liked.clone())
        .filter_map(|i| {
            let event = Event::new(&user.user_id, &catalog.item(i).item_id, EventKind::Finish, platform.now);
            OnlinePositive::from_event(&rule, catalog, || &nobody, &event)
        })
        .collect();
    assert_eq!(positives.len(), 50);
    let mut learner = TowerLearner::new(serving, catalog, None, platform.now);
    let users = std::collections::HashMap::from([(user.user_id.clone(), user.clone())]);
    assert!(learner.learn(&positives, catalog, &users, (&serving.user_schema, 16), platform.now).is_some());
    assert_eq!(learner.learned(), 50);
    let published = learner.publish(serving, catalog).unwrap();

    let affinity = |retrieval: &Retrieval| {
        let u = retrieval.user_vector(catalog, &user.user_id, Some(user), &nobody, None);
        let scores: Vec<f32> = liked
            .iter()
            .map(|&i| dot(&u, &retrieval.vector(item_id_key(&catalog.item(i).item_id)).unwrap()))
            .collect();
        scores.iter().sum::<f32>() / scores.len() as f32
    };
    let (before, after) = (affinity(serving), affinity(&published));
    assert!(after > before + 0.05, "mean similarity to the liked items {before:.3} -> {after:.3}");
    // The items learned about have fresh vectors in the published retrieval only.
    let key = item_id_key(&catalog.item(liked[0]).item_id);
    assert_ne!(published.vector(key), serving.vector(key));
    assert!(!learner.has_learned_since_publishing());
}

/// A user is shown one creator's items and likes every one: once the outcomes' wait is over, the
/// impressions come out with the features they were shown with, and the learned model published
/// from them values those items higher for the user than the served one does, while the served
/// ranker is unchanged.
#[test]
fn the_online_ranking_learner_publishes_a_model_moved_toward_the_outcomes() {
    let platform = platform();
    let (model, features, events) = &platform.ranking;
    let catalog = &platform.catalog;
    let serving = Ranker::new(model.clone(), features.clone(), ValueWeights::default(), catalog, events);
    let wait_ms = 60_000;
    serving.await_outcomes(WaitingConfig { wait_ms, capacity: 1_000 }, 0);
    let user = &platform.users[0];
    let liked = prolific_creators_items(catalog);
    let start = platform.now.millis();
    let shown: Vec<Event> = (0..20)
        .flat_map(|round| liked.iter().map(move |&i| (round, i)))
        .enumerate()
        .flat_map(|(n, (round, i))| {
            let ts = Timestamp(start + n as i64);
            [EventKind::Impression, EventKind::Play, EventKind::Like].map(|kind| Event {
                request_id: Some(format!("liked-{round}-{i}")),
                ..Event::new(&user.user_id, &catalog.item(i).item_id, kind, ts)
            })
        })
        .collect();
    let logged = |events: &[Event], first: i64| -> Vec<(i64, Event)> {
        events.iter().cloned().enumerate().map(|(n, e)| (first + n as i64, e)).collect()
    };
    let log = logged(&shown, 1);
    serving.follow(catalog, log.iter().map(|(seq, e)| (*seq, e)));
    assert!(serving.take_outcomes().is_empty(), "still within the wait");
    assert_eq!(serving.waiting().map(|w| w.waiting), Some(200));
    // Later events move the log's clock past the wait.
    let later = [Event::new(
        "someone",
        &catalog.item(0).item_id,
        EventKind::Impression,
        Timestamp(start + wait_ms + 1_000),
    )];
    serving.follow(catalog, logged(&later, 1_000).iter().map(|(seq, e)| (*seq, e)));
    let outcomes = serving.take_outcomes();
    assert_eq!(outcomes.len(), 200);
    assert!(outcomes.iter().all(|o| o.impression.did(ACTIONS.iter().position(|&a| a == "like").unwrap())));
    assert!(outcomes.windows(2).all(|w| w[0].seq < w[1].seq), "in the order they were shown");

    let value = |ranker: &Ranker| {
        let values = ranker.values(catalog, &user.user_id, Some(user), None, platform.now, &liked);
        values.scores.iter().sum::<f32>() / liked.len() as f32
    };
    let before = value(&serving);
    let mut learner = RankingLearner::new(&serving, None, platform.now);
    let users = std::collections::HashMap::from([(user.user_id.clone(), user.clone())]);
    let now = Timestamp(start + wait_ms + 1_000);
    assert!(learner.learn(&outcomes, (&serving, catalog), &users, (32, true), now).is_some());
    assert!(learner.has_learned_since_publishing());
    let published = learner.publish(&serving);
    let after = value(&published);
    assert!(after > before * 1.05, "mean value of the liked items {before:.4} -> {after:.4}");
    assert_eq!(value(&serving), before, "the served model is not the one learning");
    assert!(!learner.has_learned_since_publishing());
}

/// A shorter outcome window cuts the learner's wait to it: the impression comes out once the
/// log's clock passes the window, before the wait asked for is over.
#[test]
fn the_outcome_window_bounds_the_wait_for_outcomes() {
    let platform = platform();
    let (model, features, events) = &platform.ranking;
    let catalog = &platform.catalog;
    let ranker = Ranker::new(model.clone(), features.clone(), ValueWeights::default(), catalog, events)
        .with_outcome_window(30_000);
    ranker.await_outcomes(WaitingConfig { wait_ms: 60_000, capacity: 10 }, 0);
    let item = &catalog.item(0).item_id;
    let start = platform.now.millis();
    let shown = Event {
        request_id: Some("windowed".into()),
        ..Event::new("window-user", item, EventKind::Impression, Timestamp(start))
    };
    let later = Event::new("someone", item, EventKind::Impression, Timestamp(start + 31_000));
    ranker.follow(catalog, [(1, &shown), (2, &later)]);
    let outcomes = ranker.take_outcomes();
    assert_eq!(outcomes.iter().map(|o| o.impression.user_id.as_str()).collect::<Vec<_>>(), ["window-user"]);
}
