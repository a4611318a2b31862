//! Helpers shared by the registry's tests.
#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ecco_core::{Capability, CapabilityDocument};
use ecco_identity::Identity;
use ecco_registry::signing::Signed;
use ecco_registry::wire::Registration;
use ecco_registry::{App, Config};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

/// A registry on in-memory SQLite, with its router.
pub async fn registry(config: Config) -> (App, Router) {
    let app = ecco_registry::open(config).await.expect("registry opens");
    (app.clone(), ecco_registry::router(app))
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// The id of the registry behind `router`, which signed writes cover.
pub async fn registry_id(router: &Router) -> String {
    let (status, health) = send(router, get("/health")).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    health["registry"]
        .as_str()
        .expect("/health names the registry")
        .to_owned()
}

/// A request to `registry` signed by `who`, at `timestamp`.
pub fn signed_at(
    registry: &str,
    who: &Identity,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: i64,
) -> Request<Body> {
    let signed = Signed::sign(who, registry, method, path, body, timestamp);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    for (name, value) in signed.headers() {
        request = request.header(name, value);
    }
    request
        .body(Body::from(body.to_vec()))
        .expect("request builds")
}

/// A request to `registry` signed by `who` now.
pub fn signed(
    registry: &str,
    who: &Identity,
    method: &str,
    path: &str,
    body: &[u8],
) -> Request<Body> {
    signed_at(registry, who, method, path, body, now_secs())
}

pub fn get(path: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .body(Body::empty())
        .expect("request builds")
}

/// Sends one request through the router; the JSON body (or `Null`).
pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("router answers");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, value)
}

pub fn registration(name: &str, capabilities: &[&str]) -> Registration {
    let capabilities = capabilities
        .iter()
        .map(|c| {
            with_version(c)
                .parse::<Capability>()
                .expect("capability parses")
        })
        .collect();
    Registration {
        name: name.to_owned(),
        capabilities: CapabilityDocument::new(capabilities).expect("document is valid"),
        addresses: vec!["/ip4/127.0.0.1/tcp/4001".to_owned()],
    }
}

/// The JSON of a capability document whose every capability is within its
/// limits but which is over `MAX_DOCUMENT_BYTES` in all (no
/// `CapabilityDocument` can hold it), while a registration carrying it still
/// fits the default body limit.
pub fn oversized_document() -> serde_json::Value {
    let blob = "x".repeat(8_100);
    let capabilities: Vec<Capability> = (0..33)
        .map(|i| {
            Capability::builder("llm/chat", format!("big{i}"), "1.0.0")
                .meta("blob", blob.as_str())
                .build()
                .expect("each capability is within its limits")
        })
        .collect();
    let document = serde_json::json!({ "schema": 1, "capabilities": capabilities });
    let len = serde_json::to_vec(&document).unwrap().len();
    assert!(
        len > ecco_core::limits::MAX_DOCUMENT_BYTES
            && len + 1024 < Config::default().max_body_bytes,
        "{len} bytes"
    );
    document
}

/// `llm/chat +x` as `llm/chat model@1.0.0 +x`: tests name only what matters.
fn with_version(text: &str) -> String {
    if text.contains('@') {
        return text.to_owned();
    }
    match text.split_once(' ') {
        Some((kind, rest)) => format!("{kind} model@1.0.0 {rest}"),
        None => format!("{text} model@1.0.0"),
    }
}

/// Registers `who` and checks it worked.
pub async fn register(router: &Router, who: &Identity, name: &str, capabilities: &[&str]) {
    let body = serde_json::to_vec(&registration(name, capabilities)).expect("serialises");
    let path = format!("/v1/agents/{}", who.peer_id());
    let registry = registry_id(router).await;
    let (status, value) = send(router, signed(&registry, who, "PUT", &path, &body)).await;
    assert!(status.is_success(), "register {name}: {status} {value}");
}

/// Whether tests must fail rather than skip when a service is unreachable.
pub fn services_required() -> bool {
    std::env::var("ECCO_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

pub fn postgres_url() -> String {
    std::env::var("ECCO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("ECCO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Prints the skip line, or panics when services are required.
pub fn skip(service: &str, url: &str, error: &dyn std::fmt::Display) {
    if services_required() {
        panic!("{service} at {url} is required (ECCO_REQUIRE_SERVICES=1) but unreachable: {error}");
    }
    eprintln!(
        "SKIP: {service} unreachable at {url} ({error}); set ECCO_TEST_{}_URL or start it",
        service.to_uppercase()
    );
}

/// A PostgreSQL database of the test's own, so that runs never see each
/// other's rows; dropped when the guard goes, even when the test panics.
pub struct TempDatabase {
    /// Where the test connects.
    pub url: String,
    admin_url: String,
    name: String,
}

impl TempDatabase {
    /// Creates `ecco_<label>_<pid>` next to the admin database (skipping, or
    /// failing when services are required, if PostgreSQL is unreachable).
    /// The admin database itself is never migrated.
    pub async fn create(label: &str) -> Option<Self> {
        let admin_url = postgres_url();
        let admin = match sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect(&admin_url)
            .await
        {
            Ok(pool) => pool,
            Err(e) => {
                skip("postgres", &admin_url, &e);
                return None;
            }
        };
        let name = format!("ecco_{label}_{}", std::process::id());
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await
            .expect("drop a leftover database");
        // PostgreSQL refuses to copy its template while another session
        // creates a database from it, which tests side by side do: retry.
        let mut attempt = 0;
        while let Err(e) = sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
        {
            attempt += 1;
            assert!(attempt < 10, "CREATE DATABASE {name}: {e}");
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        admin.close().await;
        let (base, _) = admin_url.rsplit_once('/').expect("URL names a database");
        Some(Self {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        })
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        // Drop runs outside any async context that could be borrowed, so the
        // statement gets a runtime of its own on a thread of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let admin = sqlx::PgPool::connect(&admin_url).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await?;
                admin.close().await;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}
