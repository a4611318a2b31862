//! The HTTP API through its router, without a socket.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use ecco_identity::Identity;
use ecco_registry::Config;
use ecco_registry::Receipt;
use ecco_registry::state::now_ms;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

fn path(who: &Identity) -> String {
    format!("/v1/agents/{}", who.peer_id())
}

#[tokio::test]
async fn an_agent_registers_updates_heartbeats_and_deregisters() {
    // Searches come from the cached catalog, trusted here for an hour: each
    // write must refresh it itself.
    let config = Config {
        catalog_check: std::time::Duration::from_secs(3600),
        ..Config::ephemeral()
    };
    let (_, router) = registry(config).await;
    let reg = registry_id(&router).await;
    let searched = |router: &axum::Router| {
        let router = router.clone();
        async move { send(&router, get("/v1/agents")).await.1 }
    };
    assert_eq!(searched(&router).await["total"], 0);
    let a = Identity::generate();
    let body =
        serde_json::to_vec(&registration("alpha", &["llm/chat +summarize price=0.01"])).unwrap();
    let (status, detail) = send(&router, signed(&reg, &a, "PUT", &path(&a), &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{detail}");
    assert_eq!(detail["name"], "alpha");
    assert_eq!(detail["health"], "online");
    assert_eq!(detail["reputation"]["score"], 50.0);
    assert_eq!(searched(&router).await["items"][0]["name"], "alpha");

    let body = serde_json::to_vec(&registration("alpha-2", &["llm/chat"])).unwrap();
    let (status, detail) = send(&router, signed(&reg, &a, "PUT", &path(&a), &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["name"], "alpha-2");
    assert_eq!(searched(&router).await["items"][0]["name"], "alpha-2");

    let beat = json!({"addresses": ["/ip4/10.0.0.1/tcp/9"]}).to_string();
    let (status, detail) = send(
        &router,
        signed(
            &reg,
            &a,
            "POST",
            &format!("{}/heartbeat", path(&a)),
            beat.as_bytes(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["addresses"], json!(["/ip4/10.0.0.1/tcp/9"]));
    assert_eq!(
        searched(&router).await["items"][0]["addresses"],
        json!(["/ip4/10.0.0.1/tcp/9"])
    );
    // An empty heartbeat body is fine.
    let (status, _) = send(
        &router,
        signed(&reg, &a, "POST", &format!("{}/heartbeat", path(&a)), b""),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = send(&router, signed(&reg, &a, "DELETE", &path(&a), b"")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(searched(&router).await["total"], 0);
    let (status, _) = send(&router, get(&path(&a))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(
        &router,
        signed(&reg, &a, "POST", &format!("{}/heartbeat", path(&a)), b""),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unsigned_forged_stale_and_replayed_writes_get_401() {
    let (_, router) = registry(Config::ephemeral()).await;
    let reg = registry_id(&router).await;
    let a = Identity::generate();
    let body = serde_json::to_vec(&registration("alpha", &["llm/chat"])).unwrap();

    let unsigned = Request::builder()
        .method("PUT")
        .uri(path(&a))
        .body(Body::from(body.clone()))
        .unwrap();
    let (status, error) = send(&router, unsigned).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_signature"))
    );

    // Signed over one body, sent with another.
    let mut forged = signed(&reg, &a, "PUT", &path(&a), &body);
    *forged.body_mut() =
        Body::from(serde_json::to_vec(&registration("evil", &["llm/chat"])).unwrap());
    let (status, error) = send(&router, forged).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad_signature"))
    );

    let stale = signed_at(&reg, &a, "PUT", &path(&a), &body, now_secs() - 120);
    let (status, error) = send(&router, stale).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("stale_timestamp"))
    );

    let request = signed(&reg, &a, "PUT", &path(&a), &body);
    let replay = clone_request(&request, &body);
    assert_eq!(send(&router, request).await.0, StatusCode::CREATED);
    let (status, error) = send(&router, replay).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("replayed_nonce"))
    );
}

/// A write signed for one registry, replayed to another within the time
/// window, does not verify there: the signature covers the registry's id.
#[tokio::test]
async fn a_write_replayed_to_another_registry_gets_401() {
    let (_, first) = registry(Config::ephemeral()).await;
    let (_, second) = registry(Config::ephemeral()).await;
    let (one, two) = (registry_id(&first).await, registry_id(&second).await);
    assert_ne!(one, two, "each database makes its own id");
    let a = Identity::generate();
    let body = serde_json::to_vec(&registration("alpha", &["llm/chat"])).unwrap();
    let request = signed(&one, &a, "PUT", &path(&a), &body);
    let replay = clone_request(&request, &body);
    assert_eq!(send(&first, request).await.0, StatusCode::CREATED);
    let (status, error) = send(&second, replay).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad_signature")),
        "{error}"
    );
    let (status, _) = send(&second, get(&path(&a))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was registered");
}

fn clone_request(request: &Request<Body>, body: &[u8]) -> Request<Body> {
    let mut copy = Request::builder()
        .method(request.method())
        .uri(request.uri());
    for (name, value) in request.headers() {
        copy = copy.header(name, value);
    }
    copy.body(Body::from(body.to_vec())).unwrap()
}

#[tokio::test]
async fn an_agent_cannot_touch_another_agents_record() {
    let (_, router) = registry(Config::ephemeral()).await;
    let reg = registry_id(&router).await;
    let (a, b) = (Identity::generate(), Identity::generate());
    register(&router, &b, "bravo", &["llm/chat"]).await;
    let body = serde_json::to_vec(&registration("hijacked", &["llm/chat"])).unwrap();
    let attempts = [
        signed(&reg, &a, "PUT", &path(&b), &body),
        signed(&reg, &a, "POST", &format!("{}/heartbeat", path(&b)), b""),
        signed(&reg, &a, "DELETE", &path(&b), b""),
    ];
    for attempt in attempts {
        let (status, error) = send(&router, attempt).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    }
    let (_, detail) = send(&router, get(&path(&b))).await;
    assert_eq!(detail["name"], "bravo");
}

#[tokio::test]
async fn clients_cannot_set_reputation_or_health() {
    let (_, router) = registry(Config::ephemeral()).await;
    let reg = registry_id(&router).await;
    let a = Identity::generate();
    register(&router, &a, "alpha", &["llm/chat"]).await;
    let mut body = serde_json::to_value(registration("alpha", &["llm/chat"])).unwrap();
    for (field, value) in [
        ("reputation", json!(100)),
        ("health", json!("online")),
        ("uptime", json!(1.0)),
    ] {
        let mut sneaky = body.clone();
        sneaky[field] = value;
        let bytes = serde_json::to_vec(&sneaky).unwrap();
        let (status, error) = send(&router, signed(&reg, &a, "PUT", &path(&a), &bytes)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(field),
            "{error}"
        );
    }
    body["name"] = json!("still alpha");
    let beat = json!({"reputation": 100}).to_string();
    let (status, _) = send(
        &router,
        signed(
            &reg,
            &a,
            "POST",
            &format!("{}/heartbeat", path(&a)),
            beat.as_bytes(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, detail) = send(&router, get(&path(&a))).await;
    assert_eq!(detail["reputation"]["score"], 50.0);
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_answers() {
    let (_, router) = registry(Config::ephemeral()).await;
    let reg = registry_id(&router).await;
    let a = Identity::generate();
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (get("/v1/agents/not-a-peer-id"), StatusCode::BAD_REQUEST),
        (get("/v1/agents?per_page=1000"), StatusCode::BAD_REQUEST),
        (get("/v1/agents?page=0"), StatusCode::BAD_REQUEST),
        (get("/v1/agents?q=price%3C%3D"), StatusCode::BAD_REQUEST),
        (get("/v1/agents?unknown=1"), StatusCode::BAD_REQUEST),
        (get("/v1/analytics/series?metric=nope"), StatusCode::BAD_REQUEST),
        (get("/v1/analytics/series?metric=requests&bucket_secs=1"), StatusCode::BAD_REQUEST),
        (get("/v1/analytics/top-agents?limit=0"), StatusCode::BAD_REQUEST),
        (get("/nowhere"), StatusCode::NOT_FOUND),
        (signed(&reg, &a, "PUT", &path(&a), b"{not json"), StatusCode::BAD_REQUEST),
        (signed(&reg, &a, "PUT", &path(&a), br#"{"name": 3}"#), StatusCode::UNPROCESSABLE_ENTITY),
        (
            signed(&reg, &a, "PUT", &path(&a), &serde_json::to_vec(&json!({
                "name": "x", "capabilities": {"schema": 1, "capabilities": []}, "addresses": ["not a multiaddr"]
            })).unwrap()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (signed(&reg, &a, "PUT", &path(&a), &vec![b' '; 2 * 1024 * 1024]), StatusCode::PAYLOAD_TOO_LARGE),
        // Errors the framework raises before any handler runs.
        (Request::builder().method("PATCH").uri(path(&a)).body(Body::empty()).unwrap(), StatusCode::METHOD_NOT_ALLOWED),
        (get("/v1/agents/%FF%FE"), StatusCode::BAD_REQUEST),
    ];
    for (request, expected) in cases {
        let uri = request.uri().clone();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get("content-type").cloned();
        let allow = response.headers().get("allow").cloned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, expected, "{uri}: {bytes:?}");
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{uri}: every error is JSON"
        );
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            body["error"]["code"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
            "{uri}: {body}"
        );
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(allow.is_some(), "a 405 keeps its Allow header");
        }
    }
}

#[tokio::test]
async fn an_oversized_capability_document_is_refused_and_nothing_is_stored() {
    let (_, router) = registry(Config::ephemeral()).await;
    let reg = registry_id(&router).await;
    let (small, big) = (Identity::generate(), Identity::generate());
    register(&router, &small, "small", &["llm/chat"]).await;
    let body = serde_json::to_vec(&serde_json::json!({
        "name": "big",
        "capabilities": oversized_document(),
        "addresses": [],
    }))
    .unwrap();
    let (status, error) = send(&router, signed(&reg, &big, "PUT", &path(&big), &body)).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid")),
        "{error}"
    );
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("262144"), "{message}");
    assert_eq!(
        send(&router, get(&path(&big))).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, page) = send(&router, get("/v1/agents")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 1, "{page}");
}

/// Rows the registry cannot read back (stored before registrations were
/// size-checked, or damaged) are skipped: one must not fail every read.
async fn unreadable_rows_leave_the_catalog_working(url: &str) {
    let config = Config {
        database_url: url.to_owned(),
        ..Config::ephemeral()
    };
    let (app, router) = registry(config).await;
    let reg = registry_id(&router).await;
    let (good, big, broken) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    register(&router, &good, "good", &["llm/chat"]).await;
    register(&router, &big, "big", &["llm/chat"]).await;
    register(&router, &broken, "broken", &["llm/chat"]).await;
    let raw = sqlx::AnyPool::connect(url).await.unwrap();
    let oversized = serde_json::to_string(&oversized_document()).unwrap();
    for (who, document) in [(&big, oversized.as_str()), (&broken, "not json")] {
        sqlx::query("UPDATE agents SET document = $1 WHERE peer_id = $2")
            .bind(document)
            .bind(who.peer_id().to_base58())
            .execute(&raw)
            .await
            .unwrap();
    }
    raw.close().await;
    app.catalog_changed().await;

    let (status, page) = send(&router, get("/v1/agents")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["name"], "good");
    let (status, overview) = send(&router, get("/v1/analytics/overview")).await;
    assert_eq!(status, StatusCode::OK, "{overview}");
    assert_eq!(overview["registered"], 1);
    for who in [&big, &broken] {
        assert_eq!(
            send(&router, get(&path(who))).await.0,
            StatusCode::NOT_FOUND
        );
        // A 404 makes the agent's SDK register again, which repairs the row.
        let beat = signed(&reg, who, "POST", &format!("{}/heartbeat", path(who)), b"");
        assert_eq!(send(&router, beat).await.0, StatusCode::NOT_FOUND);
    }
    register(&router, &broken, "broken", &["llm/chat"]).await;
    let (_, page) = send(&router, get("/v1/agents")).await;
    assert_eq!(page["total"], 2, "{page}");
}

#[tokio::test]
async fn sqlite_skips_unreadable_rows() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("registry.db").display());
    unreadable_rows_leave_the_catalog_working(&url).await;
}

#[tokio::test]
async fn postgres_skips_unreadable_rows() {
    let Some(database) = TempDatabase::create("unreadable").await else {
        return;
    };
    unreadable_rows_leave_the_catalog_working(&database.url).await;
}

/// A receipt `agent` signed for `client` with this interaction id and
/// capability (`Receipt::issue` picks the id itself).
fn receipt_with(
    agent: &Identity,
    client: &Identity,
    interaction: &str,
    capability: &str,
) -> Receipt {
    use base64::Engine as _;
    let issued_at_ms = now_ms();
    let signed_text = format!(
        "{}\n{}\n{interaction}\n{capability}\n{issued_at_ms}",
        agent.peer_id(),
        client.peer_id()
    );
    let signature = agent.sign(ecco_registry::receipt::DOMAIN, signed_text.as_bytes());
    Receipt {
        agent: agent.peer_id().to_base58(),
        client: client.peer_id().to_base58(),
        interaction: interaction.to_owned(),
        capability: capability.to_owned(),
        issued_at_ms,
        signature: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature),
    }
}

/// PostgreSQL cannot store a NUL in TEXT; SQLite can. Both refuse it up
/// front, with the same 422.
async fn nul_bytes_are_refused_before_storage(url: &str) {
    let config = Config {
        database_url: url.to_owned(),
        ..Config::ephemeral()
    };
    let (_, router) = registry(config).await;
    let reg = registry_id(&router).await;
    let (agent, client) = (Identity::generate(), Identity::generate());
    register(&router, &agent, "agent", &["llm/chat"]).await;
    let good = receipt_with(&agent, &client, "fine", "llm/chat");
    assert!(good.verify().is_ok(), "the test signs receipts right");
    for (interaction, capability) in [("in\0side", "llm/chat"), ("fine", "llm/\0chat")] {
        let receipt = receipt_with(&agent, &client, interaction, capability);
        let body = feedback(&receipt, true, Some(5));
        let (status, error) = send(
            &router,
            signed(&reg, &client, "POST", "/v1/feedback", &body),
        )
        .await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid")),
            "{interaction:?} {capability:?}: {error}"
        );
        assert!(
            error["error"]["message"].as_str().unwrap().contains("NUL"),
            "{error}"
        );
    }
    let mut named = serde_json::to_value(registration("na\0me", &["llm/chat"])).unwrap();
    named["addresses"] = json!([]);
    let body = serde_json::to_vec(&named).unwrap();
    let (status, error) = send(&router, signed(&reg, &agent, "PUT", &path(&agent), &body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (status, list) = send(&router, get(&format!("{}/feedback", path(&agent)))).await;
    assert_eq!(
        (status, &list["total"]),
        (StatusCode::OK, &json!(0)),
        "{list}"
    );
}

#[tokio::test]
async fn sqlite_refuses_nul_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("registry.db").display());
    nul_bytes_are_refused_before_storage(&url).await;
}

#[tokio::test]
async fn postgres_refuses_nul_bytes() {
    let Some(database) = TempDatabase::create("nul").await else {
        return;
    };
    nul_bytes_are_refused_before_storage(&database.url).await;
}

fn feedback(receipt: &Receipt, success: bool, rating: Option<u8>) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"receipt": receipt, "success": success, "latency_ms": 120, "rating": rating}),
    )
    .unwrap()
}

#[tokio::test]
async fn feedback_needs_the_agents_receipt_and_counts_once() {
    let (_, router) = registry(Config::ephemeral()).await;
    let reg = registry_id(&router).await;
    let (agent, client, stranger) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    register(&router, &agent, "agent", &["llm/chat"]).await;
    let receipt = Receipt::issue(&agent, &client.peer_id(), "llm/chat", now_ms());

    let (status, entry) = send(
        &router,
        signed(
            &reg,
            &client,
            "POST",
            "/v1/feedback",
            &feedback(&receipt, true, Some(5)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    let (status, error) = send(
        &router,
        signed(
            &reg,
            &client,
            "POST",
            "/v1/feedback",
            &feedback(&receipt, false, Some(1)),
        ),
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("duplicate"))
    );

    // Someone else cannot use the client's receipt.
    let (status, _) = send(
        &router,
        signed(
            &reg,
            &stranger,
            "POST",
            "/v1/feedback",
            &feedback(&receipt, false, Some(1)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A receipt the client made up is not the agent's.
    let mut forged = Receipt::issue(&client, &client.peer_id(), "llm/chat", now_ms());
    forged.agent = agent.peer_id().to_base58();
    let (status, _) = send(
        &router,
        signed(
            &reg,
            &client,
            "POST",
            "/v1/feedback",
            &feedback(&forged, false, Some(1)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Self-rating.
    let own = Receipt::issue(&agent, &agent.peer_id(), "llm/chat", now_ms());
    let (status, error) = send(
        &router,
        signed(
            &reg,
            &agent,
            "POST",
            "/v1/feedback",
            &feedback(&own, true, Some(5)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");

    // Out-of-range rating.
    let fresh = Receipt::issue(&agent, &client.peer_id(), "llm/chat", now_ms());
    let (status, _) = send(
        &router,
        signed(
            &reg,
            &client,
            "POST",
            "/v1/feedback",
            &feedback(&fresh, true, Some(6)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (_, detail) = send(&router, get(&path(&agent))).await;
    let reputation = &detail["reputation"];
    assert!(reputation["score"].as_f64().unwrap() > 50.0, "{reputation}");
    assert_eq!(reputation["breakdown"]["feedback"], 1);
    assert_eq!(reputation["breakdown"]["mean_rating"], 5.0);
    let (_, list) = send(&router, get(&format!("{}/feedback", path(&agent)))).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["rater"], client.peer_id().to_base58());
}

#[tokio::test]
async fn feedback_is_rate_limited_per_rater() {
    let config = Config {
        feedback_per_minute: 3,
        ..Config::ephemeral()
    };
    let (_, router) = registry(config).await;
    let reg = registry_id(&router).await;
    let (agent, client) = (Identity::generate(), Identity::generate());
    register(&router, &agent, "agent", &["llm/chat"]).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let receipt = Receipt::issue(&agent, &client.peer_id(), "llm/chat", now_ms());
        statuses.push(
            send(
                &router,
                signed(
                    &reg,
                    &client,
                    "POST",
                    "/v1/feedback",
                    &feedback(&receipt, true, None),
                ),
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses[..3], [StatusCode::CREATED; 3]);
    assert_eq!(statuses[3..], [StatusCode::TOO_MANY_REQUESTS; 2]);
}

#[tokio::test]
async fn search_ranks_by_match_then_reputation_and_pages() {
    let (_, router) = registry(Config::ephemeral()).await;
    let reg = registry_id(&router).await;
    let (good, plain, other, client) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    register(&router, &good, "good", &["llm/chat +summarize price=0.01"]).await;
    register(
        &router,
        &plain,
        "plain",
        &["llm/chat +summarize price=0.01"],
    )
    .await;
    register(&router, &other, "other", &["image/generate"]).await;
    for _ in 0..3 {
        let receipt = Receipt::issue(&good, &client.peer_id(), "llm/chat", now_ms());
        send(
            &router,
            signed(
                &reg,
                &client,
                "POST",
                "/v1/feedback",
                &feedback(&receipt, true, Some(5)),
            ),
        )
        .await;
    }
    let (status, page) = send(
        &router,
        get("/v1/agents?q=llm%2F*%20%2Bsummarize&per_page=1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"][0]["name"], "good");
    let (_, second) = send(
        &router,
        get("/v1/agents?q=llm%2F*%20%2Bsummarize&per_page=1&page=2"),
    )
    .await;
    assert_eq!(second["items"][0]["name"], "plain");
    let (_, all) = send(&router, get("/v1/agents")).await;
    assert_eq!(all["total"], 3);
    let (_, stale) = send(&router, get("/v1/agents?health=offline")).await;
    assert_eq!(stale["total"], 0);
}

#[tokio::test]
async fn a_read_token_guards_reads_and_an_operator_token_the_admin_api() {
    let config = Config {
        read_token: Some("reader".into()),
        admin_token: Some("operator".into()),
        ..Config::ephemeral()
    };
    let (_, router) = registry(config).await;
    let a = Identity::generate();
    register(&router, &a, "alpha", &["llm/chat"]).await;
    assert_eq!(
        send(&router, get(&path(&a))).await.0,
        StatusCode::UNAUTHORIZED
    );
    let with = |uri: &str, method: &str, token: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(&router, with(&path(&a), "GET", "reader")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&router, with("/v1/agents", "GET", "wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // /health stays open for probes, and the API's description is public.
    assert_eq!(send(&router, get("/health")).await.0, StatusCode::OK);
    assert_eq!(send(&router, get("/openapi.json")).await.0, StatusCode::OK);
    // The metrics tell who uses the registry: they need the token too.
    assert_eq!(
        send(&router, get("/metrics")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&router, with("/metrics", "GET", "reader")).await.0,
        StatusCode::OK
    );

    let admin_path = format!("/v1/admin/agents/{}", a.peer_id());
    assert_eq!(
        send(&router, with(&admin_path, "DELETE", "reader")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&router, with(&admin_path, "DELETE", "operator"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&router, with(&path(&a), "GET", "reader")).await.0,
        StatusCode::NOT_FOUND
    );

    let (_, router) = registry(Config::ephemeral()).await;
    assert_eq!(
        send(&router, with(&admin_path, "DELETE", "anything"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn analytics_count_what_happened() {
    let (_, router) = registry(Config::ephemeral()).await;
    let reg = registry_id(&router).await;
    let (a, b, client) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    register(&router, &a, "a", &["llm/chat", "llm/embed"]).await;
    register(&router, &b, "b", &["llm/chat"]).await;
    let receipt = Receipt::issue(&a, &client.peer_id(), "llm/chat", now_ms());
    send(
        &router,
        signed(
            &reg,
            &client,
            "POST",
            "/v1/feedback",
            &feedback(&receipt, true, Some(4)),
        ),
    )
    .await;

    let total = |series: &Value| {
        series["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["value"].as_u64().unwrap())
            .sum::<u64>()
    };
    for (metric, expected) in [("registrations", 2), ("requests", 1), ("ratings", 1)] {
        let (status, series) = send(
            &router,
            get(&format!(
                "/v1/analytics/series?metric={metric}&bucket_secs=3600&window_secs=7200"
            )),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{series}");
        assert_eq!(series["points"].as_array().unwrap().len(), 2);
        assert_eq!(total(&series), expected, "{metric}: {series}");
    }
    let (_, active) = send(
        &router,
        get("/v1/analytics/series?metric=active_agents&bucket_secs=86400&window_secs=86400"),
    )
    .await;
    assert_eq!(total(&active), 2, "{active}");
    let (_, top) = send(&router, get("/v1/analytics/top-capabilities")).await;
    assert_eq!(
        top,
        json!([{"capability": "llm/chat", "agents": 2}, {"capability": "llm/embed", "agents": 1}])
    );
    let (_, top) = send(&router, get("/v1/analytics/top-agents?limit=1")).await;
    assert_eq!(top[0]["name"], "a");
    let (_, overview) = send(&router, get("/v1/analytics/overview")).await;
    assert_eq!(overview["agents"]["online"], 2);
}

#[tokio::test]
async fn metrics_move_and_the_openapi_document_lists_every_route() {
    let (_, router) = registry(Config::ephemeral()).await;
    let a = Identity::generate();
    register(&router, &a, "alpha", &["llm/chat"]).await;
    send(&router, get(&path(&a))).await;
    let (status, text) = send(&router, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap().to_owned();
    assert!(
        text.contains("ecco_registry_registrations_total 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/v1/agents/{peer_id}",status="201""#),
        "{text}"
    );
    assert!(
        text.contains("ecco_registry_http_request_duration_seconds_bucket"),
        "{text}"
    );

    let (status, doc) = send(&router, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    for route in [
        "/v1/agents",
        "/v1/agents/{peer_id}",
        "/v1/agents/{peer_id}/heartbeat",
        "/v1/agents/{peer_id}/feedback",
        "/v1/feedback",
        "/v1/analytics/series",
        "/v1/events",
        "/health",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(
            doc["paths"][route].is_object(),
            "{route} missing from the OpenAPI document"
        );
    }
    // Every reference resolves, so that tools can generate requests from it.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("odd ref {reference}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{reference} does not resolve"
        );
    }
}

/// Every label of the request metrics comes from a fixed set: extension
/// methods and unknown paths cannot add series without end.
#[tokio::test]
async fn request_metrics_have_bounded_labels() {
    let (_, router) = registry(Config::ephemeral()).await;
    for i in 0..40 {
        for uri in ["/v1/agents".to_owned(), format!("/nowhere/{i}")] {
            let request = Request::builder()
                .method(format!("X-METHOD-{i}").as_str())
                .uri(uri)
                .body(Body::empty())
                .unwrap();
            send(&router, request).await;
        }
    }
    send(&router, get("/v1/agents")).await;
    let (_, text) = send(&router, get("/metrics")).await;
    let text = text.as_str().unwrap();
    let values = |label: &str| -> std::collections::BTreeSet<String> {
        text.split(&format!("{label}=\""))
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect()
    };
    let methods = values("method");
    assert!(
        methods.contains("GET") && methods.contains("other"),
        "{methods:?}"
    );
    let known = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
    ];
    assert!(
        methods.iter().all(|m| known.contains(&m.as_str())),
        "{methods:?}"
    );
    let routes = values("route");
    assert!(routes.iter().all(|r| !r.contains("nowhere")), "{routes:?}");
}

#[tokio::test]
async fn writes_publish_live_events() {
    let (app, router) = registry(Config::ephemeral()).await;
    let reg = registry_id(&router).await;
    let mut events = app.shared().subscribe();
    let a = Identity::generate();
    register(&router, &a, "alpha", &["llm/chat"]).await;
    send(
        &router,
        signed(&reg, &a, "POST", &format!("{}/heartbeat", path(&a)), b""),
    )
    .await;
    let kinds: Vec<_> = [events.recv().await.unwrap(), events.recv().await.unwrap()]
        .iter()
        .map(|e| e.kind)
        .collect();
    use ecco_registry::wire::EventKind::*;
    assert_eq!(kinds, [Registered, Heartbeat]);
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The fuzzer starts from the document's examples: the registration example
/// must be one the service accepts.
#[tokio::test]
async fn the_openapi_registration_example_registers() {
    let (_, router) = registry(Config::ephemeral()).await;
    let reg = registry_id(&router).await;
    let (_, document) = send(&router, get("/openapi.json")).await;
    let example = &document["components"]["schemas"]["Registration"]["example"];
    assert!(example.is_object(), "no example in {document}");
    let a = Identity::generate();
    let body = serde_json::to_vec(example).unwrap();
    let (status, detail) = send(&router, signed(&reg, &a, "PUT", &path(&a), &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{detail}");
    assert_eq!(detail["name"], example["name"]);
}

/// The document's peer id pattern must admit every real agent id, or the
/// fuzzer (and client generators) would never produce one.
#[tokio::test]
async fn the_documented_peer_id_pattern_admits_real_ids() {
    let (_, router) = registry(Config::ephemeral()).await;
    let (_, document) = send(&router, get("/openapi.json")).await;
    let parameters = document["paths"]["/v1/agents/{peer_id}"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let schema = &parameters.iter().find(|p| p["name"] == "peer_id").unwrap()["schema"];
    assert_eq!(schema["pattern"], "^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$");
    const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    for _ in 0..200 {
        let id = Identity::generate().peer_id().to_base58();
        let rest = id.strip_prefix("12D3KooW").expect("Ed25519 prefix");
        assert_eq!(rest.len(), 44, "{id}");
        assert!(rest.chars().all(|c| BASE58.contains(c)), "{id}");
    }
}

#[tokio::test]
async fn a_public_registry_keeps_and_serves_only_public_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("registry.db").display());
    let addresses = [
        "/ip4/198.51.99.7/tcp/4001",
        "/ip4/10.0.0.5/tcp/4001",
        "/ip4/127.0.0.1/tcp/4001",
        "/ip6/fe80::1/tcp/4001",
        "/dns4/agent.example.com/tcp/4001",
        "/dns4/localhost/tcp/4001",
    ];
    let mut reg = registration("alpha", &["llm/chat"]);
    reg.addresses = addresses.iter().map(|a| (*a).to_owned()).collect();
    let body = serde_json::to_vec(&reg).unwrap();
    let public = json!([
        "/ip4/198.51.99.7/tcp/4001",
        "/dns4/agent.example.com/tcp/4001"
    ]);

    // A private registry keeps them all: its network is the private one.
    let (private_app, router) = registry(Config {
        database_url: url.clone(),
        ..Config::ephemeral()
    })
    .await;
    let a = Identity::generate();
    let (status, detail) = send(
        &router,
        signed(&registry_id(&router).await, &a, "PUT", &path(&a), &body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{detail}");
    assert_eq!(detail["addresses"], json!(addresses));
    drop((private_app, router));

    // The same database behind a public registry: what was stored before is
    // served filtered.
    let (_app, router) = registry(Config {
        database_url: url,
        public_addresses_only: true,
        ..Config::ephemeral()
    })
    .await;
    let (_, detail) = send(&router, get(&path(&a))).await;
    assert_eq!(detail["addresses"], public, "{detail}");
    let (_, page) = send(&router, get("/v1/agents")).await;
    assert_eq!(page["items"][0]["addresses"], public, "{page}");

    // What is written now is filtered before it is stored.
    let reg_id = registry_id(&router).await;
    let b = Identity::generate();
    let (status, detail) = send(&router, signed(&reg_id, &b, "PUT", &path(&b), &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{detail}");
    assert_eq!(detail["addresses"], public);
    let beat = json!({"addresses": ["/ip4/192.168.1.2/tcp/1", "/ip6/2a01:4f8::1/tcp/1"]});
    let (status, detail) = send(
        &router,
        signed(
            &reg_id,
            &b,
            "POST",
            &format!("{}/heartbeat", path(&b)),
            beat.to_string().as_bytes(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["addresses"], json!(["/ip6/2a01:4f8::1/tcp/1"]));
}
