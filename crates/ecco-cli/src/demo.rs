//! `ecco demo`: six agents on loopback in this process, a client, every
//! selection and aggregation strategy, and what happened.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use ecco::agent::{Agent, Answered, Call, HandlerError, Proposal};
use ecco::aggregation::{Cluster, FailureKind, Response, Verdict};
use ecco::negotiation::{Reply, Step, Terms};
use ecco::node::{Answer, Config};
use ecco::{Aggregation, PeerId, Query, Selection};
use serde_json::{Value, json};

use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seed of the random and weighted selections.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Run without the registry (the mesh needs none).
    #[arg(long)]
    no_registry: bool,
    /// Where the demo's registry listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    registry_listen: std::net::SocketAddr,
    /// Keep the registry and the agents running after the demo, until Ctrl-C
    /// or SIGTERM, to look at the registry's dashboard.
    #[arg(long)]
    keep_running: bool,
}

/// The star rating the demo's client gives each persona's answers.
fn stars(persona: &str) -> u8 {
    match persona {
        "atlas" | "globe" => 5,
        "scribe" => 4,
        "sloth" => 3,
        _ => 1,
    }
}

/// How a demo agent behaves: deterministic, so every run tells the same story.
struct Persona {
    name: &'static str,
    capability: &'static str,
    answer: Option<&'static str>,
    delay_ms: u64,
    story: &'static str,
}

const PERSONAS: [Persona; 6] = [
    Persona {
        name: "atlas",
        capability: "qa/capital atlas@1.2.0 +cited price=0.002",
        answer: Some("Paris"),
        delay_ms: 20,
        story: "answers Paris, quickly",
    },
    Persona {
        name: "globe",
        capability: "qa/capital globe@1.0.0 +cited price=0.004",
        answer: Some("Paris"),
        delay_ms: 40,
        story: "answers Paris",
    },
    Persona {
        name: "scribe",
        capability: "qa/capital scribe@2.0.0 +cited price=0.008",
        answer: Some("The capital of France is Paris."),
        delay_ms: 60,
        story: "answers in a full sentence",
    },
    Persona {
        name: "contrarian",
        capability: "qa/capital contrarian@1.0.0 price=0.001",
        answer: Some("Lyon"),
        delay_ms: 30,
        story: "disagrees: Lyon",
    },
    Persona {
        name: "sloth",
        capability: "qa/capital sloth@1.0.0 +cited price=0.003",
        answer: Some("Paris"),
        delay_ms: 1500,
        story: "answers Paris, but slowly (1.5 s)",
    },
    Persona {
        name: "flaky",
        capability: "qa/capital flaky@0.9.0 price=0.0005",
        answer: None,
        delay_ms: 10,
        story: "always fails",
    },
];

/// scribe haggles: it agrees to 0.006 or more, and otherwise meets the
/// client at 0.007 as its last offer.
async fn haggle(p: Proposal) -> Reply {
    let asked = p
        .capability
        .as_ref()
        .map(Terms::declared)
        .unwrap_or_default();
    match p.step {
        Step::Ask => Reply::Offer {
            terms: asked,
            last: false,
        },
        Step::Counter { terms, .. } if terms.price.is_some_and(|x| x >= 0.006) => {
            Reply::Agreed { terms }
        }
        Step::Counter { .. } => Reply::Offer {
            terms: Terms {
                price: Some(0.007),
                ..asked
            },
            last: true,
        },
        Step::Accept { terms } => Reply::Agreed { terms },
        Step::Decline => Reply::Declined {
            reason: "maybe next time".to_owned(),
        },
    }
}

async fn start(
    persona: &Persona,
    bootstrap: &[ecco::Multiaddr],
    registry: Option<&str>,
) -> anyhow::Result<Agent> {
    let mut config = Config::loopback();
    config.bootstrap = bootstrap.to_vec();
    let (answer, delay) = (persona.answer, Duration::from_millis(persona.delay_ms));
    let mut builder = Agent::builder();
    if let Some(url) = registry {
        builder = builder
            .registry(url)
            .name(persona.name)
            .registry_heartbeat(Duration::from_secs(2));
    }
    let agent = builder
        .config(config)
        .negotiator("qa/capital", |p: Proposal| async move {
            if p.capability.as_ref().is_some_and(|c| c.name() == "scribe") {
                haggle(p).await
            } else {
                ecco::negotiation::default_rule(p.capability.as_ref(), &p.step)
            }
        })
        .capability(persona.capability.parse()?)
        .handler("qa/capital", move |_call: Call| async move {
            tokio::time::sleep(delay).await;
            match answer {
                Some(a) => Ok(Answer::new(json!(a))),
                None => Err(HandlerError::failed("flaky is having a bad day")),
            }
        })
        .spawn()
        .await
        .with_context(|| format!("cannot start {}", persona.name))?;
    Ok(agent)
}

/// One query of the demo, as reported.
#[derive(serde::Serialize)]
struct Run {
    selection: String,
    aggregation: String,
    asked: Vec<String>,
    answer: Option<Value>,
    verdict: String,
    agreement: usize,
    confidence: f64,
    elapsed_ms: f64,
    outcomes: Vec<Outcome>,
}

/// How one asked agent fared in a run. An object rather than a tuple, so
/// that scripts read `--json` output by field name.
#[derive(serde::Serialize)]
struct Outcome {
    /// The persona's name.
    agent: String,
    /// `ok`, `failed` or `cancelled`.
    status: &'static str,
    /// How long its answer took (`null` without an answer).
    latency_ms: Option<f64>,
}

/// One agent's row of the reputation table, as the registry sees it.
#[derive(serde::Serialize)]
struct Reputation {
    /// The persona's name.
    agent: String,
    /// Its peer id, as `offers` give it.
    peer: String,
    health: String,
    /// On `[0, 100]`.
    score: f64,
    /// Feedback reports received.
    ratings: u64,
    /// Mean star rating, 1 to 5 (`null` without ratings).
    mean_rating: Option<f64>,
}

pub(crate) async fn run(args: Args, json_out: bool) -> anyhow::Result<()> {
    let say = |text: &str| {
        if !json_out {
            println!("{text}");
        }
    };
    say("Ecco demo: six agents and a client, all in this process, over 127.0.0.1.");
    let registry = if args.no_registry {
        None
    } else {
        Some(start_registry(args.registry_listen).await?)
    };
    let url = registry.as_ref().map(|(running, _)| running.url());
    // The URL only when it stays up: without --keep-running the registry
    // stops before anyone could open it.
    match &url {
        Some(url) if args.keep_running => say(&format!(
            "Registry: {url}  (SQLite; the agents register and heartbeat; --no-registry to skip)"
        )),
        Some(_) => say(
            "Registry: a temporary one on SQLite (the agents register and heartbeat; --no-registry to skip)",
        ),
        None => {}
    }
    let mut agents = Vec::new();
    let mut names: HashMap<PeerId, &'static str> = HashMap::new();
    let hub = start(&PERSONAS[0], &[], url.as_deref()).await?;
    let hub_addrs = hub.addresses().await?;
    names.insert(hub.peer_id(), PERSONAS[0].name);
    agents.push(hub);
    for persona in &PERSONAS[1..] {
        let agent = start(persona, &hub_addrs, url.as_deref()).await?;
        names.insert(agent.peer_id(), persona.name);
        agents.push(agent);
    }
    let mut config = Config::loopback();
    config.bootstrap = hub_addrs;
    let mut builder = Agent::builder();
    if let Some(url) = &url {
        builder = builder.registry(url).name("demo-client");
    }
    let client = builder.config(config).seed(args.seed).spawn().await?;
    if !json_out {
        println!("\n{:<11} {:<46} behaviour", "agent", "capability");
        for p in &PERSONAS {
            println!("{:<11} {:<46} {}", p.name, p.capability, p.story);
        }
    }

    let query: Query = "qa/capital price<=0.01 ~cited".parse()?;
    let started = Instant::now();
    let known = client
        .discover(&query, PERSONAS.len(), Duration::from_secs(20))
        .await?;
    say(&format!(
        "\nThe client learned {} offers in {:.0} ms (signed gossip announcements and fetches).",
        known.len(),
        started.elapsed().as_secs_f64() * 1000.0
    ));
    say("Query: qa/capital price<=0.01 ~cited  (\"what is the capital of France?\")");
    if !json_out {
        println!("\n{:<11} {:<6} why", "agent", "score");
        for r in &known {
            let name = names.get(&r.peer).copied().unwrap_or("?");
            println!("{:<11} {:<6.3} {}", name, r.score, r.capability);
        }
    }

    let mut runs = Vec::new();
    let mut receipts = Vec::new();
    say("\nSelection strategies, each with majority-vote:");
    for selection in [
        "all",
        "top-n:3",
        "round-robin:2",
        "round-robin:2",
        "random:2",
        "weighted:2",
    ] {
        let selection: Selection = selection.parse()?;
        let (run, mut given) = ask(
            &client,
            &query,
            selection,
            Aggregation::MajorityVote,
            &names,
            json_out,
        )
        .await?;
        runs.push(run);
        receipts.append(&mut given);
    }
    say("\nAggregation strategies, each over all six agents:");
    let shortest = Aggregation::custom(|responses: &[Response], _: &[Cluster]| {
        responses
            .iter()
            .filter_map(Response::value)
            .min_by_key(|v| v.as_str().map_or(usize::MAX, str::len))
            .cloned()
    });
    let aggregations: Vec<Aggregation> = vec![
        Aggregation::MajorityVote,
        "weighted-vote".parse()?,
        "best-score".parse()?,
        "ensemble".parse()?,
        "consensus-threshold:0.75".parse()?,
        Aggregation::FirstResponse,
        "longest".parse()?,
        shortest,
    ];
    for aggregation in aggregations {
        let (run, mut given) = ask(
            &client,
            &query,
            Selection::All,
            aggregation,
            &names,
            json_out,
        )
        .await?;
        runs.push(run);
        receipts.append(&mut given);
    }
    say("\nNegotiation with scribe, before sending it work:");
    let scribe = names
        .iter()
        .find(|(_, n)| **n == "scribe")
        .map(|(p, _)| *p)
        .context("scribe is missing")?;
    let mut deal = client.negotiate(scribe, "qa/capital".parse()?, json!("capital of France?"));
    let mut steps = Vec::new();
    let offer = deal.ask().await?;
    steps.push(("ask".to_owned(), offer.clone()));
    let counter = deal
        .counter(Terms {
            price: Some(0.005),
            ..Terms::default()
        })
        .await?;
    steps.push(("counter price=0.005".to_owned(), counter.clone()));
    if let Reply::Offer { terms, .. } = counter {
        let agreed = deal.accept(terms).await?;
        steps.push(("accept".to_owned(), agreed));
    }
    let flaky = names
        .iter()
        .find(|(_, n)| **n == "flaky")
        .map(|(p, _)| *p)
        .context("flaky is missing")?;
    let declined = client
        .negotiate(flaky, "qa/capital".parse()?, json!(null))
        .decline()
        .await?;
    steps.push(("decline (to flaky)".to_owned(), declined));
    if !json_out {
        for (step, reply) in &steps {
            println!("  client: {step:<22} provider: {}", describe(reply));
        }
    }

    let (reputation, rated) = match &registry {
        Some((_, reader)) => {
            let rated = rate(&client, &receipts, &names).await;
            let table = reputations(reader, &names).await?;
            if !json_out {
                let refused = receipts.len() - rated;
                let refused = if refused > 0 {
                    format!(" ({refused} refused)")
                } else {
                    String::new()
                };
                println!(
                    "\nRegistry: the client rated {rated} answers{refused} with the agents' signed receipts."
                );
                println!("{:<11} {:<7} {:<8} ratings", "agent", "health", "score");
                for row in &table {
                    println!(
                        "{:<11} {:<7} {:<8.2} {}",
                        row.agent, row.health, row.score, row.ratings
                    );
                }
                println!(
                    "(one client without a reputation of its own moves a score by at most 2 points)"
                );
            }
            (Some(table), Some(rated))
        }
        None => (None, None),
    };

    // Before the report says the demo stays up.
    let stop = if args.keep_running {
        Some(crate::signal::Stop::watch()?)
    } else {
        None
    };
    let dashboard = url
        .as_ref()
        .filter(|_| args.keep_running)
        .map(|u| format!("{u}/"));
    if json_out {
        let negotiation: Vec<Value> = steps
            .iter()
            .map(|(step, reply)| json!({ "step": step, "reply": reply }))
            .collect();
        output::json_line(&json!({
            "offers": known,
            "runs": runs,
            "negotiation": negotiation,
            // Both stopped with the demo unless it keeps running: a URL
            // would point at nothing.
            "registry": url.as_ref().filter(|_| args.keep_running),
            "dashboard": dashboard,
            "reputation": reputation,
            "rated": rated,
        }))?;
    } else {
        println!("\nNotes: a vote decides as soon as no other answer can win, so top-n:3");
        println!("stops after two agreeing answers; over all six agents it waits for sloth,");
        println!(
            "as only sloth's answer can make Paris a majority (3 of 6 is not). first-response"
        );
        println!("answers with the fastest success and cancels the rest. custom is a rule");
        println!("written in Rust: here, the shortest answer. flaky's failures are remembered");
        println!("and lower its weight in weighted selection.");
    }
    if args.keep_running {
        match (&url, &dashboard) {
            (Some(url), Some(dashboard)) => say(&format!(
                "\nThe registry stays up at {url} (API under /v1).\nDashboard: {dashboard}  (open it in a browser: live agents, reputation, analytics). Ctrl-C to stop."
            )),
            _ => say("\nThe agents stay up. Ctrl-C to stop."),
        }
        if let Some(stop) = stop {
            stop.requested().await;
        }
    } else if url.is_some() {
        say(
            "\nThe registry and its dashboard stop with the demo: run `ecco demo --keep-running` to keep them up and open the dashboard in a browser.",
        );
    }
    client.shutdown().await;
    for agent in agents {
        agent.shutdown().await;
    }
    if let Some((running, _)) = registry {
        running.shutdown().await;
    }
    say("\nDone.");
    Ok(())
}

/// A registry on SQLite in a fresh temporary file, and a client to read it.
async fn start_registry(
    listen: std::net::SocketAddr,
) -> anyhow::Result<(ecco_registry::Running, ecco::registry::Client)> {
    let file = std::env::temp_dir().join(format!("ecco-demo-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    let config = ecco_registry::Config {
        listen,
        database_url: format!("sqlite:{}", file.display()),
        stale_after: Duration::from_secs(6),
        offline_after: Duration::from_secs(20),
        heartbeat_interval: Duration::from_secs(2),
        // Recompute reputation on every read after new feedback: by default
        // a snapshot may lag 200 ms behind, and the demo reads the table
        // right after rating, which showed 0 or 1 ratings instead of all.
        reputation_refresh: Duration::ZERO,
        ..ecco_registry::Config::default()
    };
    let running = ecco_registry::serve(config)
        .await
        .context("cannot start the demo's registry")?;
    let reader = ecco::registry::Client::new(&running.url(), ecco::Identity::generate())?;
    Ok((running, reader))
}

/// The client reports every answer it got, rated by how right it was.
/// Returns how many reports the registry accepted.
async fn rate(
    client: &Agent,
    receipts: &[(ecco::registry::Receipt, u32)],
    names: &HashMap<PeerId, &'static str>,
) -> usize {
    let mut accepted = 0;
    for (receipt, latency_ms) in receipts {
        let persona = receipt
            .agent
            .parse::<PeerId>()
            .ok()
            .and_then(|p| names.get(&p).copied())
            .unwrap_or("?");
        match client
            .feedback(receipt, true, *latency_ms, Some(stars(persona)))
            .await
        {
            Ok(_) => accepted += 1,
            Err(e) => tracing::warn!(error = %e, "feedback refused"),
        }
    }
    accepted
}

/// Each agent's health, reputation and ratings, as the registry sees them,
/// best first.
async fn reputations(
    reader: &ecco::registry::Client,
    names: &HashMap<PeerId, &'static str>,
) -> anyhow::Result<Vec<Reputation>> {
    let mut table = Vec::new();
    for (peer, name) in names {
        let detail = reader.agent(peer).await?;
        table.push(Reputation {
            agent: (*name).to_owned(),
            peer: peer.to_base58(),
            health: detail.health.as_str().to_owned(),
            score: detail.reputation.score,
            ratings: detail.reputation.breakdown.feedback,
            mean_rating: detail.reputation.breakdown.mean_rating,
        });
    }
    table.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.agent.cmp(&b.agent))
    });
    Ok(table)
}

async fn ask(
    client: &Agent,
    query: &Query,
    selection: Selection,
    aggregation: Aggregation,
    names: &HashMap<PeerId, &'static str>,
    json_out: bool,
) -> anyhow::Result<(Run, Vec<(ecco::registry::Receipt, u32)>)> {
    let name = |p: &PeerId| names.get(p).copied().unwrap_or("?").to_owned();
    let label = aggregation.name().to_owned();
    let started = Instant::now();
    let answered: Answered = client
        .query(query.clone())
        .select(selection)
        .aggregate(aggregation)
        .timeout(Duration::from_secs(10))
        .send(json!({"question": "What is the capital of France?"}))
        .await?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let c = &answered.consensus;
    let by_agent: HashMap<String, String> = answered
        .asked
        .iter()
        .map(|p| (ecco::agent_id(p).to_string(), name(p)))
        .collect();
    let cancelled: Vec<&str> = c
        .failures
        .iter()
        .filter(|f| f.failure.kind == FailureKind::Cancelled)
        .map(|f| f.agent.as_str())
        .collect();
    let outcomes = c
        .agents
        .iter()
        .map(|a| Outcome {
            agent: by_agent.get(a.agent.as_str()).cloned().unwrap_or_default(),
            status: if a.ok {
                "ok"
            } else if cancelled.contains(&a.agent.as_str()) {
                "cancelled"
            } else {
                "failed"
            },
            latency_ms: if a.ok { a.latency_ms } else { None },
        })
        .collect();
    let run = Run {
        selection: selection.to_string(),
        aggregation: label,
        asked: answered.asked.iter().map(name).collect(),
        answer: c.answer.clone(),
        verdict: match &c.verdict {
            Verdict::Decided => "decided".to_owned(),
            Verdict::NoConsensus { .. } => "no consensus".to_owned(),
            Verdict::AllFailed => "all failed".to_owned(),
            Verdict::NoResponses => "no responses".to_owned(),
        },
        agreement: c.agreement,
        confidence: c.confidence,
        elapsed_ms,
        outcomes,
    };
    if !json_out {
        println_run(&run);
    }
    // Each receipt with the latency the client observed for that agent.
    let latency: HashMap<String, u32> = c
        .agents
        .iter()
        .filter_map(|a| Some((a.agent.to_string(), a.latency_ms? as u32)))
        .collect();
    let receipts = answered
        .receipts
        .into_iter()
        .map(|r| {
            let ms = r
                .agent
                .parse::<PeerId>()
                .ok()
                .and_then(|p| latency.get(ecco::agent_id(&p).as_str()).copied())
                .unwrap_or_default();
            (r, ms)
        })
        .collect();
    Ok((run, receipts))
}

fn describe(reply: &Reply) -> String {
    let terms = |t: &Terms| {
        let mut parts = Vec::new();
        if let Some(p) = t.price {
            parts.push(format!("price={p}"));
        }
        if let Some(l) = t.latency_ms {
            parts.push(format!("latency_ms={l}"));
        }
        parts.join(" ")
    };
    match reply {
        Reply::Offer { terms: t, last } => {
            format!(
                "offers {}{}",
                terms(t),
                if *last { " (last offer)" } else { "" }
            )
        }
        Reply::Agreed { terms: t } => format!("agreed at {}", terms(t)),
        Reply::Declined { reason } => format!("declined: {reason}"),
    }
}

fn println_run(run: &Run) {
    let answer = run
        .answer
        .as_ref()
        .map_or_else(|| "(none)".to_owned(), |a| output::brief(a, 34));
    println!(
        "  {:<14} {:<24} -> {:<35} {:<12} agree {} conf {:.2} in {:>5.0} ms",
        run.selection,
        run.aggregation,
        answer,
        run.verdict,
        run.agreement,
        run.confidence,
        run.elapsed_ms
    );
    let asked: Vec<String> = run
        .outcomes
        .iter()
        .map(|o| match o.latency_ms {
            Some(ms) => format!("{} {ms:.0} ms", o.agent),
            None => format!("{} {}", o.agent, o.status),
        })
        .collect();
    println!("      asked: {}", asked.join(", "));
}
