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
