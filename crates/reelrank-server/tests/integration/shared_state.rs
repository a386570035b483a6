//! Users' activity and item counters shared through Redis (run when `REELRANK_TEST_REDIS` is set,
//! required in CI): replicas applying the log together apply each event once, and count items as
//! a replica counting the log itself does; a feed served by one is seen by the other; a reset
//! reaches Redis even when only the store took it; an emptied Redis is rebuilt from the log as it
//! was.

use reelrank_core::{Category, Event, EventKind, Item, ModerationStatus, Timestamp};
use reelrank_features::item_id_key;
use reelrank_server::{SharedState, SharedStateConfig};
use reelrank_serving::{Activity, Catalog, UserActivity};
use reelrank_store::{testing, Store};

const HOUR_MS: i64 = 3_600_000;

fn items() -> Vec<Item> {
    (0..10)
        .map(|i| Item {
            creator_id: Some(format!("c{i}")),
            ..Item::new(format!("i{i}"), Category::MicroDrama)
        })
        .collect()
}

/// What a test compares of an activity.
fn summary(
    activity: &UserActivity,
    catalog: &Catalog,
    day: Timestamp,
) -> (Vec<String>, Vec<String>, usize, f64) {
    let id = |index: &u32| catalog.item(*index).item_id.clone();
    let mut not_interested: Vec<String> = activity.not_interested.iter().map(id).collect();
    not_interested.sort();
    let positives = activity.positives.iter().map(|(index, _)| id(index)).collect();
    (positives, not_interested, activity.seen.len(), activity.watched_on(day))
}

/// `user_id`'s activity as `users` reads it for a request.
async fn read(users: &SharedState, store: &Store, catalog: &Catalog, user_id: &str) -> UserActivity {
    let user = store.user(user_id).await.unwrap();
    users.user(user_id, user.as_ref()).await.unwrap().over(catalog)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_users_activity_through_redis() {
    let Some((url, prefix)) = testing::redis() else { return };
    for t in testing::all().await {
        let config = SharedStateConfig { redis_url: url.clone(), key_prefix: format!("{prefix}{}:", t.name) };
        let (a, b) = (
            SharedState::connect(&config, 0, 24.0).await.unwrap(),
            SharedState::connect(&config, 0, 24.0).await.unwrap(),
        );
        t.store.upsert_items(&items(), ModerationStatus::Approved).await.unwrap();
        let catalog = Catalog::new(t.store.all_items().await.unwrap());
        let before = Timestamp(Timestamp::now().millis() - HOUR_MS);
        let mut events: Vec<Event> = (0..50)
            .map(|i| Event {
                value: Some(1_000.0),
                ..Event::new("u1", format!("i{}", i % 10), EventKind::Watch, Timestamp(before.millis() + i))
            })
            .collect();
        events.push(Event::new("u1", "i3", EventKind::NotInterested, before));
        events.push(Event::new("u1", "i5", EventKind::Like, before));
        events.push(Event::new("u2", "i1", EventKind::Like, before));
        events.extend(
            (0..3).map(|i| Event::new("u4", "i2", EventKind::Impression, Timestamp(before.millis() + i))),
        );
        // Events of an account the charts' guard excluded as fake traffic count nowhere.
        events.push(Event::new("bot", "i9", EventKind::Like, before));
        let bots = |user_id: &str| user_id == "bot";
        t.store.append_events(&events).await.unwrap();

        // Both replicas apply the log at once: each event is applied by one of them.
        let (by_a, by_b) =
            tokio::join!(a.catch_up(&t.store, &catalog, &bots), b.catch_up(&t.store, &catalog, &bots));
        assert_eq!(by_a.unwrap() + by_b.unwrap(), events.len(), "{}", t.name);
        let u1 = read(&b, &t.store, &catalog, "u1").await;
        assert_eq!(
            summary(&u1, &catalog, before),
            (vec!["i5".into()], vec!["i3".into()], 10, 50_000.0),
            "{}",
            t.name
        );
        assert_eq!(read(&b, &t.store, &catalog, "u2").await.positives.len(), 1, "{}", t.name);

        // Item counters: counted once, as a replica counting the log itself counts them.
        let mut own = Activity::new(catalog.len(), 24.0);
        for event in events.iter().filter(|event| !bots(&event.user_id)) {
            own.record(&catalog, event);
        }
        assert!(read(&a, &t.store, &catalog, "bot").await.positives.is_empty(), "{}", t.name);
        let counts = a.item_counts(0).await.unwrap().expect("events were counted");
        assert_eq!(b.item_counts(counts.as_of).await.unwrap(), None, "nothing counted since");
        let mut shared = Activity::sharing(catalog.len(), 24.0, false);
        shared.install_items(counts.place(&catalog, 24.0));
        let same_counts = |shared: &Activity, own: &Activity| {
            for index in 0..catalog.len() as u32 {
                let (heat, own_heat) =
                    (shared.trending().heat(index, before), own.trending().heat(index, before));
                assert!((heat - own_heat).abs() <= 1e-9 * own_heat, "{}: {heat} against {own_heat}", t.name);
                assert_eq!(shared.impressions(index), own.impressions(index), "{}", t.name);
            }
        };
        same_counts(&shared, &own);
        assert_eq!(shared.impressions(catalog.index("i2").unwrap()), 3, "{}", t.name);

        // Later, only the items counted since are read, and the counts held are updated to match.
        let later = [
            Event::new("u6", "i4", EventKind::Like, before),
            Event::new("u6", "i4", EventKind::Impression, before),
            Event::new("u6", "i6", EventKind::Impression, before),
        ];
        t.store.append_events(&later).await.unwrap();
        b.catch_up(&t.store, &catalog, &bots).await.unwrap();
        for event in &later {
            own.record(&catalog, event);
        }
        events.extend(later);
        let changes = a.item_counts(shared.items_as_of()).await.unwrap().expect("counted since");
        let keys = |counts: &[(u64, u32)]| counts.iter().map(|&(key, _)| key).collect::<Vec<_>>();
        assert_eq!(changes.heat.iter().map(|&(key, _)| key).collect::<Vec<_>>(), [item_id_key("i4")]);
        let mut shown = keys(&changes.impressions);
        shown.sort_unstable();
        let mut expected = [item_id_key("i4"), item_id_key("i6")];
        expected.sort_unstable();
        assert_eq!(shown, expected, "{}", t.name);
        assert!(shared.update_items(changes, &catalog), "{}", t.name);
        same_counts(&shared, &own);
        shared.refresh_trending(&catalog);
        // Asked since a point no page starts at, every item's counts come instead.
        let whole = a.item_counts(shared.items_as_of() - 1).await.unwrap().unwrap();
        assert!(whole.since == 0 && whole.heat.len() > 1, "{}", t.name);
        own.refresh_trending(&catalog);
        let hottest = |activity: &Activity| {
            let mut hottest = activity.trending().hottest(None).to_vec();
            hottest.sort_unstable();
            hottest
        };
        assert!(!hottest(&own).is_empty() && hottest(&shared) == hottest(&own), "{}", t.name);
        a.forget_items(&[item_id_key("i2")]).await.unwrap();
        t.store.append_events(&[Event::new("u5", "i0", EventKind::Impression, before)]).await.unwrap();
        b.catch_up(&t.store, &catalog, &bots).await.unwrap();
        let counts = a.item_counts(0).await.unwrap().unwrap();
        assert!(counts.heat.iter().all(|&(key, _)| key != item_id_key("i2")), "{}", t.name);
        assert!(counts.impressions.iter().all(|&(key, _)| key != item_id_key("i2")), "{}", t.name);
        events.push(Event::new("u5", "i0", EventKind::Impression, before));

        // A feed served by one replica is seen by the other at once.
        assert!(read(&a, &t.store, &catalog, "u3").await.seen.is_empty());
        b.served("u3", [item_id_key("i9")]).await.unwrap();
        let u3 = read(&a, &t.store, &catalog, "u3").await;
        assert!(u3.seen.contains(&catalog.index("i9").unwrap()) && u3.seen.len() == 1, "{}", t.name);

        // A reset only the store took reaches Redis on the next read; later events count again.
        t.store.change_controls("u1", |c| c.reset_at = Some(Timestamp::now())).await.unwrap();
        assert_eq!(
            summary(&read(&a, &t.store, &catalog, "u1").await, &catalog, before),
            (vec![], vec![], 0, 0.0),
            "{}",
            t.name
        );
        let after = Timestamp(Timestamp::now().millis() + 1_000);
        t.store.append_events(&[Event::new("u1", "i7", EventKind::Like, after)]).await.unwrap();
        a.catch_up(&t.store, &catalog, &bots).await.unwrap();
        let expected = summary(&read(&b, &t.store, &catalog, "u1").await, &catalog, before);
        assert_eq!(expected, (vec!["i7".into()], vec![], 0, 0.0), "{}", t.name);

        // An emptied Redis is rebuilt from the log, resets first.
        assert!(a.clear().await.unwrap() >= 4, "{}", t.name);
        assert!(read(&a, &t.store, &catalog, "u2").await.positives.is_empty(), "{}", t.name);
        assert_eq!(b.catch_up(&t.store, &catalog, &bots).await.unwrap(), events.len() + 1, "{}", t.name);
        assert_eq!(
            summary(&read(&a, &t.store, &catalog, "u1").await, &catalog, before),
            expected,
            "{}",
            t.name
        );
        assert_eq!(read(&a, &t.store, &catalog, "u2").await.positives.len(), 1, "{}", t.name);
        let stats = a.stats().await.unwrap();
        assert!(stats.applied_seq > 0 && stats.used_memory_bytes > 0, "{stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seen_list_keeps_the_newest_distinct_items() {
    let Some((url, prefix)) = testing::redis() else { return };
    let config = SharedStateConfig { redis_url: url, key_prefix: format!("{prefix}seen:") };
    let shared = SharedState::connect(&config, 0, 24.0).await.unwrap();
    let ids: Vec<String> = (0..18_000).map(|i| format!("s{i}")).collect();
    let catalog = Catalog::new(ids.iter().map(|id| Item::new(id.as_str(), Category::MicroDrama)).collect());
    let keys = |range: std::ops::Range<usize>| range.map(|i| item_id_key(&ids[i])).collect::<Vec<_>>();
    let seen = || async { shared.user("u", None).await.unwrap().over(&catalog).seen };

    // 5,000 items seen once and 3,000 more three times (served, then logged): 14,000 appended, a
    // quarter over the bound, trimmed to 8,000 distinct items, none lost to the repeats.
    shared.served("u", keys(0..5_000)).await.unwrap();
    for _ in 0..3 {
        shared.served("u", keys(5_000..8_000)).await.unwrap();
    }
    assert_eq!(seen().await.len(), 8_000);
    // 10,000 more: the oldest go.
    shared.served("u", keys(8_000..18_000)).await.unwrap();
    let last = seen().await;
    assert_eq!(last.len(), 10_000);
    assert!(
        last.contains(&catalog.index("s17999").unwrap()) && !last.contains(&catalog.index("s0").unwrap())
    );
    shared.clear().await.unwrap();
}
