//! `ecco demo`: its dashboard URL is given only while the registry is up
//! (with `--keep-running`, where it answers), and `--keep-running` stops
//! cleanly on SIGTERM as on Ctrl-C. The demo listens on 127.0.0.1 only,
//! with mDNS off (`Config::loopback`).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Far beyond the demo's ~15 s, for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// How long a clean stop may take after SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// A running demo, killed when dropped; its stdout lines arrive on `lines`.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Demo {
    /// Starts `ecco demo` with `args`; its logs are dropped.
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(common::bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // Read on the side, so that the pipe never fills and the test can
        // give up after a deadline.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next stdout line that `pick` accepts, with the lines before it.
    fn wait_for(&self, pick: impl Fn(&str) -> bool) -> (String, Vec<String>) {
        let until = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pick(&line) => return (line, seen),
                Ok(line) => seen.push(line),
                Err(e) => panic!("no such line within {DEADLINE:?} ({e}); got {seen:#?}"),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit.
    fn terminate(&mut self) -> ExitStatus {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;

        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, Signal::SIGTERM).unwrap();
        let until = Instant::now() + STOP_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "the demo did not stop within {STOP_WITHIN:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The rest of stdout, once the demo has exited.
    fn rest(&self) -> Vec<String> {
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            rest.push(line);
        }
        rest
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of `GET url` (`http://127.0.0.1:<port>/…`), over a
/// plain TCP stream.
fn http_get_status(url: &str) -> u16 {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    assert!(host.starts_with("127.0.0.1:"), "not on loopback: {url}");
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    // The status line is all we need; the body may be long.
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).unwrap();
    response.push_str(&String::from_utf8_lossy(&head[..n]));
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

#[test]
fn without_keep_running_the_text_gives_no_dashboard_url_and_says_how() {
    let mut demo = Demo::start(&["demo"]);
    let (done, seen) = demo.wait_for(|l| l == "Done.");
    let status = demo.child.wait().unwrap();
    assert!(status.success(), "{status}: {seen:#?}");
    let text = seen.join("\n");
    // The registry is stopped by the time anyone reads the report: no link
    // to it, but how to keep it up.
    assert!(!text.contains("http://"), "a dead link: {text}");
    assert!(
        text.contains(
            "The registry and its dashboard stop with the demo: run `ecco demo --keep-running` to keep them up and open the dashboard in a browser."
        ),
        "{text}"
    );
    assert!(
        text.contains("Registry: a temporary one on SQLite"),
        "{text}"
    );
    assert_eq!(done, "Done.");
}

#[test]
fn keep_running_gives_a_live_dashboard_and_stops_cleanly_on_sigterm() {
    let mut demo = Demo::start(&["demo", "--keep-running"]);
    let (line, seen) = demo.wait_for(|l| l.starts_with("Dashboard: "));
    let url = line
        .strip_prefix("Dashboard: ")
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(
        seen.iter()
            .any(|l| l.starts_with(&format!("Registry: {}  ", url.trim_end_matches('/')))),
        "{seen:#?}"
    );
    assert_eq!(http_get_status(&url), 200, "{url}");
    let status = demo.terminate();
    assert_eq!(status.code(), Some(0), "{status}");
    // A clean stop runs to the end of the demo.
    let rest = demo.rest();
    assert_eq!(rest.last().map(String::as_str), Some("Done."), "{rest:#?}");
}

#[test]
fn keep_running_json_gives_a_live_dashboard_and_stops_cleanly_on_sigterm() {
    let mut demo = Demo::start(&["--json", "demo", "--keep-running"]);
    let (line, _) = demo.wait_for(|l| l.starts_with('{'));
    let out: Value = serde_json::from_str(&line).unwrap();
    let url = out["dashboard"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        url,
        format!("{}/", out["registry"].as_str().unwrap()),
        "{out}"
    );
    assert_eq!(http_get_status(url), 200, "{url}");
    let status = demo.terminate();
    assert_eq!(status.code(), Some(0), "{status}");
}
