//! Registry load benchmark.
//!
//! The registry runs in a child process (this binary re-executed, serving
//! exactly what `ecco registry serve` serves); this process drives it over
//! loopback with a fixed number of keep-alive connections, each sending one
//! request after another for a fixed time. Phases: a baseline (an unknown
//! path, answered by the router's fallback through the same middleware: the
//! floor of the HTTP stack and of this load generator), agent search, agent
//! detail, signed heartbeats and signed feedback with receipts. Backends:
//! SQLite on a temporary file, then PostgreSQL plus Redis when reachable.
//!
//! ```sh
//! cargo bench -p ecco-registry --bench load
//! # shorter: ECCO_BENCH_QUICK=1 cargo bench -p ecco-registry --bench load
//! ```
//!
//! Environment: `ECCO_LOAD_SECS` (seconds per phase, default 5),
//! `ECCO_LOAD_CONNECTIONS` (default 32), `ECCO_LOAD_AGENTS` (default 500),
//! `ECCO_TEST_POSTGRES_URL`, `ECCO_TEST_REDIS_URL`.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ecco_core::{Capability, CapabilityDocument};
use ecco_identity::Identity;
use ecco_registry::receipt::Receipt;
use ecco_registry::signing::Signed;
use ecco_registry::wire::{Feedback, Registration};
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

mod common;
use common::fresh_postgres;

const CHILD_ENV: &str = "ECCO_LOAD_CHILD_DATABASE";
const CHILD_REDIS_ENV: &str = "ECCO_LOAD_CHILD_REDIS";

/// Queries the search phase cycles through: broad, narrow, with constraints.
const QUERIES: &[&str] = &[
    "llm/*",
    "llm/chat +summarize",
    "llm/* +french price<=0.005",
    "vision/ocr",
    "*",
];

struct Settings {
    secs: Duration,
    warmup: Duration,
    connections: usize,
    agents: usize,
}

impl Settings {
    fn from_env() -> Self {
        let quick = std::env::var("ECCO_BENCH_QUICK").is_ok_and(|v| v == "1");
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let secs = number("ECCO_LOAD_SECS", if quick { 1 } else { 5 });
        Self {
            secs: Duration::from_secs(secs),
            warmup: Duration::from_millis(if quick { 200 } else { 1000 }),
            connections: number("ECCO_LOAD_CONNECTIONS", 32) as usize,
            agents: number("ECCO_LOAD_AGENTS", if quick { 100 } else { 500 }) as usize,
        }
    }
}

fn main() {
    if let Ok(database_url) = std::env::var(CHILD_ENV) {
        serve_child(database_url, std::env::var(CHILD_REDIS_ENV).ok());
        return;
    }
    let settings = Settings::from_env();
    // The load generator keeps to one thread, so that the registry has the
    // other core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "# Registry load: {} connections, {} s per phase after {} ms of warm-up, {} agents\n",
        settings.connections,
        settings.secs.as_secs(),
        settings.warmup.as_millis(),
        settings.agents
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = format!("sqlite:{}", dir.path().join("load.db").display());
    rt.block_on(run_backend("SQLite", &sqlite, None, &settings));

    let postgres = std::env::var("ECCO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let redis = std::env::var("ECCO_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    match rt.block_on(fresh_postgres(&postgres, "ecco_load")) {
        Ok((url, admin, name)) => {
            rt.block_on(run_backend(
                "PostgreSQL + Redis",
                &url,
                Some(&redis),
                &settings,
            ));
            rt.block_on(async {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                    .execute(&admin)
                    .await;
            });
        }
        Err(e) => println!("PostgreSQL at {postgres} unreachable ({e}): skipped\n"),
    }
}

// ---------------------------------------------------------------------------
// The registry process

fn serve_child(database_url: String, redis_url: Option<String>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let config = ecco_registry::Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            database_url,
            redis_url,
            ..ecco_registry::Config::default()
        };
        let running = ecco_registry::serve(config).await.expect("registry starts");
        println!("{}", running.url());
        // Serve until the parent closes stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await;
        running.shutdown().await;
    });
}

struct Registry {
    child: Child,
    url: String,
}

impl Registry {
    fn start(database_url: &str, redis_url: Option<&str>) -> Self {
        let exe = std::env::current_exe().expect("own executable");
        let mut command = Command::new(exe);
        command
            .env(CHILD_ENV, database_url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(redis) = redis_url {
            command.env(CHILD_REDIS_ENV, redis);
        }
        let mut child = command.spawn().expect("start the registry");
        let mut url = String::new();
        BufReader::new(child.stdout.take().expect("child stdout"))
            .read_line(&mut url)
            .expect("read the registry's URL");
        assert!(url.starts_with("http://"), "the registry did not start");
        Self {
            child,
            url: url.trim().to_owned(),
        }
    }

    fn authority(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Closing stdin asks for a clean shutdown.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Phases

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Baseline,
    Search,
    Detail,
    Heartbeat,
    Feedback,
}

impl Phase {
    const ALL: [Self; 5] = [
        Self::Baseline,
        Self::Search,
        Self::Detail,
        Self::Heartbeat,
        Self::Feedback,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline: unknown path (404)",
            Self::Search => "search `GET /v1/agents?q=`",
            Self::Detail => "detail `GET /v1/agents/{id}`",
            Self::Heartbeat => "signed heartbeat",
            Self::Feedback => "signed feedback + receipt",
        }
    }

    fn expected(self) -> u16 {
        match self {
            Self::Baseline => 404,
            Self::Feedback => 201,
            Self::Search | Self::Detail | Self::Heartbeat => 200,
        }
    }
}

/// Agents and raters, shared by the workers.
struct Population {
    // The registry's id, which signed writes cover.
    registry: String,
    agents: Vec<Identity>,
    raters: Vec<Identity>,
}

struct Outcome {
    phase: Phase,
    requests: u64,
    unexpected: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

async fn run_backend(label: &str, database_url: &str, redis: Option<&str>, settings: &Settings) {
    let registry = Registry::start(database_url, redis);
    let health = ecco_registry::Client::new(&registry.url, Identity::generate())
        .expect("registry URL is valid")
        .health()
        .await
        .expect("the registry answers /health");
    let population = Arc::new(Population {
        registry: health.registry,
        agents: (0..settings.agents).map(|_| Identity::generate()).collect(),
        raters: (0..settings.agents).map(|_| Identity::generate()).collect(),
    });
    seed(&registry.url, &population).await;
    let mut outcomes = Vec::new();
    for phase in Phase::ALL {
        outcomes.push(run_phase(phase, &registry, &population, settings).await);
    }
    drop(registry);
    print_table(label, &outcomes);
}

async fn seed(url: &str, population: &Population) {
    let registrations = futures::stream::iter(population.agents.iter().enumerate())
        .map(|(i, identity)| async move {
            let client =
                ecco_registry::Client::new(url, identity.clone()).expect("registry URL is valid");
            client
                .register(&registration(i))
                .await
                .expect("seed registration");
        })
        .buffer_unordered(16);
    registrations.collect::<Vec<()>>().await;
}

/// A varied capability per agent: five types, features and prices.
fn registration(i: usize) -> Registration {
    let kind = [
        "llm/chat",
        "llm/summarize",
        "llm/translate",
        "vision/ocr",
        "audio/asr",
    ][i % 5];
    let features = ["+summarize", "+french", "+fast", "+summarize +french", ""][(i / 5) % 5];
    let text = format!(
        "{kind} model{i}@1.{}.0 {features} price=0.00{} context_window={}",
        i % 7,
        1 + i % 9,
        8000 * (1 + i % 16)
    );
    let capability: Capability = text.parse().expect("capability parses");
    Registration {
        name: format!("agent-{i}"),
        capabilities: CapabilityDocument::new(vec![capability]).expect("valid document"),
        addresses: vec![format!("/ip4/127.0.0.1/tcp/{}", 20_000 + i)],
    }
}

async fn run_phase(
    phase: Phase,
    registry: &Registry,
    population: &Arc<Population>,
    settings: &Settings,
) -> Outcome {
    let start = Instant::now();
    let measure_from = start + settings.warmup;
    let deadline = measure_from + settings.secs;
    let mut workers = Vec::new();
    for worker in 0..settings.connections {
        let authority = registry.authority().to_owned();
        let population = population.clone();
        workers.push(tokio::spawn(async move {
            drive(
                phase,
                worker,
                &authority,
                &population,
                measure_from,
                deadline,
            )
            .await
        }));
    }
    let mut outcome = Outcome {
        phase,
        requests: 0,
        unexpected: 0,
        elapsed: settings.secs,
        latencies_us: Vec::new(),
    };
    for worker in workers {
        let (latencies, unexpected) = worker.await.expect("worker finishes");
        outcome.requests += latencies.len() as u64;
        outcome.unexpected += unexpected;
        outcome.latencies_us.extend(latencies);
    }
    outcome.latencies_us.sort_unstable();
    outcome
}

/// One connection sending requests back to back until `deadline`; the
/// latencies measured after `measure_from` and the count of unexpected
/// statuses.
async fn drive(
    phase: Phase,
    worker: usize,
    authority: &str,
    population: &Population,
    measure_from: Instant,
    deadline: Instant,
) -> (Vec<u32>, u64) {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect to the registry");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1 handshake");
    tokio::spawn(connection);
    let mut latencies = Vec::with_capacity(64 * 1024);
    let mut unexpected = 0;
    let mut n = worker;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let request = build(phase, n, authority, population);
        n += 7919; // A prime stride spreads workers over agents and queries.
        let sent = Instant::now();
        let response = sender.send_request(request).await.expect("response");
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await.expect("body");
        let took = sent.elapsed();
        if status != phase.expected() {
            unexpected += 1;
            if unexpected == 1 {
                eprintln!("{}: unexpected status {status}", phase.name());
            }
        }
        if sent >= measure_from {
            latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        }
    }
    (latencies, unexpected)
}

fn build(phase: Phase, n: usize, authority: &str, population: &Population) -> Request<Full<Bytes>> {
    let agent = &population.agents[n % population.agents.len()];
    let get = |path: String| {
        Request::get(path)
            .header("host", authority)
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    match phase {
        Phase::Baseline => get("/v1/nothing-here".to_owned()),
        Phase::Search => {
            let q: String =
                form_urlencoded::byte_serialize(QUERIES[n % QUERIES.len()].as_bytes()).collect();
            get(format!("/v1/agents?q={q}&per_page=20"))
        }
        Phase::Detail => get(format!("/v1/agents/{}", agent.peer_id())),
        Phase::Heartbeat => signed(
            &population.registry,
            agent,
            "POST",
            &format!("/v1/agents/{}/heartbeat", agent.peer_id()),
            Vec::new(),
            authority,
        ),
        Phase::Feedback => {
            let rater =
                &population.raters[(n / population.agents.len() + n) % population.raters.len()];
            let receipt = Receipt::issue(agent, &rater.peer_id(), "llm/chat", now_ms());
            let body = serde_json::to_vec(&Feedback {
                receipt,
                success: !n.is_multiple_of(10),
                latency_ms: 20 + (n % 200) as u32,
                rating: Some(1 + (n % 5) as u8),
            })
            .expect("feedback serialises");
            signed(
                &population.registry,
                rater,
                "POST",
                "/v1/feedback",
                body,
                authority,
            )
        }
    }
}

fn signed(
    registry: &str,
    who: &Identity,
    method: &str,
    path: &str,
    body: Vec<u8>,
    authority: &str,
) -> Request<Full<Bytes>> {
    let signed = Signed::sign(who, registry, method, path, &body, now_ms() / 1000);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("content-type", "application/json");
    for (name, value) in signed.headers() {
        request = request.header(name, value);
    }
    request.body(Full::new(Bytes::from(body))).expect("request")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// ---------------------------------------------------------------------------
// Report

fn print_table(label: &str, outcomes: &[Outcome]) {
    let rate = |o: &Outcome| o.latencies_us.len() as f64 / o.elapsed.as_secs_f64();
    let pct = |o: &Outcome, p: f64| {
        if o.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((o.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(o.latencies_us[i]) / 1000.0
    };
    let baseline = outcomes
        .iter()
        .find(|o| o.phase == Phase::Baseline)
        .map_or(f64::NAN, rate);
    println!("## {label}\n");
    println!(
        "| phase | requests/s | p50 ms | p99 ms | throughput vs baseline | unexpected statuses |"
    );
    println!("|---|---|---|---|---|---|");
    for o in outcomes {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            o.phase.name(),
            rate(o),
            pct(o, 0.50),
            pct(o, 0.99),
            rate(o) / baseline,
            o.unexpected
        );
    }
    let total: u64 = outcomes.iter().map(|o| o.requests).sum();
    println!("\n({total} requests in all)\n");
}
