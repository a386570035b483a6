//! Every class of bad input gets a 4xx naming the record index and field, and the store stays
//! byte-for-byte unchanged (the SQLite files are compared; PostgreSQL is compared by contents).

use axum::http::StatusCode;
use reelrank_store::testing::{self, TestStore};

use crate::{app, send, test_config};

const OK_EVENT: &str = r#"{"user_id":"u1","item_id":"i1","kind":"play","ts":"2026-03-01T10:00:00Z"}"#;
const OK_ITEM: &str = r#"{"item_id":"i1","category":"movie","duration_s":5400}"#;

/// (what, route, body, expected status, expected (index, field) of the first error).
fn cases() -> Vec<(
    &'static str,
    &'static str,
    Vec<u8>,
    StatusCode,
    Option<(u64, &'static str)>,
)> {
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let mut non_utf8 = format!("[{OK_EVENT}, ").into_bytes();
    non_utf8.extend_from_slice(
        b"{\"user_id\":\"u\xff\",\"item_id\":\"i1\",\"kind\":\"play\",\"ts\":\"2026-03-01\"}]",
    );
    let mut non_utf8_line = format!("{OK_EVENT}\n{OK_EVENT}\n").into_bytes();
    non_utf8_line.extend_from_slice(b"{\"user_id\":\"\xc0\xaf\"}\n");
    vec![
        (
            "malformed JSON array",
            "/v1/events",
            format!("[{OK_EVENT}, {{\"user_id\": }}]").into(),
            unprocessable,
            Some((1, "")),
        ),
        (
            "malformed NDJSON line",
            "/v1/events",
            format!("{OK_EVENT}\n{OK_EVENT}\n{{nope\n").into(),
            unprocessable,
            Some((2, "")),
        ),
        (
            "wrong type",
            "/v1/items",
            format!("[{OK_ITEM}, {{\"item_id\":\"i2\",\"category\":\"movie\",\"duration_s\":\"long\"}}]")
                .into(),
            unprocessable,
            Some((1, "duration_s")),
        ),
        (
            "wrong type of timestamp",
            "/v1/events",
            format!("[{}]", OK_EVENT.replace("\"2026-03-01T10:00:00Z\"", "true")).into(),
            unprocessable,
            Some((0, "ts")),
        ),
        (
            "missing required field",
            "/v1/items",
            format!("[{OK_ITEM}, {{\"item_id\":\"i2\"}}]").into(),
            unprocessable,
            Some((1, "category")),
        ),
        (
            "missing event time",
            "/v1/events",
            r#"[{"user_id":"u1","item_id":"i1","kind":"play"}]"#.into(),
            unprocessable,
            Some((0, "ts")),
        ),
        (
            "negative duration",
            "/v1/items",
            r#"[{"item_id":"i2","category":"movie","duration_s":-1}]"#.into(),
            unprocessable,
            Some((0, "duration_s")),
        ),
        (
            "absurd duration",
            "/v1/items",
            r#"[{"item_id":"i2","category":"movie","duration_s":1e12}]"#.into(),
            unprocessable,
            Some((0, "duration_s")),
        ),
        (
            "timestamp in seconds",
            "/v1/events",
            format!(
                "[{OK_EVENT}, {}]",
                OK_EVENT.replace("\"2026-03-01T10:00:00Z\"", "1772359200")
            )
            .into(),
            unprocessable,
            Some((1, "ts")),
        ),
        (
            "timestamp in the far future",
            "/v1/events",
            format!("[{}]", OK_EVENT.replace("2026", "2999")).into(),
            unprocessable,
            Some((0, "ts")),
        ),
        (
            "negative watch time",
            "/v1/events",
            r#"[{"user_id":"u1","item_id":"i1","kind":"watch","value":-10,"ts":"2026-03-01"}]"#.into(),
            unprocessable,
            Some((0, "value")),
        ),
        (
            "unknown event kind",
            "/v1/events",
            format!("[{OK_EVENT}, {}]", OK_EVENT.replace("play", "dance")).into(),
            unprocessable,
            Some((1, "kind")),
        ),
        (
            "empty user id",
            "/v1/events",
            format!("[{}]", OK_EVENT.replace("\"u1\"", "\"\"")).into(),
            unprocessable,
            Some((0, "user_id")),
        ),
        (
            "empty item id",
            "/v1/items",
            r#"[{"item_id":"","category":"movie"}]"#.into(),
            unprocessable,
            Some((0, "item_id")),
        ),
        (
            "empty user record id",
            "/v1/users",
            r#"[{"user_id":"ok"},{"user_id":"   "}]"#.into(),
            unprocessable,
            Some((1, "user_id")),
        ),
        (
            "unknown field",
            "/v1/users",
            r#"[{"user_id":"u1","nickname":"x"}]"#.into(),
            unprocessable,
            Some((0, "nickname")),
        ),
        (
            "bad region",
            "/v1/users",
            r#"[{"user_id":"u1","region":"Mars"}]"#.into(),
            unprocessable,
            Some((0, "region")),
        ),
        (
            "non-UTF-8 bytes in an array",
            "/v1/events",
            non_utf8,
            unprocessable,
            Some((1, "")),
        ),
        (
            "non-UTF-8 bytes in NDJSON",
            "/v1/events",
            non_utf8_line,
            unprocessable,
            Some((2, "")),
        ),
        (
            "oversize batch",
            "/v1/events",
            format!("[{}]", vec![OK_EVENT; 6].join(",")).into(),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            "oversize body",
            "/v1/items",
            format!(
                "[{OK_ITEM}, {{\"item_id\":\"x\",\"category\":\"movie\",\"title\":\"{}\"}}]",
                "a".repeat(5000)
            )
            .into(),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        ("empty body", "/v1/events", Vec::new(), unprocessable, None),
    ]
}

/// The SQLite database and its write-ahead log (not the `-shm` index, where readers leave marks),
/// or a logical dump for PostgreSQL.
async fn snapshot(t: &TestStore) -> Vec<Vec<u8>> {
    if let Some(dir) = &t.dir {
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    } else {
        let counts = t.store.counts().await.unwrap();
        let events = t.store.events_after(0, 1_000_000).await.unwrap();
        let item = t.store.item("i1").await.unwrap();
        vec![format!("{counts:?}{events:?}{item:?}").into_bytes()]
    }
}

#[tokio::test]
async fn bad_input_is_refused_whole_and_named() {
    for t in testing::all().await {
        let app = app(&t, test_config()).await;
        // Some data first, so "unchanged" is about a non-empty store.
        let (status, _) = send(&app, "POST", "/v1/items", format!("[{OK_ITEM}]").into()).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = send(&app, "POST", "/v1/events", format!("[{OK_EVENT}]").into()).await;
        assert_eq!(status, StatusCode::OK);
        let before = snapshot(&t).await;
        for (what, route, body, expected, located) in cases() {
            let (status, json) = send(&app, "POST", route, body).await;
            assert_eq!(status, expected, "{}: {what}: {json}", t.name);
            assert!(json["error"].is_string(), "{what}: {json}");
            if let Some((index, field)) = located {
                let first = &json["errors"][0];
                assert_eq!(
                    (first["index"].as_u64(), first["field"].as_str()),
                    (Some(index), Some(field)),
                    "{what}: {json}"
                );
                assert!(!first["message"].as_str().unwrap().is_empty());
            }
            assert!(
                before == snapshot(&t).await,
                "{}: {what} changed the store",
                t.name
            );
        }
    }
}
