//! mDNS for real: three nodes, each in its own Linux network namespace,
//! joined by veth pairs to a bridge in a fourth namespace, all created by
//! this test. The nodes find each other by multicast DNS alone (no
//! bootstrap address) and exchange requests. Multicast never reaches the
//! machine's own interfaces: every interface involved lives in a namespace
//! the test made and deletes. A second test cuts the routes between two
//! nodes for their first 2 s: they must still connect, by dialling again.
//! A third puts two nodes of different private meshes on one LAN: each
//! dials the other once, is refused in the handshake, and does not dial
//! again.
//!
//! The test re-runs its own binary inside each namespace (`ip netns exec`)
//! to run the ignored `mdns_child` test as one node. Without the privileges
//! to create namespaces it prints a skip line, unless `ECCO_REQUIRE_NETNS=1`
//! (set by CI, which runs as root) makes that a failure.
//!
//! Time limits count running time only ([`RunningClock`]): a virtual machine
//! that is paused (a snapshot, a busy host) makes every timer fire at once
//! when it resumes, which would fail the test with every node still busy.
//! Each node logs at debug level to a pipe; its log is printed if the test
//! fails, so that a failure says what the node did (that is how crossing
//! dials from the listening ports were found: `node/fresh_ports.rs`).

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NODES: usize = 3;
/// How many nodes the child's LAN has (`NODES` unless set).
const NODES_ENV: &str = "ECCO_MDNS_NODES";
const INDEX_ENV: &str = "ECCO_MDNS_INDEX";
/// Which test the child is a node of (the LAN's name).
const SCENARIO_ENV: &str = "ECCO_MDNS_SCENARIO";
/// Set to print every node's log even when the test passes.
const SHOW_LOGS_ENV: &str = "ECCO_MDNS_SHOW_LOGS";
/// Running time the parent waits for every node (each runs in about 0.3 s).
const WAIT: Duration = Duration::from_secs(60);
/// Running time one node has to discover, learn and ask the others.
const CHILD_WAIT: Duration = Duration::from_secs(45);
/// How often the running clocks look at the time.
const STEP: Duration = Duration::from_millis(100);
/// A step longer than this was a pause of the machine, not running time.
const MAX_STEP: Duration = Duration::from_secs(1);

/// Time this process has run, without the pauses of the machine: each step
/// counts at most `MAX_STEP`, however long it really took.
struct RunningClock {
    last: Instant,
    counted: Duration,
}

impl RunningClock {
    fn start() -> Self {
        Self {
            last: Instant::now(),
            counted: Duration::ZERO,
        }
    }

    /// Counts the time since the last call; returns the total so far.
    fn advance(&mut self) -> Duration {
        let now = Instant::now();
        let step = now - self.last;
        self.last = now;
        if step > MAX_STEP {
            println!("the machine paused for {step:?}: counted as {MAX_STEP:?}");
        }
        self.counted += step.min(MAX_STEP);
        self.counted
    }
}

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
    /// `name` tells apart the LANs of tests running at once.
    fn create(name: &str, nodes: usize) -> Result<Self, String> {
        let tag = format!("{}-{name}", std::process::id());
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
        for i in 0..nodes {
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

/// Each node's debug log (its stderr), printed if the test fails.
struct Logs(Vec<std::thread::JoinHandle<Vec<String>>>);

impl Drop for Logs {
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var_os(SHOW_LOGS_ENV).is_none() {
            return;
        }
        // The nodes have stopped by now (`running` is dropped before), so
        // each reader reaches the end of its node's log.
        for (i, reader) in self.0.drain(..).enumerate() {
            let lines = reader.join().unwrap_or_default();
            eprintln!("---- log of node {i} ({} lines)", lines.len());
            for line in lines {
                eprintln!("node {i}: {line}");
            }
        }
    }
}

#[test]
fn mdns_in_network_namespaces() {
    run_lan("all", NODES, false);
}

/// Two nodes that mDNS finds while neither can reach the other (each
/// namespace has no route to the other's address for the first 2 s): their
/// dials fail at once, mDNS says nothing more for minutes, and only dialling
/// again connects them.
#[test]
fn peers_found_by_mdns_are_dialled_again() {
    run_lan("redial", 2, true);
}

/// Two nodes of different private meshes (each its own swarm key) on one
/// LAN: mDNS finds each for the other, the handshake fails, and neither
/// dials the other again, which only its swarm key would change (each
/// dialled the other five times over 15 s before). Each node counts its own
/// TCP connection attempts: its namespace's `ActiveOpens`.
#[test]
fn a_peer_of_another_private_mesh_is_dialled_once() {
    run_lan("foreign", 2, false);
}

/// Runs `nodes` nodes on a LAN of namespaces until each has found, learned
/// and asked every other; with `cut`, nodes 0 and 1 have no route to each
/// other for their first 2 s.
fn run_lan(name: &str, nodes: usize, cut: bool) {
    let lan = match Lan::create(name, nodes) {
        Ok(lan) => lan,
        Err(e) => {
            if std::env::var("ECCO_REQUIRE_NETNS").as_deref() == Ok("1") {
                panic!("ECCO_REQUIRE_NETNS=1 but network namespaces cannot be created: {e}");
            }
            println!(
                "SKIP {name}: cannot create network namespaces \
                 (needs root or CAP_NET_ADMIN): {e}"
            );
            return;
        }
    };
    // Unreachable routes fail the dials at once, both ways.
    let cuts = [(0, "10.233.0.2/32"), (1, "10.233.0.1/32")];
    if cut {
        for (i, to) in cuts {
            ip(&["-n", &lan.nodes[i], "route", "add", "unreachable", to]).unwrap();
        }
    }
    let exe = std::env::current_exe().unwrap();
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut logs = Logs(Vec::new());
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
            .env(NODES_ENV, nodes.to_string())
            .env(SCENARIO_ENV, name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        logs.0.push(std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .collect()
        }));
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

    let mut clock = RunningClock::start();
    let mut done = vec![false; nodes];
    let mut cut = cut;
    while !done.iter().all(|d| *d) {
        if cut && clock.advance() >= Duration::from_secs(2) {
            for (i, to) in cuts {
                ip(&["-n", &lan.nodes[i], "route", "del", "unreachable", to]).unwrap();
            }
            println!("routes between nodes 0 and 1 restored");
            cut = false;
        }
        let (i, line) = match rx.recv_timeout(STEP) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(
                    clock.advance() < WAIT,
                    "not every node finished within {WAIT:?} of running time: {done:?}"
                );
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("every node's output closed before all finished: {done:?}")
            }
        };
        clock.advance();
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
    drop(logs);
    drop(lan);
}

/// One node of the tests above, run in its namespace. Not a test on its own.
#[tokio::test]
#[ignore = "one node of mdns_in_network_namespaces, which runs it in a namespace"]
async fn mdns_child() {
    use ecco::node::{Answer, Config, Event, Node, Request};
    use ecco::{CapabilityType, Identity};
    use libp2p::Multiaddr;
    use std::collections::BTreeSet;

    let index: usize = std::env::var(INDEX_ENV).unwrap().parse().unwrap();
    let foreign = std::env::var(SCENARIO_ENV).as_deref() == Ok("foreign");
    let nodes: usize = std::env::var(NODES_ENV).map_or(NODES, |n| n.parse().unwrap());
    // Debug logs go to stderr, which the parent prints if the test fails.
    tracing_subscriber::fmt()
        .with_env_filter("ecco=debug,libp2p_mdns=debug,libp2p_swarm=debug")
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .init();
    let started = Instant::now();
    // All interfaces of this namespace; mDNS on, and no bootstrap peer.
    let config = Config {
        listen: vec!["/ip4/0.0.0.0/tcp/0".parse::<Multiaddr>().unwrap()],
        // Each node its own private mesh.
        swarm_key: foreign.then(ecco::node::generate_swarm_key),
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

    let mut work: std::pin::Pin<Box<dyn Future<Output = Result<(), String>>>> = if foreign {
        Box::pin(async {
            while !matches!(events.recv().await, Ok(Event::PeerDiscovered(_))) {}
            // Time enough for the first dial to fail in its handshake, not
            // for a second (it came after 1 s, then 2 s more).
            run_for(Duration::from_millis(500)).await;
            let first = active_opens();
            run_for(Duration::from_secs(4)).await;
            let later = active_opens();
            println!(
                "TCP connection attempts: {first} 0.5 s after mDNS found the other, {later} 4 s later"
            );
            let connected = node.connected_peers().await.unwrap();
            let known = node.directory().await.unwrap().len();
            if first == 0 {
                Err("mDNS found the other node, which was not dialled".to_owned())
            } else if later != first {
                Err(format!(
                    "dialled again: {first} connection attempts, then {later}"
                ))
            } else if !connected.is_empty() || known > 0 {
                Err(format!(
                    "connected to {connected:?}; capabilities of {known} peers"
                ))
            } else {
                Ok(())
            }
        })
    } else {
        Box::pin(async {
            // mDNS must find both others; their capabilities follow.
            let mut discovered = BTreeSet::new();
            while discovered.len() < nodes - 1 {
                if let Ok(Event::PeerDiscovered(peer)) = events.recv().await {
                    discovered.insert(peer);
                }
            }
            println!("discovered {discovered:?} after {:?}", started.elapsed());
            // Each with its address on the LAN: announcements signed before a
            // node found its interfaces list only its loopback address, and are
            // replaced at once when it finds them.
            let on_lan = |e: &ecco::discovery::Entry| {
                !e.addrs.is_empty()
                    && !e
                        .addrs
                        .iter()
                        .any(|a| a.to_string().starts_with("/ip4/127."))
            };
            loop {
                let dir = node.directory().await.unwrap();
                let known: BTreeSet<_> = dir.iter().filter(|e| on_lan(e)).map(|e| e.peer).collect();
                if discovered.iter().all(|p| known.contains(p)) {
                    break;
                }
                let _ = events.recv().await;
            }
            println!(
                "learned their capabilities and addresses after {:?}",
                started.elapsed()
            );
            for entry in node.directory().await.unwrap() {
                let kind = entry.capabilities[0].kind().clone();
                let request = Request::new(
                    CapabilityType::new(kind.as_str()).unwrap(),
                    serde_json::json!(index),
                );
                let answer = node.request(entry.peer, request).await.unwrap();
                assert_eq!(answer.result["echo"], serde_json::json!(index));
                println!(
                    "{} answered after {:?} (addresses {:?})",
                    entry.peer,
                    started.elapsed(),
                    entry.addrs
                );
            }
            Ok(())
        })
    };
    // A time limit in running time, not a timer: see `RunningClock`.
    let mut clock = RunningClock::start();
    let mut tick = tokio::time::interval(STEP);
    let finished = loop {
        tokio::select! {
            result = &mut work => break Some(result),
            _ = tick.tick() => if clock.advance() >= CHILD_WAIT { break None },
        }
    };
    drop(work);
    if finished.is_none() {
        // What the node knew when its time ran out.
        println!("connected to {:?}", node.connected_peers().await);
        let known: Vec<_> = node
            .directory()
            .await
            .unwrap_or_default()
            .iter()
            .map(|e| e.peer)
            .collect();
        println!("capabilities known of {known:?}");
    }
    match finished {
        Some(Ok(())) => println!("RESULT ok"),
        Some(Err(failure)) => println!("RESULT {failure}"),
        None => println!("RESULT timeout"),
    }
    // Keep serving the others until the parent says stop (or goes away).
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
    node.shutdown().await;
}

/// Waits `span` of running time (see [`RunningClock`]).
async fn run_for(span: Duration) {
    let mut clock = RunningClock::start();
    let mut tick = tokio::time::interval(STEP);
    while clock.advance() < span {
        tick.tick().await;
    }
}

/// TCP connections this network namespace has opened (`ActiveOpens` in
/// `/proc/net/snmp`, which counts every `connect`, failed or not).
fn active_opens() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "ActiveOpens")
        .unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}
