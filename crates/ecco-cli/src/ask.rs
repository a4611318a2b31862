//! `ecco ask`: runs a query and prints the aggregated answer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use ecco::agent::Answered;
use ecco::aggregation::{Consensus, FailureKind, Verdict};
use ecco::{Aggregation, Selection};

use crate::mesh::{self, MeshArgs};
use crate::{discover, output};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The capability type, such as llm/chat.
    #[arg(value_name = "TYPE", value_parser = discover::type_pattern)]
    kind: String,
    /// The input, as JSON (a text is quoted: '"hello"').
    #[arg(long, value_name = "JSON", value_parser = json_input)]
    input: serde_json::Value,
    /// A required feature: one name, such as cited or +cited (repeatable).
    #[arg(long = "feature", value_name = "NAME", value_parser = discover::required_feature)]
    features: Vec<String>,
    /// A preferred feature: one name; it raises the score, not required (repeatable).
    #[arg(long = "prefer", value_name = "NAME", value_parser = discover::preferred_feature)]
    preferred: Vec<String>,
    /// One condition, such as 'price<=0.01', 'region in [eu, us]',
    /// 'version ^1.2' or 'meta.vendor==acme' (repeatable: all must hold).
    #[arg(long = "where", value_name = "CONDITION", value_parser = discover::condition)]
    constraints: Vec<String>,
    /// all, top-n:N, round-robin:N, random:N or weighted:N.
    #[arg(long, default_value = "top-n:3", value_parser = selection)]
    select: Selection,
    /// majority-vote, weighted-vote, best-score, ensemble,
    /// consensus-threshold:T, first-response or longest.
    #[arg(long, default_value = "majority-vote", value_parser = aggregation)]
    aggregate: Aggregation,
    /// At least this many agents must answer.
    #[arg(long, default_value_t = 1)]
    min_agents: usize,
    /// The overall deadline, discovery included, such as 30s.
    #[arg(long, default_value = "30s", value_parser = timeout)]
    timeout: Duration,
    /// How long to look for agents before asking, within --timeout and
    /// shorter than it [default: 3s, or half of --timeout if that is less].
    /// Ends sooner once enough agents are known, or once the DHT lookup is
    /// over and --min-agents are known.
    #[arg(long, value_parser = mesh::duration)]
    wait: Option<Duration>,
    /// Look for at least this many agents before asking (more room for failover).
    #[arg(long, default_value_t = 0)]
    candidates: usize,
    #[command(flatten)]
    mesh: MeshArgs,
    /// The key file to use (default: a new, ephemeral identity).
    #[arg(long)]
    identity: Option<PathBuf>,
    /// A file holding the key's passphrase, less one trailing newline
    /// (default: $ECCO_PASSPHRASE).
    #[arg(long, value_name = "FILE", requires = "identity")]
    passphrase_file: Option<PathBuf>,
}

/// How long discovery waits unless `--wait` says otherwise (at most half of
/// `--timeout`).
const DEFAULT_WAIT: Duration = Duration::from_secs(3);

fn json_input(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| {
        let hint = if text.trim_start().starts_with(['{', '[', '"']) {
            ""
        } else {
            " (a text is quoted: '\"hello\"')"
        };
        format!("not JSON: {e}{hint}")
    })
}

fn selection(text: &str) -> Result<Selection, String> {
    text.parse::<Selection>().map_err(|e| e.to_string())
}

fn aggregation(text: &str) -> Result<Aggregation, String> {
    text.parse::<Aggregation>().map_err(|e| e.to_string())
}

fn timeout(text: &str) -> Result<Duration, String> {
    match mesh::duration(text)? {
        Duration::ZERO => Err("the deadline must be more than 0s".to_owned()),
        d => Ok(d),
    }
}

/// How long discovery may wait: `--wait` must leave time to ask within
/// `--timeout` (the overall deadline, which discovery is part of).
fn discovery_wait(args: &Args) -> anyhow::Result<Duration> {
    let Some(wait) = args.wait else {
        return Ok(DEFAULT_WAIT.min(args.timeout / 2));
    };
    if wait >= args.timeout {
        return Err(output::usage(format!(
            "--wait {} leaves no time to ask within --timeout {}: discovery is part of the \
             deadline; give a --wait shorter than --timeout",
            humantime::format_duration(wait),
            humantime::format_duration(args.timeout)
        )));
    }
    Ok(wait)
}

/// Refuses flags that cannot work together.
fn check(args: &Args) -> anyhow::Result<Duration> {
    if let Some(count) = args.select.count()
        && count < args.min_agents
    {
        return Err(output::usage(format!(
            "--select {} asks at most {count} agent(s), fewer than --min-agents {}",
            args.select, args.min_agents
        )));
    }
    discovery_wait(args)
}

pub(crate) async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let query = discover::query(
        &args.kind,
        &args.features,
        &args.preferred,
        &args.constraints,
    )?;
    let wait = check(&args)?;
    let key = crate::id::Key {
        path: args.identity,
        passphrase_file: args.passphrase_file,
    };
    let agent = discover::client(&args.mesh, key, args.timeout).await?;
    let answered = agent
        .query(query)
        .select(args.select)
        .aggregate(args.aggregate)
        .min_agents(args.min_agents)
        .timeout(args.timeout)
        .discovery_wait(wait)
        .candidates(args.candidates)
        .send(args.input)
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
        Verdict::NoConsensus { .. } => bail!("no answer: {}", verdict(&c.verdict)),
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

/// The verdict in words.
fn verdict(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Decided => "decided".to_owned(),
        Verdict::NoConsensus {
            agreement,
            threshold,
        } => format!(
            "no consensus (agreement {}, threshold {})",
            output::percent(*agreement),
            output::percent(*threshold)
        ),
        Verdict::AllFailed => "all failed".to_owned(),
        Verdict::NoResponses => "no responses".to_owned(),
    }
}

/// How many agents back the answer; without one, how many answered and
/// the largest group that agreed.
fn agreement(c: &Consensus) -> String {
    let answered = c.agents.iter().filter(|a| a.ok).count();
    match (&c.verdict, c.clusters.first()) {
        (Verdict::Decided, _) => format!(
            "{} of {} (confidence {:.2})",
            c.agreement,
            c.agents.len(),
            c.confidence
        ),
        (Verdict::NoConsensus { agreement, .. }, Some(largest)) => format!(
            "none: the largest group is {} of the {answered} answer(s) ({})",
            largest.agents.len(),
            output::percent(*agreement)
        ),
        _ => format!("none: {answered} of {} agent(s) answered", c.agents.len()),
    }
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
    if c.tied {
        println!(
            "verdict     {} by tie-break (another answer had as much support)",
            verdict(&c.verdict)
        );
    } else {
        println!("verdict     {}", verdict(&c.verdict));
    }
    println!("took        {:.1} ms", answered.elapsed_ms);
    println!("strategy    {}", c.strategy);
    println!("agreement   {}", agreement(c));
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(flags: &[&str]) -> Result<Args, clap::Error> {
        let mut all = vec!["ask", "x/y"];
        if !flags.contains(&"--input") {
            all.extend(["--input", "{}"]);
        }
        all.extend_from_slice(flags);
        Cli::try_parse_from(all).map(|c| c.args)
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for flags in [
            &["--input", "hello"][..],
            &["--select", "foo"],
            &["--select", "top-n:0"],
            &["--aggregate", "bogus"],
            &["--where", "price<<3"],
            &["--timeout", "3"],
            &["--timeout", "0s"],
            &["--wait", "soon"],
            &["--feature", "fast price>1"],
            &["--prefer", "a b"],
            &["--bootstrap", "nowhere"],
        ] {
            let e = args(flags).expect_err(&format!("{flags:?}"));
            assert_eq!(e.exit_code(), 2, "{flags:?}: {e}");
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{flags:?}"
            );
        }
    }

    #[test]
    fn the_wait_must_leave_time_to_ask() {
        let wait = |flags: &[&str]| discovery_wait(&args(flags).unwrap());
        assert_eq!(wait(&[]).unwrap(), DEFAULT_WAIT);
        // Unless given, the wait is at most half of the deadline.
        assert_eq!(
            wait(&["--timeout", "1s"]).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            wait(&["--timeout", "1s", "--wait", "200ms"]).unwrap(),
            Duration::from_millis(200)
        );
        for flags in [
            &["--timeout", "1s", "--wait", "5s"][..],
            &["--timeout", "1s", "--wait", "1s"],
        ] {
            let e = wait(flags).unwrap_err();
            assert!(e.downcast_ref::<output::Usage>().is_some(), "{e}");
            let text = e.to_string();
            assert!(
                text.contains("--wait") && text.contains("--timeout"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_selection_smaller_than_min_agents_is_refused() {
        let e = check(&args(&["--select", "top-n:1", "--min-agents", "2"]).unwrap()).unwrap_err();
        assert!(e.downcast_ref::<output::Usage>().is_some(), "{e}");
        assert!(check(&args(&["--select", "all", "--min-agents", "2"]).unwrap()).is_ok());
    }

    #[test]
    fn verdicts_in_words() {
        assert_eq!(verdict(&Verdict::Decided), "decided");
        assert_eq!(verdict(&Verdict::AllFailed), "all failed");
        assert_eq!(verdict(&Verdict::NoResponses), "no responses");
        assert_eq!(
            verdict(&Verdict::NoConsensus {
                agreement: 0.5,
                threshold: 0.6
            }),
            "no consensus (agreement 50%, threshold 60%)"
        );
    }
}
