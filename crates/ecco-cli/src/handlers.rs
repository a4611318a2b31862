//! Handlers that let any language answer: `echo`, `exec` and `http`.

use std::path::{Path, PathBuf};
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
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStderr, ChildStdout};

/// Largest answer read from a command or a URL (the node's answer limit).
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// A handler as configured: `echo`, `exec:CMD` or `http:URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spec {
    Echo,
    /// A shell command, run in `dir` (the current directory when `None`).
    Exec {
        command: String,
        dir: Option<PathBuf>,
    },
    Http(String),
}

impl Spec {
    /// Runs an `exec` command in `dir`: a config file's handlers run where
    /// the file is, so that `exec:python3 handler.py` finds the script
    /// beside it wherever `ecco agent` was started.
    #[must_use]
    pub(crate) fn in_dir(self, dir: &Path) -> Self {
        match self {
            Self::Exec { command, .. } => Self::Exec {
                command,
                dir: Some(dir.to_owned()),
            },
            other => other,
        }
    }
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Echo => f.write_str("echo"),
            Self::Exec { command, dir: None } => write!(f, "exec:{command}"),
            Self::Exec {
                command,
                dir: Some(dir),
            } => write!(f, "exec:{command} in {}", dir.display()),
            Self::Http(url) => write!(f, "http:{url}"),
        }
    }
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
            return Ok(Self::Exec {
                command: command.to_owned(),
                dir: None,
            });
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
        Spec::Exec { command, dir } => Arc::new(Exec {
            command: Arc::from(command),
            dir: dir.map(Arc::from),
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
    dir: Option<Arc<Path>>,
    timeout: Duration,
}

impl Handler for Exec {
    fn call(&self, call: Call) -> BoxFuture<'static, Result<Answer, HandlerError>> {
        let (command, dir, timeout) = (self.command.clone(), self.dir.clone(), self.timeout);
        Box::pin(async move {
            let input = request_json(&call).to_string();
            run(&command, dir.as_deref(), input, timeout).await
        })
    }
}

async fn run(
    command: &str,
    dir: Option<&Path>,
    input: String,
    timeout: Duration,
) -> Result<Answer, HandlerError> {
    match tokio::time::timeout(timeout, run_command(command, dir, input)).await {
        Ok(result) => result,
        // Public: a deadline gives nothing away and tells the asker why.
        Err(_) => Err(HandlerError::failed(format!(
            "the handler command did not finish within {timeout:?}"
        ))
        .public()),
    }
}

/// The end of a failing command's stderr that its error message quotes (the
/// end: where a traceback says what went wrong).
const STDERR_KEPT: usize = 4096;

async fn run_command(
    command: &str,
    dir: Option<&Path>,
    input: String,
) -> Result<Answer, HandlerError> {
    let mut shell = tokio::process::Command::new("sh");
    if let Some(dir) = dir {
        shell.current_dir(dir);
    }
    let mut child = shell
        .arg("-c")
        .arg(command)
        // The identity's passphrase is the agent's secret, not the handler's.
        .env_remove(crate::passphrase::ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a kill reaches a whole pipeline.
        .process_group(0)
        // The shell at least, should the group kill below not happen.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| HandlerError::failed(format!("cannot run the handler command: {e}")))?;
    // Declared after the child, so dropped before it (a timeout or a
    // cancelled call drops this future): the group is killed while the shell
    // is not yet reaped, so its id cannot have been reused.
    let mut group = Group(child.id().and_then(|id| i32::try_from(id).ok()));
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(HandlerError::failed("the handler command has no pipes"));
    };
    // Fed while its output is read: a command may write before it has read
    // all of its input (cat), and block when nobody reads.
    let feed = async move {
        // A command that does not read its input is not an error.
        let _ = stdin.write_all(input.as_bytes()).await;
        // Dropping stdin closes it: the command sees the end of its input.
    };
    let finish = async {
        let (stdout, stderr) = tokio::try_join!(read_answer(stdout), read_tail(stderr))?;
        let status = child
            .wait()
            .await
            .map_err(|e| HandlerError::failed(format!("waiting for the handler command: {e}")))?;
        Ok::<_, HandlerError>((stdout, stderr, status))
    };
    tokio::pin!(finish);
    // Done when the output is: input left unread (a child of the command may
    // keep stdin open) must not hold us; dropping the feed closes stdin.
    let (stdout, stderr, status) = tokio::select! {
        done = &mut finish => done,
        () = feed => finish.await,
    }?;
    // The shell is reaped, so its id is free for reuse: no kill by it now.
    group.0 = None;
    if !status.success() {
        let why = String::from_utf8_lossy(&stderr);
        return Err(HandlerError::failed(format!(
            "the handler command failed ({status}): {}",
            why.trim()
        )));
    }
    answer(&stdout)
}

/// Kills a command's process group when dropped before the command is reaped.
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(id) = self.0 {
            // Already gone is fine.
            let _ = killpg(Pid::from_raw(id), Signal::SIGKILL);
        }
    }
}

/// Reads stdout to its end, failing as soon as it exceeds `MAX_ANSWER`.
async fn read_answer(stdout: ChildStdout) -> Result<Vec<u8>, HandlerError> {
    let mut bytes = Vec::new();
    // One byte over the limit tells an oversized answer from a full one.
    stdout
        .take(MAX_ANSWER as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| HandlerError::failed(format!("reading the handler's output: {e}")))?;
    if bytes.len() > MAX_ANSWER {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads stderr to its end, keeping its last `STDERR_KEPT` bytes: a command
/// must never block on a full stderr pipe.
async fn read_tail(mut stderr: ChildStderr) -> Result<Vec<u8>, HandlerError> {
    let mut kept = Vec::new();
    let mut chunk = vec![0; 16 * 1024];
    // A read error only costs the error message its details.
    while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
        kept.extend_from_slice(&chunk[..n]);
        if kept.len() > STDERR_KEPT {
            kept.drain(..kept.len() - STDERR_KEPT);
        }
    }
    Ok(kept)
}

fn too_large() -> HandlerError {
    HandlerError::failed(format!("the handler's answer exceeds {MAX_ANSWER} bytes")).public()
}

/// Reads an answer body: JSON, at most `MAX_ANSWER` bytes.
fn answer(bytes: &[u8]) -> Result<Answer, HandlerError> {
    if bytes.len() > MAX_ANSWER {
        return Err(too_large());
    }
    serde_json::from_slice(bytes)
        .map(Answer::new)
        .map_err(|e| HandlerError::failed(format!("the handler's answer is not JSON: {e}")))
}

/// POSTs the request JSON to a URL; the response body (JSON) is the answer.
/// Failures reach the requester without the URL: it is the operator's
/// internal address (the operator's log has the failure too).
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
                    .map_err(|e| HandlerError::failed(format!("the HTTP handler failed: {e}")))?;
                let status = response.status();
                let bytes = Limited::new(response.into_body(), MAX_ANSWER)
                    .collect()
                    .await
                    .map_err(|e| {
                        HandlerError::failed(format!("reading the HTTP handler's answer: {e}"))
                    })?
                    .to_bytes();
                if !status.is_success() {
                    return Err(HandlerError::failed(format!(
                        "the HTTP handler answered {status}: {}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                    )));
                }
                answer(&bytes)
            };
            tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(HandlerError::failed(format!(
                        "the HTTP handler did not answer within {timeout:?}"
                    ))
                    .public())
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Far beyond what each command needs: reaching it means a deadlock.
    const GENEROUS: Duration = Duration::from_secs(20);

    async fn exec(command: &str, input: &str) -> Result<Value, String> {
        run(command, None, input.to_owned(), GENEROUS)
            .await
            .map(|a| a.result)
            .map_err(|e| e.message)
    }

    #[tokio::test]
    async fn a_handler_may_write_much_to_stderr() {
        let answer = exec("head -c 200000 /dev/zero >&2; echo 42", "{}").await;
        assert_eq!(answer, Ok(json!(42)));
    }

    #[tokio::test]
    async fn cat_echoes_a_large_request() {
        let input = json!({ "payload": "x".repeat(300_000) }).to_string();
        let answer = exec("cat", &input).await;
        assert_eq!(answer, Ok(serde_json::from_str::<Value>(&input).unwrap()));
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused_at_once() {
        // The sleep keeps the pipes open: only the size check ends it early.
        let error = exec("head -c 9000000 /dev/zero; sleep 30", "{}")
            .await
            .unwrap_err();
        assert!(error.contains("exceeds"), "{error}");
    }

    /// Whether `pid` runs (a zombie does not).
    fn running(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| !s.starts_with(" Z"))
        })
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("sleep.pid");
        // The inner shell records its pid, then becomes the sleep.
        let command = format!(
            "sh -c 'echo $$ > {}; exec sleep 30' | cat",
            pid_file.display()
        );
        let error = run(&command, None, "{}".into(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            error.message.contains("did not finish"),
            "{}",
            error.message
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let pid = pid.trim();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !running(pid),
            "the pipeline's sleep {pid} outlived the timeout"
        );
    }

    #[tokio::test]
    async fn an_exec_handler_runs_in_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("answer.json"), "{\"here\": true}").unwrap();
        let answer = run("cat answer.json", Some(dir.path()), "{}".into(), GENEROUS)
            .await
            .map(|a| a.result);
        assert_eq!(answer.ok(), Some(json!({"here": true})));
        let spec = "exec:cat answer.json"
            .parse::<Spec>()
            .unwrap()
            .in_dir(dir.path());
        assert_eq!(
            spec.to_string(),
            format!("exec:cat answer.json in {}", dir.path().display())
        );
    }

    #[test]
    fn specs_parse_or_say_why_not() {
        assert_eq!("echo".parse::<Spec>().unwrap(), Spec::Echo);
        assert_eq!(
            "exec:python3 h.py".parse::<Spec>().unwrap(),
            Spec::Exec {
                command: "python3 h.py".into(),
                dir: None
            }
        );
        assert_eq!(
            "http://127.0.0.1:8080/x".parse::<Spec>().unwrap(),
            Spec::Http("http://127.0.0.1:8080/x".into())
        );
        for bad in ["exec:", "http:ftp://x", "shout"] {
            assert!(bad.parse::<Spec>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_http_handler_failure_does_not_tell_the_requester_its_url() {
        use tokio::io::AsyncWriteExt as _;
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut conn, _) = server.accept().await.unwrap();
            let mut head = vec![0u8; 64 * 1024];
            let _ = conn.read(&mut head).await;
            let body = "database down";
            let reply = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
        });
        let url = format!("http://127.0.0.1:{port}/internal/llm");
        let handler = build(&Spec::Http(url), GENEROUS);
        let call = Call {
            peer: ecco::PeerId::random(),
            request: ecco::node::Request::new("x/y".parse().unwrap(), json!(1)),
        };
        let e = handler.call(call).await.unwrap_err();
        assert!(e.message.contains("answered 500"), "{}", e.message);
        assert!(e.message.contains("database down"), "{}", e.message);
        assert!(
            !e.message.contains("internal/llm") && !e.message.contains(&port.to_string()),
            "the URL leaks: {}",
            e.message
        );
    }
}
