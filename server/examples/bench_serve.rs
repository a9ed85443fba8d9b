//! The server over a synthetic catalog, for `scripts/bench-serve.sh` (wrk against `/optimize`).
//!
//! Links only server + optimizer + catalog schema (build with `--no-default-features`: no
//! polars, no fetchers), so a release build takes minutes rather than the whole `skycat` binary.
//! The token modes need `--features control`, which links the controller (its SQLite store is the
//! real token verifier, and with it come sqlx, russh and the EC2 SDK: a much longer build).
//!
//! ```text
//! cargo run --release -p skycat-server --no-default-features --example bench_serve -- 127.0.0.1:18090 100000
//! ```
//!
//! Environment:
//! * `BENCH_SERVER_THREADS`: tokio worker threads (default 2).
//! * `BENCH_AUTH_DB=PATH` (feature `control`): the read routes need an API token (`public_read`
//!   false), checked by the controller's state DB at PATH, as `skycat serve` does; a user token
//!   `bench` is created there and written to `BENCH_TOKEN_FILE` (required with it).
//!   `BENCH_TOKEN_CACHE=1` puts the store behind `Auth::cached` (accepted tokens remembered for
//!   `TOKEN_CACHE_TTL`).
//! * `BENCH_TLS_DIR=DIR`: HTTPS with the self-signed certificate kept in DIR (made on first use
//!   by `skycat_server::tls::self_signed`, as `skycat serve` does).
//! * `BENCH_CATALOG_DIR=DIR`: serve the catalog whose query indexes (`<cloud>.idx`, see
//!   `skycat_catalog::index`) are in DIR (a `$SKYCAT_HOME/catalogs`, e.g. the full catalog of
//!   `scripts/bench-catalog.sh`) instead of the synthetic one; the offer count argument is ignored.
//! * `BENCH_HOME=DIR` (feature `fetch`, on by default): serve `DIR`'s catalog (a
//!   `$SKYCAT_HOME`) loaded and reloaded as `skycat serve` does it
//!   (`skycat_server::fetch::load_catalog`: indexes checked against their Parquet files, clouds
//!   decoded in parallel, the shipped catalog for clouds the home lacks).
//! * `BENCH_RELOAD_MS=N`: reload the catalog every N ms while serving, through the server's own
//!   refresher (decode on a blocking thread, index built on a blocking thread, swapped in
//!   atomically), printing `reload: <ms> ms, <rows> rows` to stderr each time.

use chrono::Utc;
use skycat_catalog::Offer;
use skycat_server::{AppBuilder, CatalogData, ServerConfig};

/// `n` offers over 6 clouds × 12 regions × 3 zones, CPU and GPU shapes, deterministic prices.
fn synthetic(n: usize) -> Vec<Offer> {
    let clouds = ["aws", "gcp", "azure", "lambda", "oci", "runpod"];
    let gpus: [(&str, f64, &[f64]); 8] = [
        ("A100", 1.6, &[1.0, 2.0, 4.0, 8.0]),
        ("A100-80GB", 2.2, &[1.0, 2.0, 4.0, 8.0]),
        ("H100", 3.1, &[1.0, 2.0, 4.0, 8.0]),
        ("L4", 0.6, &[1.0, 2.0, 4.0, 8.0]),
        ("T4", 0.35, &[1.0, 2.0, 4.0]),
        ("V100", 0.9, &[1.0, 4.0, 8.0]),
        ("A10G", 1.0, &[1.0, 4.0, 8.0]),
        ("L40S", 1.4, &[1.0, 2.0, 4.0, 8.0]),
    ];
    let now = Utc::now();
    let mut out = Vec::with_capacity(n);
    let mut i = 0usize;
    while out.len() < n {
        // A cheap deterministic jitter so prices differ between locations.
        let jitter = 1.0 + ((i.wrapping_mul(2654435761) % 1000) as f64) / 4000.0;
        let cloud = clouds[i % clouds.len()];
        let region = format!("region-{}", (i / clouds.len()) % 12);
        let zone = Some(format!("{region}-{}", ["a", "b", "c"][(i / (clouds.len() * 12)) % 3]));
        let shape = (i / (clouds.len() * 36)) % 40;
        let (acc, count, vcpus, mem, price) = if shape < 12 {
            let v = [2.0, 4.0, 8.0, 16.0, 32.0, 64.0][shape % 6];
            (None, 0.0, v, v * if shape < 6 { 4.0 } else { 8.0 }, 0.048 * v * if shape < 6 { 1.0 } else { 1.3 })
        } else {
            let (name, per, counts) = gpus[(shape - 12) % gpus.len()];
            let c = counts[(shape - 12) / gpus.len() % counts.len()];
            (Some(name), c, 8.0 * c, 64.0 * c, per * c + 0.2 * c)
        };
        out.push(Offer {
            cloud: cloud.into(),
            instance_type: match acc {
                Some(a) => format!("{cloud}-{a}-x{count}-{shape}").into(),
                None => format!("{cloud}-cpu-{vcpus}-{shape}").into(),
            },
            region: region.into(),
            zone: zone.map(Into::into),
            accelerator_name: acc.map(str::to_owned).map(Into::into),
            accelerator_count: count,
            accelerator_memory_gib: acc.map(|_| 40.0),
            accelerator_vendor: acc.map(|_| "nvidia".into()),
            vcpus: Some(vcpus),
            memory_gib: Some(mem),
            arch: Some("x86_64".into()),
            price: Some((price * jitter * 1000.0).round() / 1000.0),
            spot_price: if i % 3 == 0 { None } else { Some((price * jitter * 0.35 * 1000.0).round() / 1000.0) },
            fetched_at: now,
            source: "synthetic".into(),
            price_breakdown: None,
            spot_interruption: None,
            hyperv_generations: None,
        });
        i += 1;
    }
    out
}

/// The token checker of the `BENCH_AUTH_DB` mode: the controller's SQLite store, with a fresh
/// user token written to `BENCH_TOKEN_FILE`.
#[cfg(feature = "control")]
async fn auth_from_env() -> std::io::Result<Option<skycat_server::Auth>> {
    let Some(db) = std::env::var_os("BENCH_AUTH_DB") else { return Ok(None) };
    let out = std::env::var_os("BENCH_TOKEN_FILE").ok_or_else(|| other("BENCH_AUTH_DB needs BENCH_TOKEN_FILE"))?;
    let store = skycat_controller::Store::open(std::path::Path::new(&db)).await.map_err(other)?;
    let token = store.create_api_token("bench", skycat_controller::api_tokens::Role::User).await.map_err(other)?;
    std::fs::write(&out, token)?;
    if std::env::var_os("BENCH_TOKEN_CACHE").is_some_and(|v| v == "1") {
        return Ok(Some(skycat_server::Auth::cached(store)));
    }
    Ok(Some(skycat_server::Auth { verifier: std::sync::Arc::new(store) }))
}

#[cfg(not(feature = "control"))]
async fn auth_from_env() -> std::io::Result<Option<skycat_server::Auth>> {
    match std::env::var_os("BENCH_AUTH_DB") {
        Some(_) => Err(other("BENCH_AUTH_DB needs the token store: build with --features control")),
        None => Ok(None),
    }
}

/// The offers of every `<cloud>.idx` in `dir`, sorted by cloud as `Catalog::load` orders them.
fn offers_of_indexes(dir: &std::path::Path) -> std::io::Result<Vec<Offer>> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == skycat_catalog::index::EXTENSION))
        .collect();
    files.sort();
    let mut offers = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path)?;
        let (_, rows) = skycat_catalog::index::decode(&bytes).map_err(|e| other(format!("{}: {e}", path.display())))?;
        offers.extend(rows);
    }
    if offers.is_empty() {
        return Err(other(format!("{}: no <cloud>.idx files", dir.display())));
    }
    Ok(offers)
}

/// `home`'s catalog, loaded as `skycat serve` loads it.
#[cfg(feature = "fetch")]
fn load_home(home: &std::path::Path) -> std::io::Result<CatalogData> {
    skycat_server::fetch::load_catalog(&skycat_catalog::SkycatHome::new(home)).map_err(|e| other(format!("{}: {e}", home.display())))
}

#[cfg(not(feature = "fetch"))]
fn load_home(_home: &std::path::Path) -> std::io::Result<CatalogData> {
    Err(other("BENCH_HOME needs the `fetch` feature (build without --no-default-features)"))
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18090".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let threads: usize = std::env::var("BENCH_SERVER_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let tls_dir = std::env::var_os("BENCH_TLS_DIR").map(std::path::PathBuf::from);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    rt.block_on(async move {
        let started = std::time::Instant::now();
        let auth = auth_from_env().await?;
        let mode = match (&auth, std::env::var_os("BENCH_TOKEN_CACHE").is_some_and(|v| v == "1")) {
            (None, _) => "no token (public read)",
            (Some(_), false) => "an API token required (SQLite store)",
            (Some(_), true) => "an API token required (SQLite store, cached)",
        };
        let config = ServerConfig { public_read: auth.is_none(), auth, ..ServerConfig::default() };
        let catalog_dir = std::env::var_os("BENCH_CATALOG_DIR").map(std::path::PathBuf::from);
        let home = std::env::var_os("BENCH_HOME").map(std::path::PathBuf::from);
        let data = match (&home, &catalog_dir) {
            (Some(home), _) => load_home(home)?,
            (None, Some(dir)) => CatalogData::from_offers(offers_of_indexes(dir)?),
            (None, None) => CatalogData::from_offers(synthetic(n)),
        };
        let n = data.offers.len();
        let loaded = started.elapsed();
        let mut builder = AppBuilder::new(data).config(config);
        let reload_every = std::env::var("BENCH_RELOAD_MS").ok().and_then(|s| s.parse::<u64>().ok());
        if reload_every.is_some() {
            let (dir, home) = (catalog_dir.clone(), home.clone());
            builder = builder.refresh_action(std::sync::Arc::new(move || {
                let (dir, home) = (dir.clone(), home.clone());
                async move {
                    // Decoding and deriving provenance both run on the blocking pool, as in
                    // `skycat serve`, never on a request worker.
                    let data = tokio::task::spawn_blocking(move || match (home, dir) {
                        (Some(home), _) => load_home(&home),
                        (None, Some(dir)) => offers_of_indexes(&dir).map(CatalogData::from_offers),
                        (None, None) => Ok(CatalogData::from_offers(synthetic(n))),
                    })
                    .await??;
                    Ok::<_, skycat_server::refresh::RefreshError>(data)
                }
            }));
        }
        let app = builder.build();
        if let (Some(ms), Some(refresher)) = (reload_every, app.refresher.clone()) {
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    let outcome = refresher.refresh_now().await;
                    let took = (outcome.finished_at - outcome.started_at).num_microseconds().unwrap_or(0) as f64 / 1e3;
                    eprintln!("reload: {took:.1} ms, {} rows, ok {}", outcome.rows.unwrap_or(0), outcome.ok);
                }
            });
        }
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        let scheme = if tls_dir.is_some() { "https" } else { "http" };
        eprintln!(
            "bench_serve: {n} offers loaded in {:.0} ms, indexed in {:.0} ms; listening on {scheme}://{} with {threads} worker threads; {mode}",
            loaded.as_secs_f64() * 1e3,
            (started.elapsed() - loaded).as_secs_f64() * 1e3,
            listener.local_addr()?
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match tls_dir {
            Some(dir) => {
                let files = skycat_server::tls::self_signed(&dir, &[]).map_err(other)?;
                let tls = skycat_server::tls::server_config(&files).map_err(other)?;
                app.serve_tls(listener, tls, shutdown).await
            }
            None => app.serve(listener, shutdown).await,
        }
    })
}
