//! Readers tailing the event log by sequence number and the catalog by change stamp miss nothing
//! while several writers write at once. On PostgreSQL, sequence numbers and stamps are drawn
//! before commit, so a later one can become visible first unless writes commit in the order they
//! draw.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use reelrank_core::{Category, Event, EventKind, Item, ModerationStatus, Timestamp};
use reelrank_store::{testing, ItemChange, Store};

const WRITERS: usize = 6;
const BATCHES: usize = 40;
const BATCH: usize = 25;

/// Reads the event log from the start until `writing` is cleared, then once more; returns the
/// event ids read.
async fn tail_events(store: &Store, writing: &AtomicBool) -> Vec<String> {
    let (mut last, mut seen) = (0, Vec::new());
    loop {
        let done = !writing.load(Ordering::Acquire);
        let page = store.events_after(last, 10_000).await.unwrap();
        last = page.last().map_or(last, |stored| stored.seq);
        seen.extend(page.into_iter().map(|stored| stored.event.event_id.unwrap()));
        if done {
            return seen;
        }
    }
}

/// Reads the catalog's changes as [`tail_events`] reads the log; returns the item ids read.
async fn tail_catalog(store: &Store, writing: &AtomicBool) -> Vec<String> {
    let (mut last, mut seen): (Option<ItemChange>, Vec<String>) = (None, Vec::new());
    loop {
        let done = !writing.load(Ordering::Acquire);
        let page = store.items_changed(0, last.as_ref(), 10_000).await.unwrap();
        seen.extend(page.iter().map(|change| change.item.item_id.clone()));
        last = page.into_iter().last().or(last);
        if done {
            return seen;
        }
    }
}

async fn write(store: &Store, writer: usize) {
    for batch in 0..BATCHES {
        let item = Item::new(format!("w{writer}-b{batch}"), Category::ShortVideo);
        store.upsert_items(&[item], ModerationStatus::Approved).await.unwrap();
        let events: Vec<Event> = (0..BATCH)
            .map(|n| Event {
                event_id: Some(format!("w{writer}-b{batch}-{n}")),
                ..Event::new(format!("u{writer}"), format!("i{n}"), EventKind::Play, Timestamp(1))
            })
            .collect();
        store.append_events(&events).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tails_miss_nothing_of_concurrent_writers() {
    for t in testing::all().await {
        let testing::TestStore { name, store, dir: _dir, .. } = t;
        let store = Arc::new(store);
        let writing = Arc::new(AtomicBool::new(true));
        let (s, w) = (store.clone(), writing.clone());
        let events = tokio::spawn(async move { tail_events(&s, &w).await });
        let (s, w) = (store.clone(), writing.clone());
        let catalog = tokio::spawn(async move { tail_catalog(&s, &w).await });
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let store = store.clone();
                tokio::spawn(async move { write(&store, writer).await })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        writing.store(false, Ordering::Release);
        assert_eq!(
            events.await.unwrap().len(),
            WRITERS * BATCHES * BATCH,
            "{name}: the log's tail skipped events"
        );
        assert_eq!(
            catalog.await.unwrap().len(),
            WRITERS * BATCHES,
            "{name}: the catalog's tail skipped items"
        );
    }
}
