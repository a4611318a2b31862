//! A private mesh: agents holding a generated swarm key talk; one without
//! it cannot even finish a handshake. Everything stays on 127.0.0.1.
//!
//! ```sh
//! cargo run -p ecco --example private_mesh
//! ```

#![allow(clippy::print_stdout)]

use ecco::agent::{Agent, Call, HandlerError};
use ecco::node::{Answer, Config, generate_swarm_key};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The key, as `ecco swarm-key generate` prints it and swarm.key files hold it.
    let key = generate_swarm_key();
    println!("swarm key:\n{key}");
    let private = || Config {
        swarm_key: Some(key),
        ..Config::loopback()
    };

    let ward = Agent::builder()
        .config(private())
        .capability("records/lookup ward@1.0.0".parse()?)
        .handler("records/lookup", |_: Call| async {
            Ok::<_, HandlerError>(Answer::new(json!({"patient": "redacted", "ok": true})))
        })
        .spawn()
        .await?;
    let addrs = ward.addresses().await?;

    let mut inside = private();
    inside.bootstrap = addrs.clone();
    let doctor = Agent::builder().config(inside).spawn().await?;
    let peer = doctor.node().dial(addrs[0].clone()).await?;
    println!("an agent with the key connects: {peer}");

    let outsider = Agent::builder().config(Config::loopback()).spawn().await?;
    match outsider.node().dial(addrs[0].clone()).await {
        Ok(_) => return Err("an agent without the key connected".into()),
        Err(e) => println!("an agent without the key is refused: {e}"),
    }

    let answered = doctor
        .query("records/lookup".parse()?)
        .send(json!({"id": 7}))
        .await?;
    println!(
        "inside the mesh: {}",
        answered.consensus.answer.unwrap_or_default()
    );
    for a in [doctor, outsider, ward] {
        a.shutdown().await;
    }
    Ok(())
}
