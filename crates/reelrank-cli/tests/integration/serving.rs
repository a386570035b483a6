//! `reelrank serve` with trained models: feeds, their impressions in the log, feedback, opt-outs
//! and catalog changes acting on the next request, and a retrained model swapped in under load
//! without a failed request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{get, post, run, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_explained_feeds_and_swaps_models_under_load() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &["simulate", "--users", "120", "--items", "1500", "--days", "3", "--seed", "5"]);
    run(dir.path(), &["train", "retrieval", "--epochs", "2"]);
    run(dir.path(), &["train", "ranking", "--epochs", "1"]);
    let config = dir.path().join("experiment.toml");
    std::fs::write(
        &config,
        "[serving.experiment]\nname = \"test\"\n\
         [[serving.experiment.variants]]\nname = \"control\"\nshare = 1.0\n\
         [[serving.experiment.variants]]\nname = \"no-diversity\"\nshare = 1.0\n\
         pipeline = { diversity = { enabled = false } }\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("REELRANK__SERVING__MODEL_CHECK_SECS", "1"),
            ("REELRANK__SERVING__ONLINE__PUBLISH_SECS", "1"),
            ("REELRANK_CONFIG", config),
        ],
    );
    let client = reqwest::Client::new();
    let feed_url = |user: &str| format!("{}/v1/recommend?user_id={user}&n=20&explain=true", server.url);

    let (status, feed) = get(&client, &feed_url("u7")).await;
    assert_eq!(status, 200, "{feed}");
    let items = feed["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert!(feed["personalised"].as_bool().unwrap());
    let version = feed["model_version"].as_str().unwrap().to_owned();
    assert_ne!(version, "none");
    // The models as loaded from disk, whatever online learning published since (`+N`).
    let trained =
        |feed: &Value| feed["model_version"].as_str().unwrap().split('+').next().unwrap().to_owned();
    assert!(feed["candidates"]["proposed"]["two_tower"].as_u64().unwrap() > 0, "{}", feed["candidates"]);
    for item in items {
        assert!(!item["reasons"].as_array().unwrap().is_empty(), "unexplained: {item}");
        assert_eq!(item["heads"].as_array().unwrap().len(), 9, "explain=true shows every head");
    }

    // The served items are logged as impressions carrying the request id.
    let request_id = feed["request_id"].as_str().unwrap().to_owned();
    let store = reelrank_store::Store::open_in_dir(dir.path()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (events, _) =
            store.all_events(|e| e.request_id.as_deref() == Some(request_id.as_str())).await.unwrap();
        if events.len() == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "{} of 20 impressions logged", events.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // not_interested acts on the next request.
    let rejected = items[0]["item_id"].as_str().unwrap().to_owned();
    let event = json!([{"user_id": "u7", "item_id": rejected, "kind": "not_interested", "ts": "2026-11-30T12:00:00Z"}]);
    assert_eq!(post(&client, &format!("{}/v1/events", server.url), event).await.0, 200);
    let (_, explanation) =
        get(&client, &format!("{}/v1/explain?user_id=u7&item_id={rejected}", server.url)).await;
    let filters = explanation["filtered_by"].as_array().unwrap();
    assert!(filters.contains(&json!("not_interested")), "{explanation}");
    for _ in 0..5 {
        let (_, next) = get(&client, &feed_url("u7")).await;
        assert!(next["items"].as_array().unwrap().iter().all(|i| i["item_id"] != rejected.as_str()));
    }

    // Operators see what each source retrieves before ranking, and the filter removing each.
    let (status, proposed) = get(&client, &format!("{}/v1/admin/candidates?user_id=u7", server.url)).await;
    assert_eq!(status, 200);
    let candidates = proposed["candidates"].as_array().unwrap();
    assert!(
        candidates.iter().any(|c| c["source"] == "two_tower" && c["filtered_by"].is_null()),
        "{proposed}"
    );
    assert!(candidates.iter().all(|c| c["proposed_by"].as_array().unwrap().contains(&c["source"])));
    assert!(candidates.len() > items.len(), "more candidates than a feed shows");

    // Engagement reaches the ranking features by the time the events are acknowledged.
    let liked = items[1]["item_id"].as_str().unwrap().to_owned();
    let explain_url = format!("{}/v1/explain?user_id=u7&item_id={liked}", server.url);
    let (_, before) = get(&client, &explain_url).await;
    // Now, so that the counters' decay leaves them whole whenever the test runs.
    let now = reelrank_core::Timestamp::now().millis();
    let fans: Vec<Value> = (0..30)
        .flat_map(|n| {
            ["impression", "play", "like"].map(|kind| {
                json!({"user_id": format!("fan{n}"), "item_id": liked, "kind": kind,
                       "request_id": format!("fan-request-{n}"), "ts": now})
            })
        })
        .collect();
    assert_eq!(post(&client, &format!("{}/v1/events", server.url), Value::Array(fans)).await.0, 200);
    let (_, after) = get(&client, &explain_url).await;
    let engagement = |e: &Value, name: &str| e["item_engagement"][name].as_f64().unwrap();
    assert!(
        engagement(&after, "showings") > engagement(&before, "showings") + 20.0
            && engagement(&after, "like") > engagement(&before, "like") + 0.2,
        "{} -> {}",
        before["item_engagement"],
        after["item_engagement"]
    );

    // The two-tower model learned from those positives and the feeds serve it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, feed) = get(&client, &feed_url("fan3")).await;
        let published = feed["model_version"].as_str().unwrap();
        if published.starts_with(&format!("{version}+")) {
            break;
        }
        assert!(Instant::now() < deadline, "no online model published: {published}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Catalog changes reach the feeds without a reload: a new item is proposed as fresh, a
    // takedown is filtered, both within seconds of being acknowledged.
    let taken_down = items[2]["item_id"].as_str().unwrap().to_owned();
    let new_item =
        json!([{"item_id": "just-published", "category": items[3]["category"], "published_at": now}]);
    assert_eq!(post(&client, &format!("{}/v1/items", server.url), new_item).await.0, 200);
    let takedown = json!([{"item_id": taken_down, "category": items[2]["category"], "status": "removed"}]);
    assert_eq!(post(&client, &format!("{}/v1/items", server.url), takedown).await.0, 200);
    let explain = |item: &str| format!("{}/v1/explain?user_id=u7&item_id={item}", server.url);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, fresh) = get(&client, &explain("just-published")).await;
        let (_, removed) = get(&client, &explain(&taken_down)).await;
        let removed_filtered = removed["filtered_by"].as_array().unwrap().contains(&json!("moderation"));
        if status == 200 && fresh["source"] == "fresh" && removed_filtered {
            assert_eq!(trained(&fresh), version, "applied without a reload");
            break;
        }
        assert!(Instant::now() < deadline, "catalog changes not served within 5 s: {fresh} {removed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        let (_, next) = get(&client, &feed_url("u7")).await;
        assert!(next["items"].as_array().unwrap().iter().all(|i| i["item_id"] != taken_down.as_str()));
    }

    // Turning personalisation off acts on the next request.
    let user = json!([{"user_id": "u9", "personalization": false}]);
    assert_eq!(post(&client, &format!("{}/v1/users", server.url), user).await.0, 200);
    let (_, plain) = get(&client, &feed_url("u9")).await;
    assert!(!plain["personalised"].as_bool().unwrap());
    for item in plain["items"].as_array().unwrap() {
        assert!(["trending", "fresh"].contains(&item["source"].as_str().unwrap()), "{item}");
    }

    // Users are split between the variants; each feed says which, and so does its request id.
    let mut variants = std::collections::HashSet::new();
    for user in 0..12 {
        let (_, feed) = get(&client, &feed_url(&format!("u{user}"))).await;
        let variant = feed["variant"].as_str().unwrap().to_owned();
        assert!(feed["request_id"].as_str().unwrap().starts_with(&format!("{variant}.")), "{feed}");
        variants.insert(variant);
    }
    assert_eq!(variants.len(), 2, "12 users all in one variant: {variants:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, report) = get(&client, &format!("{}/v1/experiments", server.url)).await;
        assert_eq!(status, 200, "{report}");
        let counted: Vec<u64> = report["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["impressions"].as_u64().unwrap())
            .collect();
        if counted.len() == 2 && counted.iter().all(|&n| n >= 20) {
            break;
        }
        assert!(Instant::now() < deadline, "impressions never reached the experiment report: {report}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Bad input is named.
    let (status, error) = get(&client, &format!("{}/v1/recommend?user_id=u7&n=0", server.url)).await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().starts_with("n:"), "{error}");
    let (status, error) = get(&client, &format!("{}/v1/recommend?user_id=", server.url)).await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().starts_with("user_id:"), "{error}");

    // Retrain while clients keep asking: the new model is swapped in and no request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (client, url) = (client.clone(), feed_url(&format!("u{}", 20 + c)));
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            tokio::spawn(async move {
                let mut versions = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => {
                            let body: Value = r.json().await.unwrap();
                            versions.push(body["model_version"].as_str().unwrap().to_owned());
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                versions
            })
        })
        .collect();
    let dir_path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || run(&dir_path, &["train", "ranking", "--epochs", "1"]))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, feed) = get(&client, &feed_url("u30")).await;
        if trained(&feed) != version {
            break;
        }
        assert!(Instant::now() < deadline, "the retrained model was never swapped in");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut versions = Vec::new();
    for client in clients {
        versions.extend(client.await.unwrap());
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during the swap");
    assert!(served.load(Ordering::Relaxed) > 20, "too little load to test anything");
    let trained_versions: Vec<&str> = versions.iter().map(|v| v.split('+').next().unwrap()).collect();
    assert!(
        trained_versions.contains(&version.as_str()) && trained_versions.iter().any(|v| *v != version),
        "the load spanned the swap"
    );

    // The swap loaded the catalog again, without the item taken down: it is no longer held.
    let (status, _) = get(&client, &explain(&taken_down)).await;
    assert_eq!(status, 404, "a taken-down item is held after a reload");
}
