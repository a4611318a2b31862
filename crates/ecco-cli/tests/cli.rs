//! End to end: real `ecco agent` processes on loopback (mDNS off, joined
//! by bootstrap addresses), queried by `ecco discover` and `ecco ask`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{agent, agent_with_logs_and, answer, ask_args, ecco, ecco_json, start, stderr};

#[test]
fn discover_and_ask_with_every_aggregation_strategy() {
    let a = agent(
        "qa/capital a@1.0.0 +cited price=0.001",
        &answer("\"Paris\""),
        None,
    );
    let b = agent(
        "qa/capital b@1.0.0 price=0.002",
        &answer("\"Paris\""),
        Some(&a),
    );
    let c = agent(
        "qa/capital c@1.0.0 price=0.003",
        &answer("\"Lyon\""),
        Some(&a),
    );
    let _other = agent("text/upper u@1.0.0", "echo", Some(&a));

    let started = Instant::now();
    let found = ecco_json(&[
        "--json",
        "discover",
        "qa/capital",
        "--where",
        "price<=0.01",
        "--no-mdns",
        "--bootstrap",
        &a.addr,
        "--wait",
        "60s",
    ]);
    // With mDNS off the listing ends once the DHT lookup is over, not after
    // the whole --wait.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    let peers: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers.len(), 3, "{found}");
    for p in [&a.peer, &b.peer, &c.peer] {
        assert!(peers.contains(&p.as_str()));
    }
    let cited = ecco_json(&[
        "--json",
        "discover",
        "qa/capital",
        "--feature",
        "cited",
        "--no-mdns",
        "--bootstrap",
        &a.addr,
        "--wait",
        "1s",
    ]);
    assert_eq!(cited.as_array().unwrap().len(), 1);

    for strategy in [
        "majority-vote",
        "weighted-vote",
        "best-score",
        "ensemble",
        "consensus-threshold:0.6",
        "first-response",
        "longest",
    ] {
        let answered = ecco_json(&[
            "--json",
            "ask",
            "qa/capital",
            "--input",
            "{\"country\": \"France\"}",
            "--select",
            "all",
            "--aggregate",
            strategy,
            "--candidates",
            "3",
            "--prefer",
            "cited",
            "--no-mdns",
            "--bootstrap",
            &a.addr,
        ]);
        let consensus = &answered["consensus"];
        assert_eq!(consensus["strategy"].as_str().unwrap(), strategy);
        let answer = &consensus["answer"];
        match strategy {
            "ensemble" => assert!(answer.is_array(), "{answered}"),
            "first-response" => assert!(answer == "Paris" || answer == "Lyon", "{answered}"),
            "longest" => assert!(answer.is_string(), "{answered}"),
            _ => assert_eq!(answer, "Paris", "{strategy}: {answered}"),
        }
    }
}

#[test]
fn a_query_fails_over_when_an_agent_dies() {
    // The slow one ranks first (it has the preferred feature) and dies mid-query.
    let slow = agent("calc/add slow@1.0.0 +fast", "exec:sleep 3; echo 4", None);
    let spare = agent("calc/add spare@1.0.0", &answer("4"), Some(&slow));
    let ask = Command::new(common::bin())
        .args([
            "--json",
            "ask",
            "calc/add",
            "--input",
            "[2, 2]",
            "--prefer",
            "fast",
            "--select",
            "top-n:1",
            "--candidates",
            "2",
            "--no-mdns",
            "--bootstrap",
            &spare.addr,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The ask has found both and sent its request before the slow one answers.
    std::thread::sleep(Duration::from_millis(1500));
    drop(slow);
    let out = ask.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answered: Value = serde_json::from_slice(&out.stdout).unwrap();
    let asked: Vec<&str> = answered["asked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(asked.len(), 2, "{answered}");
    assert_eq!(asked[1], spare.peer, "the spare replaced the dead one");
    assert_eq!(answered["consensus"]["answer"], 4);
}

#[test]
fn first_response_answers_at_the_fastest_agents_pace() {
    let fast = agent("llm/chat fast@1.0.0", &answer("\"quick\""), None);
    let _slow = agent(
        "llm/chat slow@1.0.0",
        "exec:sleep 5; echo '\"late\"'",
        Some(&fast),
    );
    let answered = ecco_json(&[
        "--json",
        "ask",
        "llm/chat",
        "--input",
        "\"hi\"",
        "--select",
        "all",
        "--aggregate",
        "first-response",
        "--candidates",
        "2",
        // The slow agent is cut short, not failed: it still counts.
        "--min-agents",
        "2",
        "--no-mdns",
        "--bootstrap",
        &fast.addr,
    ]);
    assert_eq!(answered["consensus"]["answer"], "quick");
    let kinds: Vec<&Value> = answered["consensus"]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["failure"]["kind"])
        .collect();
    assert_eq!(kinds, [&Value::from("cancelled")], "{answered}");
    let elapsed = answered["elapsed_ms"].as_f64().unwrap();
    println!("first-response took {elapsed:.0} ms; the slow agent takes 5000 ms");
    assert!(
        elapsed < 3000.0,
        "took {elapsed} ms, close to the slow agent's 5 s"
    );
}

/// No answer, or fewer answers than `--min-agents`, is a failure exit; the
/// JSON report is still printed.
#[test]
fn ask_without_an_answer_fails() {
    let broken = agent("calc/div broken@1.0.0", "exec:exit 1", None);
    let asked = |extra: &[&str]| {
        let mut args = vec!["--json"];
        args.extend(ask_args("calc/div", "[1, 0]", &broken));
        args.extend_from_slice(extra);
        let out = ecco(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{extra:?} succeeded: {stderr}");
        assert!(
            stderr
                .trim_end()
                .lines()
                .last()
                .unwrap_or_default()
                .starts_with("error: "),
            "{stderr}"
        );
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{extra:?}: no JSON report ({e}): {stderr}"));
        (report, stderr)
    };
    let (report, stderr) = asked(&[]);
    assert_eq!(
        report["consensus"]["verdict"]["kind"], "all_failed",
        "{report}"
    );
    assert!(
        stderr.contains("no answer") && stderr.contains("exit status: 1"),
        "{stderr}"
    );

    let _working = agent("calc/div working@1.0.0", &answer("0"), Some(&broken));
    let (report, stderr) = asked(&["--select", "all", "--candidates", "2", "--min-agents", "2"]);
    assert_eq!(report["consensus"]["answer"], 0, "{report}");
    assert!(stderr.contains("--min-agents 2"), "{stderr}");
}

/// `--private-errors`: the asker learns that the handler failed and a
/// reference, not what the command wrote on stderr; the agent's log has
/// both, so that its operator finds the failure from the reference. A
/// timeout still says what happened.
#[test]
fn private_errors_keep_a_command_s_stderr_in_the_agent_s_log() {
    let mut private = agent_with_logs_and(
        "calc/div private@1.0.0",
        "exec:if grep -q slow; then sleep 5; fi; echo 'password for db: hunter2' >&2; exit 3",
        &["--private-errors", "--handler-timeout", "500ms"],
    );
    // A deadline gives nothing away: the asker is told, not referred.
    let out = ecco(&ask_args("calc/div", "\"slow\"", &private));
    let asked = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!out.status.success(), "{asked}");
    assert!(
        asked.contains("did not finish within 500ms") && !asked.contains("reference"),
        "{asked}"
    );

    let out = ecco(&ask_args("calc/div", "[1, 0]", &private));
    let asked = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!out.status.success(), "{asked}");
    assert!(!asked.contains("hunter2"), "{asked}");
    let reference: String = asked
        .split("reference ")
        .nth(1)
        .unwrap_or_else(|| panic!("no reference in: {asked}"))
        .chars()
        .take(8)
        .collect();
    let logs = private.stop_and_read_logs();
    let line = logs
        .lines()
        .find(|l| l.contains(&reference))
        .unwrap_or_else(|| panic!("reference {reference} not logged: {logs}"));
    assert!(
        line.contains("hunter2") && line.contains("exit status: 3"),
        "{line}"
    );
}

/// Every bad input gives one error line on stderr (after any warnings the
/// logs print) and a non-zero exit, never a panic.
#[test]
fn bad_input_gets_one_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, b"not a key file").unwrap();
    let unreachable =
        "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["ask", "x/y", "--input", "{}", "--select", "most:3"],
            "--select",
        ),
        (
            vec!["ask", "x/y", "--input", "{}", "--aggregate", "loudest"],
            "--aggregate",
        ),
        (vec!["ask", "x/y", "--input", "{not json"], "not JSON"),
        (vec!["discover", "x/y", "--where", "price<<1"], "query"),
        (
            vec!["id", "--identity", garbage.to_str().unwrap()],
            "identity",
        ),
        (
            vec!["discover", "x/y", "--no-mdns", "--bootstrap", unreachable],
            "bootstrap",
        ),
        (
            vec!["discover", "x/y", "--bootstrap", "not-an-address"],
            "multiaddr",
        ),
        (
            vec!["agent", "--no-mdns", "--capability", "Bad Type"],
            "capability",
        ),
        (
            vec!["agent", "--capability", "x/y n@1.0.0", "--handler", "shout"],
            "handler",
        ),
    ];
    for (args, expected) in cases {
        let out = ecco(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
        let last = stderr.trim_end().lines().last().unwrap_or_default();
        assert!(last.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn id_and_swarm_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("me.key");
    let first = ecco_json(&["--json", "id", "--identity", key.to_str().unwrap()]);
    let again = ecco_json(&["--json", "id", "--identity", key.to_str().unwrap()]);
    assert_eq!(first["peer_id"], again["peer_id"], "the identity is kept");
    let out = ecco(&["swarm-key", "generate"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"),
        "{text}"
    );
}

/// The Python example: an agent from a TOML file whose handler is a script
/// beside the file, started from another directory.
#[test]
fn the_python_exec_example_answers() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-exec");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(common::bin());
    cmd.current_dir(dir.path())
        .args(["--json", "agent", "--config"])
        .arg(example.join("agent.toml"))
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .arg("--identity")
        .arg(dir.path().join("id.key"));
    let running = start(cmd, dir);
    let addr = running.addr.clone();
    let answered = ecco_json(&[
        "--json",
        "ask",
        "text/stats",
        "--input",
        "\"the quick brown fox\"",
        "--no-mdns",
        "--bootstrap",
        &addr,
    ]);
    drop(running);
    assert_eq!(
        answered["consensus"]["answer"],
        serde_json::json!({"words": 4, "characters": 19, "longest": "quick"})
    );
}

/// The `http` handler: the request JSON is POSTed, the response body answers.
#[test]
fn the_http_handler_posts_the_request() {
    use std::io::{Read, Write};
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/handle", server.local_addr().unwrap());
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // One request is enough for this test.
        let (mut conn, _) = server.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = Vec::new();
        loop {
            let n = conn.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length: usize = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= head_end + 4 + length {
                    let body = text[head_end + 4..head_end + 4 + length].to_owned();
                    seen_tx.send(body).unwrap();
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let answer = r#"{"via": "http"}"#;
        write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        )
        .unwrap();
    });
    let web = agent("web/hook w@1.0.0", &format!("http:{url}"), None);
    let answered = ecco_json(&[
        "--json",
        "ask",
        "web/hook",
        "--input",
        "{\"n\": 1}",
        "--no-mdns",
        "--bootstrap",
        &web.addr,
    ]);
    assert_eq!(
        answered["consensus"]["answer"],
        serde_json::json!({"via": "http"})
    );
    let posted: Value = serde_json::from_str(&seen_rx.recv().unwrap()).unwrap();
    assert_eq!(posted["capability"], "web/hook");
    assert_eq!(posted["payload"], serde_json::json!({"n": 1}));
}

/// Whether process `pid` still runs (a zombie waiting for its reaper does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[test]
fn sigterm_stops_an_agent_cleanly_and_its_handler_with_it() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let work = tempfile::tempdir().unwrap();
    let pid_file = work.path().join("handler.pid");
    // The handler records its pid, then runs long: a model still generating.
    let handler = format!("exec:echo $$ > {}; exec sleep 60", pid_file.display());
    let mut provider = agent("slow/job long@1.0.0", &handler, None);
    let mut ask = Command::new(common::bin())
        .args([
            "--json", "ask", "slow/job", "--input", "1", "--select", "top-n:1",
        ])
        .args([
            "--timeout",
            "50s",
            "--no-mdns",
            "--bootstrap",
            &provider.addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let handler_pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the handler never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(alive(handler_pid));
    let agent_pid = Pid::from_raw(i32::try_from(provider.child.id()).unwrap());
    kill(agent_pid, Signal::SIGTERM).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = provider.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGTERM did not stop the agent"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // SIGTERM's default action would end it with no cleanup (status 143
    // from a shell), leaving the handler's process group running.
    assert!(status.success(), "{status:?}");
    assert!(!alive(handler_pid), "the handler outlived its agent");
    let _ = ask.kill();
    let _ = ask.wait();
}
