//! `ecco --json demo` without `--keep-running`: the shape of its report
//! (objects with named fields, not tuples a script must know the order of),
//! and the reputation table it shows, which must include every rating the
//! client reports as sent (it once showed a snapshot taken before the
//! registry had taken them in).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Far beyond the demo's ~15 s, for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// The report of one `ecco --json demo` run (loopback only, mDNS off),
/// shared by the tests of this file: a run takes a while.
fn demo() -> &'static Value {
    static REPORT: OnceLock<Value> = OnceLock::new();
    REPORT.get_or_init(run_demo)
}

fn run_demo() -> Value {
    let mut child = Command::new(common::bin())
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

/// The reputation table's row for the persona `name`.
fn row<'a>(table: &'a [Value], name: &str) -> &'a Value {
    table
        .iter()
        .find(|row| row["agent"] == name)
        .unwrap_or_else(|| panic!("no row for {name}: {table:?}"))
}

#[test]
fn the_reputation_table_counts_every_rating_sent() {
    let out = demo();
    let rated = out["rated"].as_u64().expect("rated count");
    assert!(rated > 0, "the client rated nothing: {out}");
    let table = out["reputation"].as_array().expect("reputation table");
    assert_eq!(table.len(), 6, "one row per agent: {table:?}");
    let counted: u64 = table
        .iter()
        .map(|row| row["ratings"].as_u64().unwrap())
        .sum();
    assert_eq!(
        counted, rated,
        "the table's rating counts must add up to the ratings sent: {table:?}"
    );
    // atlas answers correctly in every run and gets five stars: above the
    // 50-point prior once its ratings are in.
    let atlas = row(table, "atlas");
    assert!(atlas["score"].as_f64().unwrap() > 50.0, "atlas: {atlas:?}");
}

#[test]
fn reputation_rows_are_objects_with_named_fields() {
    let out = demo();
    let table = out["reputation"].as_array().expect("reputation table");
    for row in table {
        let mut fields: Vec<&str> = row
            .as_object()
            .unwrap_or_else(|| panic!("a row must be an object: {row}"))
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["agent", "health", "mean_rating", "peer", "ratings", "score"],
            "{row}"
        );
        assert!(
            row["peer"].as_str().unwrap().starts_with("12D3KooW"),
            "{row}"
        );
        assert!(!row["health"].as_str().unwrap().is_empty(), "{row}");
        let score = row["score"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&score), "{row}");
    }
    // Every persona that answers is rated, with the stars the demo gives
    // it; flaky never answers, so it has neither receipts nor ratings.
    for (name, stars) in [
        ("atlas", 5.0),
        ("globe", 5.0),
        ("scribe", 4.0),
        ("sloth", 3.0),
        ("contrarian", 1.0),
    ] {
        let row = row(table, name);
        assert!(row["ratings"].as_u64().unwrap() > 0, "{row}");
        let mean = row["mean_rating"].as_f64().unwrap();
        assert!((mean - stars).abs() < 1e-9, "{row}");
    }
    // `peer` is the id `offers` give, to join the two.
    for offer in out["offers"].as_array().unwrap() {
        let row = table
            .iter()
            .find(|row| row["peer"] == offer["peer"])
            .unwrap_or_else(|| panic!("no row for {offer}: {table:?}"));
        assert_eq!(row["agent"], offer["capability"]["name"], "{row} {offer}");
    }
    let flaky = row(table, "flaky");
    assert_eq!(flaky["ratings"], 0, "{flaky}");
    assert!(flaky["mean_rating"].is_null(), "{flaky}");
}

#[test]
fn run_outcomes_are_objects_with_named_fields() {
    let out = demo();
    let runs = out["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 14, "6 selections and 8 aggregations: {runs:?}");
    for run in runs {
        let outcomes = run["outcomes"].as_array().unwrap();
        assert!(!outcomes.is_empty(), "{run}");
        for o in outcomes {
            assert!(o.is_object(), "an outcome must be an object: {o}");
            assert!(o["agent"].is_string(), "{o}");
            match o["status"].as_str() {
                Some("ok") => assert!(o["latency_ms"].as_f64().unwrap() > 0.0, "{o}"),
                Some("failed" | "cancelled") => assert!(o["latency_ms"].is_null(), "{o}"),
                _ => panic!("unknown status: {o}"),
            }
        }
    }
    // Over all six agents with majority-vote, flaky fails and the five
    // others answer.
    let all = &runs[0]["outcomes"];
    let status = |name: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|o| o["agent"] == name)
            .map(|o| o["status"].clone())
            .unwrap_or_else(|| panic!("{name} missing: {all}"))
    };
    assert_eq!(status("flaky"), "failed");
    assert_eq!(status("atlas"), "ok");
}

#[test]
fn without_keep_running_the_report_gives_no_registry_nor_dashboard_url() {
    let out = demo();
    // The demo stopped its registry before printing: a link would be dead.
    for key in ["registry", "dashboard"] {
        assert!(out[key].is_null(), "{key}: {out}");
        assert!(
            out.as_object().unwrap().contains_key(key),
            "{key} is null, not absent: {out}"
        );
    }
}
