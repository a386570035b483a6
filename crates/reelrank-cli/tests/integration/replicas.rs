//! Two `reelrank serve` replicas over one store (PostgreSQL when configured) sharing users'
//! activity and item counters through Redis (run when `REELRANK_TEST_REDIS` is set, required in
//! CI): what one replica takes or serves shapes the user's very next feed from the other; API
//! replicas serve what the trainer learned, and a standby trainer takes over when the trainer
//! dies.

use std::collections::HashSet;

use reelrank_store::testing;
use serde_json::{json, Value};

use crate::{
    candidates, get, held_items, online_status, post, post_ok, reelrank, shown_and_finished, trained, Server,
};

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

    // Item heat is counted in Redis for both (neither counts it itself): a feed without
    // personalisation, scored by heat, has hot trending items.
    let user = json!([{"user_id": "u9", "personalization": false}]);
    assert_eq!(post(&client, &format!("{}/v1/users", a.url), user).await.0, 200);
    let (_, plain) = get(&client, &format!("{}/v1/recommend?user_id=u9&n=10", b.url)).await;
    let trending: Vec<f64> = plain["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["source"] == "trending")
        .map(|i| i["score"].as_f64().unwrap())
        .collect();
    assert!(!trending.is_empty() && trending.iter().all(|&heat| heat > 0.0), "{plain}");

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

/// Polls `GET url` until `done` accepts the answer (30 s at most).
async fn until(client: &reqwest::Client, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, answer) = get(client, url).await;
        if done(&answer) {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "{url} never got there: {answer}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_replicas_follow_the_trainer_and_a_standby_trainer_takes_over_when_it_dies() {
    let Some((redis, prefix)) = testing::redis() else { return };
    let database = testing::postgres_url().await.unwrap_or_default();
    let store = ("REELRANK__STORE__DATABASE", database.as_str());
    let dir = trained("6", &["retrieval", "ranking"], &[store]);
    let with_role = |role| {
        [
            store,
            ("REELRANK__SERVING__SHARED_STATE__REDIS_URL", redis.as_str()),
            ("REELRANK__SERVING__SHARED_STATE__KEY_PREFIX", prefix.as_str()),
            ("REELRANK__SERVING__ONLINE__PUBLISH_SECS", "1"),
            ("REELRANK__SERVING__ONLINE__SNAPSHOT_SECS", "1"),
            ("REELRANK__SERVING__MODEL_CHECK_SECS", "1"),
            ("REELRANK__SERVING__ROLE", role),
        ]
    };
    let mut trainer = Server::start_with(dir.path(), &with_role("trainer"));
    let (a, b) = (
        Server::start_with(dir.path(), &with_role("api")),
        Server::start_with(dir.path(), &with_role("api")),
    );
    let standby = Server::start_with(dir.path(), &with_role("trainer"));
    let client = reqwest::Client::new();
    let role = |server: &Server| {
        let (client, url) = (client.clone(), format!("{}/readyz", server.url));
        async move { get(&client, &url).await.1["role"].as_str().unwrap_or_default().to_owned() }
    };
    assert_eq!(role(&trainer).await, "trainer: holds the lease, learning");
    assert_eq!(role(&standby).await, "trainer: standing by, another holds the lease");
    assert_eq!(role(&a).await, "api");

    // Events sent to A: the trainer learns from them and snapshots what it learned, B swaps to
    // it, and B's feeds leave out what the user finished.
    let items = held_items(&client, &a.url, 40).await;
    post_ok(&client, format!("{}/v1/events", a.url), shown_and_finished("early", &items)).await;
    let learned = |s: &Value| s["two_tower"]["learned"].as_u64().unwrap();
    let first = online_status(&client, &trainer.url, |s| {
        learned(s) >= 40 && s["two_tower"]["snapshot_seq"].as_i64() > Some(0)
    })
    .await;
    let version = |feed: &Value| feed["model_version"].as_str().unwrap_or_default().to_owned();
    let on_b = until(&client, &format!("{}/v1/recommend?user_id=early0&n=10", b.url), |feed| {
        version(feed).contains('+')
    })
    .await;
    let finished: Vec<&String> = items.iter().step_by(7).collect();
    let candidates = candidates(&client, &b.url, "early0").await;
    for item in &finished {
        assert!(
            matches!(candidates.get(*item), None | Some(Some(_))),
            "{item} finished, still a candidate on B"
        );
    }
    // The impressions of B's feeds wait for their outcomes in the trainer, which learns from
    // them; the standby, which learns nothing, keeps none.
    let waiting = online_status(&client, &trainer.url, |s| s["ranking"]["queued"].as_u64() > Some(0)).await;
    let standing_by = online_status(&client, &standby.url, |s| {
        s["applied_seq"].as_i64() >= waiting["applied_seq"].as_i64()
    })
    .await;
    assert_eq!(standing_by["ranking"]["queued"], 0, "{standing_by}");

    // The trainer killed: the standby takes the lease, resumes from the newest snapshot and
    // learns on from events sent to B; A swaps to what it publishes.
    trainer.child.kill().unwrap(); // SIGKILL
    trainer.child.wait().unwrap();
    until(&client, &format!("{}/readyz", standby.url), |ready| {
        ready["role"] == "trainer: holds the lease, learning"
    })
    .await;
    let resumed = online_status(&client, &standby.url, |s| learned(s) >= learned(&first)).await;
    post_ok(&client, format!("{}/v1/events", b.url), shown_and_finished("late", &items)).await;
    let after = online_status(&client, &standby.url, |s| {
        learned(s) >= learned(&resumed) + 40
            && s["two_tower"]["snapshot_seq"].as_i64() > first["two_tower"]["snapshot_seq"].as_i64()
    })
    .await;
    // The standby published past anything the dead trainer did: `+N` counts publications.
    let publications = |feed: &Value| version(feed).split('+').nth(1).and_then(|n| n.parse::<u64>().ok());
    until(&client, &format!("{}/v1/recommend?user_id=late0&n=10", a.url), |feed| {
        publications(feed) >= after["publications"].as_u64()
    })
    .await;
    assert!(publications(&on_b) < after["publications"].as_u64(), "{on_b} {after}");
}
