//! Command contracts that scripts rely on: `stats --json`, imports, `simulate`.

use std::io::Write;

use crate::reelrank;

fn stats(dir: &std::path::Path) -> serde_json::Value {
    let out = reelrank(dir).args(["stats", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// `../shared/PATH` beside the repository; `None` (test skipped) outside CI when it is absent.
fn shared(path: &str) -> Option<std::path::PathBuf> {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(path);
    if full.exists() {
        return Some(full);
    }
    assert!(std::env::var("CI").is_err(), "CI must have ../shared/{path}");
    eprintln!("../shared/{path} not found beside the repository: skipped");
    None
}

#[test]
fn imports_movielens_100k() {
    let Some(ml) = shared("datasets/ml-100k") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = reelrank(dir.path()).args(["import", "movielens"]).arg(&ml).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let counts = stats(dir.path());
    assert_eq!(
        (counts["items"].as_u64(), counts["users"].as_u64(), counts["events"].as_u64()),
        (Some(1682), Some(943), Some(100_000))
    );
}

#[test]
fn simulates_into_the_store_and_to_csv_and_imports_csv_back() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["simulate", "--users", "60", "--items", "400", "--days", "2", "--seed", "7"];
    let out = reelrank(dir.path()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let direct = stats(dir.path());
    assert_eq!(direct["items"].as_u64(), Some(400));
    assert!(dir.path().join("simulation/truth_affinity.csv").is_file());

    let csv = dir.path().join("csv");
    let out = reelrank(dir.path()).args(args).arg("--out").arg(&csv).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(csv.join("truth_affinity.csv").is_file());
    let other = tempfile::tempdir().unwrap();
    let out = reelrank(other.path())
        .args(["import", "csv", "--items"])
        .arg(csv.join("items.csv"))
        .arg("--users")
        .arg(csv.join("users.csv"))
        .arg("--events")
        .arg(csv.join("events.csv"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stats(other.path()), direct, "CSV round trip equals the direct simulation");
}

#[test]
fn bad_csv_row_is_named_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.csv");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "item_id,category,duration_s\na,movie,5400\nb,movie,-3").unwrap();
    let out = reelrank(dir.path()).args(["import", "csv", "--items"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("items.csv:3") && stderr.contains("duration_s"), "{stderr}");
    assert_eq!(stats(dir.path())["items"].as_u64(), Some(0));

    let check = |path: &std::path::Path| {
        reelrank(dir.path()).args(["import", "csv", "--check", "--items"]).arg(path).output().unwrap()
    };
    let out = check(&path);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("items.csv:3"));
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "item_id,category,duration_s\na,movie,5400\n").unwrap();
    let out = check(&good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("checked 1 items"), "{stdout}");
    assert_eq!(stats(dir.path())["items"].as_u64(), Some(0), "a check writes nothing");
}

/// The protocol is implemented exactly: most-popular reproduces the reference figures of
/// shared/benchmarks/RESULTS.md to four decimals on both splits.
#[test]
fn eval_retrieval_reproduces_the_reference_popularity_baseline() {
    for (split, recall, ndcg, coverage) in
        [("random", 0.2134, 0.1971, 0.066), ("temporal", 0.1670, 0.1643, 0.075)]
    {
        let Some(dir) = shared(&format!("benchmarks/ml-100k/{split}")) else {
            return;
        };
        let out = reelrank(&dir)
            .args(["eval", "retrieval", "--model", "popular", "--json", "--split"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let close = |key: &str, expected: f64, tolerance: f64| {
            let got = report[key].as_f64().unwrap();
            assert!((got - expected).abs() <= tolerance, "{split} {key}: {got} vs {expected}");
        };
        close("recall@20", recall, 5e-5);
        close("ndcg@20", ndcg, 5e-5);
        close("coverage@20", coverage, 5e-4);
    }
}

#[test]
fn trains_the_retrieval_model_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let simulate = ["simulate", "--users", "80", "--items", "400", "--days", "3", "--seed", "3"];
    assert!(reelrank(dir.path()).args(simulate).output().unwrap().status.success());
    let out = reelrank(dir.path()).args(["train", "retrieval"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("holdout epoch  1"), "early stopping reports each epoch: {stderr}");
    let model = reelrank_models::TwoTower::load(&dir.path().join("models/retrieval")).unwrap();
    assert!(model.table().memory().rows > 0);
    assert!(model.has_context(), "simulated events carry context");

    let similar = |item: &str| -> serde_json::Value {
        let out = reelrank(dir.path()).args(["similar", item, "-n", "5", "--json"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().last().unwrap()).unwrap()
    };
    let trained = similar("i1");
    assert_eq!(trained["from"], "index");
    let neighbours = trained["similar"].as_array().unwrap();
    assert_eq!(neighbours.len(), 5);
    assert!(neighbours.iter().all(|n| n["item_id"] != "i1"), "an item is not its own neighbour");

    // An item ingested after training is retrievable at once, by its content features.
    let items = dir.path().join("new.csv");
    std::fs::write(
        &items,
        "item_id,category,tags,creator_id,duration_s\nbrand-new,micro_drama,romance,c1,95\n",
    )
    .unwrap();
    assert!(reelrank(dir.path())
        .args(["import", "csv", "--items"])
        .arg(&items)
        .output()
        .unwrap()
        .status
        .success());
    let cold = similar("brand-new");
    assert_eq!(cold["from"], "content features");
    assert_eq!(cold["similar"].as_array().unwrap().len(), 5);
}

/// On a simulated platform the learned models find the users' true favourites, which popularity
/// does not: their truth Recall@20 is far above most-popular's.
#[test]
fn eval_simulated_beats_popularity_against_the_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["eval", "simulated", "--users", "300", "--items", "1500", "--days", "4"];
    let out = reelrank(dir.path()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let truth_recall = |model: &str| -> f64 {
        let line =
            stdout.lines().find(|l| l.starts_with(model)).unwrap_or_else(|| panic!("{model}: {stdout}"));
        let truth = line.split("truth top-20:").nth(1).unwrap();
        truth.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert!(truth_recall("default") > 2.0 * truth_recall("popular") + 0.02, "{stdout}");
    assert!(truth_recall("two-tower") > truth_recall("popular"), "{stdout}");
}

#[test]
fn trains_the_ranking_model_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let simulate = ["simulate", "--users", "80", "--items", "400", "--days", "3", "--seed", "3"];
    assert!(reelrank(dir.path()).args(simulate).output().unwrap().status.success());
    let out = reelrank(dir.path()).args(["train", "ranking"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("valid epoch  1"), "early stopping reports each epoch: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("negatives sampled"), "simulated logs have impressions: {stdout}");
    let saved = dir.path().join("models/ranking");
    let model = reelrank_models::WideDeep::load(&saved).unwrap();
    assert_eq!(model.heads(), reelrank_features::ACTIONS);
    let features = reelrank_features::RankingFeatures::load(&saved).unwrap();
    assert!(features.prior.rates.iter().all(|r| (0.0..=1.0).contains(r)));
}

/// A log of outcomes without impression events (as imported from a system that logs no
/// impressions) trains with sampled negatives.
#[test]
fn trains_the_ranking_model_from_outcomes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let items = dir.path().join("items.csv");
    std::fs::write(&items, "item_id,category\na,micro_drama\nb,comedy\nc,news\n").unwrap();
    let events = dir.path().join("events.csv");
    let mut rows = String::from("user_id,item_id,kind,ts\n");
    for u in 0..30 {
        let item = ["a", "b", "c"][u % 3];
        rows.push_str(&format!("u{u},{item},like,2026-01-0{}T10:00:00Z\n", 1 + u % 5));
    }
    std::fs::write(&events, rows).unwrap();
    let import = reelrank(dir.path())
        .args(["import", "csv", "--items"])
        .arg(&items)
        .arg("--events")
        .arg(&events)
        .output();
    let import = import.unwrap();
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let out = reelrank(dir.path()).args(["train", "ranking"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("on 150 examples (negatives sampled"),
        "30 likes with 4 negatives each: {stdout}"
    );
}

/// Every head learns something on a simulated platform, and the value model orders impressions
/// by the value they realised.
#[test]
fn eval_simulated_ranking_reports_every_head() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["eval", "simulated-ranking", "--users", "300", "--items", "1500", "--days", "4", "--json"];
    let out = reelrank(dir.path()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let heads = report["heads"].as_array().unwrap();
    assert_eq!(heads.len(), reelrank_features::ACTIONS.len());
    for head in heads {
        let name = head["head"].as_str().unwrap();
        if ["effective_play", "finish", "like", "skip"].contains(&name) {
            assert!(head["auc"].as_f64().unwrap() > 0.65, "{name}: {head}");
            assert!(head["gauc"].as_f64().unwrap() > 0.6, "{name}: {head}");
        }
    }
    assert!(report["value"]["auc"].as_f64().unwrap() > 0.65, "{stdout}");
}

#[test]
fn a_keyless_server_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = reelrank(dir.path()).args(["serve", "--addr", "0.0.0.0:0"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no API keys are configured"), "{stderr}");
}
