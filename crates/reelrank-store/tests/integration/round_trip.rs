//! Writes and reads: what goes in comes back, idempotency, upsert rules.

use reelrank_core::{Category, Event, EventContext, EventKind, Item, ModerationStatus, Timestamp, User};
use reelrank_store::testing;

fn event(id: Option<&str>, user: &str, item: &str, kind: EventKind, ts: i64) -> Event {
    Event {
        event_id: id.map(str::to_owned),
        user_id: user.into(),
        item_id: item.into(),
        kind,
        value: (kind == EventKind::Watch).then_some(12_345.0),
        ts: Timestamp(ts),
        request_id: Some("req-1".into()),
        variant: Some("control".into()),
        context: Some(EventContext { device: Some("ios".into()), page: None, hour: Some(21) }),
    }
}

#[tokio::test]
async fn items_users_and_events_round_trip() {
    for t in testing::all().await {
        let store = &t.store;
        let mut item = Item::new("ep-1", Category::MicroDrama);
        item.title = "The Heiress, ep. 1".into();
        item.tags = vec!["romance".into(), "revenge".into()];
        item.duration_s = Some(95.5);
        item.regions = vec!["CN".into()];
        item.series_id = Some("heiress".into());
        item.episode = Some(1);
        item.age_rating = Some(12);
        item.published_at = Some(Timestamp(1_767_225_600_000));
        assert_eq!(store.upsert_items(&[item.clone()], ModerationStatus::Approved).await.unwrap(), 1);
        let back = store.item("ep-1").await.unwrap().unwrap();
        assert_eq!(back, Item { status: Some(ModerationStatus::Approved), ..item }, "{}", t.name);

        let mut user = User::new("u1");
        user.attributes.insert("age".into(), reelrank_core::AttributeValue::Numeric(23.0));
        user.region = Some("CN".into());
        user.personalization = Some(false);
        store.upsert_users(&[user.clone()]).await.unwrap();
        assert_eq!(store.user("u1").await.unwrap().unwrap(), user, "{}", t.name);

        let events = vec![
            event(Some("e1"), "u1", "ep-1", EventKind::Watch, 1_767_225_700_000),
            event(None, "u2", "ep-1", EventKind::Like, 1_767_225_800_000),
        ];
        let outcome = store.append_events(&events).await.unwrap();
        assert_eq!((outcome.inserted, outcome.duplicates, outcome.users_created), (2, 0, 1), "{}", t.name);
        let stored = store.events_after(0, 10).await.unwrap();
        assert_eq!(stored.iter().map(|s| s.event.clone()).collect::<Vec<_>>(), events, "{}", t.name);
        assert!(stored[0].seq < stored[1].seq);
        let counts = store.counts().await.unwrap();
        assert_eq!((counts.items, counts.users, counts.events), (1, 2, 2), "{}", t.name);
    }
}

#[tokio::test]
async fn repeated_event_ids_are_stored_once() {
    for t in testing::all().await {
        let store = &t.store;
        let batch: Vec<Event> = (0..5)
            .map(|i| event(Some(&format!("e{i}")), "u", "i", EventKind::Play, 1_767_225_700_000 + i))
            .collect();
        assert_eq!(store.append_events(&batch).await.unwrap().inserted, 5);
        let retry = store.append_events(&batch).await.unwrap();
        assert_eq!((retry.inserted, retry.duplicates), (0, 5), "{}", t.name);
        let mut twice = batch[..2].to_vec();
        twice.push(event(Some("new"), "u", "i", EventKind::Play, 1_767_225_700_100));
        twice.push(event(Some("new"), "u", "i", EventKind::Play, 1_767_225_700_100));
        let outcome = store.append_events(&twice).await.unwrap();
        assert_eq!((outcome.inserted, outcome.duplicates), (1, 3), "{}", t.name);
        assert_eq!(store.counts().await.unwrap().events, 6, "{}", t.name);
    }
}

#[tokio::test]
async fn upserts_keep_moderation_and_personalisation_choices() {
    for t in testing::all().await {
        let store = &t.store;
        let mut item = Item::new("m1", Category::Movie);
        item.status = Some(ModerationStatus::Removed);
        store.upsert_items(&[item.clone()], ModerationStatus::Approved).await.unwrap();
        // A catalog sync without status must not undo the takedown...
        item.status = None;
        item.title = "renamed".into();
        store
            .upsert_items(&[item.clone(), Item::new("m2", Category::Movie)], ModerationStatus::Approved)
            .await
            .unwrap();
        let back = store.item("m1").await.unwrap().unwrap();
        assert_eq!(
            (back.title.as_str(), back.status),
            ("renamed", Some(ModerationStatus::Removed)),
            "{}",
            t.name
        );
        // ...while a new item gets the default, and an explicit status wins.
        assert_eq!(store.item("m2").await.unwrap().unwrap().status, Some(ModerationStatus::Approved));
        item.status = Some(ModerationStatus::Approved);
        store.upsert_items(&[item], ModerationStatus::Pending).await.unwrap();
        assert_eq!(store.item("m1").await.unwrap().unwrap().status, Some(ModerationStatus::Approved));

        let mut user = User::new("u1");
        user.personalization = Some(false);
        store.upsert_users(&[user.clone()]).await.unwrap();
        user.personalization = None;
        user.region = Some("BR".into());
        store.upsert_users(&[user]).await.unwrap();
        let back = store.user("u1").await.unwrap().unwrap();
        assert_eq!((back.personalization, back.region.as_deref()), (Some(false), Some("BR")), "{}", t.name);
    }
}

#[tokio::test]
async fn bulk_writes_span_several_statements() {
    for t in testing::all().await {
        let store = &t.store;
        let items: Vec<Item> = (0..2500).map(|i| Item::new(format!("i{i}"), Category::ShortVideo)).collect();
        assert_eq!(store.upsert_items(&items, ModerationStatus::Approved).await.unwrap(), 2500);
        let events: Vec<Event> = (0..3500)
            .map(|i| {
                event(
                    Some(&format!("e{i}")),
                    &format!("u{}", i % 1300),
                    &format!("i{}", i % 2500),
                    EventKind::Play,
                    1_767_225_700_000 + i,
                )
            })
            .collect();
        let outcome = store.append_events(&events).await.unwrap();
        assert_eq!((outcome.inserted, outcome.users_created), (3500, 1300), "{}", t.name);
        let missing = store.missing_items(&["i7", "nope", "i2499"]).await.unwrap();
        assert_eq!(missing, ["nope"], "{}", t.name);
    }
}

#[tokio::test]
async fn changed_items_are_read_in_pages_in_write_order() {
    for t in testing::all().await {
        let store = &t.store;
        let first: Vec<Item> = (0..5).map(|i| Item::new(format!("a{i}"), Category::ShortVideo)).collect();
        store.upsert_items(&first, ModerationStatus::Approved).await.unwrap();
        let before = store.items_changed(0, None, 100).await.unwrap();
        assert_eq!(before.len(), 5, "{}", t.name);
        let since = before.iter().map(|c| c.updated_at).max().unwrap();
        // The write read last is not read again: a tail that re-read it re-read the whole
        // catalog of a bulk load on every tick.
        assert!(store.items_changed(since, None, 100).await.unwrap().is_empty(), "{}", t.name);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut takedown = first[3].clone();
        takedown.status = Some(ModerationStatus::Removed);
        store
            .upsert_items(&[takedown, Item::new("b", Category::Movie)], ModerationStatus::Approved)
            .await
            .unwrap();
        // Two pages of one row each, then nothing.
        let page = store.items_changed(since, None, 1).await.unwrap();
        let next = store.items_changed(since, page.last(), 1).await.unwrap();
        let rest = store.items_changed(since, next.last(), 1).await.unwrap();
        let ids: Vec<&str> = page.iter().chain(&next).map(|c| c.item.item_id.as_str()).collect();
        assert_eq!(ids, ["a3", "b"], "{}", t.name);
        assert_eq!(page[0].item.status, Some(ModerationStatus::Removed), "{}", t.name);
        assert!(rest.is_empty(), "{}", t.name);
    }
}

#[tokio::test]
async fn a_keyed_batch_is_written_once_however_often_it_is_posted() {
    use reelrank_store::{Appended, BatchKey};
    for t in testing::all().await {
        let store = std::sync::Arc::new(t.store);
        let batch: Vec<Event> =
            (0..3).map(|i| event(None, "u", "i", EventKind::Play, 1_767_225_700_000 + i)).collect();
        let key = BatchKey { key: "client-7/batch-1", digest: "d1" };
        let posts: Vec<_> = (0..4)
            .map(|_| {
                let (store, batch) = (store.clone(), batch.clone());
                tokio::spawn(async move { store.append_keyed_events(&key, &batch).await.unwrap() })
            })
            .collect();
        let mut answers = Vec::new();
        for post in posts {
            answers.push(post.await.unwrap());
        }
        let written: Vec<&Appended> = answers.iter().filter(|a| matches!(a, Appended::Written(_))).collect();
        assert_eq!(written.len(), 1, "{}: {answers:?}", t.name);
        let Appended::Written(first) = *written[0] else { unreachable!() };
        assert_eq!(first.inserted, 3);
        assert!(answers.iter().all(|a| *a == Appended::Written(first) || *a == Appended::Replayed(first)));
        assert_eq!(store.counts().await.unwrap().events, 3, "{}: events without ids, written once", t.name);
        let other = BatchKey { key: "client-7/batch-1", digest: "d2" };
        assert_eq!(store.append_keyed_events(&other, &batch).await.unwrap(), Appended::KeyReused);
        let next = BatchKey { key: "client-7/batch-2", digest: "d1" };
        assert!(matches!(store.append_keyed_events(&next, &batch).await.unwrap(), Appended::Written(_)));
        assert_eq!(store.counts().await.unwrap().events, 6, "{}", t.name);
    }
}
