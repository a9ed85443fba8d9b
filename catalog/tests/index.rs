//! The query index beside each Parquet catalog file (`<cloud>.idx`, see `skycat_catalog::index`):
//! it answers every query as the Parquet files do, a corrupt one falls back to Parquet with one
//! warning, and a publish of new prices is seen by the next load (never stale).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use skycat_catalog::index::{self, index_path};
use skycat_catalog::{parquet, Catalog, MachineRule, Offer, OfferFilter, OfferQuery, RowRule, SizeBounds, SkycatHome};

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
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
    /// `f`'s value two times in three.
    fn maybe<T>(&mut self, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        (self.below(3) != 0).then(|| f(self))
    }
    fn float(&mut self, max: f64) -> f64 {
        // Fractions that do not round-trip through text, to catch any lossy step.
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * max
    }
}

const CLOUDS: &[&str] = &["aws", "gcp", "lambda", "zeta-cloud"];
const TYPES: &[&str] = &["p4d.24xlarge", "a2-highgpu-8g", "gpu_1x_a10", "m6i.large", "ü-typ", "x"];
const REGIONS: &[&str] = &["us-east-1", "europe-west4", "us-tx-3", "ap-south-1", ""];
const ZONES: &[&str] = &["us-east-1a", "europe-west4-b", "z", ""];
const ACCELERATORS: &[&str] = &["A100", "A100-80GB", "H100", "A10", "tpu-v5e-8", "L4", "T4"];
const VENDORS: &[&str] = &["nvidia", "google", "amd"];

fn random_offer(rng: &mut Rng, cloud: &str) -> Offer {
    let acc = rng.maybe(|r| r.pick(ACCELERATORS).to_string());
    let price = rng.maybe(|r| 0.01 + r.float(40.0));
    let spot = rng.maybe(|r| 0.01 + r.float(20.0));
    let accelerator_count = if acc.is_some() { [0.25, 1.0, 2.0, 4.0, 8.0][rng.below(5)] } else { 0.0 };
    let accelerator_memory_gib = acc.as_ref().and_then(|_| rng.maybe(|r| [16.0, 24.0, 40.0, 80.0][r.below(4)]));
    let accelerator_vendor = acc.as_ref().and_then(|_| rng.maybe(|r| r.pick(VENDORS).to_string()));
    let breakdown = rng.maybe(|r| format!("host {} + gpu", r.below(9))).filter(|_| rng.below(4) == 0);
    Offer {
        cloud: cloud.into(),
        instance_type: rng.pick(TYPES).into(),
        region: rng.pick(REGIONS).into(),
        zone: rng.maybe(|r| r.pick(ZONES).to_string()).map(Into::into),
        accelerator_count,
        accelerator_memory_gib,
        accelerator_vendor: accelerator_vendor.map(Into::into),
        accelerator_name: acc.map(Into::into),
        vcpus: rng.maybe(|r| (1 + r.below(192)) as f64),
        memory_gib: rng.maybe(|r| r.float(2048.0)),
        arch: rng.maybe(|r| r.pick(&["x86_64", "arm64"]).to_string()).map(Into::into),
        price: price.or(spot.is_none().then_some(1.5)),
        spot_price: spot,
        fetched_at: DateTime::<Utc>::from_timestamp_millis(1_700_000_000_000 + rng.below(1 << 40) as i64).expect("time"),
        source: format!("https://example.test/{}", rng.below(4)).into(),
        price_breakdown: breakdown.map(Into::into),
        spot_interruption: None,
        hyperv_generations: None,
    }
}

fn random_query(rng: &mut Rng) -> OfferQuery {
    let mut q = OfferQuery::default();
    if rng.below(4) != 0 {
        let name = rng.pick(&["A100", "a100", "H100", "tpu-v5e-8", "l4", "nope", "A100-80GB"]);
        q.accelerator = Some(name.into());
    }
    if rng.below(3) == 0 {
        q.accelerator_count = Some([0.25, 1.0, 2.0, 8.0][rng.below(4)]);
    }
    for _ in 0..rng.below(3) {
        q.clouds.push(rng.pick(&["aws", "GCP", "zeta-cloud", "lambda", "runpod"]).into());
    }
    if rng.below(4) == 0 {
        q.regions.push(rng.pick(REGIONS).into());
    }
    if rng.below(6) == 0 {
        q.zones.push(rng.pick(ZONES).into());
    }
    q.spot = [None, Some(true), Some(false)][rng.below(3)];
    q.min_vcpus = (rng.below(3) == 0).then(|| rng.below(96) as f64);
    q.min_memory_gib = (rng.below(4) == 0).then(|| rng.float(512.0));
    q.instance_type = (rng.below(6) == 0).then(|| rng.pick(TYPES).to_uppercase());
    q
}

fn catalog_file(home: &SkycatHome, cloud: &str) -> PathBuf {
    home.catalogs_dir().join(format!("{cloud}.parquet"))
}

fn owned(hits: Vec<&Offer>) -> Vec<Offer> {
    hits.into_iter().cloned().collect()
}

fn load(home: &SkycatHome) -> skycat_catalog::LoadedCatalog {
    Catalog::load(home).expect("load")
}

#[test]
fn index_answers_every_query_as_parquet_does() {
    let mut rng = Rng(0x1DE5_CA7A_1065_2026);
    for case in 0..30 {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = SkycatHome::new(dir.path());
        let clouds = 1 + rng.below(CLOUDS.len());
        for cloud in &CLOUDS[..clouds] {
            let rows = rng.below(150);
            let offers: Vec<Offer> = (0..rows).map(|_| random_offer(&mut rng, cloud)).collect();
            index::publish(&catalog_file(&home, cloud), &offers).expect("publish");
            let path = catalog_file(&home, cloud);
            let through = index::load_offers(&path).expect("index load");
            assert!(through.from_index, "case {case} {cloud}: a published index is used");
            assert_eq!((through.note, through.warning), (None, None), "case {case} {cloud}");
            assert_eq!(through.offers, parquet::read_offers(&path).expect("parquet"), "case {case} {cloud}");
        }
        let via_index = load(&home);
        assert!(via_index.warnings.is_empty() && via_index.notes.is_empty(), "case {case}: {via_index:?}");
        let via_parquet = Catalog::load_parquet(&home).expect("parquet load");
        let (a, b) = (&via_index.catalog, &via_parquet.catalog);
        assert_eq!(a.offers(), b.offers(), "case {case}");
        assert_eq!(a.accelerator_names(), b.accelerator_names(), "case {case}");
        for _ in 0..40 {
            let q = random_query(&mut rng);
            assert_eq!(owned(a.query(&q)), owned(b.query(&q)), "case {case}: {q:?}");
        }
        // A filtered load turns only the kept rows into offers, in the same order.
        for _ in 0..10 {
            let f = random_filter(&mut rng);
            let filtered = Catalog::load_filtered(&home, &f).expect("filtered load");
            assert!(filtered.warnings.is_empty() && filtered.notes.is_empty(), "case {case}: {filtered:?}");
            let expected: Vec<Offer> = b.offers().iter().filter(|o| f.keeps(o)).cloned().collect();
            assert_eq!(filtered.catalog.offers(), &expected[..], "case {case}: {f:?}");
        }
    }
}

/// A machine rule like the optimizer's CPU-only default: some types of some clouds, no
/// accelerators on one cloud, and per-cloud least sizes.
#[derive(Debug)]
struct SomeMachines {
    prefix: &'static str,
    min_vcpus: f64,
}

impl MachineRule for SomeMachines {
    fn keeps_type(&self, cloud: &str, instance_type: &str, has_accelerator: bool) -> bool {
        instance_type.starts_with(self.prefix) && (cloud != "aws" || !has_accelerator)
    }
    fn size_bounds(&self, cloud: &str) -> SizeBounds {
        match cloud {
            "aws" => SizeBounds { min_vcpus: Some(self.min_vcpus), min_memory_gib: None, min_memory_per_vcpu: Some(4.0) },
            _ => SizeBounds { min_vcpus: None, min_memory_gib: Some(64.0), min_memory_per_vcpu: None },
        }
    }
}

fn random_rule(rng: &mut Rng) -> RowRule {
    let mut r = RowRule::every_row();
    match rng.below(4) {
        0 => r = r.accelerators((0..1 + rng.below(2)).map(|_| rng.pick(&["a100", "H100", "tpu-v5e-8", "nope", "A100-80GB"]))),
        1 => r = r.instance_types([rng.pick(TYPES).to_ascii_uppercase()]),
        2 => {
            let prefix = rng.pick(&["p", "m", "a", "g", "n"]);
            r = r.machines(Arc::new(SomeMachines { prefix, min_vcpus: (1 + rng.below(64)) as f64 }))
        }
        _ => {}
    }
    if rng.below(2) == 0 {
        r = r.in_clouds((0..1 + rng.below(2)).map(|_| rng.pick(&["aws", "GCP", "zeta-cloud", "runpod"])));
    }
    r
}

fn random_filter(rng: &mut Rng) -> OfferFilter {
    let mut f = match rng.below(4) {
        0 => OfferFilter::all(),
        1 => OfferFilter::accelerators((0..1 + rng.below(2)).map(|_| rng.pick(&["a100", "H100", "tpu-v5e-8", "nope", "A100-80GB"]))),
        n => OfferFilter::any_of((0..n).map(|_| random_rule(rng))),
    };
    if rng.below(3) == 0 {
        f = f.in_clouds((0..1 + rng.below(2)).map(|_| rng.pick(&["aws", "GCP", "zeta-cloud", "runpod"])));
    }
    f
}

fn published_home(prices: f64) -> (tempfile::TempDir, SkycatHome, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = SkycatHome::new(dir.path());
    let mut rng = Rng(7);
    let offers: Vec<Offer> = (0..40)
        .map(|_| {
            let mut o = random_offer(&mut rng, "zeta-cloud");
            o.price = Some(prices);
            o
        })
        .collect();
    let path = catalog_file(&home, "zeta-cloud");
    index::publish(&path, &offers).expect("publish");
    (dir, home, path)
}

fn zeta_prices(loaded: &skycat_catalog::LoadedCatalog) -> Vec<Option<f64>> {
    loaded.catalog.offers().iter().filter(|o| &*o.cloud == "zeta-cloud").map(|o| o.price).collect()
}

/// Corrupt the index with `damage`: the load reads the Parquet file, says so in exactly one
/// warning naming the index, answers as Parquet does, and rewrites the index (next load: quiet).
fn corrupt_falls_back(damage: impl Fn(&mut Vec<u8>)) {
    let (_dir, home, path) = published_home(2.5);
    let idx = index_path(&path);
    let mut bytes = std::fs::read(&idx).expect("index written at publish");
    damage(&mut bytes);
    std::fs::write(&idx, &bytes).expect("write");
    let loaded = load(&home);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("zeta-cloud.idx") && loaded.warnings[0].contains("corrupt index"), "{:?}", loaded.warnings);
    assert!(!loaded.warnings[0].contains('\n'));
    assert!(loaded.notes.is_empty(), "{:?}", loaded.notes);
    let reference = Catalog::load_parquet(&home).expect("parquet");
    assert_eq!(loaded.catalog.offers(), reference.catalog.offers());
    assert_eq!(zeta_prices(&loaded), vec![Some(2.5); 40]);
    let again = load(&home);
    assert!(again.warnings.is_empty() && again.notes.is_empty(), "rebuilt after the fallback: {again:?}");
    assert!(index::load_offers(&path).expect("load").from_index);
    // A filtered load of a corrupt index: one warning too, the kept rows from Parquet, and the
    // index rewritten whole (not with the kept rows only).
    std::fs::write(&idx, &bytes).expect("write");
    let f = OfferFilter::accelerators(["A100"]);
    let filtered = Catalog::load_filtered(&home, &f).expect("filtered");
    assert_eq!(filtered.warnings.len(), 1, "{:?}", filtered.warnings);
    let kept: Vec<Offer> = reference.catalog.offers().iter().filter(|o| f.keeps(o)).cloned().collect();
    assert_eq!(filtered.catalog.offers(), &kept[..]);
    let whole = load(&home);
    assert!(whole.warnings.is_empty() && whole.notes.is_empty(), "{whole:?}");
    assert_eq!(whole.catalog.offers(), reference.catalog.offers());
}

#[test]
fn truncated_index_falls_back_to_parquet_with_one_warning() {
    for keep in [0usize, 5, 23, 24, 100, 1000] {
        corrupt_falls_back(|b| b.truncate(keep.min(b.len() - 1)));
    }
    corrupt_falls_back(|b| {
        b.pop();
    });
}

#[test]
fn bit_flipped_index_falls_back_to_parquet_with_one_warning() {
    let mut rng = Rng(99);
    let len = {
        let (_dir, _home, path) = published_home(1.0);
        std::fs::metadata(index_path(&path)).expect("index").len() as usize
    };
    // The header (magic, checksum, version, length), then bytes anywhere.
    let mut at: Vec<usize> = (0..24).step_by(3).collect();
    at.extend((0..12).map(|_| rng.below(len)));
    for a in at {
        let bit = rng.below(8);
        corrupt_falls_back(|b| b[a] ^= 1 << bit);
    }
}

#[test]
fn a_publish_of_new_prices_is_seen_by_the_next_load() {
    let (_dir, home, path) = published_home(3.0);
    assert_eq!(zeta_prices(&load(&home)), vec![Some(3.0); 40]);
    // A new fetch publishes new prices: the next load sees them, from the new index, quietly.
    let mut offers = parquet::read_offers(&path).expect("read");
    for o in &mut offers {
        o.price = Some(4.25);
    }
    index::publish(&path, &offers).expect("publish");
    let loaded = load(&home);
    assert_eq!(zeta_prices(&loaded), vec![Some(4.25); 40]);
    assert!(loaded.notes.is_empty() && loaded.warnings.is_empty(), "{loaded:?}");
    // A Parquet file replaced without its index (an older skycat, a copy, a run killed between
    // the two writes): the index is stale, the new prices are read and the index rebuilt.
    for o in &mut offers {
        o.price = Some(5.5);
    }
    parquet::write_offers_atomic(&path, &offers).expect("write parquet only");
    let loaded = load(&home);
    assert_eq!(zeta_prices(&loaded), vec![Some(5.5); 40]);
    assert_eq!(loaded.notes.len(), 1, "{:?}", loaded.notes);
    assert!(loaded.notes[0].contains("stale index"), "{:?}", loaded.notes);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let again = load(&home);
    assert!(again.notes.is_empty(), "rebuilt once: {:?}", again.notes);
    assert_eq!(zeta_prices(&again), vec![Some(5.5); 40]);
}

#[test]
fn a_missing_index_is_built_with_a_note() {
    let (_dir, home, path) = published_home(2.0);
    std::fs::remove_file(index_path(&path)).expect("remove");
    let loaded = load(&home);
    assert_eq!(loaded.notes.len(), 1, "{:?}", loaded.notes);
    assert!(loaded.notes[0].contains("no index"), "{:?}", loaded.notes);
    assert!(Path::new(&index_path(&path)).exists());
    assert!(load(&home).notes.is_empty());
    assert!(index::load_offers(&path).expect("load").from_index);
}

/// Every shipped `catalog-data/<cloud>.parquet` has its `<cloud>.idx` (embedded beside it), the
/// index of that very file: a missing one, or one left behind by a Parquet update, would be
/// ignored, silently costing every start-up a Parquet decode. Regenerate with
/// `cargo run -p skycat-catalog --example index_catalog -- catalog-data`.
#[test]
fn shipped_indexes_match_their_parquet_files() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog-data");
    let mut parquet_files: Vec<PathBuf> = std::fs::read_dir(&data)
        .expect("catalog-data")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    parquet_files.sort();
    assert!(!parquet_files.is_empty());
    for path in parquet_files {
        let bytes = std::fs::read(&path).expect("read");
        let idx = std::fs::read(index_path(&path)).unwrap_or_else(|e| panic!("{}: no shipped index ({e})", path.display()));
        let (stamp, offers) = index::decode(&idx).expect("a readable index");
        assert_eq!(stamp, index::SourceStamp::of(&bytes), "{}: stale index", path.display());
        assert_eq!(offers, parquet::read_offers(&path).expect("parquet"), "{}", path.display());
    }
}
