//! Acknowledged data survives `kill -9`: a server ingesting batches from concurrent clients is
//! killed at a random moment, restarted, and every batch that got a 2xx must be stored exactly once,
//! while every batch is stored whole or not at all. And what both models learned online survives
//! it: the restarted engine resumes each from its last snapshot and learns exactly the
//! acknowledged events after it; a model whose loss rises past the guard is rolled back.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::{held_items, online_status, post_ok, shown_and_finished, trained, Server};

const CLIENTS: usize = 4;
const BATCH: usize = 200;

fn batch_body(client: usize, round: usize, batch: usize) -> String {
    (0..BATCH)
        .map(|i| {
            format!(
                r#"{{"event_id":"r{round}-c{client}-b{batch}-{i}","user_id":"u{i}","item_id":"i{batch}","kind":"watch","value":{},"ts":"2026-05-01T12:00:00Z"}}"#,
                1000 * i
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends batches until the server goes away; returns the numbers of the acknowledged batches.
async fn client(url: String, client: usize, round: usize) -> Vec<usize> {
    let http = reqwest::Client::new();
    let mut acked = Vec::new();
    for batch in 0.. {
        let sent = http.post(format!("{url}/v1/events")).body(batch_body(client, round, batch)).send().await;
        match sent {
            Ok(response) if response.status().is_success() => acked.push(batch),
            Ok(response) => panic!("batch {batch}: HTTP {}", response.status()),
            Err(_) => break, // killed mid-request: this batch is not acknowledged
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(usize, usize, usize)> = Vec::new(); // (round, client, batch)
    let seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    for round in 0..3 {
        let mut server = Server::start(dir.path());
        let clients: Vec<_> =
            (0..CLIENTS).map(|c| tokio::spawn(client(server.url.clone(), c, round))).collect();
        let delay_ms = 300 + (seed.wrapping_mul(round as u64 + 7) % 1200);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        for (c, handle) in clients.into_iter().enumerate() {
            acked.extend(handle.await.unwrap().into_iter().map(|b| (round, c, b)));
        }
        eprintln!("round {round}: killed after {delay_ms} ms, {} batches acknowledged so far", acked.len());
    }
    assert!(acked.len() > 10, "too few batches were acknowledged to test anything");

    // A restarted server must come up on the crashed store.
    let server = Server::start(dir.path());
    let health = reqwest::get(format!("{}/healthz", server.url)).await.unwrap();
    assert!(health.status().is_success());
    drop(server);

    let store = reelrank_store::Store::open_in_dir(dir.path()).await.unwrap();
    let stored = store.events_after(0, u32::MAX).await.unwrap();
    let mut per_batch: HashMap<String, usize> = HashMap::new();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for e in &stored {
        let id = e.event.event_id.clone().unwrap();
        let batch = id.rsplit_once('-').unwrap().0.to_owned();
        *per_batch.entry(batch).or_default() += 1;
        *per_id.entry(id).or_default() += 1;
    }
    assert!(per_id.values().all(|n| *n == 1), "an event is stored twice");
    assert!(per_batch.values().all(|n| *n == BATCH), "a batch is stored partially");
    for (round, client, batch) in &acked {
        assert_eq!(
            per_batch.get(&format!("r{round}-c{client}-b{batch}")),
            Some(&BATCH),
            "acknowledged batch lost"
        );
    }
    eprintln!("{} acknowledged batches all present; {} batches stored", acked.len(), per_batch.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_learning_resumes_from_its_snapshots_and_replays_the_rest_after_sigkill() {
    let dir = trained("3", &["retrieval", "ranking"], &[]);
    let env =
        [("REELRANK__SERVING__ONLINE__PUBLISH_SECS", "1"), ("REELRANK__SERVING__ONLINE__SNAPSHOT_SECS", "1")];
    let client = reqwest::Client::new();
    let mut server = Server::start_with(dir.path(), &env);
    let learned = |s: &serde_json::Value, model: &str| s[model]["learned"].as_u64().unwrap();

    let items = held_items(&client, &server.url, 40).await;

    // Both models learned and snapshotted...
    post_ok(&client, format!("{}/v1/events", server.url), shown_and_finished("early", &items)).await;
    let snapshotted = online_status(&client, &server.url, |s| {
        learned(s, "two_tower") >= 40
            && learned(s, "ranking") >= 40
            && s["two_tower"]["snapshot_seq"] == s["applied_seq"]
            && s["ranking"]["snapshot_seq"].as_i64() > Some(0)
            && s["publications"].as_u64() >= Some(1)
    })
    .await;
    // ...then acknowledged while learning is paused, and lost with the process.
    post_ok(&client, format!("{}/v1/admin/online", server.url), serde_json::json!({"paused": true})).await;
    post_ok(&client, format!("{}/v1/events", server.url), shown_and_finished("late", &items[..30])).await;
    let paused = online_status(&client, &server.url, |s| {
        s["two_tower"]["queued"] == 30 && s["ranking"]["queued"] == 30
    })
    .await;
    assert_eq!(paused["paused"].as_bool(), Some(true));
    for model in ["two_tower", "ranking"] {
        assert_eq!(learned(&paused, model), learned(&snapshotted, model), "{paused}");
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();

    // The restarted engine resumes both models from their snapshots and learns the 30 again, and
    // only those.
    let server = Server::start_with(dir.path(), &env);
    let resumed = online_status(&client, &server.url, |s| {
        ["two_tower", "ranking"]
            .iter()
            .all(|&m| learned(s, m) == learned(&snapshotted, m) + 30 && s[m]["queued"] == 0)
    })
    .await;
    assert!(resumed["publications"].as_u64() >= snapshotted["publications"].as_u64(), "{resumed}");
    let feed: serde_json::Value = client
        .get(format!("{}/v1/recommend?user_id=late0&n=5", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        feed["model_version"].as_str().unwrap().contains('+'),
        "serving the resumed online model: {feed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_whose_loss_rises_past_the_guard_are_rolled_back() {
    let dir = trained("4", &["retrieval", "ranking"], &[]);
    // A guard so tight that the first step after the baseline trips it.
    let env = [
        ("REELRANK__SERVING__ONLINE__PUBLISH_SECS", "1"),
        ("REELRANK__SERVING__ONLINE__ROLLBACK_LOSS_RATIO", "0.001"),
    ];
    let server = Server::start_with(dir.path(), &env);
    let client = reqwest::Client::new();
    let items = held_items(&client, &server.url, 20).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let models = ["two_tower", "ranking"];
    let mut round = 0;
    let status = loop {
        let status: serde_json::Value =
            client.get(format!("{}/v1/admin/online", server.url)).send().await.unwrap().json().await.unwrap();
        if models.iter().all(|m| status[m]["rollbacks"].as_u64() >= Some(1)) {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "never rolled back: {status}");
        let events = shown_and_finished(&format!("r{round}-"), &items);
        post_ok(&client, format!("{}/v1/events", server.url), events).await;
        round += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Learning goes on from the models rolled back to.
    post_ok(&client, format!("{}/v1/events", server.url), shown_and_finished("after-", &items)).await;
    online_status(&client, &server.url, |s| {
        models.iter().all(|m| s[m]["learned"].as_u64() > status[m]["learned"].as_u64())
    })
    .await;
}
