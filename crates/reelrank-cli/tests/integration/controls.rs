//! A user's controls and minor mode over HTTP, each acting on the very next request: tags listed
//! and deleted, a creator dropped, a profile reset, personalisation off; age ratings and the daily
//! watch cap for minors; and the transparency page written from the settings in force.

use std::collections::HashMap;

use reelrank_core::Timestamp;
use reelrank_store::Store;
use serde_json::{json, Value};

use crate::{candidates, run, Server};

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controls_and_minor_mode_act_on_the_next_request() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &["simulate", "--users", "100", "--items", "600", "--days", "3", "--seed", "6"]);
    let server = Server::start(dir.path());
    let (base, client) = (server.url.clone(), reqwest::Client::new());
    let store = Store::open_in_dir(dir.path()).await.unwrap();
    let items: HashMap<String, reelrank_core::Item> =
        store.all_items().await.unwrap().into_iter().map(|i| (i.item_id.clone(), i)).collect();

    // The interest tags of a user with history; deleting the strongest hides its items.
    let (status, tags) = call(&client, Method::GET, &format!("{base}/v1/users/u1/tags"), None).await;
    assert_eq!(status, 200, "{tags}");
    let listed = tags["tags"].as_array().unwrap();
    assert!(!listed.is_empty(), "{tags}");
    assert_eq!(listed[0]["weight"], 1.0);
    let before = candidates(&client, &base, "u1").await;
    let tagged = |tag: &str, c: &HashMap<String, Option<String>>| -> Vec<String> {
        c.iter()
            .filter(|(id, f)| f.is_none() && items[*id].tags.iter().any(|t| t == tag))
            .map(|(id, _)| id.clone())
            .collect()
    };
    let tag = listed
        .iter()
        .map(|t| t["tag"].as_str().unwrap().to_owned())
        .find(|tag| !tagged(tag, &before).is_empty())
        .expect("some interest tag has candidates");
    let (status, controls) =
        call(&client, Method::DELETE, &format!("{base}/v1/users/u1/tags/{tag}"), None).await;
    assert_eq!((status, &controls["hidden_tags"]), (200, &json!([tag])));
    let after = candidates(&client, &base, "u1").await;
    assert!(tagged(&tag, &after).is_empty(), "items tagged {tag} still kept");
    // Still proposed (by a source other than the dropped positives), they are filtered.
    for id in tagged(&tag, &before).iter().filter(|id| after.contains_key(*id)) {
        assert_eq!(after[id].as_deref(), Some("not_interested"), "{id}");
    }
    let (_, tags) = call(&client, Method::GET, &format!("{base}/v1/users/u1/tags"), None).await;
    assert!(tags["tags"].as_array().unwrap().iter().all(|t| t["tag"] != tag.as_str()));
    assert_eq!(tags["hidden"], json!([tag]));

    // Not interested in a creator: none of their items from the next request on.
    let kept = after.iter().find(|(id, f)| f.is_none() && items[*id].creator_id.is_some()).unwrap().0.clone();
    let creator = items[&kept].creator_id.clone().unwrap();
    let (status, _) = call(
        &client,
        Method::POST,
        &format!("{base}/v1/users/u1/not-interested"),
        Some(json!({"creator_id": creator})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &client,
        Method::POST,
        &format!("{base}/v1/users/u1/not-interested"),
        Some(json!({"creator_id": creator, "tag": "x"})),
    )
    .await;
    assert_eq!(status, 422);
    let dropped = candidates(&client, &base, "u1").await;
    assert!(dropped.iter().all(|(id, f)| items[id].creator_id.as_deref() != Some(&creator) || f.is_some()));

    // A reset forgets the history: no interests left.
    let (status, reset) = call(&client, Method::POST, &format!("{base}/v1/users/u1/reset"), None).await;
    assert_eq!(status, 200, "{reset}");
    assert!(reset["reset_at"].is_string() && reset["hidden_tags"] == json!([tag]), "{reset}");
    let (_, tags) = call(&client, Method::GET, &format!("{base}/v1/users/u1/tags"), None).await;
    assert_eq!(tags["tags"], json!([]), "{tags}");

    // Personalisation off: the next feed is not personalised.
    let feed = |user: &str| format!("{base}/v1/recommend?user_id={user}&n=20");
    let (_, on) = call(&client, Method::GET, &feed("u2"), None).await;
    assert_eq!(on["personalised"], true);
    let (status, _) = call(
        &client,
        Method::PUT,
        &format!("{base}/v1/users/u2/personalization"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, off) = call(&client, Method::GET, &feed("u2"), None).await;
    assert_eq!(off["personalised"], false, "{off}");

    // Minor mode: age ratings, then the daily watch cap.
    let year = 2026 - 11;
    let users = json!([{"user_id": "kid", "birth_year": year}, {"user_id": "adult", "birth_year": 1990}]);
    assert_eq!(call(&client, Method::POST, &format!("{base}/v1/users"), Some(users)).await.0, 200);
    let kid = candidates(&client, &base, "kid").await;
    let rated = kid.iter().filter(|(id, _)| items[*id].age_rating.is_some_and(|r| r > 10)).count();
    assert!(kid.iter().all(|(id, f)| items[id].age_rating.is_none_or(|r| r <= 10) || f.is_some()));
    let (_, first) = call(&client, Method::GET, &feed("kid"), None).await;
    assert!(!first["items"].as_array().unwrap().is_empty() && first.get("watch_capped").is_none(), "{first}");
    let now = Timestamp::now().to_string();
    let item = first["items"][0]["item_id"].as_str().unwrap();
    let watched: Vec<Value> = ["kid", "adult"]
        .iter()
        .map(|user| json!({"user_id": user, "item_id": item, "kind": "watch", "value": 3_700_000.0, "ts": now}))
        .collect();
    assert_eq!(call(&client, Method::POST, &format!("{base}/v1/events"), Some(json!(watched))).await.0, 200);
    let (_, capped) = call(&client, Method::GET, &feed("kid"), None).await;
    assert_eq!(
        (capped["watch_capped"].as_bool(), capped["items"].as_array().unwrap().len()),
        (Some(true), 0),
        "{capped}"
    );
    let (_, adult) = call(&client, Method::GET, &feed("adult"), None).await;
    assert!(!adult["items"].as_array().unwrap().is_empty() && adult.get("watch_capped").is_none());
    println!("{rated} candidates rated above the kid's age filtered");

    // The transparency page is public and follows the settings.
    let page = client.get(format!("{base}/transparency")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    for expected in [
        "How your feed is made",
        "<td>report</td><td>-10</td>",
        "after 60 minutes of watching",
        "href=\"/dashboard#charts\"",
    ] {
        assert!(html.contains(expected), "{expected} missing from the page");
    }
}
