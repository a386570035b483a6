//! Every class of bad input gets a 4xx naming the record index and field, and the store stays
//! byte-for-byte unchanged (the SQLite files are compared; PostgreSQL is compared by contents).

use axum::http::StatusCode;
use reelrank_store::testing::{self, TestStore};

use crate::{app, send, test_config};

const OK_EVENT: &str = r#"{"user_id":"u1","item_id":"i1","kind":"play","ts":"2026-03-01T10:00:00Z"}"#;
const OK_ITEM: &str = r#"{"item_id":"i1","category":"movie","duration_s":5400}"#;

/// One bad request and what it must get.
struct Case {
    what: &'static str,
    route: &'static str,
    body: Vec<u8>,
    status: StatusCode,
    /// (index, field) of the first reported problem.
    located: Option<(u64, &'static str)>,
}

fn case(
    what: &'static str,
    route: &'static str,
    body: impl Into<Vec<u8>>,
    located: (u64, &'static str),
) -> Case {
    Case { what, route, body: body.into(), status: StatusCode::UNPROCESSABLE_ENTITY, located: Some(located) }
}

fn cases() -> Vec<Case> {
    let mut non_utf8 = format!("[{OK_EVENT}, ").into_bytes();
    non_utf8.extend_from_slice(
        b"{\"user_id\":\"u\xff\",\"item_id\":\"i1\",\"kind\":\"play\",\"ts\":\"2026-03-01\"}]",
    );
    let mut non_utf8_line = format!("{OK_EVENT}\n{OK_EVENT}\n").into_bytes();
    non_utf8_line.extend_from_slice(b"{\"user_id\":\"\xc0\xaf\"}\n");
    let event_with = |from: &str, to: &str| OK_EVENT.replace(from, to);
    let big_title = "a".repeat(5000);
    vec![
        case("malformed JSON array", "/v1/events", format!("[{OK_EVENT}, {{\"user_id\": }}]"), (1, "")),
        case("malformed NDJSON line", "/v1/events", format!("{OK_EVENT}\n{OK_EVENT}\n{{nope\n"), (2, "")),
        case(
            "wrong type",
            "/v1/items",
            format!("[{OK_ITEM}, {{\"item_id\":\"i2\",\"category\":\"movie\",\"duration_s\":\"long\"}}]"),
            (1, "duration_s"),
        ),
        case(
            "wrong type of timestamp",
            "/v1/events",
            format!("[{}]", event_with("\"2026-03-01T10:00:00Z\"", "true")),
            (0, "ts"),
        ),
        case(
            "missing required field",
            "/v1/items",
            format!("[{OK_ITEM}, {{\"item_id\":\"i2\"}}]"),
            (1, "category"),
        ),
        case(
            "missing event time",
            "/v1/events",
            r#"[{"user_id":"u1","item_id":"i1","kind":"play"}]"#,
            (0, "ts"),
        ),
        case(
            "negative duration",
            "/v1/items",
            r#"[{"item_id":"i2","category":"movie","duration_s":-1}]"#,
            (0, "duration_s"),
        ),
        case(
            "absurd duration",
            "/v1/items",
            r#"[{"item_id":"i2","category":"movie","duration_s":1e12}]"#,
            (0, "duration_s"),
        ),
        case(
            "timestamp in seconds",
            "/v1/events",
            format!("[{OK_EVENT}, {}]", event_with("\"2026-03-01T10:00:00Z\"", "1772359200")),
            (1, "ts"),
        ),
        case(
            "timestamp in the far future",
            "/v1/events",
            format!("[{}]", event_with("2026", "2999")),
            (0, "ts"),
        ),
        case(
            "negative watch time",
            "/v1/events",
            r#"[{"user_id":"u1","item_id":"i1","kind":"watch","value":-10,"ts":"2026-03-01"}]"#,
            (0, "value"),
        ),
        case(
            "unknown event kind",
            "/v1/events",
            format!("[{OK_EVENT}, {}]", event_with("play", "dance")),
            (1, "kind"),
        ),
        case("empty user id", "/v1/events", format!("[{}]", event_with("\"u1\"", "\"\"")), (0, "user_id")),
        case("empty item id", "/v1/items", r#"[{"item_id":"","category":"movie"}]"#, (0, "item_id")),
        case("blank user id", "/v1/users", r#"[{"user_id":"ok"},{"user_id":"   "}]"#, (1, "user_id")),
        case("unknown field", "/v1/users", r#"[{"user_id":"u1","nickname":"x"}]"#, (0, "nickname")),
        case("bad region", "/v1/users", r#"[{"user_id":"u1","region":"Mars"}]"#, (0, "region")),
        case("non-UTF-8 bytes in an array", "/v1/events", non_utf8, (1, "")),
        case("non-UTF-8 bytes in NDJSON", "/v1/events", non_utf8_line, (2, "")),
        Case {
            what: "oversize batch",
            route: "/v1/events",
            body: format!("[{}]", [OK_EVENT; 6].join(",")).into(),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            located: None,
        },
        Case {
            what: "oversize body",
            route: "/v1/items",
            body: format!(
                "[{OK_ITEM}, {{\"item_id\":\"x\",\"category\":\"movie\",\"title\":\"{big_title}\"}}]"
            )
            .into(),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            located: None,
        },
        Case {
            what: "empty body",
            route: "/v1/events",
            body: Vec::new(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            located: None,
        },
    ]
}

/// The SQLite database and its write-ahead log (not the `-shm` index, where readers leave marks),
/// or a logical dump for PostgreSQL.
async fn snapshot(t: &TestStore) -> Vec<Vec<u8>> {
    if let Some(dir) = &t.dir {
        let mut files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
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
        for Case { what, route, body, status: expected, located } in cases() {
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
            assert!(before == snapshot(&t).await, "{}: {what} changed the store", t.name);
        }
    }
}
