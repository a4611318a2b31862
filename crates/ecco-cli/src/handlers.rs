//! Handlers that let any language answer: `echo`, `exec` and `http`.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ecco::agent::{Call, Handler, HandlerError};
use ecco::node::Answer;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest answer read from a command or a URL (the node's answer limit).
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// A handler as configured: `echo`, `exec:CMD` or `http:URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spec {
    Echo,
    Exec(String),
    Http(String),
}

impl std::str::FromStr for Spec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        if s == "echo" {
            return Ok(Self::Echo);
        }
        if let Some(command) = s.strip_prefix("exec:") {
            if command.trim().is_empty() {
                bail!("handler `exec:` needs a command, as in exec:python3 handler.py");
            }
            return Ok(Self::Exec(command.to_owned()));
        }
        if let Some(url) = s.strip_prefix("http:") {
            let url = if url.starts_with("//") {
                format!("http:{url}")
            } else {
                url.to_owned()
            };
            let uri: hyper::Uri = url
                .parse()
                .with_context(|| format!("handler URL `{url}` is not a URL"))?;
            if uri.scheme_str() != Some("http") {
                bail!(
                    "handler URL `{url}` must start with http:// (put a TLS proxy in front for https)"
                );
            }
            return Ok(Self::Http(url));
        }
        bail!("unknown handler `{s}`: use echo, exec:<command> or http:<url>")
    }
}

/// What a command or a URL receives.
fn request_json(call: &Call) -> Value {
    json!({
        "capability": call.request.capability.as_str(),
        "payload": call.request.payload,
        "peer": call.peer.to_base58(),
    })
}

/// Builds the handler for `spec`, each call bounded by `timeout`.
pub(crate) fn build(spec: &Spec, timeout: Duration) -> Arc<dyn Handler> {
    match spec.clone() {
        Spec::Echo => Arc::new(|call: Call| async move {
            Ok::<_, HandlerError>(Answer::new(json!({ "echo": call.request.payload })))
        }),
        Spec::Exec(command) => Arc::new(Exec {
            command: Arc::from(command),
            timeout,
        }),
        Spec::Http(url) => Arc::new(Http {
            url: Arc::from(url),
            timeout,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }),
    }
}

/// Runs `sh -c <command>` per request: the request JSON on stdin, the answer
/// JSON on stdout; a non-zero exit or a timeout is a handler failure.
struct Exec {
    command: Arc<str>,
    timeout: Duration,
}

impl Handler for Exec {
    fn call(&self, call: Call) -> BoxFuture<'static, Result<Answer, HandlerError>> {
        let (command, timeout) = (self.command.clone(), self.timeout);
        Box::pin(async move {
            let input = request_json(&call).to_string();
            let run = run_command(&command, input);
            match tokio::time::timeout(timeout, run).await {
                Ok(result) => result,
                Err(_) => Err(HandlerError::failed(format!(
                    "the handler command did not finish within {timeout:?}"
                ))),
            }
        })
    }
}

async fn run_command(command: &str, input: String) -> Result<Answer, HandlerError> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A timed-out call drops the child: kill it rather than leave it running.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| HandlerError::failed(format!("cannot run the handler command: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is not an error.
        let _ = stdin.write_all(input.as_bytes()).await;
    }
    let mut stdout = Vec::new();
    if let Some(out) = child.stdout.take() {
        out.take(MAX_ANSWER as u64 + 1)
            .read_to_end(&mut stdout)
            .await
            .map_err(|e| HandlerError::failed(format!("reading the handler's output: {e}")))?;
    }
    let mut stderr = Vec::new();
    if let Some(err) = child.stderr.take() {
        let _ = err.take(4096).read_to_end(&mut stderr).await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| HandlerError::failed(format!("waiting for the handler command: {e}")))?;
    if !status.success() {
        let why = String::from_utf8_lossy(&stderr);
        return Err(HandlerError::failed(format!(
            "the handler command failed ({status}): {}",
            why.trim()
        )));
    }
    answer(&stdout)
}

/// Reads an answer body: JSON, at most `MAX_ANSWER` bytes.
fn answer(bytes: &[u8]) -> Result<Answer, HandlerError> {
    if bytes.len() > MAX_ANSWER {
        return Err(HandlerError::failed(format!(
            "the handler's answer exceeds {MAX_ANSWER} bytes"
        )));
    }
    serde_json::from_slice(bytes)
        .map(Answer::new)
        .map_err(|e| HandlerError::failed(format!("the handler's answer is not JSON: {e}")))
}

/// POSTs the request JSON to a URL; the response body (JSON) is the answer.
struct Http {
    url: Arc<str>,
    timeout: Duration,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<hyper::body::Bytes>>,
}

impl Handler for Http {
    fn call(&self, call: Call) -> BoxFuture<'static, Result<Answer, HandlerError>> {
        let (url, timeout, client) = (self.url.clone(), self.timeout, self.client.clone());
        Box::pin(async move {
            let body = request_json(&call).to_string();
            let request = hyper::Request::post(&*url)
                .header("content-type", "application/json")
                .body(Full::from(body))
                .map_err(|e| HandlerError::failed(format!("bad handler request: {e}")))?;
            let exchange = async {
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| HandlerError::failed(format!("POST {url}: {e}")))?;
                let status = response.status();
                let bytes = Limited::new(response.into_body(), MAX_ANSWER)
                    .collect()
                    .await
                    .map_err(|e| HandlerError::failed(format!("reading {url}: {e}")))?
                    .to_bytes();
                if !status.is_success() {
                    return Err(HandlerError::failed(format!(
                        "POST {url} answered {status}: {}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                    )));
                }
                answer(&bytes)
            };
            tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(HandlerError::failed(format!(
                        "POST {url} did not answer within {timeout:?}"
                    )))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_or_say_why_not() {
        assert_eq!("echo".parse::<Spec>().unwrap(), Spec::Echo);
        assert_eq!(
            "exec:python3 h.py".parse::<Spec>().unwrap(),
            Spec::Exec("python3 h.py".into())
        );
        assert_eq!(
            "http://127.0.0.1:8080/x".parse::<Spec>().unwrap(),
            Spec::Http("http://127.0.0.1:8080/x".into())
        );
        for bad in ["exec:", "http:ftp://x", "shout"] {
            assert!(bad.parse::<Spec>().is_err(), "{bad}");
        }
    }
}
