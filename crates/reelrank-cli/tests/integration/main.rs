//! Tests of the `reelrank` binary as a process: crash recovery and the commands' contracts.

mod charts;
mod cli;
mod controls;
mod crash;
mod dashboard;
mod moderation;
mod replicas;
mod serving;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub fn reelrank(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reelrank"));
    command.arg("--data-dir").arg(data_dir).env("RUST_LOG", "warn");
    command
}

/// Runs `reelrank ARGS` on `data_dir` and fails the test, with its stderr, when it fails.
pub fn run(data_dir: &Path, args: &[&str]) {
    let out = reelrank(data_dir).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `GET url`: the status and the JSON answer (`null` when the body is not JSON).
pub async fn get(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let response = client.get(url).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(serde_json::Value::Null))
}

/// `POST url` with a JSON body: the status and the JSON answer (`null` when the body is not JSON).
pub async fn post(client: &reqwest::Client, url: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(serde_json::Value::Null))
}

/// The candidates `GET /v1/admin/candidates` proposes for `user`: item id to the filter removing
/// it (`None`: kept).
pub async fn candidates(
    client: &reqwest::Client,
    base: &str,
    user: &str,
) -> std::collections::HashMap<String, Option<String>> {
    let (status, body) = get(client, &format!("{base}/v1/admin/candidates?user_id={user}")).await;
    assert_eq!(status, 200, "{body}");
    body["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["item_id"].as_str().unwrap().to_owned(), c["filtered_by"].as_str().map(str::to_owned)))
        .collect()
}

/// A `reelrank serve` process on a free loopback port, with the base URL it announced.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// A server with extra environment variables (settings such as `REELRANK__SERVING__...`).
    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut child = reelrank(data_dir)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn reelrank serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected: {line}"))
            .to_owned();
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A data directory with a small simulated platform (seeded by `seed`) and `models` trained on it,
/// in the store the settings in `env` name.
pub fn trained(seed: &str, models: &[&str], env: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let simulate = ["simulate", "--users", "60", "--items", "400", "--days", "2", "--seed", seed];
    let train = models.iter().map(|model| vec!["train", model, "--epochs", "1"]);
    for args in std::iter::once(simulate.to_vec()).chain(train) {
        let out = reelrank(dir.path()).args(&args).envs(env.iter().copied()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    dir
}

/// Posts `body` to `url` and fails the test unless it is accepted.
pub async fn post_ok(client: &reqwest::Client, url: String, body: serde_json::Value) {
    let (status, answer) = crate::post(client, &url, body).await;
    assert_eq!(status, 200, "{answer}");
}

/// The first `n` simulated items (`i0`, `i1`, ...) that the engine at `url` holds: the simulated
/// catalog also has items past their licence, which the engine leaves out.
pub async fn held_items(client: &reqwest::Client, url: &str, n: usize) -> Vec<String> {
    let mut held = Vec::new();
    for k in 0..400 {
        let item = format!("i{k}");
        let explained =
            client.get(format!("{url}/v1/explain?user_id=probe&item_id={item}")).send().await.unwrap();
        if explained.status().is_success() {
            held.push(item);
        }
        if held.len() == n {
            return held;
        }
    }
    panic!("fewer than {n} simulated items are held");
}

/// `items` shown to users `{prefix}0..` ten minutes ago and finished (each a positive for the
/// two-tower model and, its outcome wait over, an example for the ranking model), then a rating
/// that moves the log's clock to now, as a JSON body.
pub fn shown_and_finished(prefix: &str, items: &[String]) -> serde_json::Value {
    let now = reelrank_core::Timestamp::now().millis();
    let ago = now - 600_000;
    let mut events: Vec<serde_json::Value> = items
        .iter()
        .enumerate()
        .flat_map(|(k, item)| {
            let (user, request) = (format!("{prefix}{}", k % 7), format!("{prefix}-{k}"));
            ["impression", "finish"].map(|kind| {
                serde_json::json!({"user_id": user, "item_id": item, "kind": kind, "request_id": request, "ts": ago})
            })
        })
        .collect();
    events.push(serde_json::json!({"user_id": format!("{prefix}-clock"), "item_id": items[0], "kind": "rate", "value": 1, "ts": now}));
    serde_json::Value::Array(events)
}

/// Polls `GET /v1/admin/online` until `done` accepts the status (30 s at most: CI's machines are
/// busy with other tests).
pub async fn online_status(
    client: &reqwest::Client,
    url: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status: serde_json::Value =
            client.get(format!("{url}/v1/admin/online")).send().await.unwrap().json().await.unwrap();
        if done(&status) {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "online learning never got there: {status}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
