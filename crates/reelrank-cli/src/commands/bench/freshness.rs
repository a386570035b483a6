//! `reelrank bench freshness`: how soon behaviour shows in feeds. The store and the models in
//! `--data-dir` (for example `reelrank --data-dir D demo --no-serve` leaves them in `D/demo`) are
//! served in-process on 127.0.0.1. For each of `--users` users, a category absent from their feed
//! becomes theirs: they finish and like a few of its items, and their next feed is asked for as
//! soon as the events are acknowledged. Counted: feeds that now hold the category, and those where
//! the two-tower source (the user tower reading the new history) was among its proposers, at once
//! and again once the online two-tower model that learned those events is published; and how soon
//! the category is among the two-tower source's candidates (`GET /v1/admin/candidates`: before
//! ranking, which shows only a few of them). Then
//! `--new-items` items are published one at a time, each followed by feeds for one user after
//! another until one serves it: timed from the item's acknowledgement. The data directory is
//! served from a copy, so runs repeat and the original keeps no bench events.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use reelrank_core::{ModerationStatus, Timestamp};
use serde_json::{json, Value};

use crate::settings::Settings;

/// Arguments of `bench freshness`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users whose interest moves.
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Items of the new category each of them finishes and likes.
    #[arg(long, default_value_t = 3)]
    liked: usize,
    /// Items published while serving, one at a time.
    #[arg(long, default_value_t = 20)]
    new_items: usize,
}

/// How long a new item may take to be served before it counts as never served.
const NEW_ITEM_GIVE_UP_S: f64 = 30.0;

pub async fn run(data_dir: &Path, settings: &Settings, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(settings.store.database.is_empty(), "the freshness bench runs on the embedded store");
    let copy = tempfile::tempdir()?;
    copy_dir(data_dir, copy.path()).with_context(|| format!("copying {}", data_dir.display()))?;
    let data_dir = copy.path();
    let store = crate::commands::open_store(data_dir, settings).await?;
    let items = store.all_items().await?;
    let users = store.all_users().await?;
    store.close().await;
    anyhow::ensure!(
        !items.is_empty() && !users.is_empty(),
        "{} holds no catalog or no users",
        data_dir.display()
    );
    // Each category's servable items, largest category first.
    let mut by_category: BTreeMap<String, Vec<&reelrank_core::Item>> = BTreeMap::new();
    for item in items.iter().filter(|i| i.status.is_none_or(|s| s == ModerationStatus::Approved)) {
        by_category.entry(item.category.as_str().to_owned()).or_default().push(item);
    }
    let mut categories: Vec<(&String, &Vec<&reelrank_core::Item>)> = by_category.iter().collect();
    categories.sort_by_key(|(name, items)| (std::cmp::Reverse(items.len()), name.as_str()));

    let url = serve(data_dir.to_owned(), settings.clone()).await?;
    let client = reqwest::Client::new();
    let feed = |user: &str| get_json(&client, format!("{url}/v1/recommend?user_id={user}&n=20&explain=true"));
    let retrieved = |user: &str| get_json(&client, format!("{url}/v1/admin/candidates?user_id={user}"));
    let (mut moved, mut by_two_tower, mut waits, mut acks) = (0, 0, Vec::new(), Vec::new());
    let mut tried_users: Vec<Moved> = Vec::new();
    let mut version = String::new();
    for user in users.iter().take(args.users) {
        let user_id = user.user_id.as_str();
        let before = feed(user_id).await?;
        let shown: HashSet<&str> =
            before["items"].as_array().into_iter().flatten().filter_map(|i| i["category"].as_str()).collect();
        let Some((category, liked)) = categories.iter().find(|(name, _)| !shown.contains(name.as_str()))
        else {
            continue;
        };
        let now = Timestamp::now().millis();
        let events: Vec<Value> = liked
            .iter()
            .take(args.liked)
            .enumerate()
            .flat_map(|(k, item)| {
                let request = format!("fresh-{user_id}-{k}");
                let watch = item.duration_s.unwrap_or(60.0) * 1000.0;
                [
                    ("impression", None),
                    ("play", None),
                    ("watch", Some(watch)),
                    ("finish", None),
                    ("like", None),
                ]
                .map(|(kind, value)| {
                    json!({"user_id": user_id, "item_id": item.item_id, "kind": kind, "value": value,
                               "request_id": request, "ts": now})
                })
            })
            .collect();
        let retrieved_before = two_tower_share(&retrieved(user_id).await?, category);
        let sent = Instant::now();
        client.post(format!("{url}/v1/events")).json(&events).send().await?.error_for_status()?;
        let acknowledged = Instant::now();
        let after = feed(user_id).await?;
        waits.push(acknowledged.elapsed().as_secs_f64());
        acks.push((acknowledged - sent).as_secs_f64());
        version = after["model_version"].as_str().unwrap_or_default().to_owned();
        let (holds, by_tower) = holds_category(&after, category);
        moved += usize::from(holds);
        by_two_tower += usize::from(by_tower);
        let retrieved_at_once = two_tower_share(&retrieved(user_id).await?, category);
        tried_users.push(Moved {
            user_id,
            category: category.as_str(),
            acknowledged,
            retrieved: [retrieved_before, retrieved_at_once, retrieved_at_once],
            retrieved_after_s: (retrieved_at_once > 0.0).then(|| acknowledged.elapsed().as_secs_f64()),
        });
    }
    // Meanwhile the two-tower model learns those positives in the background and publishes
    // within `publish_secs`. Until it has (or for 60 s), and until 60 s after each user's events
    // were acknowledged, the model version and the users' two-tower candidates (before ranking
    // picks a few for the feed) are asked for again and again.
    let waiting = Instant::now();
    let mut published = None;
    loop {
        if published.is_none() {
            let probe = feed(users[users.len() - 1].user_id.as_str()).await?;
            if probe["model_version"].as_str().is_some_and(|v| v != version) {
                published = Some(waiting.elapsed().as_secs_f64());
            }
        }
        for moved in tried_users.iter_mut().filter(|m| m.acknowledged.elapsed().as_secs() < 60) {
            let asked = moved.acknowledged.elapsed().as_secs_f64();
            let share = two_tower_share(&retrieved(moved.user_id).await?, moved.category);
            if moved.retrieved_after_s.is_none() && share > 0.0 {
                moved.retrieved_after_s = Some(asked);
            }
            moved.retrieved[2] = share;
        }
        let retrieving = tried_users.iter().any(|m| m.acknowledged.elapsed().as_secs() < 60);
        if !retrieving && (published.is_some() || waiting.elapsed().as_secs() >= 60) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // Asked also when nothing was published (online learning off), as the control.
    let mut later_two_tower = 0;
    for moved in &tried_users {
        later_two_tower += usize::from(holds_category(&feed(moved.user_id).await?, moved.category).1);
    }
    // Of the users none of whose two-tower candidates were of the category before their events.
    let lacking: Vec<&Moved> = tried_users.iter().filter(|m| m.retrieved[0] == 0.0).collect();
    let mut retrieved_after: Vec<f64> = lacking.iter().filter_map(|m| m.retrieved_after_s).collect();
    retrieved_after.sort_by(f64::total_cmp);
    let retrieved_mean =
        |at: usize| tried_users.iter().map(|m| m.retrieved[at]).sum::<f64>() / tried_users.len() as f64;
    let tried = waits.len();
    anyhow::ensure!(tried > 0, "no user had a category missing from their feed");
    waits.sort_by(f64::total_cmp);
    acks.sort_by(f64::total_cmp);
    let share = |n: usize| n as f64 / tried as f64;
    println!(
        "{tried} users took to a category new to their feed ({} liked items each): the next feed held it for {:.0} % \
         (proposed by the two-tower source: {:.0} %); acknowledgement to next feed p50 {:.1} ms, p95 {:.1} ms; events acknowledged in p50 {:.1} ms",
        args.liked,
        100.0 * share(moved),
        100.0 * share(by_two_tower),
        super::percentile(&waits, 0.5),
        super::percentile(&waits, 0.95),
        super::percentile(&acks, 0.5)
    );
    match published {
        Some(after) => println!(
            "the online two-tower model was published {after:.1} s after the last of those events; the users' next feeds then held the category through the two-tower source for {:.0} %",
            100.0 * share(later_two_tower)
        ),
        None => println!(
            "no online two-tower model was published within 60 s; the users' next feeds then held the category through the two-tower source for {:.0} %",
            100.0 * share(later_two_tower)
        ),
    }
    let retrieved_at = |q: f64| {
        if retrieved_after.is_empty() {
            f64::NAN
        } else {
            super::percentile(&retrieved_after, q)
        }
    };
    println!(
        "the category's share of the users' two-tower candidates: {:.1} % before their events, {:.1} % just after them, {:.1} % 60 s after them",
        100.0 * retrieved_mean(0),
        100.0 * retrieved_mean(1),
        100.0 * retrieved_mean(2)
    );
    println!(
        "{} users' two-tower candidates held none of the category before; within 60 s {} did ({:.0} %), acknowledgement to the first ask holding it p50 {:.0} ms, max {:.0} ms",
        lacking.len(),
        retrieved_after.len(),
        100.0 * retrieved_after.len() as f64 / lacking.len().max(1) as f64,
        retrieved_at(0.5),
        retrieved_at(1.0)
    );
    let new_items = publish(&client, &url, &users, &categories, args.new_items).await?;
    let mut served = new_items.served_after_s.clone();
    served.sort_by(f64::total_cmp);
    let at = |q: f64| if served.is_empty() { f64::NAN } else { super::percentile(&served, q) };
    println!(
        "{} items published while serving: {} served, acknowledgement to the first feed serving it p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms ({} feeds asked)",
        args.new_items,
        served.len(),
        at(0.5),
        at(0.95),
        at(1.0),
        new_items.feeds
    );
    println!(
        "{}",
        json!({"bench": "freshness", "users": tried, "next_feed_share": share(moved),
               "two_tower_share": share(by_two_tower), "ack_to_feed_p50_ms": super::percentile(&waits, 0.5),
               "ack_to_feed_p95_ms": super::percentile(&waits, 0.95), "ack_p50_ms": super::percentile(&acks, 0.5),
               "new_items": args.new_items, "new_items_served": served.len(), "new_item_served_p50_ms": at(0.5),
               "new_item_served_p95_ms": at(0.95), "new_item_served_max_ms": at(1.0), "new_item_feeds": new_items.feeds,
               "online_published_after_s": published, "two_tower_share_later": share(later_two_tower),
               "two_tower_candidates_category_share": [retrieved_mean(0), retrieved_mean(1), retrieved_mean(2)],
               "two_tower_candidates_lacking": lacking.len(), "two_tower_candidates_within_60s": retrieved_after.len(),
               "two_tower_candidates_after_p50_ms": retrieved_at(0.5), "two_tower_candidates_after_max_ms": retrieved_at(1.0)})
    );
    Ok(())
}

/// A user whose interest moved to `category`.
struct Moved<'a> {
    user_id: &'a str,
    category: &'a str,
    /// When their events were acknowledged.
    acknowledged: Instant,
    /// The category's share of their two-tower candidates: before the events, just after them,
    /// and 60 s after them.
    retrieved: [f64; 3],
    /// Seconds from then until the category was first among their two-tower candidates.
    retrieved_after_s: Option<f64>,
}

/// The share of `category` among the two-tower source's candidates that pass the filters (the
/// items the user just watched do not), in an answer of `GET /v1/admin/candidates`.
fn two_tower_share(answer: &Value, category: &str) -> f64 {
    let two_tower: Vec<&Value> = answer["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["filtered_by"].is_null() && proposed_by_two_tower(c))
        .collect();
    let of_category = two_tower.iter().filter(|c| c["category"].as_str() == Some(category)).count();
    of_category as f64 / two_tower.len().max(1) as f64
}

/// Whether `feed` holds an item of `category`, and whether the two-tower source proposed one.
fn holds_category(feed: &Value, category: &str) -> (bool, bool) {
    let of_category: Vec<&Value> = feed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["category"].as_str() == Some(category))
        .collect();
    (!of_category.is_empty(), of_category.iter().any(|i| proposed_by_two_tower(i)))
}

/// Whether the two-tower source proposed a feed item or a candidate (its `proposed_by`).
fn proposed_by_two_tower(item: &Value) -> bool {
    item["proposed_by"].as_array().is_some_and(|s| s.contains(&json!("two_tower")))
}

/// What happened to the items [`publish`] published.
struct Published {
    /// Seconds from each served item's acknowledgement to the first feed serving it.
    served_after_s: Vec<f64>,
    /// Feeds asked for in all.
    feeds: usize,
}

/// Publishes `n` items, one at a time, each with the content of an item of one of the largest
/// categories (taken in turn) but a new id and published now; after each, asks feeds for one user after
/// another until one serves the new item.
async fn publish(
    client: &reqwest::Client,
    url: &str,
    users: &[reelrank_core::User],
    categories: &[(&String, &Vec<&reelrank_core::Item>)],
    n: usize,
) -> anyhow::Result<Published> {
    let mut published = Published { served_after_s: Vec::new(), feeds: 0 };
    let mut asker = users.iter().cycle();
    for k in 0..n {
        let (_, peers) = categories[k % categories.len().min(3)];
        let peer = peers[k % peers.len()];
        // The peer's content, none of its restrictions (regions, licence window, flags, age).
        let item = reelrank_core::Item {
            title: format!("new {}", peer.title),
            tags: peer.tags.clone(),
            creator_id: peer.creator_id.clone(),
            duration_s: peer.duration_s,
            language: peer.language.clone(),
            published_at: Some(Timestamp::now()),
            ..reelrank_core::Item::new(
                format!("bench-new-{k}-{}", Timestamp::now().millis()),
                peer.category.clone(),
            )
        };
        client.post(format!("{url}/v1/items")).json(&[&item]).send().await?.error_for_status()?;
        let acknowledged = Instant::now();
        while acknowledged.elapsed().as_secs_f64() < NEW_ITEM_GIVE_UP_S {
            let user = asker.next().expect("users is not empty");
            let feed = get_json(client, format!("{url}/v1/recommend?user_id={}&n=20", user.user_id)).await?;
            published.feeds += 1;
            let mut items = feed["items"].as_array().into_iter().flatten();
            if items.any(|i| i["item_id"].as_str() == Some(item.item_id.as_str())) {
                published.served_after_s.push(acknowledged.elapsed().as_secs_f64());
                break;
            }
        }
    }
    Ok(published)
}

/// GETs `url` and reads its JSON answer.
async fn get_json(client: &reqwest::Client, url: String) -> anyhow::Result<Value> {
    Ok(client.get(url).send().await?.error_for_status()?.json().await?)
}

/// Serves `data_dir` in the background on a free loopback port; returns its URL.
async fn serve(data_dir: PathBuf, settings: Settings) -> anyhow::Result<String> {
    let (ready, url) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let args = crate::commands::serve::Args { addr: Some("127.0.0.1:0".into()), role: None };
        let served = crate::commands::serve::run(&data_dir, &settings, args, move |url| {
            let _ = ready.send(url.to_owned());
        })
        .await;
        if let Err(err) = served {
            eprintln!("serving failed: {err:#}");
        }
    });
    url.await.context("the server stopped before it was ready")
}

/// Copies the files under `from` into `to`, folders included.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in fs_err::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs_err::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            fs_err::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
