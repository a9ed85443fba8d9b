//! A deliberately small, blocking HTTP/1.1 client: heartbeats to the controller and the
//! instance metadata server (link-local). No redirects, no keep-alive (`Connection: close`). It
//! keeps the agent free of an HTTP stack (see the issue note for the size trade-off against
//! ureq/reqwest).
//!
//! `https://` goes through rustls (ring provider) over the same blocking `TcpStream`, and only
//! with a pinned server certificate: the SHA-256 of the end-entity certificate's DER, received
//! at bootstrap (`AgentConfig::server_cert_sha256`). The pin replaces CA and hostname checks
//! (servers are self-signed); the handshake signatures are still verified. There is no
//! unverified TLS: an `https://` URL without a pin is refused. Plain `http://` carries no
//! `Authorization` header except to a loopback host, so a bearer token never crosses the network
//! in clear.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use skycat_tls_pin::{Fingerprint, PinVerifier};

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

struct Url {
    scheme: Scheme,
    host: String,
    port: u16,
    path: String,
}

/// Splits `http[s]://host[:port]/path`.
fn parse_url(url: &str) -> Result<Url> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else {
        bail!("not an http:// or https:// URL: {url}");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        bail!("no host in URL: {url}");
    }
    let default_port = match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port: u16 = p.parse().map_err(|_| anyhow!("bad port in URL: {url}"))?;
            (h.to_string(), port)
        }
        _ => (authority.to_string(), default_port),
    };
    Ok(Url {
        scheme,
        host,
        port,
        path: path.to_string(),
    })
}

/// `localhost`, 127.0.0.0/8 or ::1 (brackets allowed).
fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// Opens a TLS session to `host:port` over `sock`, pinned, and completes the handshake.
fn tls_connect(
    sock: TcpStream,
    host: &str,
    port: u16,
    pin: Fingerprint,
) -> Result<StreamOwned<ClientConnection, TcpStream>> {
    let verifier = PinVerifier::pinned(pin);
    let config = verifier.client_config().context("TLS setup")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    // SNI only for names; an IP address becomes an IpAddress server name (no SNI is sent).
    let name = ServerName::try_from(bare.to_string())
        .map_err(|_| anyhow!("bad TLS server name: {host}"))?;
    let conn = ClientConnection::new(Arc::new(config), name).context("TLS setup")?;
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            if let Some(m) = verifier.mismatch() {
                bail!("TLS to {host}:{port}: {m}");
            }
            return Err(e).with_context(|| format!("TLS handshake with {host}:{port} failed"));
        }
    }
    Ok(stream)
}

/// [`request_pinned`] without a certificate pin: plain `http://` only.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response> {
    request_pinned(method, url, headers, body, timeout, None)
}

/// One request. `https://` needs `pin` (SHA-256 of the server certificate, see [`Fingerprint`]);
/// an `Authorization` header is refused over plain `http://` unless the host is loopback.
pub fn request_pinned(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
    pin: Option<&str>,
) -> Result<Response> {
    let u = parse_url(url)?;
    let pin = match (u.scheme, pin) {
        (Scheme::Https, None) => bail!(
            "refusing {url}: https needs the server certificate SHA-256 pin (server_cert_sha256); \
             unverified TLS is not supported"
        ),
        (Scheme::Https, Some(p)) => Some(p.parse::<Fingerprint>().map_err(|e| anyhow!("server_cert_sha256: {e}"))?),
        (Scheme::Http, _) => {
            if !is_loopback(&u.host)
                && headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            {
                bail!(
                    "refusing to send credentials in clear to {url}: use an https:// server URL \
                     with the server certificate pin (server_cert_sha256)"
                );
            }
            None
        }
    };
    let (host, port) = (u.host.as_str(), u.port);
    let host_for_connect = host.trim_start_matches('[').trim_end_matches(']');
    let addr = (host_for_connect, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {host}"))?;
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nUser-Agent: skycat-agent/{}\r\n",
        u.path,
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    match pin {
        Some(pin) => exchange(tls_connect(stream, host, port, pin)?, method, &out),
        None => exchange(stream, method, &out),
    }
}

/// Sends the request bytes and reads the response.
fn exchange<S: Read + Write>(mut stream: S, method: &str, out: &[u8]) -> Result<Response> {
    stream.write_all(out).context("cannot send request")?;
    stream.flush().context("cannot send request")?;

    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).context("no response")?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line: {}", line.trim()))?;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim();
            if k == "content-length" {
                content_length = v.parse().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if method == "HEAD" || status == 204 || status == 304 {
    } else if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| anyhow!("bad chunk size"))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(n) = content_length {
        body.resize(n.min(16 << 20), 0);
        reader.read_exact(&mut body)?;
    } else {
        match reader.take(16 << 20).read_to_end(&mut body) {
            Ok(_) => {}
            // A TLS server that closes without close_notify: the body ends at the close.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://10.0.0.1:8080/v1/x").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Http, "10.0.0.1", 8080, "/v1/x")
        );
        let u = parse_url("http://host").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("host", 80, "/"));
        let u = parse_url("https://host").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Https, 443));
        let u = parse_url("https://[::1]:8443/p").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[::1]", 8443));
        assert!(parse_url("ftp://host").is_err());
        assert!(parse_url("http://h:notaport/").is_err());
    }

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "127.1.2.3", "localhost", "[::1]"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["10.0.0.1", "169.254.169.254", "example.com", "[::2]"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn no_clear_credentials_and_no_unpinned_tls() {
        let e = request(
            "POST",
            "http://0.0.0.0:9/v1/agents/heartbeat",
            &[("Authorization", "Bearer secret-token")],
            Some(b"{}"),
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        let m = format!("{e:#}");
        assert!(m.contains("http://0.0.0.0:9/v1/agents/heartbeat"), "{m}");
        assert!(m.contains("in clear"), "{m}");
        assert!(!m.contains("secret-token"), "{m}");
        let e = request("GET", "https://127.0.0.1:9/", &[], None, Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("pin"), "{e:#}");
    }

    #[test]
    fn round_trip_against_a_loopback_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains("hello") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
            String::from_utf8(got).unwrap()
        });
        let r = request(
            "POST",
            &format!("http://127.0.0.1:{port}/p"),
            &[("Authorization", "Bearer t")],
            Some(b"hello"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"abcde");
        let req = server.join().unwrap();
        assert!(req.starts_with("POST /p HTTP/1.1\r\n"));
        assert!(req.contains("Authorization: Bearer t\r\n"));
        assert!(req.contains("Content-Length: 5\r\n"));
    }
}
