//! Heartbeats over TLS with a pinned, self-signed server certificate: the real `skycat-agent`
//! daemon against a blocking rustls server on 127.0.0.1, behind a TCP proxy that records the
//! bytes on the wire.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::{json, Value};

const TOKEN: &str = "tls-tok-5ecret-abc123";
const SECRET_ENV: &str = "hf_s3cr3t_in_env";

fn base_config() -> Value {
    json!({
        "cluster_name": "c1",
        "launch_id": "launch-1",
        "heartbeat_interval_secs": 0.2,
        "price_per_hour": 1.0,
        "envs": {"HF_TOKEN": SECRET_ENV},
        "token": TOKEN,
    })
}

fn sha256_hex(der: &[u8]) -> String {
    skycat_tls_pin::Fingerprint::of_der(der).to_string()
}

/// A self-signed certificate (rcgen) and its pin.
struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
    pin: String,
}

fn self_signed() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["skycat-server".to_string()]).unwrap();
    let der = ck.cert.der().clone();
    let pin = sha256_hex(&der);
    Cert {
        der,
        key: ck.key_pair.serialize_der(),
        pin,
    }
}

/// A blocking TLS heartbeat receiver on 127.0.0.1: checks the bearer token (401 otherwise) and
/// records the decrypted requests. `handshakes` counts connections accepted (TLS or not).
struct TlsServer {
    port: u16,
    reqs: Arc<Mutex<Vec<Req>>>,
    handshakes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TlsServer {
    fn start(cert: &Cert, tls12_only: bool) -> TlsServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider);
        let builder = if tls12_only {
            builder.with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            builder.with_safe_default_protocol_versions()
        }
        .unwrap();
        let config = Arc::new(
            builder
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der.clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone())),
                )
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs2, hs2, stop2) = (reqs.clone(), handshakes.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        hs2.fetch_add(1, Ordering::SeqCst);
                        if let Some(r) = serve_tls(s, config.clone()) {
                            reqs2.lock().unwrap().push(r);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TlsServer {
            port,
            reqs,
            handshakes,
            stop,
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One request over TLS; None when the handshake or the request fails.
fn serve_tls(s: TcpStream, config: Arc<ServerConfig>) -> Option<Req> {
    s.set_nonblocking(false).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let conn = ServerConnection::new(config).ok()?;
    let mut tls = StreamOwned::new(conn, s);
    let req = common::read_request(&mut tls)?;
    let ok = req.method == "POST"
        && req.path == "/v1/agents/heartbeat"
        && req.header("authorization") == Some(&format!("Bearer {TOKEN}"));
    let (status, text) = if ok { (200, "{}") } else { (401, "{\"error\":\"bad token\"}") };
    let resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = tls.write_all(resp.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Some(req)
}

/// A TCP proxy on 127.0.0.1 in front of `target` that records every byte the client sends.
struct Proxy {
    port: u16,
    wire: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let wire = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (wire2, stop2) = (wire.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let wire3 = wire2.clone();
                std::thread::spawn(move || {
                    let mut b = [0u8; 4096];
                    while let Ok(n) = c_in.read(&mut b) {
                        if n == 0 {
                            break;
                        }
                        wire3.lock().unwrap().extend_from_slice(&b[..n]);
                        if s_out.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(Shutdown::Write);
                });
            }
        });
        Proxy { port, wire, stop }
    }
    fn wire(&self) -> Vec<u8> {
        self.wire.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn accepted(reqs: &Arc<Mutex<Vec<Req>>>) -> Vec<skycat_protocol::Heartbeat> {
    heartbeats(reqs, TOKEN)
}

#[test]
fn pinned_https_heartbeats_arrive_and_nothing_secret_is_on_the_wire() {
    for tls12_only in [false, true] {
        let cert = self_signed();
        let server = TlsServer::start(&cert, tls12_only);
        let proxy = Proxy::start(server.port);
        let mut cfg = base_config();
        cfg["server_url"] = json!(format!("https://127.0.0.1:{}", proxy.port));
        // The colon form, upper case, as `openssl x509 -fingerprint -sha256` prints it.
        let colon: Vec<String> = (0..32)
            .map(|i| cert.pin[2 * i..2 * i + 2].to_uppercase())
            .collect();
        cfg["server_cert_sha256"] = json!(if tls12_only { colon.join(":") } else { cert.pin.clone() });
        let agent = Agent::new(cfg);
        agent.start();
        eventually(20, "3 heartbeats over TLS", || {
            (accepted(&server.reqs).len() >= 3).then_some(())
        });
        let hbs = accepted(&server.reqs);
        assert_eq!(hbs[0].seq, 1, "tls12_only={tls12_only}");
        assert!(hbs.windows(2).all(|w| w[0].seq < w[1].seq));
        assert!(agent.status()["heartbeat_acked_seq"].as_u64().unwrap() >= 3);

        let wire = proxy.wire();
        assert!(wire.len() > 500, "the proxy saw the traffic ({} bytes)", wire.len());
        assert_eq!(wire[0], 0x16, "the first byte on the wire is a TLS handshake record");
        for needle in [TOKEN, "Bearer", "POST /v1", "heartbeat", "c1-0", "launch-1"] {
            assert!(!contains(&wire, needle), "{needle:?} crossed the network in clear");
        }
        assert!(!contains(&wire, SECRET_ENV));
        assert!(!agent.agent_log().contains(TOKEN));
    }
}

#[test]
fn wrong_pin_is_refused_and_logged_and_no_heartbeat_is_accepted() {
    let cert = self_signed();
    let server = TlsServer::start(&cert, false);
    let other = self_signed();
    let mut cfg = base_config();
    cfg["server_url"] = json!(format!("https://127.0.0.1:{}", server.port));
    cfg["server_cert_sha256"] = json!(other.pin);
    let agent = Agent::new(cfg);
    agent.start();
    eventually(20, "the agent tried the server twice", || {
        (server.handshakes.load(Ordering::SeqCst) >= 2).then_some(())
    });
    eventually(10, "the pin mismatch in the agent log", || {
        agent.agent_log().contains("pin mismatch").then_some(())
    });
    let log = agent.agent_log();
    assert!(log.contains(&cert.pin), "the log names the presented fingerprint: {log}");
    assert!(!log.contains(TOKEN));
    assert!(server.reqs.lock().unwrap().is_empty(), "no request got through the handshake");
    assert_eq!(agent.status()["heartbeat_acked_seq"], 0);
    assert!(agent.status()["heartbeat_seq"].as_u64().unwrap() >= 1);
}

#[test]
fn https_without_a_pin_and_bad_pins_are_refused_naming_the_field() {
    let mut cfg = base_config();
    cfg["server_url"] = json!("https://127.0.0.1:9");
    for pin in [None, Some("abcd"), Some("zz".repeat(32).as_str())] {
        let mut c = cfg.clone();
        if let Some(p) = pin {
            c["server_cert_sha256"] = json!(p);
        }
        let agent = Agent::new(c);
        let out = agent.cmd(&["daemon"], None);
        assert!(!out.status.success(), "pin {pin:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("server_cert_sha256"), "pin {pin:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn plain_http_never_carries_the_token_off_loopback() {
    // 0.0.0.0 is not a loopback name, but a connection to it stays on this machine: were the
    // token sent anyway, the server below would receive it.
    let reqs = Arc::new(Mutex::new(Vec::new()));
    let server = heartbeat_server(0, TOKEN, reqs.clone());
    let mut cfg = base_config();
    cfg["server_url"] = json!(format!("http://0.0.0.0:{}", server.port));
    let agent = Agent::new(cfg);
    agent.start();
    eventually(10, "the refusal in the agent log", || {
        agent.agent_log().contains("in clear").then_some(())
    });
    std::thread::sleep(Duration::from_millis(600));
    assert!(server.requests().is_empty(), "a request reached the server");
    let log = agent.agent_log();
    assert!(log.contains(&format!("http://0.0.0.0:{}", server.port)), "{log}");
    assert!(!log.contains(TOKEN));
    assert_eq!(agent.status()["heartbeat_acked_seq"], 0);
}
