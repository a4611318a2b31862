//! Helpers shared by the CLI's process tests.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::Child;

use serde_json::Value;

/// Reads the JSON line a `--json` command prints once it has started.
/// The child's stdout must be piped; it is taken.
pub(crate) fn start_line(child: &mut Child) -> Value {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("start line {line:?}: {e}"))
}
