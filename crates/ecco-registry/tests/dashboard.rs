//! The dashboard: its embedded files through the router, and a browser test
//! that drives it in Debian's headless Chromium against a seeded registry,
//! on SQLite and on PostgreSQL plus Redis.
//!
//! The browser side is `tests/browser/dashboard.mjs` (playwright-core, which
//! never downloads a browser: it launches `/usr/bin/chromium`). Set it up with
//! `npm ci` in `crates/ecco-registry/tests/browser`. Without Node, its modules
//! or Chromium the browser tests print a SKIP line and pass, unless
//! `ECCO_REQUIRE_BROWSER=1` (CI), which makes them fail. Screenshots land in
//! `artifacts/dashboard/` at the workspace root.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use ecco_identity::Identity;
use ecco_registry::state::now_ms;
use ecco_registry::wire::Feedback;
use ecco_registry::{Client, Config, Receipt, Running};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tower::ServiceExt as _;

const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser at a time: the machine may have two cores.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn fetch(
    router: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

#[tokio::test]
async fn the_dashboard_is_embedded_with_content_types_and_validators() {
    let (_, router) = registry(Config::ephemeral()).await;
    let (status, headers, body) = fetch(&router, get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains(r#"<script type="module" src="/dashboard/app.js">"#),
        "{html}"
    );
    assert!(html.contains("<main") && html.contains("<nav") && html.contains("aria-live"));

    // Every file the page or its modules name is served, with its type.
    let mut names: Vec<String> = html
        .split("/dashboard/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect();
    names.extend(["api.js".to_owned(), "charts.js".to_owned()]);
    for name in names {
        let (status, headers, body) = fetch(&router, get(&format!("/dashboard/{name}"))).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        let expected = match name.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            _ => "text/html; charset=utf-8",
        };
        assert_eq!(headers["content-type"], expected, "{name}");
        assert_eq!(headers["cache-control"], "no-cache", "{name}");
        let text = String::from_utf8(body).unwrap();
        // Nothing comes from the internet: no CDN, no font service.
        let urls = text
            .match_indices("http://")
            .chain(text.match_indices("https://"));
        for url in urls.map(|(i, _)| &text[i..]) {
            assert!(
                url.starts_with("http://www.w3.org/2000/svg"),
                "{name} names {}",
                &url[..url.len().min(60)]
            );
        }
        // Module imports resolve to embedded files.
        for import in text.match_indices("from './").map(|(i, _)| &text[i + 8..]) {
            let file = import.split('\'').next().unwrap();
            let (status, _, _) = fetch(&router, get(&format!("/dashboard/{file}"))).await;
            assert_eq!(status, StatusCode::OK, "{name} imports {file}");
        }
    }

    // Revalidation: the ETag answers 304 without a body.
    let (_, headers, _) = fetch(&router, get("/dashboard/app.js")).await;
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let again = Request::builder()
        .uri("/dashboard/app.js")
        .header("if-none-match", &etag)
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = fetch(&router, again).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers["etag"], etag.as_str());
    assert!(body.is_empty());
    let other = Request::builder()
        .uri("/dashboard/app.js")
        .header("if-none-match", "\"something-else\"")
        .body(Body::empty())
        .unwrap();
    assert_eq!(fetch(&router, other).await.0, StatusCode::OK);

    // Unknown files and API paths stay JSON 404s.
    for path in [
        "/dashboard/nope.js",
        "/dashboard/../Cargo.toml",
        "/v1/nope",
        "/nowhere",
    ] {
        let (status, error) = send(&router, get(path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error["error"]["code"], "not_found", "{path}: {error}");
    }
}

#[tokio::test]
async fn the_page_loads_without_the_read_token_but_the_data_needs_it() {
    let config = Config {
        read_token: Some("reader".into()),
        ..Config::ephemeral()
    };
    let (_, router) = registry(config).await;
    assert_eq!(fetch(&router, get("/")).await.0, StatusCode::OK);
    assert_eq!(
        fetch(&router, get("/dashboard/app.js")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&router, get("/v1/analytics/overview")).await.0,
        StatusCode::UNAUTHORIZED
    );
}

// ---- The browser test ----

/// Node, the browser test's modules and Chromium, or why not.
fn browser_setup() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node = std::process::Command::new("node").arg("--version").output();
    match node {
        Ok(out) if out.status.success() => {}
        _ => return Err("node is not installed".into()),
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err(format!("run `npm ci` in {}", dir.display()));
    }
    if !Path::new(CHROMIUM).exists() {
        return Err(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    Ok(dir)
}

/// The browser test's directory, or `None` after printing why it is skipped;
/// panics instead when `ECCO_REQUIRE_BROWSER=1`.
fn browser_or_skip() -> Option<PathBuf> {
    match browser_setup() {
        Ok(dir) => Some(dir),
        Err(why) if std::env::var("ECCO_REQUIRE_BROWSER").is_ok_and(|v| v == "1") => {
            panic!("the browser test is required (ECCO_REQUIRE_BROWSER=1): {why}")
        }
        Err(why) => {
            eprintln!("SKIP: dashboard browser test: {why}");
            None
        }
    }
}

/// `artifacts/dashboard/<sub>` at the workspace root.
fn artifacts(sub: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate sits in crates/ of the workspace");
    root.join("artifacts/dashboard").join(sub)
}

/// Agents seeded into a registry, and what the page must show.
struct Seeded {
    scenario: Value,
    sleepy: Client,
    latecomer: Client,
    alpha: Identity,
    bravo: Client,
}

fn client(running: &Running, who: &Identity) -> Client {
    Client::new(&running.url(), who.clone()).unwrap()
}

async fn rate(agent: &Identity, rater: &Client, success: bool, rating: Option<u8>) {
    let receipt = Receipt::issue(agent, &rater.peer_id(), "llm/chat", now_ms());
    rater
        .feedback(&Feedback {
            receipt,
            success,
            latency_ms: 120,
            rating,
        })
        .await
        .unwrap();
}

/// Five agents: three online (signed registrations and heartbeats), one
/// stale and one offline. A signed write cannot be backdated, so those two
/// are written through the store with past times; so is some past activity.
async fn seed(running: &Running) -> Seeded {
    let store = running.app().store();
    let now = now_ms();
    let [alpha, bravo, charlie, sleepy, ghost, latecomer] =
        std::array::from_fn(|_| Identity::generate());
    let peer = |who: &Identity| who.peer_id().to_base58();

    for (who, name, caps) in [
        (&alpha, "alpha", &["llm/chat +summarize", "llm/embed"][..]),
        (&bravo, "bravo", &["llm/chat"][..]),
        (&charlie, "charlie", &["translate/text +french"][..]),
    ] {
        client(running, who)
            .register(&registration(name, caps))
            .await
            .unwrap();
    }
    // Alpha was around earlier too: its health history shows it.
    for minutes_ago in [50, 40, 39, 38, 20, 10, 5] {
        assert!(
            store
                .heartbeat(&peer(&alpha), None, now - minutes_ago * 60_000)
                .await
                .unwrap()
                .is_some()
        );
    }
    for who in [&alpha, &bravo, &charlie] {
        client(running, who).heartbeat(None).await.unwrap();
    }
    for (who, name, caps, registered, last_seen) in [
        (
            &sleepy,
            "sleepy",
            &["llm/embed"][..],
            now - 10 * 60_000,
            now - 2 * 60_000,
        ),
        (
            &ghost,
            "ghost",
            &["llm/chat"][..],
            now - 2 * 3_600_000,
            now - 20 * 60_000,
        ),
    ] {
        let doc = registration(name, caps).capabilities;
        let addresses = vec!["/ip4/127.0.0.1/tcp/4002".to_owned()];
        store
            .upsert_agent(&peer(who), name, &doc, &addresses, registered)
            .await
            .unwrap();
        assert!(
            store
                .heartbeat(&peer(who), None, last_seen)
                .await
                .unwrap()
                .is_some()
        );
    }

    // Writes straight to the store bypass the hot-read catalog: say so.
    running.app().catalog_changed().await;

    // Feedback: alpha is rated well by two clients, charlie poorly by alpha.
    let (bravo_client, charlie_client) = (client(running, &bravo), client(running, &charlie));
    rate(&alpha, &bravo_client, true, Some(5)).await;
    rate(&alpha, &bravo_client, true, Some(4)).await;
    rate(&alpha, &charlie_client, true, Some(5)).await;
    rate(&charlie, &client(running, &alpha), false, Some(1)).await;

    // While one request recomputes reputation the others get the previous
    // snapshot: wait for the one with all four reports in it (charlie's
    // report counts too: it sets charlie's weight as alpha's rater).
    // Snapshots only move forward: charlie's report seen, alpha's score after
    // it is final.
    let reader = client(running, &bravo);
    for _ in 0..50 {
        let rated = reader.agent(&charlie.peer_id()).await.unwrap();
        if rated.reputation.breakdown.feedback == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let detail = reader.agent(&alpha.peer_id()).await.unwrap();
    assert_eq!(detail.reputation.breakdown.feedback, 3);
    assert!(detail.reputation.score > 50.0);
    let agent = |who: &Identity, name: &str, health: &str| json!({"peer": peer(who), "name": name, "health": health});
    let scenario = json!({
        "mode": "full",
        "agents": [
            agent(&alpha, "alpha", "Online"),
            agent(&bravo, "bravo", "Online"),
            agent(&charlie, "charlie", "Online"),
            agent(&sleepy, "sleepy", "Stale"),
            agent(&ghost, "ghost", "Offline"),
        ],
        "counts": {"online": 3, "stale": 1, "offline": 1, "registered": 5},
        // Ghost registered two hours ago, outside the last hour.
        "registrations_last_hour": 4,
        "top_capability": "llm/chat",
        "filter": {
            "type": "translate/*", "type_matches": [peer(&charlie)],
            "feature": "summarize", "feature_matches": [peer(&alpha)],
        },
        "sleepy": {"peer": peer(&sleepy)},
        "latecomer": {"peer": peer(&latecomer), "name": "latecomer"},
        "rated": {
            "peer": peer(&alpha), "name": "alpha", "capability": "llm/chat",
            "feedback": 3, "raters": 2,
            "score": format!("{:.1}", detail.reputation.score),
        },
    });
    Seeded {
        scenario,
        sleepy: client(running, &sleepy),
        latecomer: client(running, &latecomer),
        alpha,
        bravo: bravo_client,
    }
}

/// Runs `dashboard.mjs` against `url`, doing what it asks; its summary.
async fn drive(
    dir: &Path,
    url: &str,
    scenario: &Value,
    screenshots: &Path,
    mut step: impl AsyncFnMut(&str),
) -> Value {
    let mut child = tokio::process::Command::new("node")
        .arg(dir.join("dashboard.mjs"))
        .current_dir(dir)
        .env("ECCO_DASHBOARD_URL", url)
        .env("ECCO_SCREENSHOTS", screenshots)
        .env("ECCO_SCENARIO", scenario.to_string())
        .env("ECCO_CHROMIUM", CHROMIUM)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let conversation = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let message: Value = match serde_json::from_str(&line) {
                Ok(message) => message,
                Err(_) => continue,
            };
            if let Some(name) = message["step"].as_str() {
                step(name).await;
                stdin.write_all(b"go\n").await.unwrap();
                stdin.flush().await.unwrap();
            } else if message["done"] == true {
                return Some(message);
            }
        }
        None
    })
    .await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    if status.is_err() {
        let _ = child.start_kill();
    }
    let log = tokio::time::timeout(Duration::from_secs(10), log)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    match (conversation, status) {
        (Ok(Some(summary)), Ok(Ok(status))) if status.success() => {
            eprintln!("browser test: {summary}");
            summary
        }
        (conversation, status) => panic!(
            "the browser test failed ({}; exit {status:?}):\n{log}",
            match conversation {
                Ok(Some(_)) => "finished",
                Ok(None) => "ended early",
                Err(_) => "timed out",
            }
        ),
    }
}

/// Seeds `running`, drives the page through every check, saves screenshots.
async fn full_run(running: Running, screenshots: PathBuf) {
    let Some(dir) = browser_or_skip() else {
        running.shutdown().await;
        return;
    };
    let _one_at_a_time = BROWSER.lock().await;
    let seeded = seed(&running).await;
    let started = std::time::Instant::now();
    drive(
        &dir,
        &running.url(),
        &seeded.scenario,
        &screenshots,
        async |step: &str| match step {
            "heartbeat" => {
                seeded.sleepy.heartbeat(None).await.unwrap();
            }
            "register" => {
                seeded
                    .latecomer
                    .register(&registration("latecomer", &["echo/text"]))
                    .await
                    .unwrap();
            }
            "feedback" => rate(&seeded.alpha, &seeded.bravo, true, Some(3)).await,
            // Bravo is online already: the page refreshes and shows the same.
            "quiet-heartbeat" => {
                seeded.bravo.heartbeat(None).await.unwrap();
            }
            other => panic!("unknown step {other}"),
        },
    )
    .await;
    eprintln!(
        "browser test took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        screenshots.display()
    );
    for name in [
        "overview",
        "agents",
        "agent",
        "phone-overview",
        "phone-agents",
        "phone-agent",
    ] {
        let file = screenshots.join(format!("{name}.png"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{}",
            file.display()
        );
    }
    running.shutdown().await;
}

#[tokio::test]
async fn the_dashboard_shows_a_seeded_registry_live_in_chromium_on_sqlite() {
    let running = ecco_registry::serve(Config::ephemeral()).await.unwrap();
    full_run(running, artifacts("")).await;
}

#[tokio::test]
async fn the_dashboard_shows_a_seeded_registry_live_in_chromium_on_postgres_and_redis() {
    if browser_setup().is_err() {
        // The SQLite run prints the skip line (or fails under ECCO_REQUIRE_BROWSER).
        return;
    }
    let redis = redis_url();
    if let Err(e) = ecco_registry::shared::Shared::redis(&redis, "dashboard-probe").await {
        return skip("redis", &redis, &e);
    }
    let Some(database) = TempDatabase::create("dashboard").await else {
        return;
    };
    let config = Config {
        database_url: database.url.clone(),
        redis_url: Some(redis),
        ..Config::ephemeral()
    };
    let running = ecco_registry::serve(config).await.unwrap();
    full_run(running, artifacts("postgres")).await;
}

#[tokio::test]
async fn the_dashboard_asks_for_the_read_token_in_chromium() {
    let Some(dir) = browser_or_skip() else {
        return;
    };
    let config = Config {
        read_token: Some("s3cret-reader".into()),
        ..Config::ephemeral()
    };
    let running = ecco_registry::serve(config).await.unwrap();
    let who = Identity::generate();
    client(&running, &who)
        .register(&registration("alpha", &["llm/chat"]))
        .await
        .unwrap();
    let _one_at_a_time = BROWSER.lock().await;
    let scenario = json!({"mode": "token", "token": "s3cret-reader", "counts": {"registered": 1}});
    drive(
        &dir,
        &running.url(),
        &scenario,
        &artifacts(""),
        async |step: &str| panic!("unexpected step {step}"),
    )
    .await;
    assert!(artifacts("token.png").is_file());
    running.shutdown().await;
}

#[tokio::test]
async fn the_dashboard_says_when_the_stream_is_lost_and_back_in_chromium() {
    let Some(dir) = browser_or_skip() else {
        return;
    };
    // A file, so that the registry comes back with its data, on the same port.
    let db = tempfile::tempdir().unwrap();
    let config = Config {
        database_url: format!("sqlite:{}", db.path().join("registry.db").display()),
        ..Config::ephemeral()
    };
    let first = ecco_registry::serve(config.clone()).await.unwrap();
    let config = Config {
        listen: first.local_addr(),
        ..config
    };
    let url = first.url();
    let (alpha, later) = (Identity::generate(), Identity::generate());
    client(&first, &alpha)
        .register(&registration("alpha", &["llm/chat"]))
        .await
        .unwrap();
    let _one_at_a_time = BROWSER.lock().await;
    let scenario = json!({
        "mode": "reconnect",
        "first": {"peer": alpha.peer_id().to_base58()},
        "while_away": {"peer": later.peer_id().to_base58()},
    });
    let mut running = Some(first);
    drive(
        &dir,
        &url,
        &scenario,
        &artifacts(""),
        async |step: &str| match step {
            "stop" => {
                if let Some(registry) = running.take() {
                    registry.shutdown().await;
                }
            }
            "start" => {
                let registry = ecco_registry::serve(config.clone()).await.unwrap();
                // Registered before the page is back: it must catch up on reconnecting.
                client(&registry, &later)
                    .register(&registration("while-away", &["llm/chat"]))
                    .await
                    .unwrap();
                running = Some(registry);
            }
            other => panic!("unknown step {other}"),
        },
    )
    .await;
    assert!(artifacts("lost.png").is_file());
    if let Some(registry) = running {
        registry.shutdown().await;
    }
}
