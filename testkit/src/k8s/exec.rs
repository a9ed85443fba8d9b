//! `pods/exec` over WebSocket, as kube-apiserver and the kubelet serve it (KEP-4006,
//! "Transition from SPDY to WebSockets"; k8s.io/apimachinery pkg/util/remotecommand and
//! k8s.io/client-go tools/remotecommand websocket.go):
//!
//! * subprotocols `v5.channel.k8s.io` (preferred) and `v4.channel.k8s.io`;
//! * binary frames whose first byte is the channel: 0 stdin, 1 stdout, 2 stderr, 3 error (a v1
//!   Status once the command ends), 4 resize (read and ignored); in v5 the client's `[255, 0]`
//!   closes stdin (the process reads EOF);
//! * a failed precondition (pod missing, not running, node unreachable, bad parameters) answers a
//!   Status before any upgrade.
//!
//! The command runs in the pod's sandbox: `ip netns exec <netns> env -i PATH=… HOME=<home>
//! HOSTNAME=<pod> <container env> <command…>`, cwd = home. Like a container runtime's exec, the
//! command's descendants are not killed when the stream ends: a daemon started with setsid lives on
//! until the pod ends.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::objects;
use super::routes::{lock, not_found, refuse, status, Call, Shared};
use super::Sandbox;

const PROTOCOL_V5: &str = "v5.channel.k8s.io";
const PROTOCOL_V4: &str = "v4.channel.k8s.io";
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// How long output is still read after the command exits, when a process it started keeps the
/// output pipe open (a backgrounded child that did not redirect).
const OUTPUT_GRACE: Duration = Duration::from_millis(300);

struct ExecRequest {
    argv: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn flag(call: &Call, name: &str) -> bool {
    matches!(call.param(name), Some("1" | "true" | "True"))
}

/// Picks the subprotocol from the client's offers (one or more headers, comma-separated).
fn negotiate(call: &Call) -> Result<&'static str, Vec<String>> {
    let offered: Vec<String> = call
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    for supported in [PROTOCOL_V5, PROTOCOL_V4] {
        if offered.iter().any(|p| p == supported) {
            return Ok(supported);
        }
    }
    Err(offered)
}

/// The container's environment: `value`s and the `fieldRef`s exec can resolve.
fn container_env(pod: &Value, container: &Value) -> Vec<String> {
    let mut env = Vec::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let Some(name) = var["name"].as_str() else {
            continue;
        };
        let value = if let Some(v) = var["value"].as_str() {
            Some(v.to_string())
        } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            objects::pod_field(pod, path)
        } else {
            None
        };
        env.push(format!("{name}={}", value.unwrap_or_default()));
    }
    env
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b)) {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', "'\\''"))
}

pub async fn handle(state: Shared, call: &Call, namespace: &str, name: &str, mut req: Request) -> Response {
    let exec = ExecRequest {
        argv: call.params("command"),
        stdin: flag(call, "stdin"),
        stdout: flag(call, "stdout"),
        stderr: flag(call, "stderr"),
        tty: flag(call, "tty"),
    };
    if exec.argv.is_empty() {
        return refuse(&state, call, 400, "BadRequest", "you must specify at least 1 command");
    }
    if !(exec.stdin || exec.stdout || exec.stderr) {
        return refuse(&state, call, 400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr");
    }
    // The pod, its container and sandbox, checked as the apiserver and kubelet check them.
    let (pod, sandbox) = {
        let s = lock(&state);
        let Some(entry) = s.pods.get(&(namespace.to_string(), name.to_string())) else {
            return not_found("pods", name);
        };
        let pod = entry.stored.value.clone();
        let Some(node) = entry.node_name().map(str::to_string) else {
            return status(400, "BadRequest", &format!("pod {name} does not have a host assigned"), None);
        };
        if entry.phase() != "Running" {
            let message = format!("pod {name} is not running: phase {}", entry.phase());
            return status(400, "BadRequest", &message, None);
        }
        if !s.node_ready(&node) {
            return status(500, "InternalError", &format!("error dialing backend: dial tcp {node}:10250: connect: no route to host"), None);
        }
        let sandbox = entry.sandbox.and_then(|i| s.sandboxes.get(i)).map(|slot| slot.sandbox.clone());
        let Some(sandbox) = sandbox else {
            return status(400, "BadRequest", &format!("pod {name} has no sandbox: it was added for accounting only"), None);
        };
        (pod, sandbox)
    };
    let Some(container) = objects::container(&pod, call.param("container")).cloned() else {
        let message = format!("container {} is not valid for pod {name}", call.param("container").unwrap_or(""));
        return status(400, "BadRequest", &message, None);
    };
    let is_websocket = call.headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = call.headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| is_websocket).cloned() else {
        return refuse(
            &state,
            call,
            400,
            "BadRequest",
            "Upgrade request required: only WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) is emulated, not SPDY",
        );
    };
    let protocol = match negotiate(call) {
        Ok(p) => p,
        Err(offered) => {
            let message = format!("unable to upgrade connection: requested protocol(s) are not supported: {offered:?}; supports [\"{PROTOCOL_V5}\" \"{PROTOCOL_V4}\"]");
            return refuse(&state, call, 400, "BadRequest", &message);
        }
    };
    let mut env = vec![PATH.to_string(), format!("HOME={}", sandbox.home.display()), format!("HOSTNAME={name}")];
    if exec.tty {
        env.push("TERM=xterm".into());
    }
    env.extend(container_env(&pod, &container));
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(&mut req).await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        run_session(ws, &sandbox, env, exec, protocol == PROTOCOL_V5).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(axum::body::Body::empty())
        .expect("101 response")
}

/// Resolves the command as the runtime does before starting it: a path (relative to the working
/// directory) or a name searched in the container's PATH.
fn find_executable(command: &str, cwd: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if command.contains('/') {
        let path = cwd.join(command);
        return if executable(&path) { Ok(()) } else { Err(format!("exec: \"{command}\": stat {command}: no such file or directory")) };
    }
    let dirs = PATH.trim_start_matches("PATH=").split(':');
    if dirs.map(|d| std::path::Path::new(d).join(command)).any(|p| executable(&p)) {
        Ok(())
    } else {
        Err(format!("exec: \"{command}\": executable file not found in $PATH"))
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

async fn pump(mut source: impl AsyncRead + Unpin, channel: u8, out: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match source.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(frame(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The v1 Status the error channel carries when the command ends.
fn exit_status(code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {}, "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command [{code}]: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
    })
}

async fn run_session<S>(ws: WebSocketStream<S>, sandbox: &Sandbox, env: Vec<String>, exec: ExecRequest, v5: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut incoming) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        // A normal closure (1000): client-go reads it as the end of every stream; a close frame
        // without a code (1005) is an error to it.
        let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        let _ = sink.send(Message::Close(Some(close))).await;
        let _ = sink.close().await;
    });

    if let Err(message) = find_executable(&exec.argv[0], &sandbox.home) {
        // What containerd answers on the error channel when the command cannot start.
        let failure = json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
            "message": format!("Internal error occurred: error executing command in container: failed to exec in container: failed to start exec: OCI runtime exec failed: exec failed: unable to start container process: {message}: unknown")});
        let _ = out_tx.send(frame(ERROR, failure.to_string().as_bytes())).await;
        drop(out_tx);
        let _ = writer.await;
        return;
    }
    let argv: Vec<String> = if exec.tty {
        // A pseudo-terminal from util-linux script(1); -e passes the command's exit status on.
        let line = exec.argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
        vec!["script".into(), "-qfec".into(), line, "/dev/null".into()]
    } else {
        exec.argv.clone()
    };
    let mut command = tokio::process::Command::new("ip");
    command.args(["netns", "exec", &sandbox.netns, "env", "-i"]).args(&env).args(&argv).current_dir(&sandbox.home);
    command.stdin(if exec.stdin { Stdio::piped() } else { Stdio::null() });
    command.stdout(if exec.stdout { Stdio::piped() } else { Stdio::null() });
    // With a TTY the terminal carries both streams.
    command.stderr(if exec.stderr && !exec.tty { Stdio::piped() } else { Stdio::null() });
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let failure = json!({"metadata": {}, "status": "Failure", "message": format!("failed to exec in container: starting container process: {e}"), "reason": "InternalError"});
            let _ = out_tx.send(frame(ERROR, failure.to_string().as_bytes())).await;
            drop(out_tx);
            let _ = writer.await;
            return;
        }
    };
    let mut outputs = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        outputs.push(tokio::spawn(pump(stdout, STDOUT, out_tx.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        outputs.push(tokio::spawn(pump(stderr, STDERR, out_tx.clone())));
    }
    let mut stdin = child.stdin.take();
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = incoming.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            match data.first() {
                Some(&STDIN) => {
                    if let Some(pipe) = stdin.as_mut() {
                        if pipe.write_all(&data[1..]).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Some(&CLOSE) if v5 && data.get(1) == Some(&STDIN) => stdin = None, // EOF for the process
                Some(&RESIZE) => {}                                                // the terminal size is not applied
                _ => {}
            }
        }
        // The client went away: the process keeps running, as with a real runtime, but its stdin ends.
        drop(stdin);
    });
    let code = match child.wait().await {
        Ok(status) => status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(_) => 1,
    };
    for output in outputs {
        let handle = output.abort_handle();
        if tokio::time::timeout(OUTPUT_GRACE, output).await.is_err() {
            handle.abort();
        }
    }
    let _ = out_tx.send(frame(ERROR, exit_status(code).to_string().as_bytes())).await;
    drop(out_tx);
    let _ = writer.await;
    reader.abort();
}
