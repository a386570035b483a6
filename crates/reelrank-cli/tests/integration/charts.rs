//! Charts over HTTP and on the command line: the server's charts, kept as the log grows, equal
//! the command's one-pass replay; an account posting plays like a machine is excluded and does
//! not count; a taken-down item leaves the chart.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{get, reelrank, run, Server};

fn cli_json(dir: &std::path::Path, args: &[&str]) -> Value {
    let out = reelrank(dir).args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// Polls `url` until `done` holds of its answer (the tail applies posts within a tick).
async fn until(client: &reqwest::Client, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(client, url).await;
        assert_eq!(status, 200, "{body}");
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_follow_the_log_and_leave_out_machines_and_takedowns() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &["simulate", "--users", "150", "--items", "800", "--days", "9", "--seed", "9"]);
    let offline =
        cli_json(dir.path(), &["charts", "--category", "short_video", "--period", "week", "--limit", "1000"]);
    let rows = offline["rows"].as_array().unwrap();
    assert!(rows.len() > 20, "{offline}");

    let server = Server::start(dir.path());
    let client = reqwest::Client::new();
    let chart_url = format!("{}/v1/charts?category=short_video&period=week&limit=1000", server.url);
    let (status, served) = get(&client, &chart_url).await;
    assert_eq!(status, 200, "{served}");
    assert_eq!(served, offline, "the server's charts and the command's replay agree");
    let (status, error) =
        get(&client, &format!("{}/v1/charts?period=week&date=2026-02-30", server.url)).await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("`date`"), "{error}");
    let page = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = page.get(format!("{}/charts?category=short_video", server.url)).send().await.unwrap();
    assert_eq!(
        page.headers()["location"],
        "/dashboard#charts?category=short_video",
        "the dashboard's charts page"
    );

    // One account plays an item 700 times in an hour, 2 to 7 s apart, then finishes it:
    // excluded, not counted.
    let last = &rows[rows.len() - 1];
    let item = last["item_id"].as_str().unwrap();
    let day = served["to"].as_str().unwrap();
    let mut secs = 0;
    let mut events: Vec<Value> = (0..700)
        .map(|k| {
            secs += 2 + k * 7 % 6;
            let ts = format!("{day}T10:{:02}:{:02}Z", secs / 60, secs % 60);
            json!({"user_id": "clicker", "item_id": item, "kind": "play", "ts": ts})
        })
        .collect();
    assert!(secs < 3600);
    events.push(
        json!({"user_id": "clicker", "item_id": item, "kind": "finish", "ts": format!("{day}T10:59:59Z")}),
    );
    let response = client.post(format!("{}/v1/events", server.url)).json(&events).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let excluded_url = format!("{}/v1/charts/excluded", server.url);
    let excluded =
        until(&client, &excluded_url, |body| body["accounts"].as_array().is_some_and(|a| !a.is_empty()))
            .await;
    assert_eq!(excluded["accounts"][0]["user_id"], "clicker", "{excluded}");
    assert_eq!(excluded["accounts"][0]["reason"]["signal"], "rate", "{excluded}");
    let (_, after) = get(&client, &chart_url).await;
    assert_eq!(after["rows"], served["rows"], "the machine's plays do not count");

    // A takedown leaves the chart on the next tick.
    let top = rows[0]["item_id"].as_str().unwrap();
    let taken_down =
        json!({"item_id": top, "title": "taken down", "category": "short_video", "status": "removed"});
    let response =
        client.post(format!("{}/v1/items", server.url)).json(&json!([taken_down])).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let gone = |body: &Value| body["rows"].as_array().unwrap().iter().all(|row| row["item_id"] != top);
    let chart = until(&client, &chart_url, gone).await;
    assert!(gone(&chart), "{}", chart["rows"][0]);
    assert_eq!(chart["rows"][0]["item_id"], rows[1]["item_id"]);
}
