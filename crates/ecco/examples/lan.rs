//! Two agents on a LAN: the second finds the first by mDNS alone (no
//! address given) and asks it. This sends multicast DNS on your network.
//!
//! ```sh
//! cargo run -p ecco --example lan
//! ```

#![allow(clippy::print_stdout)]

use std::time::Duration;

use ecco::agent::{Agent, Call, HandlerError};
use ecco::node::{Answer, Config};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Config::default() listens on every interface and has mDNS on.
    let lan = || Config {
        listen: vec!["/ip4/0.0.0.0/tcp/0".parse().expect("a valid address")],
        ..Config::default()
    };
    let reverser = Agent::builder()
        .config(lan())
        .capability("text/reverse mirror@1.0.0".parse()?)
        .handler("text/reverse", |call: Call| async move {
            let text = call.request.payload.as_str().unwrap_or_default();
            Ok::<_, HandlerError>(Answer::new(json!(text.chars().rev().collect::<String>())))
        })
        .spawn()
        .await?;
    println!("reverser {} is on the LAN", reverser.peer_id());

    let asker = Agent::builder().config(lan()).spawn().await?;
    let query = "text/reverse".parse()?;
    let found = asker.discover(&query, 1, Duration::from_secs(15)).await?;
    match found.first() {
        Some(r) => println!("found by mDNS: {} offering {}", r.peer, r.capability),
        None => {
            println!("no agent found in 15 s: is multicast allowed on this network?");
            return Ok(());
        }
    }
    let answered = asker.query(query).send(json!("hello, LAN")).await?;
    println!("answer: {}", answered.consensus.answer.unwrap_or_default());
    asker.shutdown().await;
    reverser.shutdown().await;
    Ok(())
}
