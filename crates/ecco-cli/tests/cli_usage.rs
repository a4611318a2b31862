//! The CLI's usage errors and messages: bad flag values exit 2 with one
//! line, verdicts and errors read as words, `--json` failures print JSON.
//! Agents run on loopback with mDNS off, joined by bootstrap addresses; every
//! command here that could start a node has `--no-mdns`.
//!
//! `ECCO_BIN` runs these tests against another build of `ecco`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Duration;

use serde_json::Value;

mod common;

use common::{agent, agent_with_logs, answer, ask_args, ecco, stderr};

/// Bad flag values and combinations: exit 2, one line quoting the value.
#[test]
fn usage_errors_exit_2_with_one_line() {
    let ask = |extra: &[&'static str]| {
        let mut args = vec!["ask", "x/y", "--no-mdns"];
        if !extra.contains(&"--input") {
            args.extend(["--input", "{}"]);
        }
        args.extend_from_slice(extra);
        args
    };
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (ask(&["--input", "hello"]), &["'hello'", "JSON"]),
        (ask(&["--select", "foo"]), &["'foo'", "--select"]),
        (ask(&["--select", "top-n:0"]), &["'top-n:0'", "positive"]),
        (ask(&["--aggregate", "bogus"]), &["'bogus'", "--aggregate"]),
        (ask(&["--where", "price<<3"]), &["'price<<3'", "at byte 6"]),
        (ask(&["--timeout", "3"]), &["'3'", "--timeout", "duration"]),
        (ask(&["--timeout", "0s"]), &["'0s'", "--timeout"]),
        (
            ask(&["--timeout", "1s", "--wait", "5s"]),
            &["--wait 5s", "--timeout 1s"],
        ),
        (
            ask(&["--timeout", "2s", "--wait", "2s"]),
            &["--wait 2s", "--timeout 2s"],
        ),
        (
            ask(&["--select", "top-n:1", "--min-agents", "2"]),
            &["--select top-n:1", "--min-agents 2"],
        ),
        (ask(&["--prefer", "a b"]), &["'a b'", "--prefer"]),
        (
            ask(&["--feature", "a", "--prefer", "a"]),
            &["--feature a", "--prefer a"],
        ),
        (
            vec!["discover", "x/y", "--no-mdns", "--wait", "3"],
            &["'3'", "--wait"],
        ),
        (
            vec!["discover", "x/y", "--no-mdns", "--where", "price<<3"],
            &["'price<<3'"],
        ),
        (
            vec!["discover", "x/y", "--no-mdns", "--bootstrap", "nowhere"],
            &["'nowhere'", "multiaddr"],
        ),
        (
            vec!["discover", "text/* +x", "--no-mdns"],
            &["'text/* +x'", "--feature"],
        ),
        (
            vec!["agent", "--no-mdns", "--listen", "nowhere"],
            &["'nowhere'", "--listen"],
        ),
    ];
    for (args, expected) in cases {
        let out = ecco(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(lines[0].starts_with("error: "), "{args:?}: {err}");
        for e in expected {
            assert!(err.contains(e), "{args:?}: {e} not in {err}");
        }
    }
}

/// Each `--feature` is one feature name (a leading `+` is dropped) and each
/// `--where` one condition; errors quote what was typed.
#[test]
fn features_and_conditions_are_checked_one_by_one() {
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["--feature", "fast price>1"],
            &["'fast price>1'", "--where"],
        ),
        (&["--feature", "+x y"], &["'+x y'", "at byte 2"]),
        (
            &["--where", "price<=1 region==eu"],
            &["'price<=1 region==eu'", "unexpected"],
        ),
        (&["--where", "+cited"], &["'+cited'", "--feature cited"]),
        (
            &["--where", "version ^1 price<3"],
            &["'version ^1 price<3'", "more than one"],
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["discover", "text/*", "--no-mdns", "--wait", "0s"];
        args.extend_from_slice(flags);
        let out = ecco(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(!err.contains("++"), "{flags:?}: {err}");
        for e in expected {
            assert!(err.contains(e), "{flags:?}: {e} not in {err}");
        }
    }

    let cited = agent("text/upper a@1.0.0 +cited price=2", "echo", None);
    let found = |flags: &[&str]| {
        let mut args = vec!["--json", "discover", "text/*", "--no-mdns", "--wait", "1s"];
        args.extend(["--bootstrap", &cited.addr]);
        args.extend_from_slice(flags);
        let out = ecco(&args);
        assert!(out.status.success(), "{flags:?}: {}", stderr(&out));
        let found: Value = serde_json::from_slice(&out.stdout).unwrap();
        found.as_array().unwrap().len()
    };
    assert_eq!(found(&["--feature", "+cited"]), 1);
    assert_eq!(found(&["--feature", "cited", "--where", "price>1"]), 1);
    assert_eq!(found(&["--where", "price<=1"]), 0);
    assert_eq!(found(&["--where", "version ^1"]), 1);
}

/// `--timeout` alone leaves time to ask: the default `--wait` is at most
/// half of it, where it used to take the whole deadline to look for three
/// agents when one exists.
#[test]
fn a_short_timeout_leaves_time_to_ask() {
    let quick = agent("calc/add q@1.0.0", &answer("4"), None);
    let out = ecco(&[
        "--json",
        "ask",
        "calc/add",
        "--input",
        "[2, 2]",
        "--timeout",
        "2s",
        "--no-mdns",
        "--bootstrap",
        &quick.addr,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answered: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answered["consensus"]["answer"], 4, "{answered}");
}

/// The human report says the verdict in words, not as a Rust value.
#[test]
fn verdicts_read_as_words() {
    let paris = agent("qa/capital p@1.0.0", &answer("\"Paris\""), None);
    let _lyon = agent("qa/capital l@1.0.0", &answer("\"Lyon\""), Some(&paris));
    let out = ecco(&[
        "ask",
        "qa/capital",
        "--input",
        "{}",
        "--select",
        "all",
        "--candidates",
        "2",
        "--aggregate",
        "consensus-threshold:0.6",
        "--no-mdns",
        "--bootstrap",
        &paris.addr,
    ]);
    let report = String::from_utf8_lossy(&out.stdout);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{report}{err}");
    assert!(
        report.contains("verdict     no consensus (agreement 50%, threshold 60%)"),
        "{report}"
    );
    assert!(
        report.contains("the largest group is 1 of the 2 answer(s)"),
        "{report}"
    );
    assert!(!report.contains("NoConsensus"), "{report}");
    assert!(err.contains("no consensus (agreement 50%"), "{err}");

    // One each: majority-vote answers, and says a tie-break chose.
    let tie = |json: bool| {
        let mut args = vec!["ask", "qa/capital", "--input", "{}", "--select", "all"];
        args.extend([
            "--candidates",
            "2",
            "--aggregate",
            "majority-vote",
            "--no-mdns",
        ]);
        args.extend(["--bootstrap", &paris.addr]);
        if json {
            args.insert(0, "--json");
        }
        ecco(&args)
    };
    let out = tie(false);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    assert!(
        report.contains("verdict     decided by tie-break (another answer had as much support)"),
        "{report}"
    );
    let out = tie(true);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["consensus"]["tied"], true, "{json}");

    let broken = agent("calc/div b@1.0.0", "exec:exit 1", None);
    let mut args = ask_args("calc/div", "[1, 0]", &broken);
    args.extend(["--wait", "1s"]);
    let out = ecco(&args);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("verdict     all failed"), "{report}");
    assert!(!report.contains("AllFailed"), "{report}");
}

/// With `--json`, a failure with no report prints a JSON error on stdout
/// too; the human line stays on stderr and the exit stays non-zero.
#[test]
fn json_failures_print_json() {
    let upper = agent("text/upper u@1.0.0", "echo", None);
    let out = ecco(&[
        "--json",
        "ask",
        "text/nothing",
        "--input",
        "\"hi\"",
        "--wait",
        "500ms",
        "--no-mdns",
        "--bootstrap",
        &upper.addr,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.trim_end().ends_with("are required"), "{err}");
    let error: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON on stdout ({e}): {err}"));
    assert_eq!(error["kind"], "no_match", "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("0 agent(s) match")
    );

    for args in [
        &["--json", "ask", "x/y", "--no-mdns", "--input", "hello"][..],
        &["--json", "discover", "x/y", "--no-mdns", "--where", "a<<1"],
        &[
            "--json",
            "ask",
            "x/y",
            "--no-mdns",
            "--input",
            "1",
            "--timeout",
            "1s",
            "--wait",
            "2s",
        ],
    ] {
        let out = ecco(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let error: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: no JSON on stdout ({e})"));
        assert_eq!(error["kind"], "usage", "{args:?}: {error}");
    }
}

/// A bad swarm key file is explained, not named by a Rust variant.
#[test]
fn a_bad_swarm_key_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bad.key");
    std::fs::write(&key, "not a key\n").unwrap();
    let out = ecco(&[
        "discover",
        "x/y",
        "--no-mdns",
        "--swarm-key",
        key.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(!err.contains("InvalidKeyFile"), "{err}");
    assert!(err.contains("not a swarm key file"), "{err}");
}

/// An error whose message includes its cause does not repeat it.
#[test]
fn a_cause_is_said_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = ecco(&[
        "registry",
        "serve",
        "--listen",
        &addr,
        "--database-url",
        "sqlite::memory:",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert!(line.contains(&addr), "{err}");
    let said = |what: &str| line.matches(what).count();
    assert!(said("in use") <= 1 && said("(os error") == 1, "{line}");
    assert!(!line.trim_end().ends_with(':'), "{line}");
}

/// The first agent of a mesh has no peer to bootstrap from: libp2p's
/// Kademlia warns about it, which is noise at the default log level.
#[test]
fn the_first_agent_does_not_warn_about_bootstrapping() {
    let mut first = agent_with_logs("text/upper f@1.0.0", "echo", None);
    std::thread::sleep(Duration::from_millis(1500));
    let logs = first.stop_and_read_logs();
    assert!(!logs.contains("Failed to trigger bootstrap"), "{logs}");
}
