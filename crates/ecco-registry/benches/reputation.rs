//! Reputation at scale: how long recomputing every agent's reputation takes
//! as feedback grows. The registry recomputes from all stored feedback
//! (`Store::reports`, then `reputation::Book::compute`) and spaces the runs
//! to at least ten times the last one's duration, so this time sets how
//! stale the reputations may get.
//!
//! ```sh
//! cargo bench -p ecco-registry --bench reputation
//! # smaller sizes only: ECCO_BENCH_QUICK=1 cargo bench -p ecco-registry --bench reputation
//! ```
//!
//! Each size's reports come from one formula, generated in memory for the
//! formula alone and by the database itself (`generate_series`, a recursive
//! CTE) for the stores: ids as long as peer ids (52 characters), one rater
//! per ten reports, 1,000 agents, four in
//! five successes, a star rating on one in three, ages spread over 90 days.
//! The baseline, in the same run: one pass that groups the reports by agent
//! and sums their outcomes, the least any formula over all reports costs.
//! Backends: SQLite on a temporary file, then PostgreSQL
//! (`ECCO_TEST_POSTGRES_URL`) in a database created for the run and dropped.
#![allow(clippy::print_stdout, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ecco_registry::reputation::{Book, Params, Report};
use ecco_registry::store::Store;

mod common;
use common::fresh_postgres;

/// Runs per measurement; the table gives the median.
const RUNS: usize = 3;
const AGENTS: u64 = 1_000;
const SPAN_MS: u64 = 90 * 24 * 3600 * 1000;
const NOW_MS: i64 = 1_800_000_000_000;

/// Report `i` of `n`; the stores' SQL below writes the same.
fn report(i: u64, n: u64) -> Report {
    Report {
        rater: format!("12D3KooWR{:043}", i % raters(n)),
        agent: format!("12D3KooWA{:043}", (i * 7919) % AGENTS),
        success: !i.is_multiple_of(5),
        rating: i.is_multiple_of(3).then(|| (1 + i % 5) as u8),
        at_ms: NOW_MS - ((i * 7777) % SPAN_MS) as i64,
    }
}

fn raters(n: u64) -> u64 {
    (n / 10).max(1)
}

/// The columns of [`report`], as SQL over a column `i`; `id` writes a
/// letter and a number as a peer id's 52 characters in the backend's dialect.
fn columns(n: u64, id: fn(char, &str) -> String) -> String {
    format!(
        "{}, {}, 'i-' || i, 'llm/chat', \
         CASE WHEN i % 5 = 0 THEN 0 ELSE 1 END, 100, \
         CASE WHEN i % 3 = 0 THEN 1 + i % 5 END, {NOW_MS} - ((i * 7777) % {SPAN_MS})",
        id('R', &format!("i % {}", raters(n))),
        id('A', &format!("(i * 7919) % {AGENTS}")),
    )
}

const INSERT: &str =
    "INSERT INTO feedback (rater, agent, interaction, capability, success, latency_ms, rating, at)";

/// The least any formula over all reports costs: one pass, grouped by agent.
fn baseline(reports: &[Report]) -> usize {
    let mut agents: HashMap<&str, (u64, u64)> = HashMap::new();
    for r in reports {
        let e = agents.entry(r.agent.as_str()).or_default();
        e.0 += 1;
        e.1 += u64::from(r.success);
    }
    agents.len()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let started = Instant::now();
    let out = f();
    (started.elapsed(), out)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let quick = std::env::var("ECCO_BENCH_QUICK").is_ok_and(|v| v == "1");
    let sizes: &[u64] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    println!("# Reputation at scale ({RUNS} runs each, medians)\n");
    println!("## The formula (`Book::compute`), in memory\n");
    println!("| reports | raters | baseline: one grouping pass | `Book::compute` | × baseline |");
    println!("|---|---|---|---|---|");
    for &n in sizes {
        let reports: Vec<Report> = (0..n).map(|i| report(i, n)).collect();
        let mut base = Vec::new();
        let mut full = Vec::new();
        for _ in 0..RUNS {
            let (t, agents) = time(|| baseline(&reports));
            assert_eq!(agents as u64, AGENTS.min(n));
            base.push(t);
            let (t, book) = time(|| Book::compute(&reports, NOW_MS, Params::default()));
            assert_eq!(book.top(usize::MAX).len() as u64, AGENTS.min(n));
            full.push(t);
        }
        let (base, full) = (median(base), median(full));
        println!(
            "| {n} | {} | {} ms | {} ms | {:.1} |",
            raters(n),
            ms(base),
            ms(full),
            full.as_secs_f64() / base.as_secs_f64()
        );
    }

    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = format!("sqlite:{}", dir.path().join("reputation.db").display());
    let postgres = std::env::var("ECCO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    println!("\n## Reading the feedback (`Store::reports`), then the formula\n");
    println!(
        "| backend | reports | `Store::reports` | `Book::compute` | a recompute in all | spacing (10 ×) |"
    );
    println!("|---|---|---|---|---|---|");
    rt.block_on(async {
        stores("SQLite", &sqlite, sizes, |n| {
            format!(
                "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < {n}) \
                 {INSERT} SELECT {} FROM s",
                columns(n, |c, x| format!("'12D3KooW{c}' || printf('%043d', {x})"))
            )
        })
        .await;
        match fresh_postgres(&postgres, "ecco_reputation").await {
            Ok((url, admin, name)) => {
                stores("PostgreSQL", &url, sizes, |n| {
                    format!(
                        "{INSERT} SELECT {} FROM generate_series(0::bigint, {}::bigint) AS i",
                        columns(n, |c, x| format!(
                            "'12D3KooW{c}' || lpad(({x})::text, 43, '0')"
                        )),
                        n - 1
                    )
                })
                .await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                    .execute(&admin)
                    .await;
            }
            Err(e) => println!("\nPostgreSQL at {postgres} unreachable ({e}): skipped"),
        }
    });
}

/// The SQL wrote exactly what [`report`] gives, in any order.
fn same_reports(mut read: Vec<Report>, n: u64) {
    let mut expected: Vec<Report> = (0..n).map(|i| report(i, n)).collect();
    let key = |r: &Report| {
        (
            r.rater.clone(),
            r.agent.clone(),
            r.at_ms,
            r.success,
            r.rating,
        )
    };
    read.sort_by_cached_key(key);
    expected.sort_by_cached_key(key);
    assert!(read == expected, "the SQL writes what the formula reads");
}

/// For each size: fills the store's feedback table with `insert(n)` (the
/// table emptied first), then times reading it and the formula.
async fn stores(name: &str, url: &str, sizes: &[u64], insert: impl Fn(u64) -> String) {
    let store = Store::connect(url).await.expect("the store opens");
    let pool = sqlx::AnyPool::connect(url)
        .await
        .expect("a second connection for the bulk insert");
    for &n in sizes {
        sqlx::query("DELETE FROM feedback")
            .execute(&pool)
            .await
            .expect("the table empties");
        sqlx::query(&insert(n))
            .execute(&pool)
            .await
            .expect("the reports are inserted");
        let mut read = Vec::new();
        let mut computed = Vec::new();
        for run in 0..RUNS {
            let started = Instant::now();
            let reports = store.reports().await.expect("the reports read");
            read.push(started.elapsed());
            if run == 0 {
                same_reports(reports.clone(), n);
            }
            let (t, _) = time(|| Book::compute(&reports, NOW_MS, Params::default()));
            computed.push(t);
        }
        let (read, computed) = (median(read), median(computed));
        let all = read + computed;
        println!(
            "| {name} | {n} | {} ms | {} ms | {} ms | {:.1} s |",
            ms(read),
            ms(computed),
            ms(all),
            all.as_secs_f64() * 10.0
        );
    }
    pool.close().await;
    store.close().await;
}
