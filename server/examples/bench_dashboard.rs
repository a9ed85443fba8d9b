//! The dashboard's first page loads in headless chromium, for `scripts/bench-dashboard.sh`.
//!
//! Serves the real embedded catalog (as `skycat serve` loads it from an empty home) with token
//! auth on a loopback port, signs a chromium session in through the login page, then for each
//! page opens a fresh tab with an empty cache and reads the largest contentful paint
//! (PerformanceObserver, buffered) and the navigation timing. Also prints every embedded asset's
//! size raw and as the server sends it gzip- and Brotli-compressed, each page's HTML likewise,
//! and the totals.
//!
//! ```text
//! cargo run --release -p skycat-server --example bench_dashboard -- [ROUNDS]
//! ```
//! Needs chromium and chromedriver on PATH (scripts/ci-setup-chromium.sh).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use skycat_server::{AppBuilder, Auth, Principal, Role, ServerConfig, TokenVerifier};

const TOKEN: &str = "bench_dashboard_token";

struct OneToken;

#[async_trait::async_trait]
impl TokenVerifier for OneToken {
    async fn verify(&self, token: &str) -> Result<Option<Principal>, String> {
        Ok((token == TOKEN).then(|| Principal { name: "bench".into(), role: Role::Admin }))
    }
}

const PAGES: &[(&str, &str)] = &[
    ("login", "/ui/login"),
    ("gpu prices", "/"),
    ("gpu prices, aws us-east-1", "/?cloud=aws&region=us-east-1"),
    ("cheapest A100", "/ui/cheapest?accelerator=A100"),
    ("plan form", "/ui/plan"),
    ("catalog status", "/ui/status"),
    ("history", "/ui/history"),
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let home = tempfile::tempdir()?;
    let t = Instant::now();
    let data = skycat_server::load_catalog(&skycat_catalog::SkycatHome::new(home.path())).map_err(|e| anyhow::anyhow!("loading the catalog: {e}"))?;
    let rows = data.offers.len();
    let config = ServerConfig {
        auth: Some(Auth { verifier: Arc::new(OneToken) }),
        public_read: false,
        home: Some(skycat_catalog::SkycatHome::new(home.path())),
        ..ServerConfig::default()
    };
    let app = tokio::task::spawn_blocking(move || AppBuilder::new(data).config(config).build()).await?;
    eprintln!("catalog: {rows} rows, loaded and indexed in {:.1} s", t.elapsed().as_secs_f64());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(app.serve(listener, std::future::pending()));

    // Bytes on the wire as the server sends them to a browser accepting `encoding`, read over a
    // plain connection (reqwest, with the decoders other crates enable, would undo the encoding).
    let served = |path: String, encoding: &'static str| {
        let host = base.trim_start_matches("http://").to_owned();
        tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(&host)?;
            write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: skycat_session={TOKEN}\r\nAccept-Encoding: {encoding}\r\nConnection: close\r\n\r\n")?;
            let mut resp = Vec::new();
            s.read_to_end(&mut resp)?;
            let split = resp.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow::anyhow!("{path}: no end of headers"))?;
            let chunked = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase().contains("transfer-encoding: chunked");
            let mut rest = &resp[split + 4..];
            if !chunked {
                return Ok(rest.len());
            }
            let mut n = 0;
            loop {
                let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(|| anyhow::anyhow!("{path}: bad chunk"))?;
                let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).split(';').next().unwrap_or("0").trim(), 16)?;
                if size == 0 {
                    return Ok(n);
                }
                n += size;
                rest = &rest[eol + 2 + size + 2..];
            }
        })
    };
    println!("== embedded assets: raw / as served gzip / as served br (target: none over 300 KB compressed)");
    let mut total = (0usize, 0usize, 0usize);
    for (name, _, body) in skycat_server::dashboard::ASSETS {
        let raw = body.len();
        let gz = served(format!("/ui/assets/{name}"), "gzip").await??;
        let br = served(format!("/ui/assets/{name}"), "br").await??;
        total = (total.0 + raw, total.1 + gz, total.2 + br);
        println!("{name:<16} {raw:>8} B {gz:>8} B {br:>8} B");
    }
    println!("{:<16} {:>8} B {:>8} B {:>8} B", "total", total.0, total.1, total.2);

    println!("== page HTML: raw / as served gzip / as served br");
    for (name, path) in PAGES {
        let raw = served(path.to_string(), "identity").await??;
        let gz = served(path.to_string(), "gzip").await??;
        let br = served(path.to_string(), "br").await??;
        println!("{name:<28} {raw:>8} B {gz:>8} B {br:>8} B");
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut driver = Command::new("chromedriver").arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1280,800", "--disable-extensions", "--disk-cache-size=1"]},
    });
    // rustls is linked with two crypto providers (ring here, aws-lc-rs by the AWS SDK): name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = ClientBuilder::rustls()?.capabilities(caps.as_object().cloned().unwrap_or_default()).connect(&format!("http://127.0.0.1:{port}")).await?;
    client.goto(&format!("{base}/ui/login")).await?;
    client.find(Locator::Id("token")).await?.send_keys(TOKEN).await?;
    client.find(Locator::Css("form.login button")).await?.click().await?;
    client.wait().for_element(Locator::Css("#gpu-table")).await?;

    let lcp_script = r#"
        const done = arguments[arguments.length - 1];
        let lcp = null;
        new PerformanceObserver(l => { const e = l.getEntries(); lcp = e[e.length - 1].startTime; })
          .observe({type: 'largest-contentful-paint', buffered: true});
        const nav = performance.getEntriesByType('navigation')[0];
        setTimeout(() => done({lcp: lcp, ttfb: nav.responseStart, load: nav.loadEventEnd, dcl: nav.domContentLoadedEventEnd}), 300);
    "#;
    println!("== first load in a fresh tab, chromium headless, loopback; median of {rounds} (min..max), ms");
    println!("{:<28} {:>16} {:>16} {:>16}", "page", "LCP", "TTFB", "load");
    for (name, path) in PAGES {
        let mut samples: Vec<(f64, f64, f64)> = Vec::new();
        for _ in 0..rounds {
            // A fresh tab with the cache off: the first load of a visitor (the cookie stays).
            client.new_window(true).await?;
            let handles = client.windows().await?;
            let old = client.window().await?;
            client.close_window().await?;
            let fresh = handles.into_iter().find(|h| *h != old).expect("new tab");
            client.switch_to_window(fresh).await?;
            client.goto(&format!("{base}{path}")).await?;
            let v = client.execute_async(lcp_script, vec![]).await?;
            let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            samples.push((f("lcp"), f("ttfb"), f("load")));
        }
        let stat = |sel: fn(&(f64, f64, f64)) -> f64| {
            let mut v: Vec<f64> = samples.iter().map(sel).collect();
            v.sort_by(f64::total_cmp);
            format!("{:.0} ({:.0}..{:.0})", v[v.len() / 2], v[0], v[v.len() - 1])
        };
        println!("{name:<28} {:>16} {:>16} {:>16}", stat(|s| s.0), stat(|s| s.1), stat(|s| s.2));
    }
    let _ = client.close().await;
    let _ = driver.kill();
    let _ = driver.wait();
    Ok(())
}
