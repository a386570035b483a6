//! Acknowledged data survives `kill -9`: a server ingesting batches from concurrent clients is
//! killed at a random moment, restarted, and every batch that got a 2xx must be stored exactly once,
//! while every batch is stored whole or not at all.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::Server;

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
