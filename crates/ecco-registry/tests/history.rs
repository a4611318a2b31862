//! An agent's health history (`GET /v1/agents/{peer_id}/activity`) through
//! the router.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use ecco_identity::Identity;
use ecco_registry::Config;

fn activity(who: &Identity, query: &str) -> String {
    format!("/v1/agents/{}/activity{query}", who.peer_id())
}

#[tokio::test]
async fn activity_counts_the_minutes_an_agent_was_heard_from() {
    let (app, router) = registry(Config::ephemeral()).await;
    let a = Identity::generate();
    register(&router, &a, "alpha", &["llm/chat"]).await;
    let peer = a.peer_id().to_base58();
    let (_, detail) = send(&router, get(&format!("/v1/agents/{peer}"))).await;
    let registered = detail["registered_at_ms"].as_i64().unwrap();
    let minute = registered.div_euclid(60_000) * 60_000;
    // Heard from 5, 10 and 90 minutes before registering.
    for back in [90, 10, 5] {
        assert!(
            app.store()
                .heartbeat(&peer, None, registered - back * 60_000)
                .await
                .unwrap()
                .is_some()
        );
    }

    let (status, hour) = send(&router, get(&activity(&a, "?hours=1"))).await;
    assert_eq!(status, StatusCode::OK, "{hour}");
    assert_eq!(hour["peer_id"], peer);
    assert_eq!(hour["hours"], 1);
    assert_eq!(hour["bucket_secs"], 60);
    let buckets = hour["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 60);
    for pair in buckets.windows(2) {
        assert_eq!(
            pair[1]["t_ms"].as_i64().unwrap() - pair[0]["t_ms"].as_i64().unwrap(),
            60_000
        );
    }
    let heard: Vec<i64> = buckets
        .iter()
        .filter(|b| b["minutes"].as_u64().unwrap() > 0)
        .map(|b| b["t_ms"].as_i64().unwrap())
        .collect();
    // The 90-minute-old heartbeat is outside the last hour.
    assert_eq!(
        heard,
        [minute - 10 * 60_000, minute - 5 * 60_000, minute],
        "{hour}"
    );
    for b in buckets {
        let share = b["share"].as_f64().unwrap();
        let expected = if b["minutes"].as_u64().unwrap() > 0 {
            1.0
        } else {
            0.0
        };
        assert!((share - expected).abs() < 1e-9, "{b}");
    }

    // A day: 60 buckets of 24 minutes; every sign of life is counted once.
    let (status, day) = send(&router, get(&activity(&a, ""))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (day["hours"].as_u64(), day["bucket_secs"].as_u64()),
        (Some(24), Some(1440))
    );
    let buckets = day["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 60);
    let total: u64 = buckets.iter().map(|b| b["minutes"].as_u64().unwrap()).sum();
    assert_eq!(total, 4, "{day}");
    assert!(
        buckets
            .iter()
            .all(|b| b["t_ms"].as_i64().unwrap() % 1_440_000 == 0)
    );
    assert!(buckets.iter().all(|b| {
        let share = b["share"].as_f64().unwrap();
        (0.0..=1.0).contains(&share)
    }));

    // Another agent's activity is its own.
    let b = Identity::generate();
    register(&router, &b, "bravo", &["llm/chat"]).await;
    let (_, other) = send(&router, get(&activity(&b, "?hours=168"))).await;
    let total: u64 = other["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["minutes"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 1, "{other}");
}

#[tokio::test]
async fn bad_activity_requests_get_clear_4xx_answers() {
    let (_, router) = registry(Config::ephemeral()).await;
    let reg = registry_id(&router).await;
    let a = Identity::generate();
    register(&router, &a, "alpha", &["llm/chat"]).await;
    let stranger = Identity::generate();
    let cases = [
        (
            "/v1/agents/not-a-peer-id/activity".to_owned(),
            StatusCode::BAD_REQUEST,
            "bad_peer_id",
        ),
        (
            activity(&a, "?hours=0"),
            StatusCode::BAD_REQUEST,
            "bad_hours",
        ),
        (
            activity(&a, "?hours=169"),
            StatusCode::BAD_REQUEST,
            "bad_hours",
        ),
        (
            activity(&a, "?hours=-1"),
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            activity(&a, "?hours=day"),
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            activity(&a, "?bucket_secs=60"),
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (activity(&stranger, ""), StatusCode::NOT_FOUND, "not_found"),
    ];
    for (path, status, code) in cases {
        let (got, error) = send(&router, get(&path)).await;
        assert_eq!(
            (got, error["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {error}"
        );
    }

    // A deregistered agent has no history to show.
    send(
        &router,
        signed(
            &reg,
            &a,
            "DELETE",
            &format!("/v1/agents/{}", a.peer_id()),
            b"",
        ),
    )
    .await;
    let (status, _) = send(&router, get(&activity(&a, ""))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn activity_needs_the_read_token_when_one_is_set() {
    let config = Config {
        read_token: Some("reader".into()),
        ..Config::ephemeral()
    };
    let (_, router) = registry(config).await;
    let a = Identity::generate();
    register(&router, &a, "alpha", &["llm/chat"]).await;
    let (status, error) = send(&router, get(&activity(&a, ""))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{error}");
    let with_token = Request::builder()
        .uri(activity(&a, "?hours=1"))
        .header("authorization", "Bearer reader")
        .body(Body::empty())
        .unwrap();
    let (status, history) = send(&router, with_token).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history["buckets"].as_array().unwrap().len(), 60);
}

#[tokio::test]
async fn the_openapi_document_describes_activity_and_not_the_dashboard() {
    let (_, router) = registry(Config::ephemeral()).await;
    let (status, doc) = send(&router, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    let operation = &doc["paths"]["/v1/agents/{peer_id}/activity"]["get"];
    assert!(operation.is_object(), "activity missing from the document");
    for code in ["200", "400", "401", "404"] {
        assert!(
            operation["responses"][code].is_object(),
            "no {code} documented"
        );
    }
    let hours = operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hours")
        .expect("hours documented");
    assert_eq!(
        (&hours["schema"]["minimum"], &hours["schema"]["maximum"]),
        (&serde_json::json!(1), &serde_json::json!(168))
    );
    let peer = operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "peer_id")
        .expect("peer_id documented");
    assert!(peer["schema"]["pattern"].is_string(), "{peer}");
    assert!(doc["components"]["schemas"]["Activity"].is_object());
    assert!(doc["components"]["schemas"]["Presence"].is_object());
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths.keys().all(|p| p.starts_with("/v1/")
            || ["/health", "/metrics", "/openapi.json"].contains(&p.as_str())),
        "the dashboard's pages are not API operations: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
}
