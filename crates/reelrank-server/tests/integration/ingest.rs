//! Accepted batches: formats, idempotency, unknown-item policy, health and metrics.

use axum::http::StatusCode;
use reelrank_server::{IngestConfig, UnknownItems};
use reelrank_store::testing;

use crate::{app, send, test_config};

const EVENT: &str =
    r#"{"event_id":"e1","user_id":"u1","item_id":"i1","kind":"like","ts":"2026-03-01T10:00:00Z"}"#;

#[tokio::test]
async fn ingests_arrays_and_ndjson_idempotently() {
    for t in testing::all().await {
        let app = app(&t, test_config()).await;
        let items = r#"[{"item_id":"i1","category":"micro_drama","duration_s":90},{"item_id":"i2","category":"movie"}]"#;
        let (status, body) = send(&app, "POST", "/v1/items", items.into()).await;
        assert_eq!((status, body["inserted"].as_u64()), (StatusCode::OK, Some(2)), "{}: {body}", t.name);
        let users = "{\"user_id\":\"u1\",\"region\":\"CN\"}\n{\"user_id\":\"u2\"}\n";
        let (status, _) = send(&app, "POST", "/v1/users", users.into()).await;
        assert_eq!(status, StatusCode::OK);
        let events = format!("{EVENT}\n{}\n", EVENT.replace("e1", "e2").replace("u1", "u9"));
        let (status, body) = send(&app, "POST", "/v1/events", events.clone().into()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (body["inserted"].as_u64(), body["users_created"].as_u64()),
            (Some(2), Some(1)),
            "{}",
            t.name
        );
        let (_, body) = send(&app, "POST", "/v1/events", events.into()).await;
        assert_eq!(
            (body["inserted"].as_u64(), body["duplicates"].as_u64()),
            (Some(0), Some(2)),
            "{}",
            t.name
        );
        let counts = t.store.counts().await.unwrap();
        assert_eq!((counts.items, counts.users, counts.events), (2, 3, 2), "{}", t.name);
    }
}

#[tokio::test]
async fn unknown_items_can_be_refused() {
    let t = testing::sqlite().await.unwrap();
    let strict = app(&t, IngestConfig { unknown_items: UnknownItems::Reject, ..test_config() }).await;
    let body = format!("[{EVENT}, {}]", EVENT.replace("e1", "e2").replace("i1", "i7"));
    let (status, json) = send(&strict, "POST", "/v1/events", body.into()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json["errors"].as_array().unwrap().len(), 2);
    assert_eq!(
        (json["errors"][1]["index"].as_u64(), json["errors"][1]["field"].as_str()),
        (Some(1), Some("item_id"))
    );
    assert_eq!(t.store.counts().await.unwrap().events, 0);
    // With the default policy the same batch is stored.
    let (status, _) =
        send(&app(&t, IngestConfig::default()).await, "POST", "/v1/events", format!("[{EVENT}]").into())
            .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn health_and_metrics() {
    let t = testing::sqlite().await.unwrap();
    let app = app(&t, test_config()).await;
    let (status, body) = send(&app, "GET", "/healthz", vec![]).await;
    assert_eq!((status, &body["ready"]), (StatusCode::OK, &true.into()), "{body}");
    send(&app, "POST", "/v1/events", format!("[{EVENT}]").into()).await;
    let (status, body) = send(&app, "GET", "/metrics", vec![]).await;
    let text = body.as_str().unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("reelrank_http_requests_total"), "{text}");
    assert!(text.contains("reelrank_ingest_records_total{kind=\"events\"}"), "{text}");
}

/// Every operation the OpenAPI document describes is routed (neither 404 nor 405).
#[tokio::test]
async fn the_openapi_document_describes_routed_operations() {
    let t = testing::sqlite().await.unwrap();
    let app = app(&t, test_config()).await;
    let (status, served) = send(&app, "GET", "/openapi.json", Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let spec: serde_json::Value = serde_json::from_str(reelrank_server::OPENAPI).unwrap();
    assert_eq!(served, spec);
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 11);
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let (status, _) = send(&app, &method.to_uppercase(), path, Vec::new()).await;
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {status}"
            );
        }
    }
}
