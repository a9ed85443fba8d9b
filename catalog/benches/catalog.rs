//! Catalog load (Parquet against the query index) and query on a 100k-offer catalog (the shipped offers repeated over synthetic
//! regions, as `examples/synthetic_catalog.rs` writes them).
//!
//!   cargo bench -p skycat-catalog --features embedded-default --bench catalog

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::collections::BTreeMap;

use skycat_catalog::{embedded_default, index, parquet, Catalog, Offer, OfferQuery, SkycatHome};

fn synthetic(n: usize) -> Vec<Offer> {
    let (embedded, _) = embedded_default();
    let base: Vec<Offer> = embedded.iter().flat_map(|(_, b)| parquet::read_offers_bytes(b).expect("embedded")).collect();
    (0..n)
        .map(|i| {
            let mut o = base[i % base.len()].clone();
            let round = i / base.len();
            if round > 0 {
                o.region = format!("{}-syn{round}", o.region).into();
                let factor = 0.8 + ((i * 7919) % 401) as f64 / 1000.0;
                o.price = o.price.map(|p| p * factor);
                o.spot_price = o.spot_price.map(|p| p * factor);
            }
            o
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let offers = synthetic(100_000);
    let bytes = parquet::write_offers_bytes(&offers).expect("encode");
    let mut g = c.benchmark_group("catalog_100k");
    g.sample_size(20);
    g.bench_function("parquet_decode", |b| b.iter(|| parquet::read_offers_bytes(black_box(&bytes)).expect("decode")));
    let idx = index::encode(&offers, index::SourceStamp::of(&bytes));
    g.bench_function("index_decode", |b| b.iter(|| index::decode(black_box(&idx)).expect("decode")));

    // Whole loads of a $SKYCAT_HOME holding these offers, one file per cloud as a fetch
    // publishes them: every Parquet file decoded, against every index read.
    let home_dir = tempfile::tempdir().expect("tempdir");
    let home = SkycatHome::new(home_dir.path());
    let mut by_cloud: BTreeMap<&str, Vec<Offer>> = BTreeMap::new();
    for o in &offers {
        by_cloud.entry(o.cloud.as_ref()).or_default().push(o.clone());
    }
    for (cloud, rows) in &by_cloud {
        index::publish(&home.catalogs_dir().join(format!("{cloud}.parquet")), rows).expect("publish");
    }
    g.bench_function("load_home_parquet", |b| b.iter(|| Catalog::load_parquet(black_box(&home)).expect("load")));
    g.bench_function("load_home_index", |b| {
        b.iter(|| {
            let loaded = Catalog::load(black_box(&home)).expect("load");
            assert!(loaded.notes.is_empty() && loaded.warnings.is_empty(), "the index is used");
            loaded
        })
    });
    g.bench_function("index_build", |b| b.iter(|| Catalog::from_offers(black_box(offers.clone()))));
    let catalog = Catalog::from_offers(offers.clone());
    let q = OfferQuery {
        accelerator: Some("A100".into()),
        accelerator_count: Some(8.0),
        spot: Some(false),
        min_vcpus: Some(32.0),
        ..Default::default()
    };
    g.bench_function("query_a100x8_on_demand_sorted", |b| b.iter(|| black_box(catalog.query(black_box(&q))).len()));
    let q_all = OfferQuery { clouds: vec!["aws".into(), "gcp".into()], min_memory_gib: Some(64.0), ..Default::default() };
    g.bench_function("query_scan_aws_gcp_mem64_sorted", |b| b.iter(|| black_box(catalog.query(black_box(&q_all))).len()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
