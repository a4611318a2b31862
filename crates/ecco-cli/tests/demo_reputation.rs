//! `ecco --json demo`: the reputation table it shows must include every
//! rating the client reports as sent (it once showed a snapshot taken
//! before the registry had taken them in).

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ECCO: &str = env!("CARGO_BIN_EXE_ecco");

/// Far beyond the demo's ~15 s, for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// Runs `ecco --json demo` (loopback only, mDNS off) and parses its line.
fn demo() -> Value {
    let mut child = Command::new(ECCO)
        .args(["--json", "demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read on the side, so that a long line cannot fill the pipe and stall
    // the demo.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).unwrap();
        out
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = reader.join().unwrap();
    assert!(status.success(), "demo failed: {status}; stdout: {out}");
    let line = out.lines().find(|l| l.starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("demo output {out:?}: {e}"))
}

#[test]
fn the_reputation_table_counts_every_rating_sent() {
    let out = demo();
    let rated = out["rated"].as_u64().expect("rated count");
    assert!(rated > 0, "the client rated nothing: {out}");
    let table = out["reputation"].as_array().expect("reputation table");
    assert_eq!(table.len(), 6, "one row per agent: {table:?}");
    // Rows are [name, health, score, feedback count].
    let counted: u64 = table.iter().map(|row| row[3].as_u64().unwrap()).sum();
    assert_eq!(
        counted, rated,
        "the table's feedback counts must add up to the ratings sent: {table:?}"
    );
    // atlas answers correctly in every run and gets five stars: above the
    // 50-point prior once its ratings are in.
    let atlas = table.iter().find(|row| row[0] == "atlas").unwrap();
    assert!(atlas[2].as_f64().unwrap() > 50.0, "atlas: {atlas:?}");
}
