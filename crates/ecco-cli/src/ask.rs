//! `ecco ask`: runs a query and prints the aggregated answer.

use std::path::PathBuf;

use anyhow::{Context, bail};
use ecco::agent::Answered;
use ecco::aggregation::{FailureKind, Verdict};
use ecco::{Aggregation, Selection};

use crate::mesh::MeshArgs;
use crate::{discover, output};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The capability type, such as llm/chat.
    #[arg(value_name = "TYPE")]
    kind: String,
    /// The input, as JSON.
    #[arg(long)]
    input: String,
    /// A required feature (repeatable).
    #[arg(long = "feature")]
    features: Vec<String>,
    /// A preferred feature: it raises the score, not required (repeatable).
    #[arg(long = "prefer")]
    preferred: Vec<String>,
    /// A constraint, such as 'price<=0.01' (repeatable).
    #[arg(long = "where")]
    constraints: Vec<String>,
    /// all, top-n:N, round-robin:N, random:N or weighted:N.
    #[arg(long, default_value = "top-n:3")]
    select: String,
    /// majority-vote, weighted-vote, best-score, ensemble,
    /// consensus-threshold:T, first-response or longest.
    #[arg(long, default_value = "majority-vote")]
    aggregate: String,
    /// At least this many agents must answer.
    #[arg(long, default_value_t = 1)]
    min_agents: usize,
    /// The overall deadline, such as 30s.
    #[arg(long, default_value = "30s")]
    timeout: String,
    /// How long to look for agents before asking.
    #[arg(long, default_value = "3s")]
    wait: String,
    /// Look for at least this many agents before asking (more room for failover).
    #[arg(long, default_value_t = 0)]
    candidates: usize,
    #[command(flatten)]
    mesh: MeshArgs,
    /// The key file to use (default: a new, ephemeral identity).
    #[arg(long)]
    identity: Option<PathBuf>,
}

pub(crate) async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let mut constraints = args.constraints.clone();
    constraints.extend(args.preferred.iter().map(|f| format!("~{f}")));
    let query = discover::query(&args.kind, &args.features, &constraints)?;
    let input: serde_json::Value = serde_json::from_str(&args.input)
        .with_context(|| format!("--input `{}` is not JSON", args.input))?;
    let selection: Selection = args
        .select
        .parse()
        .map_err(|e| anyhow::anyhow!("--select: {e}"))?;
    let aggregation: Aggregation = args
        .aggregate
        .parse()
        .map_err(|e| anyhow::anyhow!("--aggregate: {e}"))?;
    let timeout = crate::agent::duration(&args.timeout)?;
    let wait = crate::agent::duration(&args.wait)?;
    let agent = discover::client(&args.mesh, args.identity, timeout).await?;
    let answered = agent
        .query(query)
        .select(selection)
        .aggregate(aggregation)
        .min_agents(args.min_agents)
        .timeout(timeout)
        .discovery_wait(wait)
        .candidates(args.candidates)
        .send(input)
        .await?;
    agent.shutdown().await;
    print(&answered, json)?;
    // After the report, so that a script still gets it with the failure exit.
    settled(&answered, args.min_agents)
}

/// Fails when the query reached no answer, or when fewer than `min_agents`
/// agents answered because others failed.
fn settled(answered: &Answered, min_agents: usize) -> anyhow::Result<()> {
    let c = &answered.consensus;
    match &c.verdict {
        Verdict::Decided => {}
        Verdict::NoConsensus {
            agreement,
            threshold,
        } => bail!("no answer: no consensus (agreement {agreement:.2} is below {threshold:.2})"),
        Verdict::AllFailed => {
            let why = c
                .failures
                .first()
                .map(|f| format!(" (the first: {})", f.failure))
                .unwrap_or_default();
            bail!("no answer: all {} agent(s) failed{why}", c.failures.len())
        }
        Verdict::NoResponses => bail!("no answer: no agent responded"),
    }
    // Agents still working when the answer was decided were cut short
    // (cancelled), not failed: they do not count against `min_agents`.
    let failed = c
        .failures
        .iter()
        .filter(|f| f.failure.kind != FailureKind::Cancelled)
        .count();
    if answered.asked.len().saturating_sub(failed) < min_agents {
        let ok = c.agents.iter().filter(|a| a.ok).count();
        bail!("{ok} agent(s) answered and {failed} failed: fewer than --min-agents {min_agents}");
    }
    Ok(())
}

pub(crate) fn print(answered: &Answered, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json_line(answered);
    }
    let c = &answered.consensus;
    match &c.answer {
        Some(answer) => println!("answer      {answer}"),
        None => println!("answer      (none)"),
    }
    println!("verdict     {:?}", c.verdict);
    println!("took        {:.1} ms", answered.elapsed_ms);
    println!("strategy    {}", c.strategy);
    println!(
        "agreement   {} of {} (confidence {:.2})",
        c.agreement,
        c.agents.len(),
        c.confidence
    );
    println!("{:<10} {:<4} {:>9}  outcome", "agent", "ok", "latency");
    for a in &c.agents {
        let outcome = c
            .failures
            .iter()
            .find(|f| f.agent == a.agent)
            .map_or_else(|| "answered".to_owned(), |f| f.failure.to_string());
        let latency = a
            .latency_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
        let id = a.agent.as_str();
        println!(
            "{:<10} {:<4} {:>9}  {}",
            &id[id.len().saturating_sub(8)..],
            if a.ok { "yes" } else { "no" },
            latency,
            outcome
        );
    }
    Ok(())
}
