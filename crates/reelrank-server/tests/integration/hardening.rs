//! Probes, per-key rate limits and request timeouts.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use reelrank_server::{router, AppState, AuthConfig, Role};
use reelrank_store::{testing, Store};
use serde_json::json;
use tower::ServiceExt;

use crate::{api_key, send, send_with_key, test_config};

const LIMITED: &str = "limited-key-0123456789";
const FREE: &str = "unlimited-key-0123456789";

#[tokio::test]
async fn liveness_and_readiness_tell_a_dead_store_apart() {
    let t = testing::sqlite().await.unwrap();
    let store = Arc::new(Store::open(&t.url).await.unwrap());
    let app = router(AppState::new(store.clone(), test_config()));
    assert_eq!(send(&app, "GET", "/livez", vec![]).await, (StatusCode::OK, "ok\n".into()));
    for probe in ["/readyz", "/healthz"] {
        let (status, body) = send(&app, "GET", probe, vec![]).await;
        assert_eq!(
            (status, &body["ready"], &body["store"]),
            (StatusCode::OK, &true.into(), &"ok".into()),
            "{body}"
        );
    }
    store.close().await;
    let (status, body) = send(&app, "GET", "/readyz", vec![]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["store"].as_str().unwrap().starts_with("unreachable"), "{body}");
    assert_eq!(send(&app, "GET", "/livez", vec![]).await.0, StatusCode::OK, "the process still lives");
    let (status, body) =
        send(&app, "POST", "/v1/items", br#"[{"item_id":"i1","category":"movie"}]"#.to_vec()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("store unavailable"), "{body}");
}

#[tokio::test]
async fn a_key_over_its_rate_waits_and_others_do_not() {
    let t = testing::sqlite().await.unwrap();
    let key = |name, key, rate| api_key(name, key, Role::Ingest, rate);
    let auth = AuthConfig { keys: vec![key("tight", LIMITED, 3), key("free", FREE, 0)] };
    let store = Arc::new(Store::open(&t.url).await.unwrap());
    let app = router(AppState::new(store, test_config()).with_auth(auth));
    let item = br#"[{"item_id":"i1","category":"movie"}]"#;
    let write = |key| send_with_key(&app, "POST", "/v1/items", item.to_vec(), Some(key));
    for _ in 0..3 {
        assert_eq!(write(LIMITED).await.0, StatusCode::OK, "a burst of a second's worth passes");
    }
    let request = Request::post("/v1/items").header("authorization", format!("Bearer {LIMITED}"));
    let refused = app.clone().oneshot(request.body(Body::from(item.to_vec())).unwrap()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    for _ in 0..20 {
        assert_eq!(write(FREE).await.0, StatusCode::OK, "another key is not held back");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(write(LIMITED).await.0, StatusCode::OK, "the budget refills");
}

#[tokio::test]
async fn slow_requests_are_cut_but_admin_ones_are_not() {
    let t = testing::sqlite().await.unwrap();
    let store = Arc::new(Store::open(&t.url).await.unwrap());
    let app = router(AppState::new(store, test_config()).with_request_timeout(Duration::ZERO));
    let items: Vec<_> = (0..5).map(|i| json!({"item_id": format!("i{i}"), "category": "movie"})).collect();
    let (status, _) = send(&app, "POST", "/v1/items", serde_json::to_vec(&items).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // The cut can come while the commit is on its way (the client is told 503 and retries):
    // what it must never leave is part of the batch.
    let stored = t.store.counts().await.unwrap().items;
    assert!(stored == 0 || stored == 5, "a cut request wrote {stored} of 5 items");
    assert_eq!(send(&app, "GET", "/metrics", vec![]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_retried_batch_without_event_ids_is_written_once() {
    let t = testing::sqlite().await.unwrap();
    let app = crate::app(&t, test_config()).await;
    let post = |key: &str, body: &str| {
        let request =
            Request::post("/v1/events").header("idempotency-key", key).body(Body::from(body.to_owned()));
        let app = app.clone();
        async move {
            let response = app.oneshot(request.unwrap()).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (status, serde_json::from_slice::<serde_json::Value>(&bytes).unwrap())
        }
    };
    let batch = r#"[{"user_id":"u1","item_id":"i1","kind":"play","ts":1767225600000},
                    {"user_id":"u1","item_id":"i1","kind":"finish","ts":1767225601000}]"#;
    let (status, first) = post("app-7:batch-1", batch).await;
    assert_eq!(
        (status, &first["inserted"], first.get("replayed")),
        (StatusCode::OK, &2.into(), None),
        "{first}"
    );
    let reformatted = batch.replace(['\n', ' '], "");
    let (status, again) = post("app-7:batch-1", &reformatted).await;
    assert_eq!(
        (status, &again["inserted"], &again["replayed"]),
        (StatusCode::OK, &2.into(), &true.into()),
        "{again}"
    );
    assert_eq!(t.store.counts().await.unwrap().events, 2, "the retry wrote nothing");
    let other = batch.replace("finish", "like");
    let (status, reused) = post("app-7:batch-1", &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reused}");
    assert!(reused["error"].as_str().unwrap().contains("different batch"), "{reused}");
    let (status, bad) = post("bad key", batch).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["error"].as_str().unwrap().contains("Idempotency-Key"), "{bad}");
    assert_eq!(t.store.counts().await.unwrap().events, 2);
}
