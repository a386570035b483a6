//! Two `reelrank serve` replicas over one store (PostgreSQL when configured) sharing users'
//! activity through Redis (run when `REELRANK_TEST_REDIS` is set, required in CI): what one
//! replica takes or serves shapes the user's very next feed from the other.

use std::collections::HashSet;

use reelrank_store::testing;
use serde_json::{json, Value};

use crate::{candidates, get, post, reelrank, Server};

async fn feed(client: &reqwest::Client, base: &str, user: &str) -> HashSet<String> {
    let (status, body) = get(client, &format!("{base}/v1/recommend?user_id={user}&n=10")).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().iter().map(|i| i["item_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_serves_what_another_took() {
    let Some((redis, prefix)) = testing::redis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let database = testing::postgres_url().await.unwrap_or_default();
    let env = [
        ("REELRANK__STORE__DATABASE", database.as_str()),
        ("REELRANK__SERVING__SHARED_STATE__REDIS_URL", redis.as_str()),
        ("REELRANK__SERVING__SHARED_STATE__KEY_PREFIX", prefix.as_str()),
        ("REELRANK__SERVING__ONLINE__ENABLED", "false"),
    ];
    let simulate = ["simulate", "--users", "60", "--items", "400", "--days", "2", "--seed", "9"];
    let out = reelrank(dir.path()).args(simulate).envs(env).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (a, b) = (Server::start_with(dir.path(), &env), Server::start_with(dir.path(), &env));
    let client = reqwest::Client::new();
    let (_, ready) = get(&client, &format!("{}/readyz", b.url)).await;
    assert_eq!(ready["shared_state"], "ok", "{ready}");

    // A feed served by A is not served again by B.
    let first = feed(&client, &a.url, "u1").await;
    let second = feed(&client, &b.url, "u1").await;
    assert_eq!(first.len(), 10);
    assert!(first.is_disjoint(&second), "{first:?} {second:?}");

    // An item marked not interested on B, and one played as posted to A, leave the other's feed.
    let kept: Vec<String> = candidates(&client, &a.url, "u2")
        .await
        .into_iter()
        .filter(|(_, f)| f.is_none())
        .map(|(id, _)| id)
        .collect();
    let (marked, played) = (&kept[0], &kept[1]);
    let (status, body) =
        post(&client, &format!("{}/v1/users/u2/not-interested", b.url), json!({"item_id": marked})).await;
    assert_eq!(status, 200, "{body}");
    let event = json!([{"event_id": "replicas-1", "user_id": "u2", "item_id": played, "kind": "play",
                        "ts": reelrank_core::Timestamp::now().to_string()}]);
    let (status, body) = post(&client, &format!("{}/v1/events", a.url), event).await;
    assert_eq!(status, 200, "{body}");
    let on_b = candidates(&client, &b.url, "u2").await;
    let on_a = candidates(&client, &a.url, "u2").await;
    // Sources may leave out seen items before the filters do: either way neither is kept.
    for (candidates, replica) in [(&on_a, "A"), (&on_b, "B")] {
        assert_eq!(candidates.get(marked), Some(&Some("not_interested".to_owned())), "{replica}");
        assert!(
            matches!(candidates.get(played), None | Some(Some(_))),
            "{replica}: {:?}",
            candidates.get(played)
        );
    }

    // A profile reset on A: B no longer holds what u0 liked.
    let tags = |base: &str| format!("{base}/v1/users/u0/tags");
    let (_, before) = get(&client, &tags(&b.url)).await;
    assert!(!before["tags"].as_array().unwrap().is_empty(), "{before}");
    let (status, body) = post(&client, &format!("{}/v1/users/u0/reset", a.url), Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let (_, after) = get(&client, &tags(&b.url)).await;
    assert_eq!(after["tags"], json!([]), "{after}");
}

/// A `redis-server` of the test's own on a port, so that killing it touches no other test;
/// killed when dropped.
struct OwnRedis(std::process::Child);

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let redis = OwnRedis(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return redis;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("redis-server did not listen on {port}");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_outlives_redis_and_rebuilds_it_from_the_log() {
    if testing::redis().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    crate::run(dir.path(), &["simulate", "--users", "30", "--items", "200", "--days", "1", "--seed", "4"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = OwnRedis::start(port);
    let redis_url = format!("redis://127.0.0.1:{port}/0");
    let env = [
        ("REELRANK__SERVING__SHARED_STATE__REDIS_URL", redis_url.as_str()),
        ("REELRANK__SERVING__ONLINE__ENABLED", "false"),
    ];
    let server = Server::start_with(dir.path(), &env);
    let client = reqwest::Client::new();
    let first = feed(&client, &server.url, "u0").await;
    let kept = candidates(&client, &server.url, "u1").await.into_iter().find(|(_, f)| f.is_none());
    let item = kept.expect("u1 has candidates").0;

    // Redis killed: feeds are refused with the reason, readiness says so, events are still taken.
    drop(redis);
    let (status, body) = get(&client, &format!("{}/v1/recommend?user_id=u0", server.url)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("shared state unavailable"), "{body}");
    let (status, ready) = get(&client, &format!("{}/readyz", server.url)).await;
    assert_eq!(status, 503, "{ready}");
    assert_ne!(ready["shared_state"], "ok", "{ready}");
    let event = json!([{"event_id": "outage-1", "user_id": "u1", "item_id": item, "kind": "play",
                        "ts": reelrank_core::Timestamp::now().to_string()}]);
    let (status, body) = post(&client, &format!("{}/v1/events", server.url), event).await;
    assert_eq!(status, 200, "{body}");

    // Redis back, empty: the replica reconnects and rebuilds it from the log, the event taken
    // during the outage and the feed served before it included.
    let _redis = OwnRedis::start(port);
    let mut status = 0;
    for _ in 0..100 {
        (status, _) = get(&client, &format!("{}/readyz", server.url)).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "readiness did not come back");
    let mut rebuilt = false;
    for _ in 0..100 {
        let u1 = candidates(&client, &server.url, "u1").await;
        if u1.get(&item).is_none_or(Option::is_some) {
            rebuilt = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(rebuilt, "the event taken during the outage never reached the shared state");
    assert!(first.is_disjoint(&feed(&client, &server.url, "u0").await), "the feed served before the outage");
}
