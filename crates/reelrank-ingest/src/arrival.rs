//! What happens to records as they are stored, whichever way they arrive (the HTTP API, the CSV
//! importer, the simulator): new items take the platform's default moderation status, and users'
//! reports send an item back to review.

use reelrank_core::{Event, EventKind, ModerationStatus};
use reelrank_store::{Appended, BatchKey, Result, Store};

/// The moderation policy applied on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrivalPolicy {
    /// Status of a new item that does not state one.
    pub default_item_status: ModerationStatus,
    /// Distinct users whose `report` events send an approved item back to review (0: never).
    pub review_after_reports: u32,
}

impl Default for ArrivalPolicy {
    fn default() -> ArrivalPolicy {
        ArrivalPolicy { default_item_status: ModerationStatus::Approved, review_after_reports: 3 }
    }
}

/// Appends `events` (under the client's idempotency key `batch`, if any) and counts their
/// reports; returns what was appended and the items that went back to review. The reports are
/// counted after the events are stored: a failure in between fails the call, and its retry finds
/// the events stored (by `event_id` or by `batch`) and counts each report once (a user's report of
/// an item is stored once). A replayed or refused batch counts nothing.
pub async fn append_events(
    store: &Store,
    events: &[Event],
    policy: ArrivalPolicy,
    batch: Option<BatchKey<'_>>,
) -> Result<(Appended, Vec<String>)> {
    let appended = match batch {
        Some(batch) => store.append_keyed_events(&batch, events).await?,
        None => Appended::Written(store.append_events(events).await?),
    };
    if policy.review_after_reports == 0 || !matches!(appended, Appended::Written(_)) {
        return Ok((appended, Vec::new()));
    }
    let reports: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.kind == EventKind::Report)
        .map(|e| (e.item_id.as_str(), e.user_id.as_str()))
        .collect();
    let sent = store.report_items(&reports, policy.review_after_reports).await?;
    Ok((appended, sent))
}

#[cfg(test)]
mod tests {
    use reelrank_core::{Category, Item, Timestamp};
    use reelrank_store::testing;

    use super::*;

    fn report(user: &str, id: &str) -> Event {
        Event { event_id: Some(id.to_owned()), ..Event::new(user, "i1", EventKind::Report, Timestamp(1)) }
    }

    #[tokio::test]
    async fn the_third_reporter_sends_an_item_back_to_review_once() {
        for t in testing::all().await {
            let store = &t.store;
            store
                .upsert_items(&[Item::new("i1", Category::ShortVideo)], ModerationStatus::Approved)
                .await
                .unwrap();
            let policy = ArrivalPolicy::default();
            let twice_and_once = [report("a", "e1"), report("a", "e2"), report("b", "e3")];
            let (_, sent) = append_events(store, &twice_and_once, policy, None).await.unwrap();
            assert!(sent.is_empty(), "{}: two distinct reporters are not enough", t.name);
            let (appended, sent) = append_events(store, &[report("c", "e4")], policy, None).await.unwrap();
            let Appended::Written(outcome) = appended else { panic!("{appended:?}") };
            assert_eq!((outcome.inserted, sent), (1, vec!["i1".to_owned()]), "{}", t.name);
            assert_eq!(store.item("i1").await.unwrap().unwrap().status, Some(ModerationStatus::Pending));
            let (_, sent) = append_events(store, &[report("c", "e4")], policy, None).await.unwrap();
            assert!(sent.is_empty(), "{}: a retried batch sends nothing back twice", t.name);
        }
    }

    #[tokio::test]
    async fn a_zero_threshold_never_sends_back() {
        let t = testing::sqlite().await.unwrap();
        t.store
            .upsert_items(&[Item::new("i1", Category::ShortVideo)], ModerationStatus::Approved)
            .await
            .unwrap();
        let policy = ArrivalPolicy { review_after_reports: 0, ..ArrivalPolicy::default() };
        let events: Vec<Event> = (0..5).map(|n| report(&format!("u{n}"), &format!("e{n}"))).collect();
        assert!(append_events(&t.store, &events, policy, None).await.unwrap().1.is_empty());
    }
}
