//! `ecco registry serve` as a real process: a registry killed (SIGKILL) and
//! restarted on the same database loses no acknowledged write.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::process::{Child, Command, Stdio};

use ecco::Identity;
use ecco::registry::{Client, Feedback, Receipt, Registration};

mod common;

const ECCO: &str = env!("CARGO_BIN_EXE_ecco");

/// A running registry process, killed when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(database_url: &str) -> Served {
    let mut child = Command::new(ECCO)
        .args([
            "--json",
            "registry",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .env_remove("ECCO_REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = common::start_line(&mut child);
    Served {
        child,
        url: started["url"].as_str().unwrap().to_owned(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes, kills the process mid-stream, restarts, and checks every write
/// that was acknowledged is there.
async fn nothing_acknowledged_is_lost(database_url: &str) {
    let first = serve(database_url);
    let rater = Identity::generate();
    let rater_client = Client::new(&first.url, rater.clone()).unwrap();
    let mut acknowledged = Vec::new();
    let mut rated = 0;
    for i in 0..30 {
        let id = Identity::generate();
        let client = Client::new(&first.url, id.clone()).unwrap();
        let registration = Registration {
            name: format!("agent-{i}"),
            capabilities: ecco::CapabilityDocument::new(vec![
                format!("test/durable m{i}@1.0.0").parse().unwrap(),
            ])
            .unwrap(),
            addresses: vec!["/ip4/127.0.0.1/tcp/1".to_owned()],
        };
        client.register(&registration).await.unwrap();
        acknowledged.push(id.clone());
        let receipt = Receipt::issue(&id, &rater.peer_id(), "test/durable", now_ms());
        rater_client
            .feedback(&Feedback {
                receipt,
                success: true,
                latency_ms: 5,
                rating: Some(4),
            })
            .await
            .unwrap();
        rated += 1;
    }
    drop(first); // SIGKILL: no graceful shutdown.

    let second = serve(database_url);
    let reader = Client::new(&second.url, Identity::generate()).unwrap();
    for id in &acknowledged {
        let detail = reader.agent(&id.peer_id()).await.unwrap();
        assert_eq!(detail.reputation.breakdown.feedback, 1, "{}", detail.name);
    }
    let all = reader.search("test/durable", 1, 100).await.unwrap();
    assert_eq!(all.total, acknowledged.len() as u64);
    assert_eq!(rated, 30);
}

#[tokio::test]
async fn sqlite_keeps_every_acknowledged_write_across_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    nothing_acknowledged_is_lost(&format!(
        "sqlite:{}",
        dir.path().join("registry.db").display()
    ))
    .await;
}

#[tokio::test]
async fn postgres_keeps_every_acknowledged_write_across_a_kill() {
    let admin = std::env::var("ECCO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let name = format!("ecco_cli_test_{}", std::process::id());
    // Retried: PostgreSQL refuses to copy its template while another test
    // creates a database from it.
    let mut created = Err(std::io::Error::other("not tried"));
    for _ in 0..10 {
        created = Command::new("psql")
            .args([&admin, "-q"])
            .args(["-c", &format!("DROP DATABASE IF EXISTS {name}")])
            .args(["-c", &format!("CREATE DATABASE {name}")])
            .output();
        match &created {
            Ok(out)
                if !out.status.success()
                    && String::from_utf8_lossy(&out.stderr).contains("being accessed") =>
            {
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            _ => break,
        }
    }
    match created {
        Ok(out) if out.status.success() => {}
        other => {
            let why = format!("{other:?}");
            assert!(
                std::env::var("ECCO_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "postgres required: {why}"
            );
            eprintln!("SKIP: cannot create a database on postgres at {admin} ({why})");
            return;
        }
    }
    let (base, _) = admin.rsplit_once('/').unwrap();
    nothing_acknowledged_is_lost(&format!("{base}/{name}")).await;
    let _ = Command::new("psql")
        .args([&admin, "-qc", &format!("DROP DATABASE {name}")])
        .output();
}

#[test]
fn a_bad_database_url_is_a_one_line_error() {
    let out = Command::new(ECCO)
        .args([
            "registry",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "mysql://nope",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("sqlite:PATH or postgres://"),
        "{err}"
    );
}

/// `ecco agent --registry` registers the agent under its name; the
/// registry's search finds it.
#[tokio::test]
async fn an_agent_started_from_the_cli_registers() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&format!(
        "sqlite:{}",
        dir.path().join("registry.db").display()
    ));
    let mut agent = Command::new(ECCO)
        .args([
            "--json",
            "agent",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .args(["--capability", "text/shout loud@1.0.0", "--name", "shouter"])
        .args(["--registry", &served.url])
        .arg("--identity")
        .arg(dir.path().join("id.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = common::start_line(&mut agent);
    assert_eq!(started["registry"], served.url.as_str());
    let reader = Client::new(&served.url, Identity::generate()).unwrap();
    let mut found = None;
    for _ in 0..100 {
        let hits = reader.search("text/shout", 1, 10).await.unwrap();
        if let Some(hit) = hits.items.into_iter().next() {
            found = Some(hit);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = agent.kill();
    let _ = agent.wait();
    let hit = found.expect("the agent registered within 10 s");
    assert_eq!(hit.peer_id, started["peer_id"].as_str().unwrap());
    assert_eq!(hit.name, "shouter");
}
