//! API keys: each route group answers only keys with its role; health needs none.

use axum::http::StatusCode;
use reelrank_server::{router, AppState, AuthConfig, Role};
use reelrank_store::testing;

use crate::{api_key, send_with_key, test_config};

const INGEST: &str = "ingest-key-0123456789";
const READ: &str = "read-key-0123456789";
const ADMIN: &str = "admin-key-0123456789";

#[tokio::test]
async fn routes_answer_only_keys_with_their_role() {
    let t = testing::sqlite().await.unwrap();
    let key = |name, key, role| api_key(name, key, role, 0);
    let auth = AuthConfig {
        keys: vec![
            key("bot", INGEST, Role::Ingest),
            key("app", READ, Role::Read),
            key("ops", ADMIN, Role::Admin),
        ],
    };
    let store = reelrank_store::Store::open(&t.url).await.unwrap();
    let state = AppState::new(std::sync::Arc::new(store), test_config()).with_auth(auth);
    let app = router(state);
    let item = br#"[{"item_id":"i1","category":"movie"}]"#.to_vec();
    let post = |key| send_with_key(&app, "POST", "/v1/items", item.clone(), key);
    assert_eq!(post(None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(post(Some("not-a-key-0123456789")).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = post(Some(READ)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("`ingest`"), "{body}");
    assert_eq!(post(Some(INGEST)).await.0, StatusCode::OK);
    assert_eq!(post(Some(ADMIN)).await.0, StatusCode::OK, "admin may do everything");
    assert_eq!(t.store.counts().await.unwrap().items, 1);

    let get = |uri: &'static str, key| send_with_key(&app, "GET", uri, Vec::new(), key);
    assert_eq!(get("/healthz", None).await.0, StatusCode::OK);
    assert_eq!(get("/metrics", Some(READ)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(get("/metrics", Some(ADMIN)).await.0, StatusCode::OK);
    // Past the key check, a server without a feed engine says so.
    assert_eq!(get("/v1/recommend?user_id=u1", Some(INGEST)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(get("/v1/recommend?user_id=u1", Some(READ)).await.0, StatusCode::SERVICE_UNAVAILABLE);
}
