//! The review workflow's writes: every transition, the audit log, reports sending an item back
//! to review, creator blocks reaching existing and new items, review flags surviving a sync.

use reelrank_core::{Category, CreatorDecision, Item, ItemDecision, ModerationStatus, CREATOR_BLOCKED};
use reelrank_store::{testing, Moderated, Store, REPORTS_ACTOR};

fn decision(status: ModerationStatus, reason: &str) -> ItemDecision {
    ItemDecision { status, flags: None, reason: reason.into() }
}

async fn status(store: &Store, item_id: &str) -> ModerationStatus {
    store.item(item_id).await.unwrap().unwrap().status.unwrap()
}

#[tokio::test]
async fn every_transition_is_applied_or_refused_and_audited() {
    use ModerationStatus::{Approved, Pending, Rejected, Removed};
    for t in testing::all().await {
        let store = &t.store;
        let all = [Pending, Approved, Rejected, Removed];
        let mut expected_entries = 0;
        for (k, (from, to)) in all.iter().flat_map(|&a| all.iter().map(move |&b| (a, b))).enumerate() {
            let id = format!("i{k}");
            store.upsert_items(&[Item::new(id.clone(), Category::ShortVideo)], from).await.unwrap();
            let outcome = store.moderate_item(&id, &decision(to, "checked"), "alice").await.unwrap();
            if from.can_become(to) {
                let Moderated::Done(entry) = outcome else { panic!("{from:?} -> {to:?}: {outcome:?}") };
                expected_entries += 1;
                assert_eq!(status(store, &id).await, to, "{}", t.name);
                assert_eq!(
                    (entry.actor.as_str(), entry.target.as_str(), entry.target_id.as_str()),
                    ("alice", "item", id.as_str())
                );
                assert_eq!(
                    (entry.from_status.as_deref(), entry.to_status.as_deref()),
                    (Some(from.as_str()), Some(to.as_str()))
                );
            } else {
                assert_eq!(outcome, Moderated::Refused { from }, "{}", t.name);
                assert_eq!(status(store, &id).await, from, "a refused decision changes nothing");
            }
        }
        assert_eq!(expected_entries, 12);
        let audit = store.audit(0, 100).await.unwrap();
        assert_eq!(audit.len(), expected_entries, "{}", t.name);
        assert!(audit.windows(2).all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at));
        assert_eq!(store.audit(audit[9].seq, 100).await.unwrap(), audit[10..].to_vec());
        let latest: Vec<_> = audit[9..].iter().rev().cloned().collect();
        assert_eq!(store.audit_latest(3).await.unwrap(), latest, "{}: the latest, newest first", t.name);
        assert_eq!(
            store.moderate_item("nope", &decision(Approved, "x"), "alice").await.unwrap(),
            Moderated::NotFound
        );
    }
}

#[tokio::test]
async fn flags_reports_and_creator_blocks() {
    use ModerationStatus::{Approved, Pending};
    for t in testing::all().await {
        let store = &t.store;
        let mut item = Item::new("clip", Category::ShortVideo);
        item.creator_id = Some("c1".into());
        item.flags = vec!["dubbed".into()];
        store.upsert_items(&[item.clone()], Approved).await.unwrap();

        // A rumour flag set in review survives a catalog sync of the item (no status sent).
        let flagged = ItemDecision {
            status: Approved,
            flags: Some(vec!["rumor".into()]),
            reason: "unverified claim".into(),
        };
        let Moderated::Done(entry) = store.moderate_item("clip", &flagged, "bob").await.unwrap() else {
            panic!()
        };
        assert_eq!(entry.flags, ["dubbed", "rumor"], "{}", t.name);
        store.upsert_items(&[item.clone()], Approved).await.unwrap();
        assert_eq!(store.item("clip").await.unwrap().unwrap().flags, ["dubbed", "rumor"], "{}", t.name);

        // Three distinct reporters send it back to review, once; reporting again changes nothing.
        assert!(store
            .report_items(&[("clip", "u1"), ("clip", "u1"), ("clip", "u2")], 3)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.report_items(&[("clip", "u3")], 3).await.unwrap(), ["clip"], "{}", t.name);
        assert_eq!(status(store, "clip").await, Pending);
        assert!(store.report_items(&[("clip", "u4")], 3).await.unwrap().is_empty());
        let queue = store.review_queue(10).await.unwrap();
        assert_eq!(queue.iter().map(|i| i.item_id.as_str()).collect::<Vec<_>>(), ["clip"]);
        let last = store.audit(0, 100).await.unwrap().pop().unwrap();
        assert_eq!((last.actor.as_str(), last.reason.as_str()), (REPORTS_ACTOR, "3 users reported it"));
        // Approved again, its reports start over.
        store.moderate_item("clip", &decision(Approved, "claim verified"), "bob").await.unwrap();
        assert!(store.report_items(&[("clip", "u1"), ("clip", "u2")], 3).await.unwrap().is_empty());

        // A blocked creator's items, existing and new, carry the flag until the block is lifted.
        let block = CreatorDecision { blocked: true, reason: "repeated abuse".into() };
        let entry = store.moderate_creator("c1", &block, "carol").await.unwrap();
        assert_eq!(
            (entry.target.as_str(), entry.flags.as_slice()),
            ("creator", &[CREATOR_BLOCKED.to_owned()][..])
        );
        let mut upload = Item::new("clip-2", Category::ShortVideo);
        upload.creator_id = Some("c1".into());
        store.upsert_items(&[upload.clone(), item.clone()], Approved).await.unwrap();
        for id in ["clip", "clip-2"] {
            assert!(
                store.item(id).await.unwrap().unwrap().flags.contains(&CREATOR_BLOCKED.to_owned()),
                "{id} {}",
                t.name
            );
        }
        let unblock = CreatorDecision { blocked: false, reason: "appeal upheld".into() };
        store.moderate_creator("c1", &unblock, "carol").await.unwrap();
        assert_eq!(store.item("clip").await.unwrap().unwrap().flags, ["dubbed", "rumor"], "{}", t.name);
        assert!(store.item("clip-2").await.unwrap().unwrap().flags.is_empty());
    }
}
