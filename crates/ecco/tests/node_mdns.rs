//! mDNS for real: three nodes, each in its own Linux network namespace,
//! joined by veth pairs to a bridge in a fourth namespace, all created by
//! this test. The nodes find each other by multicast DNS alone (no
//! bootstrap address) and exchange requests. Multicast never reaches the
//! machine's own interfaces: every interface involved lives in a namespace
//! the test made and deletes.
//!
//! The test re-runs its own binary inside each namespace (`ip netns exec`)
//! to run the ignored `mdns_child` test as one node. Without the privileges
//! to create namespaces it prints a skip line, unless `ECCO_REQUIRE_NETNS=1`
//! (set by CI, which runs as root) makes that a failure.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NODES: usize = 3;
const INDEX_ENV: &str = "ECCO_MDNS_INDEX";
const WAIT: Duration = Duration::from_secs(60);

/// Runs `ip` with `args`; the error carries its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces of one run, deleted (with their interfaces) on drop.
struct Lan {
    hub: String,
    nodes: Vec<String>,
}

impl Lan {
    fn create() -> Result<Self, String> {
        let tag = std::process::id();
        let mut lan = Lan {
            hub: format!("ecco-mdns-{tag}-hub"),
            nodes: Vec::new(),
        };
        ip(&["netns", "add", &lan.hub])?;
        let hub = lan.hub.clone();
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        // Without a multicast querier, snooping could drop mDNS after a while.
        ip(&[
            "-n",
            &hub,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..NODES {
            let ns = format!("ecco-mdns-{tag}-n{i}");
            ip(&["netns", "add", &ns])?;
            lan.nodes.push(ns.clone());
            let port = format!("port{i}");
            // Both ends are created inside namespaces: nothing in the host's.
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("10.233.0.{}/24", i + 1);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        Ok(lan)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.nodes.iter().chain([&self.hub]) {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Closing stdin tells the node to stop; kill it if it lingers.
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mdns_in_network_namespaces() {
    let lan = match Lan::create() {
        Ok(lan) => lan,
        Err(e) => {
            if std::env::var("ECCO_REQUIRE_NETNS").as_deref() == Ok("1") {
                panic!("ECCO_REQUIRE_NETNS=1 but network namespaces cannot be created: {e}");
            }
            println!(
                "SKIP mdns_in_network_namespaces: cannot create network namespaces \
                 (needs root or CAP_NET_ADMIN): {e}"
            );
            return;
        }
    };
    let exe = std::env::current_exe().unwrap();
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut running = Vec::new();
    for (i, ns) in lan.nodes.iter().enumerate() {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&exe)
            .args([
                "--exact",
                "mdns_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(INDEX_ENV, i.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send((i, line));
            }
        });
        let stdin = child.stdin.take();
        running.push(Running { child, stdin });
    }
    drop(tx);

    let deadline = Instant::now() + WAIT;
    let mut done = [false; NODES];
    while !done.iter().all(|d| *d) {
        let left = deadline.saturating_duration_since(Instant::now());
        let (i, line) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("not every node finished within {WAIT:?}: {done:?}"));
        println!("node {i}: {line}");
        if let Some(result) = line.strip_prefix("RESULT ") {
            assert_eq!(result, "ok", "node {i} failed");
            done[i] = true;
        }
    }
    // Every node has answered every other; let them stop.
    for r in &mut running {
        if let Some(mut stdin) = r.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
    }
    drop(running);
    drop(lan);
}

/// One node of the test above, run in its namespace. Not a test on its own.
#[tokio::test]
#[ignore = "one node of mdns_in_network_namespaces, which runs it in a namespace"]
async fn mdns_child() {
    use ecco::node::{Answer, Config, Event, Node, Request};
    use ecco::{CapabilityType, Identity};
    use libp2p::Multiaddr;
    use std::collections::BTreeSet;

    let index: usize = std::env::var(INDEX_ENV).unwrap().parse().unwrap();
    // All interfaces of this namespace; mDNS on, and no bootstrap peer.
    let config = Config {
        listen: vec!["/ip4/0.0.0.0/tcp/0".parse::<Multiaddr>().unwrap()],
        ..Config::default()
    };
    assert!(config.discovery.mdns, "mDNS is on by default");
    let (node, mut inbox) = Node::spawn(&Identity::generate(), config).await.unwrap();
    let mut events = node.subscribe();
    let kind = format!("test/node{index}");
    node.set_capabilities(vec![format!("{kind} n{index}@1.0.0").parse().unwrap()])
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(req) = inbox.recv().await {
            let answer = serde_json::json!({ "from": index, "echo": req.request.payload });
            req.respond(Answer::new(answer));
        }
    });

    let result = tokio::time::timeout(Duration::from_secs(45), async {
        // mDNS must find both others; their capabilities follow.
        let mut discovered = BTreeSet::new();
        while discovered.len() < NODES - 1 {
            if let Ok(Event::PeerDiscovered(peer)) = events.recv().await {
                discovered.insert(peer);
            }
        }
        println!("discovered {discovered:?}");
        loop {
            let dir = node.directory().await.unwrap();
            let known: BTreeSet<_> = dir.iter().map(|e| e.peer).collect();
            if discovered.iter().all(|p| known.contains(p)) {
                break;
            }
            let _ = events.recv().await;
        }
        for entry in node.directory().await.unwrap() {
            let kind = entry.capabilities[0].kind().clone();
            let request = Request::new(
                CapabilityType::new(kind.as_str()).unwrap(),
                serde_json::json!(index),
            );
            let answer = node.request(entry.peer, request).await.unwrap();
            assert_eq!(answer.result["echo"], serde_json::json!(index));
            println!("{} answered from {:?}", entry.peer, entry.addrs);
        }
    })
    .await;
    println!("RESULT {}", if result.is_ok() { "ok" } else { "timeout" });
    // Keep serving the others until the parent says stop (or goes away).
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
    node.shutdown().await;
}
