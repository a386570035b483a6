//! Moderation over HTTP: a takedown under load leaves every response before it is answered, users'
//! reports send an item back to review, a blocked creator's items leave feeds, refused and
//! invalid decisions change nothing, and everything is in the audit log.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{get, post, run, Server};

fn ids(feed: &Value) -> Vec<String> {
    feed["items"].as_array().unwrap().iter().map(|i| i["item_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_apply_at_once_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &["simulate", "--users", "100", "--items", "600", "--days", "3", "--seed", "4"]);
    let server = Server::start(dir.path());
    let base = server.url.clone();
    let client = reqwest::Client::new();
    // Users the load below never asks for: nothing has been served to them yet.
    let feed = |user: &str| format!("{base}/v1/recommend?user_id={user}&n=30");
    let (status, first) = get(&client, &feed("u1")).await;
    assert_eq!(status, 200, "{first}");
    let target = ids(&first)[0].clone();

    // Feeds and charts under load while the item is taken down.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let answered_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let late_sightings = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for worker in 0..4u32 {
        let (client, base) = (client.clone(), base.clone());
        let (stop, failures, answered_at, late) =
            (stop.clone(), failures.clone(), answered_at.clone(), late_sightings.clone());
        let target = target.clone();
        load.push(tokio::spawn(async move {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let started = Instant::now();
                let url = match k % 3 {
                    0 => format!("{base}/v1/charts?limit=1000"),
                    _ => format!("{base}/v1/recommend?user_id=u{}&n=30", (worker * 25 + k) % 100),
                };
                let (status, body) = get(&client, &url).await;
                if status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                let shown = body.to_string().contains(&format!("\"{target}\""));
                if shown && answered_at.lock().unwrap().is_some_and(|at| started > at) {
                    late.fetch_add(1, Ordering::Relaxed);
                }
            }
            k
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Instant::now();
    let decision = json!({"status": "removed", "flags": ["rumor"], "reason": "false health claim"});
    let (status, entry) = post(&client, &format!("{base}/v1/moderation/items/{target}"), decision).await;
    *answered_at.lock().unwrap() = Some(Instant::now());
    let took = sent.elapsed();
    assert_eq!(status, 200, "{entry}");
    assert!(took < Duration::from_secs(1), "the takedown took {took:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let requests: u32 = futures_sum(load).await;
    assert!(requests > 20, "{requests} requests under load");
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert_eq!(
        late_sightings.load(Ordering::Relaxed),
        0,
        "the item was served after the takedown was answered"
    );
    assert_eq!((entry["actor"].as_str(), entry["from_status"].as_str()), (Some("local"), Some("approved")));

    // Refused and invalid decisions change nothing.
    let items = format!("{base}/v1/moderation/items");
    let (status, error) =
        post(&client, &format!("{items}/{target}"), json!({"status": "rejected", "reason": "x"})).await;
    assert_eq!(status, 409, "{error}");
    assert!(error["error"].as_str().unwrap().contains("is removed"), "{error}");
    let (status, error) = post(
        &client,
        &format!("{items}/{target}"),
        json!({"status": "approved", "flags": ["spam"], "reason": ""}),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    let fields: HashSet<&str> =
        error["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, HashSet::from(["flags", "reason"]));
    let (status, _) =
        post(&client, &format!("{items}/nope"), json!({"status": "approved", "reason": "x"})).await;
    assert_eq!(status, 404);

    // Three users report an item: back to review, out of feeds, in the queue.
    let (_, feed2) = get(&client, &feed("viewer-a")).await;
    let reported = ids(&feed2)[0].clone();
    let reports: Vec<Value> = (10..13)
        .map(|u| json!({"user_id": format!("u{u}"), "item_id": reported, "kind": "report", "ts": "2026-01-07T12:00:00Z"}))
        .collect();
    let (status, _) = post(&client, &format!("{base}/v1/events"), json!(reports)).await;
    assert_eq!(status, 200);
    let (_, queue) = get(&client, &format!("{base}/v1/moderation/queue")).await;
    assert!(queue["items"].as_array().unwrap().iter().any(|i| i["item_id"] == reported.as_str()), "{queue}");
    for user in ["viewer-b", "viewer-c", "u5"] {
        let (_, body) = get(&client, &feed(user)).await;
        assert!(!ids(&body).contains(&reported) && !ids(&body).contains(&target));
    }

    // A blocked creator's items leave every feed.
    let (_, feed3) = get(&client, &feed("viewer-d")).await;
    let item = ids(&feed3)[0].clone();
    let store = reelrank_store::Store::open_in_dir(dir.path()).await.unwrap();
    let creator = store.item(&item).await.unwrap().unwrap().creator_id.unwrap();
    let (status, _) = post(
        &client,
        &format!("{base}/v1/moderation/creators/{creator}"),
        json!({"blocked": true, "reason": "impersonation"}),
    )
    .await;
    assert_eq!(status, 200);
    for user in ["viewer-e", "viewer-f"] {
        let (_, after) = get(&client, &feed(user)).await;
        let blocked: Vec<String> = ids(&after).into_iter().filter(|id| *id == item).collect();
        assert!(blocked.is_empty(), "{after}");
    }

    let (_, audit) = get(&client, &format!("{base}/v1/moderation/audit")).await;
    let entries = audit["entries"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["target"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("local", "item", "false health claim"),
            ("user-reports", "item", "3 users reported it"),
            ("local", "creator", "impersonation")
        ]
    );
    let (_, latest) = get(&client, &format!("{base}/v1/moderation/audit?latest=true&limit=2")).await;
    let newest_first: Vec<&serde_json::Value> = entries.iter().rev().take(2).collect();
    assert_eq!(latest["entries"].as_array().unwrap().iter().collect::<Vec<_>>(), newest_first);
    let (status, error) = get(&client, &format!("{base}/v1/moderation/audit?latest=true&after=1")).await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("`after`"), "{error}");
}

async fn futures_sum(tasks: Vec<tokio::task::JoinHandle<u32>>) -> u32 {
    let mut sum = 0;
    for task in tasks {
        sum += task.await.unwrap();
    }
    sum
}
