//! `skycat fetch` killed (SIGKILL) mid-run leaves the previous catalog and manifest intact.
//!
//! The real binary fetches AWS from a loopback server that sends the bulk offer file slowly;
//! the test kills the process while the download is in flight.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skycat_catalog::manifest::{CloudManifest, Manifest};
use skycat_catalog::{Offer, SkycatHome};

const PREAMBLE: &str = "\"FormatVersion\",\"v1.0\"\n\"Disclaimer\",\"This pricing list is for informational purposes only.\"\n\"Publication Date\",\"2025-09-12T22:53:08Z\"\n\"Version\",\"20250912225308\"\n\"OfferCode\",\"AmazonEC2\"\n\"SKU\",\"OfferTermCode\",\"RateCode\",\"TermType\",\"PriceDescription\",\"Unit\",\"PricePerUnit\",\"Currency\",\"Instance Type\",\"Operating System\",\"Tenancy\",\"CapacityStatus\",\"Pre Installed S/W\",\"Region Code\",\"vCPU\",\"Memory\"\n";
const ROW: &str = "\"SKU1\",\"JRTCKXETXF\",\"SKU1.JRTCKXETXF.6YS6EN2CT7\",\"OnDemand\",\"$0.096 per On Demand Linux m5.large Instance Hour\",\"Hrs\",\"0.0960000000\",\"USD\",\"m5.large\",\"Linux\",\"Shared\",\"Used\",\"NA\",\"us-east-1\",\"2\",\"8 GiB\"\n";

/// A server that answers every request with a 200 and a CSV body sent a row every 20 ms, for
/// ever (Content-Length promises far more than it sends).
fn slow_server(sent: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let sent = sent.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 500000000\r\n\r\n";
                if s.write_all(head.as_bytes()).is_err() || s.write_all(PREAMBLE.as_bytes()).is_err() {
                    return;
                }
                while !stop.load(Ordering::SeqCst) {
                    if s.write_all(ROW.as_bytes()).is_err() {
                        return;
                    }
                    sent.fetch_add(ROW.len() as u64, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
    });
    port
}

fn offer(t: &str, price: f64) -> Offer {
    Offer {
        cloud: "aws".into(),
        instance_type: t.into(),
        region: "us-east-1".into(),
        zone: None,
        accelerator_name: None,
        accelerator_count: 0.0,
        accelerator_memory_gib: None,
        accelerator_vendor: None,
        vcpus: Some(2.0),
        memory_gib: Some(8.0),
        arch: Some("x86_64".into()),
        price: Some(price),
        spot_price: None,
        fetched_at: chrono::Utc::now(),
        source: "previous".into(),
        price_breakdown: None,
        spot_interruption: None,
        hyperv_generations: None,
    }
}

#[test]
fn killed_fetch_leaves_previous_catalog_intact() {
    let dir = tempfile::tempdir().unwrap();
    let home = SkycatHome::new(dir.path().join("home"));
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let cat = home.catalogs_dir().join("aws.parquet");
    let sha = skycat_catalog::parquet::write_offers_atomic(&cat, &[offer("m5.large", 0.09), offer("c5.large", 0.08)])
        .unwrap();
    let mut manifest = Manifest::default();
    manifest.clouds.insert(
        "aws".into(),
        CloudManifest {
            cloud: "aws".into(),
            source: "previous".into(),
            as_of: "2025-01-01".into(),
            fetched_at: chrono::Utc::now(),
            rows: 2,
            sha256: sha,
            regions_ok: vec!["us-east-1".into()],
            regions_failed: vec![],
            stale_regions: vec![],
            notes: vec![],
        },
    );
    let mpath = home.catalogs_dir().join("manifest.json");
    manifest.save_atomic(&mpath).unwrap();
    let cat_before = std::fs::read(&cat).unwrap();
    let man_before = std::fs::read(&mpath).unwrap();

    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let port = slow_server(sent.clone(), stop.clone());

    let mut child = Command::new(env!("CARGO_BIN_EXE_skycat"))
        .args(["fetch", "--clouds", "aws", "--regions", "us-east-1"])
        .env("SKYCAT_HOME", &home.root)
        .env("SKYCAT_AWS_OFFER_URL", format!("http://127.0.0.1:{port}"))
        .env("TMPDIR", &tmp)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", dir.path().join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("no-aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn skycat");

    // Wait until the download is well under way, then SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent.load(Ordering::SeqCst) < 20 * ROW.len() as u64 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("skycat fetch ended before it was killed: {status}");
        }
        assert!(Instant::now() < deadline, "the fetch never started downloading");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    assert!(!status.success());

    assert_eq!(std::fs::read(&cat).unwrap(), cat_before, "catalog unchanged");
    assert_eq!(std::fs::read(&mpath).unwrap(), man_before, "manifest unchanged");
    assert_eq!(skycat_catalog::parquet::read_offers(&cat).unwrap().len(), 2);
    let leftovers: Vec<_> = std::fs::read_dir(home.catalogs_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "aws.parquet" && n != "manifest.json")
        .collect();
    assert!(leftovers.is_empty(), "no partial files next to the catalog: {leftovers:?}");
    assert!(!home.history_dir().join("aws").exists(), "no history snapshot from a killed run");
}
