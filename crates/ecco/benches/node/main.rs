//! Node benchmarks over loopback TCP, each against a baseline measured in the
//! same run:
//!
//! 1. request round trips (p50, p99, throughput), one at a time and with 32 in
//!    flight, between two Ecco nodes and between two bare libp2p swarms running
//!    only `request_response` with a raw-bytes codec on the same transport stack
//!    (and between two Ecco nodes without the DHT and announcements, to show
//!    what those cost; and between two plain libp2p swarms that run Ecco's set
//!    of protocols around the same raw `request_response`, to tell libp2p's
//!    cost of those protocols from Ecco's own);
//! 2. how long a node takes to learn a new peer's capabilities after dialling it;
//! 3. the resident memory of an idle node, against a process running only the
//!    tokio runtime.
//!
//! Run: `cargo bench -p ecco --bench node`; `ECCO_BENCH_QUICK=1` for a smoke
//! run with few samples. All traffic stays on 127.0.0.1; mDNS is never used.
//!
//! For a profiler, `ECCO_BENCH_PROFILE=baseline|ecco|ecco-lean|libp2p-protocols`
//! runs only that contender's requests (`ECCO_BENCH_PROFILE_COUNT` of them,
//! 2,000 by default) after a warm-up; two runs with different counts, under
//! `valgrind --tool=callgrind`, give the instructions per round trip as the
//! difference of their totals divided by the difference of their counts.
//! With `ECCO_BENCH_PROFILE_IN_FLIGHT` set, the profiling run sends them with
//! 32 in flight instead of one at a time.

// A benchmark binary reports on stdout/stderr and may panic on failure.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ecco::node::{Answer, Config, Event, Inbox, Node, Request};
use ecco::{Capability, CapabilityType, Identity};
use futures::prelude::*;
use futures::stream::FuturesUnordered;
use libp2p::{Multiaddr, PeerId};
use serde_json::{Value, json};
use tokio::sync::broadcast;

mod bare;
mod same_protocols;

/// Set in a child process to the kind of idle process it should be.
const CHILD_ENV: &str = "ECCO_BENCH_IDLE_NODE";
/// Set to run with few samples.
const QUICK_ENV: &str = "ECCO_BENCH_QUICK";
/// Set to a contender (`baseline`, `ecco`, `ecco-lean`, `libp2p-protocols`) to run only its
/// requests (sequential, unless [`PROFILE_IN_FLIGHT_ENV`] is set), once, for
/// a profiler such as callgrind.
const PROFILE_ENV: &str = "ECCO_BENCH_PROFILE";
/// How many requests the profiling run sends (default 2,000).
const PROFILE_COUNT_ENV: &str = "ECCO_BENCH_PROFILE_COUNT";
/// Set to send the profiling run's requests with [`IN_FLIGHT`] in flight.
const PROFILE_IN_FLIGHT_ENV: &str = "ECCO_BENCH_PROFILE_IN_FLIGHT";
/// Requests in flight in the pipelined runs.
const IN_FLIGHT: usize = 32;
/// A child process exits by itself after this long, should the parent die.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

struct Settings {
    rounds: usize,
    warmup: usize,
    sequential: usize,
    pipelined: usize,
    learn_runs: usize,
    rss_settle: Duration,
}

impl Settings {
    fn from_env() -> (Self, bool) {
        let quick = std::env::var_os(QUICK_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        let settings = if quick {
            Self {
                rounds: 1,
                warmup: 50,
                sequential: 300,
                pipelined: 2_000,
                learn_runs: 5,
                rss_settle: Duration::from_secs(1),
            }
        } else {
            Self {
                rounds: 7,
                warmup: 200,
                sequential: 2_000,
                pipelined: 10_000,
                learn_runs: 20,
                rss_settle: Duration::from_secs(3),
            }
        };
        (settings, quick)
    }
}

/// The same runtime everywhere, children included: tokio's multi-threaded
/// scheduler with one worker per core (2 on the CI machine).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn main() {
    if let Ok(kind) = std::env::var(CHILD_ENV) {
        idle_child(&kind);
        return;
    }
    if let Ok(name) = std::env::var(PROFILE_ENV) {
        profile(&name);
        return;
    }
    let (settings, quick) = Settings::from_env();
    let rt = runtime();
    let workers = rt.metrics().num_workers();
    println!(
        "# Node benchmarks{}\n",
        if quick { " (quick mode)" } else { "" }
    );
    println!(
        "tokio multi-threaded runtime, {workers} workers; loopback TCP + Noise + Yamux; \
         payload {} bytes of JSON; {} rounds, each: {} warm-up, {} sequential, {} with {IN_FLIGHT} in flight\n",
        payload_bytes(),
        settings.rounds,
        settings.warmup,
        settings.sequential,
        settings.pipelined
    );

    let results = rt.block_on(round_trips(&settings));
    print_round_trips(&results);
    let learned = rt.block_on(capabilities_learned(settings.learn_runs));
    print_learned(&learned);
    drop(rt);
    print_rss(settings.rss_settle);
}

/// One contender's sequential requests and nothing else, so that a profiler
/// can compare two runs with different counts: the difference is the cost of
/// the extra requests, setup and teardown cancelling out.
fn profile(name: &str) {
    let Some(contender) = Contender::ALL.into_iter().find(|c| c.id() == name) else {
        eprintln!(
            "{PROFILE_ENV}: unknown contender `{name}` (baseline, ecco, ecco-lean, libp2p-protocols)"
        );
        std::process::exit(2);
    };
    let count = match std::env::var(PROFILE_COUNT_ENV) {
        Err(_) => 2_000,
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{PROFILE_COUNT_ENV}: `{v}` is not a count of requests");
            std::process::exit(2);
        }),
    };
    let in_flight = std::env::var_os(PROFILE_IN_FLIGHT_ENV).is_some();
    let (sequential, pipelined) = if in_flight { (0, count) } else { (count, 0) };
    let settings = Settings {
        rounds: 1,
        warmup: 200,
        sequential,
        pipelined,
        learn_runs: 0,
        rss_settle: Duration::ZERO,
    };
    let figures = runtime().block_on(contender.round(&settings));
    let (what, p50, p99, rps) = if in_flight {
        let what = format!("{count} requests, {IN_FLIGHT} in flight");
        (what, figures.pipe_p50, figures.pipe_p99, figures.pipe_rps)
    } else {
        let what = format!("{count} sequential requests");
        (what, figures.seq_p50, figures.seq_p99, figures.seq_rps)
    };
    println!("{name}: {what}, p50 {} p99 {} {rps:.0}/s", us(p50), us(p99));
}

// ---------------------------------------------------------------------------
// Payload

/// A small JSON request, about 100 bytes once encoded.
fn payload(i: usize) -> Value {
    json!({
        "task": "echo",
        "text": "The quick brown fox jumps over the lazy dog.",
        "seq": i,
        "tags": ["bench", "loopback"],
    })
}

fn payload_bytes() -> usize {
    serde_json::to_vec(&payload(1000)).map_or(0, |v| v.len())
}

// ---------------------------------------------------------------------------
// Round trips

/// Latencies of one run, and how long the run took.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// The figures of one round of one contender.
#[derive(Clone, Copy)]
struct Figures {
    seq_p50: Duration,
    seq_p99: Duration,
    seq_rps: f64,
    pipe_p50: Duration,
    pipe_p99: Duration,
    pipe_rps: f64,
}

impl Figures {
    fn new(sequential: Run, pipelined: Run) -> Self {
        let rps = |r: &Run| r.latencies.len() as f64 / r.elapsed.as_secs_f64();
        let (seq_rps, pipe_rps) = (rps(&sequential), rps(&pipelined));
        let mut s = sequential.latencies;
        let mut p = pipelined.latencies;
        s.sort_unstable();
        p.sort_unstable();
        Self {
            seq_p50: percentile(&s, 0.50),
            seq_p99: percentile(&s, 0.99),
            seq_rps,
            pipe_p50: percentile(&p, 0.50),
            pipe_p99: percentile(&p, 0.99),
            pipe_rps,
        }
    }

    /// The median of each metric over rounds.
    fn median(rounds: &[Figures]) -> Figures {
        let d = |f: fn(&Figures) -> Duration| {
            let mut v: Vec<Duration> = rounds.iter().map(f).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        let r = |f: fn(&Figures) -> f64| {
            let mut v: Vec<f64> = rounds.iter().map(f).collect();
            v.sort_unstable_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Figures {
            seq_p50: d(|f| f.seq_p50),
            seq_p99: d(|f| f.seq_p99),
            seq_rps: r(|f| f.seq_rps),
            pipe_p50: d(|f| f.pipe_p50),
            pipe_p99: d(|f| f.pipe_p99),
            pipe_rps: r(|f| f.pipe_rps),
        }
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What is measured in a round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Contender {
    /// Two bare libp2p swarms.
    Baseline,
    /// Two Ecco nodes, `Config::loopback()`.
    Ecco,
    /// Two Ecco nodes without the DHT and announcements, to show their share.
    EccoNoDiscovery,
    /// Two plain libp2p swarms with Ecco's protocols around the baseline's
    /// `request_response`: libp2p's own cost of those protocols.
    Libp2pProtocols,
}

impl Contender {
    const ALL: [Contender; 4] = [
        Contender::Baseline,
        Contender::Ecco,
        Contender::EccoNoDiscovery,
        Contender::Libp2pProtocols,
    ];

    fn name(self) -> &'static str {
        match self {
            Contender::Baseline => "baseline",
            Contender::Ecco => "ecco",
            Contender::EccoNoDiscovery => "ecco, no discovery",
            Contender::Libp2pProtocols => "libp2p, ecco's protocols",
        }
    }

    /// The name `ECCO_BENCH_PROFILE` takes.
    fn id(self) -> &'static str {
        match self {
            Contender::Baseline => "baseline",
            Contender::Ecco => "ecco",
            Contender::EccoNoDiscovery => "ecco-lean",
            Contender::Libp2pProtocols => "libp2p-protocols",
        }
    }

    async fn round(self, s: &Settings) -> Figures {
        match self {
            Contender::Baseline => bare::round(s, bare::raw_swarm).await,
            Contender::Ecco => ecco_round(s, loopback()).await,
            Contender::EccoNoDiscovery => {
                let mut config = loopback();
                config.discovery.dht = false;
                config.discovery.announcements = false;
                ecco_round(s, config).await
            }
            Contender::Libp2pProtocols => bare::round(s, same_protocols::swarm).await,
        }
    }
}

/// Figures per contender, one per round, in the order of [`Contender::ALL`].
type Results = [Vec<Figures>; 4];

/// Runs every contender in every round, each on a fresh pair.
async fn round_trips(s: &Settings) -> Results {
    let mut results: Results = Default::default();
    for round in 0..s.rounds {
        // Rotate which goes first, so that none always runs on a warmer machine.
        for k in 0..Contender::ALL.len() {
            let i = (round + k) % Contender::ALL.len();
            let contender = Contender::ALL[i];
            let figures = contender.round(s).await;
            eprintln!(
                "round {} {:>24}: seq p50 {} p99 {} {:.0}/s | x{IN_FLIGHT} p50 {} p99 {} {:.0}/s",
                round + 1,
                contender.name(),
                us(figures.seq_p50),
                us(figures.seq_p99),
                figures.seq_rps,
                us(figures.pipe_p50),
                us(figures.pipe_p99),
                figures.pipe_rps
            );
            results[i].push(figures);
        }
    }
    results
}

// --- Ecco

fn echo_type() -> CapabilityType {
    CapabilityType::new("bench/echo").expect("a valid capability type")
}

fn serve_echo(mut inbox: Inbox) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(req) = inbox.recv().await {
            let payload = req.request.payload.clone();
            req.respond(Answer::new(payload));
        }
    })
}

async fn first_addr(node: &Node) -> Multiaddr {
    node.listen_addrs()
        .await
        .expect("listen addresses")
        .into_iter()
        .next()
        .expect("a listen address")
}

/// `Config::loopback()`, with mDNS certainly off: nothing leaves 127.0.0.1.
fn loopback() -> Config {
    let mut config = Config::loopback();
    config.discovery.mdns = false;
    config
}

async fn ecco_round(s: &Settings, config: Config) -> Figures {
    let (server, inbox) = Node::spawn(&Identity::generate(), config.clone())
        .await
        .expect("server node");
    let serving = serve_echo(inbox);
    let (client, _inbox) = Node::spawn(&Identity::generate(), config)
        .await
        .expect("client node");
    let peer = client
        .dial(first_addr(&server).await)
        .await
        .expect("dial the server");
    ecco_run(&client, peer, s.warmup, IN_FLIGHT).await;
    let sequential = ecco_run(&client, peer, s.sequential, 1).await;
    let pipelined = ecco_run(&client, peer, s.pipelined, IN_FLIGHT).await;
    client.shutdown().await;
    server.shutdown().await;
    serving.abort();
    Figures::new(sequential, pipelined)
}

/// Sends `n` requests, keeping `in_flight` outstanding.
async fn ecco_run(node: &Node, peer: PeerId, n: usize, in_flight: usize) -> Run {
    let capability = echo_type();
    let one = |i: usize| {
        let request = Request::new(capability.clone(), payload(i));
        async move {
            let start = Instant::now();
            let answer = node.request(peer, request).await.expect("an answer");
            let latency = start.elapsed();
            assert_eq!(answer.result["seq"], i, "the echo of the request");
            latency
        }
    };
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(n);
    let mut sent = 0;
    while sent < n.min(in_flight) {
        pending.push(one(sent));
        sent += 1;
    }
    while let Some(latency) = pending.next().await {
        latencies.push(latency);
        if sent < n {
            pending.push(one(sent));
            sent += 1;
        }
    }
    Run {
        latencies,
        elapsed: start.elapsed(),
    }
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn print_round_trips(results: &Results) {
    let [b, e, n, p] = results.each_ref().map(|r| Figures::median(r));
    println!(
        "## Request round trips (median of {} rounds each)\n",
        results[0].len()
    );
    println!(
        "| metric | baseline (bare libp2p) | Ecco | Ecco / baseline | Ecco, no DHT nor announcements | that / baseline |"
    );
    println!("|---|---|---|---|---|---|");
    print_rows(&b, &e, &n, &b);
    println!(
        "\nRatios are costs: latency over the baseline's, and the baseline's throughput over \
         Ecco's (above 1 means Ecco is slower). Target: at most 1.3 ×.\n"
    );
    println!("### What libp2p costs for Ecco's protocols, and what Ecco adds\n");
    println!(
        "| metric | baseline (bare libp2p) | libp2p with Ecco's protocols | that / baseline | Ecco | Ecco / that |"
    );
    println!("|---|---|---|---|---|---|");
    print_rows(&b, &p, &e, &p);
    println!(
        "\n\"libp2p with Ecco's protocols\" is a plain libp2p swarm running the protocols of an \
         Ecco node (limits, identify, ping, two request_response, streams, Kademlia, signed \
         gossipsub) around the baseline's raw request_response: its ratio to the baseline is \
         libp2p's cost of those protocols; Ecco's ratio to it is what Ecco's own layer adds.\n"
    );
}

/// Rows of `base`, `x` against `base`, then `y` against `y_ref`.
fn print_rows(base: &Figures, x: &Figures, y: &Figures, y_ref: &Figures) {
    let latency = |name: &str, f: fn(&Figures) -> Duration| {
        let ratio = |a: &Figures, b: &Figures| f(a).as_secs_f64() / f(b).as_secs_f64();
        let (ratio_x, ratio_y) = (ratio(x, base), ratio(y, y_ref));
        let (base, x, y) = (us(f(base)), us(f(x)), us(f(y)));
        println!("| {name} | {base} | {x} | {ratio_x:.2} × | {y} | {ratio_y:.2} × |");
    };
    let throughput = |name: &str, f: fn(&Figures) -> f64| {
        // As a cost: how many times longer the same work takes.
        let (ratio_x, ratio_y) = (f(base) / f(x), f(y_ref) / f(y));
        let (base, x, y) = (f(base), f(x), f(y));
        println!(
            "| {name} | {base:.0} req/s | {x:.0} req/s | {ratio_x:.2} × | {y:.0} req/s | {ratio_y:.2} × |"
        );
    };
    latency("sequential p50", |f| f.seq_p50);
    latency("sequential p99", |f| f.seq_p99);
    throughput("sequential throughput", |f| f.seq_rps);
    latency("32 in flight p50", |f| f.pipe_p50);
    latency("32 in flight p99", |f| f.pipe_p99);
    throughput("32 in flight throughput", |f| f.pipe_rps);
}

// ---------------------------------------------------------------------------
// Learning a new peer's capabilities

struct Learned {
    connected: Vec<Duration>,
    learned: Vec<Duration>,
}

/// How long announcements may take before the run is declared failed.
const LEARN_LIMIT: Duration = Duration::from_secs(10);

async fn capabilities_learned(runs: usize) -> Learned {
    let capability: Capability = "bench/echo echo@1.0.0 +fast price=0.001"
        .parse()
        .expect("a capability");
    let mut connected = Vec::with_capacity(runs);
    let mut learned = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (a, _) = Node::spawn(&Identity::generate(), loopback())
            .await
            .expect("node A");
        a.set_capabilities(vec![capability.clone()])
            .await
            .expect("capabilities");
        let addr = first_addr(&a).await;
        let (b, _) = Node::spawn(&Identity::generate(), loopback())
            .await
            .expect("node B");
        // A has been up a while: past its minimum gap between announcements.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut events = b.subscribe();
        let start = Instant::now();
        let peer = b.dial(addr).await.expect("dial A");
        connected.push(start.elapsed());
        tokio::time::timeout(LEARN_LIMIT, wait_learned(&mut events, peer))
            .await
            .unwrap_or_else(|_| panic!("capabilities not learned within {LEARN_LIMIT:?}"));
        learned.push(start.elapsed());
        b.shutdown().await;
        a.shutdown().await;
    }
    Learned { connected, learned }
}

async fn wait_learned(events: &mut broadcast::Receiver<Event>, peer: PeerId) {
    loop {
        match events.recv().await {
            Ok(Event::CapabilitiesLearned(p)) if p == peer => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => panic!("node B stopped"),
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn print_learned(l: &Learned) {
    let mut c = l.connected.clone();
    let mut t = l.learned.clone();
    c.sort_unstable();
    t.sort_unstable();
    println!(
        "## Learning a new peer's capabilities ({} runs, fresh nodes)\n",
        t.len()
    );
    println!("| from `dial` until | p50 | p90 | max |");
    println!("|---|---|---|---|");
    for (name, v) in [
        ("`dial` returns (connected)", &c),
        ("`CapabilitiesLearned`", &t),
    ] {
        println!(
            "| {name} | {} | {} | {} |",
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.9)),
            ms(v.last().copied().unwrap_or_default())
        );
    }
    println!("\nTarget: 100 ms on loopback.\n");
}

// ---------------------------------------------------------------------------
// Idle memory

/// Runs in a child process: an idle node, or only the runtime.
fn idle_child(kind: &str) {
    let rt = runtime();
    rt.block_on(async {
        let _node = match kind {
            "node" => {
                let (node, inbox) = Node::spawn(&Identity::generate(), loopback())
                    .await
                    .expect("idle node");
                let capability: Capability = "bench/echo echo@1.0.0 +fast price=0.001"
                    .parse()
                    .expect("a capability");
                node.set_capabilities(vec![capability])
                    .await
                    .expect("capabilities");
                Some((node, inbox))
            }
            "runtime" => None,
            other => panic!("unknown {CHILD_ENV} kind {other:?}"),
        };
        println!("ready");
        tokio::time::sleep(CHILD_LIFETIME).await;
    });
}

/// Starts an idle child, lets it settle, and reads its resident set size in KiB.
fn child_rss_kib(kind: &str, settle: Duration) -> u64 {
    let exe = std::env::current_exe().expect("own executable");
    let mut child = Command::new(exe)
        .env(CHILD_ENV, kind)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("child stdout"))
        .read_line(&mut line)
        .expect("read the child");
    assert_eq!(line.trim(), "ready", "the {kind} child did not start");
    std::thread::sleep(settle);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
    // Kill before checking, so that a failed read leaves no child behind.
    let _ = child.kill();
    let _ = child.wait();
    let status = status.expect("/proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

fn print_rss(settle: Duration) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    // Each twice, interleaved; the larger reading of each is kept.
    let mut runtime_only = 0;
    let mut node = 0;
    for _ in 0..2 {
        runtime_only = runtime_only.max(child_rss_kib("runtime", settle));
        node = node.max(child_rss_kib("node", settle));
    }
    println!(
        "## Idle memory (VmRSS {} s after start, this bench binary re-executed)\n",
        settle.as_secs()
    );
    println!("| process | RSS |");
    println!("|---|---|");
    println!(
        "| tokio runtime only (baseline) | {:.1} MiB |",
        mib(runtime_only)
    );
    println!(
        "| idle node, `Config::loopback()`, one capability | {:.1} MiB |",
        mib(node)
    );
    println!(
        "| the node's own cost (difference) | {:.1} MiB |",
        mib(node.saturating_sub(runtime_only))
    );
    println!("\nTarget: under 20 MB.");
}
