//! Orchestration overhead: a majority-vote query to 3 and to 10 local agents
//! whose handlers answer at once, over loopback TCP.
//!
//! The overhead of one query is its `elapsed_ms` (the whole pipeline,
//! discovery included) minus the latency of the slowest agent it waited for
//! (each agent's round trip as the client measured it). The baseline,
//! measured in the same run and interleaved query by query, is the same
//! requests fanned out by hand through the client's node: all N with
//! `join_all`, and, since a majority vote stops once a majority agrees, until
//! a majority has answered. To show where the time goes, the same run also
//! times the pipeline's steps on their own (the directory round trip,
//! `Agent::ranked`, a DHT lookup, selection and aggregation in process,
//! `Memory::save`)
//! and the pipeline of a client with a data directory, which saves
//! `performance.json` in the background at most once a second.
//!
//! Run: `cargo bench -p ecco --bench orchestration`; `ECCO_BENCH_QUICK=1` for
//! a smoke run with few samples. All traffic stays on 127.0.0.1; mDNS is
//! never used.

// A benchmark binary reports on stdout/stderr and may panic on failure.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use ecco::agent::memory::Memory;
use ecco::agent::{Agent, Call, HandlerError, Ranked};
use ecco::aggregation::Progress;
use ecco::node::{Answer, Config, Node, Request};
use ecco::{
    Aggregation, Aggregator, CapabilityType, Match, Offer, PeerId, Query, Response, Selection,
    Selector, agent_id,
};
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Value, json};

type BoxError = Box<dyn Error + Send + Sync>;

/// Set to run with few samples.
const QUICK_ENV: &str = "ECCO_BENCH_QUICK";
/// The capability type every agent offers.
const KIND: &str = "bench/echo";
/// The target for the overhead's p50.
const TARGET_MS: f64 = 1.0;
/// Sizes of the mesh measured.
const SIZES: [usize; 2] = [3, 10];

struct Settings {
    rounds: usize,
    warmup: usize,
    /// Queries per round, for 3 and for 10 agents.
    queries: [usize; 2],
}

impl Settings {
    fn from_env() -> (Self, bool) {
        let quick = std::env::var_os(QUICK_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        let settings = if quick {
            Self {
                rounds: 1,
                warmup: 20,
                queries: [100, 50],
            }
        } else {
            Self {
                rounds: 5,
                warmup: 50,
                queries: [1_000, 500],
            }
        };
        (settings, quick)
    }
}

/// Tokio's multi-threaded scheduler with 2 workers (the two shared cores).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn main() -> Result<(), BoxError> {
    let (settings, quick) = Settings::from_env();
    let rt = runtime();
    let workers = rt.metrics().num_workers();
    println!(
        "# Orchestration overhead{}\n",
        if quick { " (quick mode)" } else { "" }
    );
    println!(
        "tokio multi-threaded runtime, {workers} workers; loopback TCP + Noise + Yamux; \
         `{KIND}` agents answering their payload at once; `select(all)`, `majority-vote`; \
         {} rounds, each with a fresh mesh: {} warm-up, then {} (N=3) / {} (N=10) queries, \
         interleaved with the baselines\n",
        settings.rounds, settings.warmup, settings.queries[0], settings.queries[1]
    );

    let mut rounds: [Vec<Figures>; 2] = [Vec::new(), Vec::new()];
    for round in 0..settings.rounds {
        for j in 0..SIZES.len() {
            // Alternate which size goes first.
            let s = (round + j) % SIZES.len();
            let n = SIZES[s];
            let figures = rt.block_on(measure(n, settings.warmup, settings.queries[s]))?;
            eprintln!(
                "N={n:>2} round {}: elapsed p50 {:.0} µs, slowest agent p50 {:.0} µs, \
                 overhead p50 {:.0} µs, fan-out p50 {:.0} µs (all) / {:.0} µs (majority)",
                round + 1,
                figures.elapsed.p50,
                figures.slowest.p50,
                figures.overhead.p50,
                figures.fan_all.p50,
                figures.fan_majority.p50,
            );
            rounds[s].push(figures);
        }
    }
    let medians = [Figures::median(&rounds[0]), Figures::median(&rounds[1])];
    print_table(&medians, settings.rounds);
    Ok(())
}

// ---------------------------------------------------------------------------
// Figures

/// The p50 and p99 of a set of samples, in microseconds.
#[derive(Clone, Copy, Default)]
struct Stat {
    p50: f64,
    p99: f64,
}

impl Stat {
    /// From samples in milliseconds.
    fn of(samples_ms: &[f64]) -> Self {
        let mut v: Vec<f64> = samples_ms.iter().map(|ms| ms * 1000.0).collect();
        v.sort_unstable_by(f64::total_cmp);
        Self {
            p50: percentile(&v, 0.50),
            p99: percentile(&v, 0.99),
        }
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The samples of one round, in milliseconds.
#[derive(Default)]
struct Samples {
    /// The pipeline's `elapsed_ms`.
    elapsed: Vec<f64>,
    /// The slowest agent's `latency_ms` among those the query waited for.
    slowest: Vec<f64>,
    /// `elapsed_ms` minus the slowest agent's latency.
    overhead: Vec<f64>,
    /// How many agents answered before the vote was decided.
    answered: Vec<f64>,
    /// `send` timed from outside: building the query, and dropping the
    /// calls left when the vote is decided, included.
    wall: Vec<f64>,
    /// All N requests by hand, `join_all`.
    fan_all: Vec<f64>,
    /// N requests by hand, until a majority has answered.
    fan_majority: Vec<f64>,
    /// `Agent::ranked`, then the hand fan-out until a majority: the
    /// pipeline's discovery and requests without the rest.
    ranked_fan: Vec<f64>,
    /// The pipeline, for a client with a data directory.
    disk_elapsed: Vec<f64>,
    /// Its overhead.
    disk_overhead: Vec<f64>,
    /// `Node::directory` alone: a command to the node's task and back,
    /// with a copy of the directory.
    directory: Vec<f64>,
    /// `Agent::ranked` alone: the directory, turned into offers and ranked.
    ranked: Vec<f64>,
    /// `Node::lookup` alone: a DHT walk for the query, which a `select(all)`
    /// query waits for unless the same query looked up lately.
    lookup: Vec<f64>,
    /// Selection and aggregation of N answers, in process, as `send` does them.
    cpu: Vec<f64>,
    /// `Memory::save` of a memory of the N agents: what a client with a data
    /// directory writes in the background, at most once a second.
    save: Vec<f64>,
}

/// What a round gives: p50/p99 in microseconds, and ratios.
#[derive(Clone, Copy, Default)]
struct Figures {
    elapsed: Stat,
    slowest: Stat,
    overhead: Stat,
    answered: f64,
    wall: Stat,
    fan_all: Stat,
    fan_majority: Stat,
    ranked_fan: Stat,
    /// Pipeline elapsed p50 / hand fan-out (all) p50.
    ratio_all: f64,
    /// Pipeline elapsed p50 / hand fan-out (majority) p50.
    ratio_majority: f64,
    disk_elapsed: Stat,
    disk_overhead: Stat,
    directory: Stat,
    ranked: Stat,
    lookup: Stat,
    cpu: Stat,
    save: Stat,
}

impl Figures {
    fn of(s: &Samples) -> Self {
        let elapsed = Stat::of(&s.elapsed);
        let fan_all = Stat::of(&s.fan_all);
        let fan_majority = Stat::of(&s.fan_majority);
        Self {
            elapsed,
            slowest: Stat::of(&s.slowest),
            overhead: Stat::of(&s.overhead),
            answered: s.answered.iter().sum::<f64>() / s.answered.len().max(1) as f64,
            wall: Stat::of(&s.wall),
            fan_all,
            fan_majority,
            ranked_fan: Stat::of(&s.ranked_fan),
            ratio_all: elapsed.p50 / fan_all.p50,
            ratio_majority: elapsed.p50 / fan_majority.p50,
            disk_elapsed: Stat::of(&s.disk_elapsed),
            disk_overhead: Stat::of(&s.disk_overhead),
            directory: Stat::of(&s.directory),
            ranked: Stat::of(&s.ranked),
            lookup: Stat::of(&s.lookup),
            cpu: Stat::of(&s.cpu),
            save: Stat::of(&s.save),
        }
    }

    /// The median of each metric over the rounds.
    fn median(rounds: &[Self]) -> Self {
        let r = |f: fn(&Self) -> f64| median_of(rounds.iter().map(f).collect());
        let s = |p50: fn(&Self) -> f64, p99: fn(&Self) -> f64| Stat {
            p50: r(p50),
            p99: r(p99),
        };
        Self {
            elapsed: s(|f| f.elapsed.p50, |f| f.elapsed.p99),
            slowest: s(|f| f.slowest.p50, |f| f.slowest.p99),
            overhead: s(|f| f.overhead.p50, |f| f.overhead.p99),
            answered: r(|f| f.answered),
            wall: s(|f| f.wall.p50, |f| f.wall.p99),
            fan_all: s(|f| f.fan_all.p50, |f| f.fan_all.p99),
            fan_majority: s(|f| f.fan_majority.p50, |f| f.fan_majority.p99),
            ranked_fan: s(|f| f.ranked_fan.p50, |f| f.ranked_fan.p99),
            ratio_all: r(|f| f.ratio_all),
            ratio_majority: r(|f| f.ratio_majority),
            disk_elapsed: s(|f| f.disk_elapsed.p50, |f| f.disk_elapsed.p99),
            disk_overhead: s(|f| f.disk_overhead.p50, |f| f.disk_overhead.p99),
            directory: s(|f| f.directory.p50, |f| f.directory.p99),
            ranked: s(|f| f.ranked.p50, |f| f.ranked.p99),
            lookup: s(|f| f.lookup.p50, |f| f.lookup.p99),
            cpu: s(|f| f.cpu.p50, |f| f.cpu.p99),
            save: s(|f| f.save.p50, |f| f.save.p99),
        }
    }
}

// ---------------------------------------------------------------------------
// The mesh

/// N agents answering their payload at once, and two clients (one keeping
/// its memory in a data directory), all knowing every offer.
struct Mesh {
    agents: Vec<Agent>,
    client: Agent,
    disk_client: Agent,
    /// Keeps the disk client's data directory until the mesh is gone.
    _data_dir: tempfile::TempDir,
    /// A memory of the N agents, saved on its own (and its directory).
    memory: std::sync::Mutex<Memory>,
    _memory_dir: tempfile::TempDir,
    query: Query,
    /// Who offers `KIND`, and the type to ask for, for the hand fan-out.
    targets: Vec<(PeerId, CapabilityType)>,
}

impl Mesh {
    async fn spawn(n: usize) -> Result<Self, BoxError> {
        let mut agents: Vec<Agent> = Vec::with_capacity(n);
        for i in 0..n {
            let mut config = Config::loopback();
            if let Some(first) = agents.first() {
                config.bootstrap = first.addresses().await?;
            }
            let agent = Agent::builder()
                .config(config)
                .capability(format!("{KIND} a{i}@1.0.0").parse()?)
                .handler(KIND, |call: Call| async move {
                    Ok::<_, HandlerError>(Answer::new(call.request.payload))
                })
                .spawn()
                .await?;
            agents.push(agent);
        }
        let bootstrap = agents[0].addresses().await?;
        let query: Query = KIND.parse()?;

        let mut config = Config::loopback();
        config.bootstrap.clone_from(&bootstrap);
        let client = Agent::builder().config(config).seed(7).spawn().await?;

        let data_dir = tempfile::tempdir()?;
        let mut config = Config::loopback();
        config.bootstrap = bootstrap;
        let disk_client = Agent::builder()
            .config(config)
            .seed(7)
            .data_dir(data_dir.path())
            .spawn()
            .await?;

        for c in [&client, &disk_client] {
            let known = c.discover(&query, n, Duration::from_secs(30)).await?;
            if known.len() < n {
                return Err(format!("the client knows {} of {n} offers", known.len()).into());
            }
        }
        let targets: Vec<(PeerId, CapabilityType)> = client
            .ranked(&query)
            .await?
            .into_iter()
            .map(|r| (r.peer, r.capability.kind().clone()))
            .collect();
        let memory_dir = tempfile::tempdir()?;
        let mut memory = Memory::open(memory_dir.path())?;
        for (peer, _) in &targets {
            memory.success(&agent_id(peer), Duration::from_micros(500));
        }
        Ok(Self {
            agents,
            client,
            disk_client,
            _data_dir: data_dir,
            memory: std::sync::Mutex::new(memory),
            _memory_dir: memory_dir,
            query,
            targets,
        })
    }

    async fn shutdown(self) {
        self.client.shutdown().await;
        self.disk_client.shutdown().await;
        for agent in self.agents {
            agent.shutdown().await;
        }
    }
}

/// One query through the pipeline: (elapsed, slowest agent, agents answered),
/// in milliseconds, and the wall time of `send` from outside.
async fn pipeline(client: &Agent, query: &Query) -> Result<(f64, f64, usize, f64), BoxError> {
    let started = Instant::now();
    let answered = client
        .query(query.clone())
        .select(Selection::All)
        .aggregate(Aggregation::MajorityVote)
        .send(json!("x"))
        .await?;
    let wall = ms(started.elapsed());
    if answered.consensus.answer != Some(json!("x")) {
        return Err(format!("unexpected consensus: {:?}", answered.consensus).into());
    }
    let slowest = answered
        .consensus
        .agents
        .iter()
        .filter_map(|a| a.latency_ms)
        .fold(0.0, f64::max);
    Ok((
        answered.elapsed_ms,
        slowest,
        // Those the decided vote cancelled are listed without a latency.
        answered
            .consensus
            .agents
            .iter()
            .filter(|a| a.latency_ms.is_some())
            .count(),
        wall,
    ))
}

fn request(kind: &CapabilityType) -> Request {
    Request::new(kind.clone(), json!("x"))
}

fn check(answer: &Answer) -> Result<(), BoxError> {
    if answer.result == json!("x") {
        Ok(())
    } else {
        Err(format!("unexpected answer {:?}", answer.result).into())
    }
}

/// The same N requests by hand, all awaited; milliseconds.
async fn fan_out_all(node: &Node, targets: &[(PeerId, CapabilityType)]) -> Result<f64, BoxError> {
    let started = Instant::now();
    let answers = join_all(
        targets
            .iter()
            .map(|(peer, kind)| node.request(*peer, request(kind))),
    )
    .await;
    let elapsed = ms(started.elapsed());
    for answer in answers {
        check(&answer?)?;
    }
    Ok(elapsed)
}

/// The same N requests by hand, until a majority has answered (the others
/// are dropped, as the pipeline drops them); milliseconds.
async fn fan_out_majority(
    node: &Node,
    targets: &[(PeerId, CapabilityType)],
) -> Result<f64, BoxError> {
    let started = Instant::now();
    let majority = targets.len() / 2 + 1;
    let mut calls: FuturesUnordered<_> = targets
        .iter()
        .map(|(peer, kind)| node.request(*peer, request(kind)))
        .collect();
    let mut answered = 0;
    while let Some(answer) = calls.next().await {
        check(&answer?)?;
        answered += 1;
        if answered >= majority {
            break;
        }
    }
    drop(calls);
    Ok(ms(started.elapsed()))
}

/// What `Ask::send` does in process besides discovery and the requests:
/// offers and matches from the rankings, the selection, and the majority
/// vote over the answers (pushed until decided, then finished); milliseconds.
fn selection_and_aggregation(
    rankings: &[Ranked],
    query: &Query,
    selector: &mut Selector,
) -> Result<f64, BoxError> {
    let started = Instant::now();
    let offers: Vec<Offer> = rankings
        .iter()
        .map(|r| Offer::new(agent_id(&r.peer), r.capability.clone()))
        .collect();
    let matches: Vec<Match<'_>> = offers
        .iter()
        .zip(rankings)
        .map(|(offer, r)| Match {
            offer,
            score: r.score,
        })
        .collect();
    let picked = selector.select(&Selection::All, query, &matches, &(), 1)?;
    let mut aggregator = Aggregator::new(Aggregation::MajorityVote).expect(picked.len());
    for m in &picked {
        let response = Response::answer(m.offer.agent.clone(), Value::from("x"))
            .with_score(m.score)
            .with_latency(Duration::from_micros(300));
        if aggregator.push(response) == Progress::Decided {
            break;
        }
    }
    black_box(aggregator.finish());
    Ok(ms(started.elapsed()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The steps of an iteration, run in a shuffled order (see [`Order`]).
const STEPS: usize = 6;

async fn step(
    which: usize,
    mesh: &Mesh,
    samples: &mut Samples,
    selector: &mut Selector,
) -> Result<(), BoxError> {
    let node = mesh.client.node();
    match which {
        0 => {
            let (elapsed, slowest, answered, wall) = pipeline(&mesh.client, &mesh.query).await?;
            samples.elapsed.push(elapsed);
            samples.slowest.push(slowest);
            samples.overhead.push(elapsed - slowest);
            samples.answered.push(answered as f64);
            samples.wall.push(wall);
        }
        1 => samples
            .fan_all
            .push(fan_out_all(node, &mesh.targets).await?),
        2 => samples
            .fan_majority
            .push(fan_out_majority(node, &mesh.targets).await?),
        3 => {
            let (elapsed, slowest, _, _) = pipeline(&mesh.disk_client, &mesh.query).await?;
            samples.disk_elapsed.push(elapsed);
            samples.disk_overhead.push(elapsed - slowest);
        }
        4 => {
            let started = Instant::now();
            let rankings = mesh.client.ranked(&mesh.query).await?;
            let targets: Vec<(PeerId, CapabilityType)> = rankings
                .iter()
                .map(|r| (r.peer, r.capability.kind().clone()))
                .collect();
            fan_out_majority(node, &targets).await?;
            samples.ranked_fan.push(ms(started.elapsed()));
        }
        _ => {
            let started = Instant::now();
            let directory = node.directory().await?;
            samples.directory.push(ms(started.elapsed()));
            black_box(directory);
            let started = Instant::now();
            let rankings = mesh.client.ranked(&mesh.query).await?;
            samples.ranked.push(ms(started.elapsed()));
            let started = Instant::now();
            black_box(node.lookup(&mesh.query).await?);
            samples.lookup.push(ms(started.elapsed()));
            samples
                .cpu
                .push(selection_and_aggregation(&rankings, &mesh.query, selector)?);
            let started = Instant::now();
            mesh.memory.lock().map_err(|e| e.to_string())?.save()?;
            samples.save.push(ms(started.elapsed()));
        }
    }
    Ok(())
}

/// One round: a fresh mesh of `n` agents, warm-up, then `queries`
/// iterations of every step.
async fn measure(n: usize, warmup: usize, queries: usize) -> Result<Figures, BoxError> {
    let mesh = Mesh::spawn(n).await?;
    let mut selector = Selector::new(7);
    let mut order = Order::new(n as u64);
    let mut discard = Samples::default();
    for _ in 0..warmup {
        for which in order.next() {
            step(which, &mesh, &mut discard, &mut selector).await?;
        }
    }
    let mut samples = Samples::default();
    for _ in 0..queries {
        for which in order.next() {
            step(which, &mesh, &mut samples, &mut selector).await?;
        }
    }
    mesh.shutdown().await;
    Ok(Figures::of(&samples))
}

/// The order of the steps in each iteration: a new seeded shuffle every
/// time, so that each step follows every other equally often (a query that
/// stops at a majority leaves replies in flight that the next step meets).
struct Order {
    state: u64,
}

impl Order {
    fn new(seed: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// xorshift64.
    fn random(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn next(&mut self) -> [usize; STEPS] {
        let mut order: [usize; STEPS] = std::array::from_fn(|i| i);
        for i in (1..STEPS).rev() {
            let j = (self.random() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
    }
}

// ---------------------------------------------------------------------------
// Report

fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else if v >= 1_000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn print_table(m: &[Figures; 2], rounds: usize) {
    println!(
        "\nMedians over {rounds} round(s) of each round's p50 and p99 (one sample per query).\n"
    );
    println!("| metric | N=3 p50 | N=3 p99 | N=10 p50 | N=10 p99 |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, f: fn(&Figures) -> Stat| {
        let (a, b) = (f(&m[0]), f(&m[1]));
        println!(
            "| {name} | {} | {} | {} | {} |",
            us(a.p50),
            us(a.p99),
            us(b.p50),
            us(b.p99)
        );
    };
    row("pipeline `elapsed_ms` (whole query)", |f| f.elapsed);
    row("slowest agent's `latency_ms`", |f| f.slowest);
    row("**overhead** (elapsed − slowest agent)", |f| f.overhead);
    row("`send` timed from outside", |f| f.wall);
    row("baseline: hand fan-out, all N (`join_all`)", |f| f.fan_all);
    row("baseline: hand fan-out, until a majority", |f| {
        f.fan_majority
    });
    println!(
        "| agents answered before the vote was decided (mean) | {:.1} | | {:.1} | |",
        m[0].answered, m[1].answered
    );
    println!(
        "| pipeline p50 / hand fan-out (all) p50 | {:.2} × | | {:.2} × | |",
        m[0].ratio_all, m[1].ratio_all
    );
    println!(
        "| pipeline p50 / hand fan-out (majority) p50 | {:.2} × | | {:.2} × | |",
        m[0].ratio_majority, m[1].ratio_majority
    );
    let verdict = |f: &Figures| {
        if f.overhead.p50 < TARGET_MS * 1000.0 {
            "met"
        } else {
            "**not met**"
        }
    };
    println!(
        "| overhead p50 < {TARGET_MS} ms | {} | | {} | |",
        verdict(&m[0]),
        verdict(&m[1])
    );

    println!("\nWhere the time goes (the same run, interleaved):\n");
    println!("| step | N=3 p50 | N=3 p99 | N=10 p50 | N=10 p99 |");
    println!("|---|---|---|---|---|");
    row(
        "`Node::directory` (command to the node's task, copy back)",
        |f| f.directory,
    );
    row(
        "`Agent::ranked` (directory, offers, matcher): discovery's cost",
        |f| f.ranked,
    );
    row(
        "`Node::lookup`: a DHT walk (a `select(all)` query's first, then once per 30 s)",
        |f| f.lookup,
    );
    row("selection + majority vote in process", |f| f.cpu);
    row(
        "`Agent::ranked`, then the hand fan-out until a majority",
        |f| f.ranked_fan,
    );
    row("`Memory::save` of N peers (`performance.json`)", |f| f.save);
    row("pipeline with a data directory: `elapsed_ms`", |f| {
        f.disk_elapsed
    });
    row("pipeline with a data directory: overhead", |f| {
        f.disk_overhead
    });
}
