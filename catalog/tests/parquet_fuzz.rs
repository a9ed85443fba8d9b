//! Corrupt real catalog files (the shipped catalog-data/*.parquet) by flipping and truncating
//! bytes: decoding must never panic, only return offers or a one-line `CatalogError` naming the
//! file. polars can panic on some corrupt files (pola-rs/polars#15020); the reader turns that
//! into an error.

use std::path::{Path, PathBuf};
use std::time::Instant;

use skycat_catalog::parquet::{read_offers, read_offers_bytes};
use skycat_catalog::CatalogError;

const ITERATIONS: usize = 1_000;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn shipped(cloud: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog-data").join(format!("{cloud}.parquet"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One corruption of `original`: bytes flipped anywhere, bytes flipped in the footer (the
/// Thrift metadata, where lengths and offsets live), a truncation, or a mix.
fn mutate(rng: &mut Rng, original: &[u8]) -> (Vec<u8>, String) {
    let mut b = original.to_vec();
    let len = b.len();
    let footer = len.saturating_sub(len / 8 + 8);
    let mut what = Vec::new();
    let mode = rng.below(4);
    if mode != 2 {
        for _ in 0..1 + rng.below(4) {
            let at = if mode == 1 || rng.below(2) == 0 { footer + rng.below(len - footer) } else { rng.below(len) };
            let x = match rng.below(3) {
                0 => 1u8 << rng.below(8),
                1 => 0xff,
                _ => (rng.next() as u8).max(1),
            };
            b[at] ^= x;
            what.push(format!("b[{at}]^={x:#04x}"));
        }
    }
    if mode >= 2 {
        let keep = rng.below(len);
        b.truncate(keep);
        what.push(format!("truncate({keep})"));
    }
    (b, what.join(" "))
}

fn check_error(e: &CatalogError, name: &str, case: &str) {
    let text = e.to_string();
    assert!(text.contains(name), "{case}: error must name the file: {text}");
    assert!(!text.contains('\n'), "{case}: error must be one line: {text}");
    assert!(
        matches!(e, CatalogError::File { .. } | CatalogError::Column { .. }),
        "{case}: unexpected error kind: {e:?}"
    );
}

#[test]
fn flipped_and_truncated_catalogs_never_panic() {
    let started = Instant::now();
    let originals: Vec<(&str, Vec<u8>)> = ["lambda", "do", "vast"].into_iter().map(|c| (c, shipped(c))).collect();
    for (cloud, bytes) in &originals {
        assert!(read_offers_bytes(bytes).is_ok_and(|o| !o.is_empty()), "{cloud}: the original must decode");
    }
    let mut rng = Rng(0x5EED_CA7A_1065_2025);
    let (mut ok, mut errors, mut panics) = (0, 0, 0);
    for i in 0..ITERATIONS {
        let (cloud, original) = &originals[i % originals.len()];
        let (bytes, what) = mutate(&mut rng, original);
        let case = format!("#{i} {cloud}.parquet {what}");
        // A panic escaping here fails the test and names the case.
        match std::panic::catch_unwind(|| read_offers_bytes(&bytes)) {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                check_error(&e, "<embedded>", &case);
                if e.to_string().contains("the decoder failed") {
                    panics += 1;
                }
                errors += 1;
            }
            Err(_) => panic!("{case}: the reader panicked"),
        }
    }
    eprintln!(
        "{ITERATIONS} corrupt catalogs: {ok} decoded, {errors} errors ({panics} of them caught decoder panics) in {:?}",
        started.elapsed()
    );
    assert_eq!(ok + errors, ITERATIONS);
    assert!(errors > ITERATIONS / 2, "most corruptions must be detected: {ok} decoded");
}

#[test]
fn a_corrupt_file_on_disk_is_an_error_naming_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = shipped("lambda");
    let mut rng = Rng(42);
    for i in 0..20 {
        let (bytes, what) = mutate(&mut rng, &original);
        let path: PathBuf = dir.path().join(format!("lambda-{i}.parquet"));
        std::fs::write(&path, &bytes).expect("write");
        if let Err(e) = read_offers(&path) {
            check_error(&e, &path.display().to_string(), &what);
        }
    }
}
