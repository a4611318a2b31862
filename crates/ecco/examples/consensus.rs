//! A consensus of several agents: five agents on 127.0.0.1 answer one
//! question, and three aggregation strategies combine their answers.
//!
//! ```sh
//! cargo run -p ecco --example consensus
//! ```

#![allow(clippy::print_stdout)]

use std::time::Duration;

use ecco::agent::{Agent, Call, HandlerError};
use ecco::node::{Answer, Config};
use ecco::{Aggregation, Selection};
use serde_json::json;

/// An agent that always answers `answer`.
async fn oracle(
    name: &str,
    answer: &'static str,
    bootstrap: Vec<ecco::Multiaddr>,
) -> Result<Agent, Box<dyn std::error::Error>> {
    let mut config = Config::loopback();
    config.bootstrap = bootstrap;
    Ok(Agent::builder()
        .config(config)
        .capability(format!("qa/answer {name}@1.0.0").parse()?)
        .handler("qa/answer", move |_: Call| async move {
            Ok::<_, HandlerError>(Answer::new(json!(answer)))
        })
        .spawn()
        .await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let first = oracle("o1", "42", Vec::new()).await?;
    let addrs = first.addresses().await?;
    let mut oracles = vec![first];
    for (name, answer) in [
        ("o2", "42"),
        ("o3", "42"),
        ("o4", "41"),
        ("o5", "forty-two"),
    ] {
        oracles.push(oracle(name, answer, addrs.clone()).await?);
    }
    let mut config = Config::loopback();
    config.bootstrap = addrs;
    let client = Agent::builder().config(config).spawn().await?;
    let query = "qa/answer".parse()?;
    let known = client.discover(&query, 5, Duration::from_secs(20)).await?;
    println!("{} oracles known", known.len());

    for aggregation in [
        Aggregation::MajorityVote,
        Aggregation::consensus_threshold(0.8)?,
        "weighted-vote".parse()?,
    ] {
        let answered = client
            .query("qa/answer".parse()?)
            .select(Selection::All)
            .aggregate(aggregation)
            .send(json!("the answer to everything?"))
            .await?;
        let c = &answered.consensus;
        println!(
            "{:<24} answer {:<6} verdict {:?}, {} of {} agree, confidence {:.2}",
            c.strategy,
            c.answer
                .as_ref()
                .map_or("-".to_owned(), ToString::to_string),
            c.verdict,
            c.agreement,
            c.agents.len(),
            c.confidence,
        );
        for cluster in &c.clusters {
            println!(
                "    {} backed by {} agent(s)",
                cluster.answer,
                cluster.agents.len()
            );
        }
    }
    client.shutdown().await;
    for o in oracles {
        o.shutdown().await;
    }
    Ok(())
}
