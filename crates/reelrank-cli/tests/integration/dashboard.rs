//! The dashboard in a real browser: `tests/browser/dashboard.mjs` drives headless Chromium
//! (Debian's) with playwright-core against `reelrank serve` on trained models. It needs Node.js,
//! `/usr/bin/chromium` (or `CHROMIUM`) and `npm ci --prefix tests/browser`; without them the test
//! is skipped, unless `REELRANK_REQUIRE_BROWSER=1` (as in CI), which fails it instead.
//! Screenshots go to `target/browser-artifacts` (or `REELRANK_SCREENSHOTS`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run, Server};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// What is missing to run the browser, if anything.
fn missing(browser_tests: &Path) -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("no Chromium at {chromium}"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no node".into());
    }
    if !browser_tests.join("node_modules/playwright-core").exists() {
        return Some("playwright-core is not installed (npm ci --prefix tests/browser)".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_browser() {
    let root = repository();
    let browser_tests = root.join("tests/browser");
    if let Some(reason) = missing(&browser_tests) {
        assert!(
            std::env::var("REELRANK_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "REELRANK_REQUIRE_BROWSER=1 but {reason}"
        );
        eprintln!("skipping the browser test: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &["simulate", "--users", "150", "--items", "800", "--days", "4", "--seed", "8"]);
    // Epochs chosen on held-out data, so the models page has validation curves to draw.
    run(dir.path(), &["train", "retrieval"]);
    run(dir.path(), &["train", "ranking"]);
    let server = Server::start(dir.path());
    let screenshots = std::env::var("REELRANK_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/browser-artifacts"));
    let url = server.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(browser_tests.join("dashboard.mjs"))
            .arg(&url)
            .arg(&screenshots)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let say = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert!(output.status.success(), "{}{}", say(&output.stdout), say(&output.stderr));
    eprintln!("{}", say(&output.stdout));
}
