//! The in-memory catalog: every cloud's offers, where each cloud's rows came from, and an index
//! by accelerator so that a query is a probe rather than a scan.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Serialize;

use crate::accelerators;
use crate::manifest::CloudManifest;
use crate::offer::Offer;
use crate::query::OfferQuery;

/// Where one cloud's rows were loaded from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// The default catalog compiled into the binary.
    Embedded,
    /// A user catalog under `$SKYCAT_HOME/catalogs`.
    User { path: PathBuf },
    /// Offers handed in by the caller (tests, benchmarks, SSH node pools).
    Memory,
}

#[derive(Debug, Clone, Serialize)]
pub struct CloudSource {
    pub cloud: String,
    pub origin: Origin,
    pub rows: usize,
    pub manifest: Option<CloudManifest>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    offers: Vec<Offer>,
    sources: BTreeMap<String, CloudSource>,
    /// Lower-cased canonical accelerator name → offer indices. CPU-only offers sit under "".
    by_accelerator: HashMap<String, Vec<u32>>,
}

impl Catalog {
    /// A catalog over the given offers, all marked as coming from memory.
    pub fn from_offers(offers: Vec<Offer>) -> Catalog {
        let mut rows: BTreeMap<String, usize> = BTreeMap::new();
        for o in &offers {
            *rows.entry(o.cloud.to_string()).or_default() += 1;
        }
        let sources = rows
            .into_iter()
            .map(|(cloud, rows)| (cloud.clone(), CloudSource { cloud, origin: Origin::Memory, rows, manifest: None }))
            .collect();
        Catalog::with_sources(offers, sources)
    }

    pub(crate) fn with_sources(offers: Vec<Offer>, sources: BTreeMap<String, CloudSource>) -> Catalog {
        let mut by_accelerator: HashMap<String, Vec<u32>> = HashMap::new();
        // Lower-case each distinct spelling once, not once per offer.
        let mut keys: HashMap<&str, String> = HashMap::new();
        for (i, o) in offers.iter().enumerate() {
            let name = o.accelerator_name.as_deref().unwrap_or("");
            let key = keys.entry(name).or_insert_with(|| name.to_ascii_lowercase());
            match by_accelerator.get_mut(key.as_str()) {
                Some(idx) => idx.push(i as u32),
                None => {
                    by_accelerator.insert(key.clone(), vec![i as u32]);
                }
            }
        }
        Catalog { offers, sources, by_accelerator }
    }

    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    pub fn into_offers(self) -> Vec<Offer> {
        self.offers
    }

    /// Applies the user's price rules to every row (effective prices replace list prices in
    /// memory only; see [`crate::prices`]). The accelerator index is unaffected: queries sort by
    /// price when asked.
    pub fn reprice(&mut self, rules: &crate::prices::PriceRules) -> crate::prices::Repricing {
        rules.apply(&mut self.offers)
    }

    pub fn len(&self) -> usize {
        self.offers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// Per cloud: where its rows came from.
    pub fn sources(&self) -> impl Iterator<Item = &CloudSource> {
        self.sources.values()
    }

    pub fn source(&self, cloud: &str) -> Option<&CloudSource> {
        self.sources.get(cloud)
    }

    /// The canonical accelerator names present in the catalog, sorted.
    pub fn accelerator_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .by_accelerator
            .values()
            .filter_map(|idx| idx.first())
            .filter_map(|&i| self.offers[i as usize].accelerator_name.as_deref())
            .collect();
        names.sort_unstable();
        names
    }

    /// Resolve a user's accelerator spelling to the name the catalog uses: through the registry,
    /// then case-insensitively against the names present.
    pub fn resolve_accelerator(&self, raw: &str) -> Option<String> {
        if let Some(info) = accelerators::canonicalize(raw, None) {
            if self.by_accelerator.contains_key(&info.name.to_ascii_lowercase()) {
                return Some(info.name);
            }
        }
        let key = raw.trim().to_ascii_lowercase();
        self.by_accelerator
            .get(&key)
            .and_then(|idx| idx.first())
            .and_then(|&i| self.offers[i as usize].accelerator_name.as_deref().map(str::to_string))
            .or_else(|| accelerators::canonicalize(raw, None).map(|i| i.name))
    }

    /// Offers matching `q`, cheapest first (ties broken by cloud, type, region, zone so that the
    /// order is stable across runs).
    pub fn query(&self, q: &OfferQuery) -> Vec<&Offer> {
        let candidates: Box<dyn Iterator<Item = &Offer>> = match &q.accelerator {
            Some(raw) => {
                let name = self.resolve_accelerator(raw).unwrap_or_else(|| raw.clone());
                match self.by_accelerator.get(&name.to_ascii_lowercase()) {
                    Some(idx) => Box::new(idx.iter().map(|&i| &self.offers[i as usize])),
                    None => Box::new(std::iter::empty()),
                }
            }
            None => Box::new(self.offers.iter()),
        };
        let mut hits: Vec<(f64, &Offer)> = candidates
            .filter(|o| q.matches_rest(o))
            .filter_map(|o| q.sort_price(o).map(|p| (p, o)))
            .collect();
        hits.sort_by(|(pa, a), (pb, b)| {
            pa.total_cmp(pb)
                .then_with(|| a.cloud.cmp(&b.cloud))
                .then_with(|| a.instance_type.cmp(&b.instance_type))
                .then_with(|| a.region.cmp(&b.region))
                .then_with(|| a.zone.cmp(&b.zone))
        });
        hits.into_iter().map(|(_, o)| o).collect()
    }
}

#[cfg(feature = "parquet")]
mod load {
    use super::*;
    use crate::error::Result;
    use crate::home::SkycatHome;
    use crate::manifest::Manifest;
    use crate::filter::OfferFilter;
    use crate::index::{self, IndexedOffers};

    /// Run `decode` over `(cloud, input)` pairs on up to `available_parallelism` threads, each
    /// taking the next unclaimed input (clouds differ a lot in size), keeping the input order.
    fn decode_parallel<K: Sync, I: Sync, T: Send>(
        items: Vec<(K, I)>,
        decode: impl Fn(&I) -> Result<T> + Sync,
    ) -> Vec<((K, I), Result<T>)> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len()).max(1);
        let next = AtomicUsize::new(0);
        let mut results: Vec<(usize, Result<T>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some((_, input)) = items.get(i) else { break };
                            done.push((i, decode(input)));
                        }
                        done
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        });
        results.sort_by_key(|(i, _)| *i);
        items.into_iter().zip(results.into_iter().map(|(_, r)| r)).collect()
    }

    #[cfg(feature = "embedded-default")]
    mod embedded {
        include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
    }

    /// A loaded catalog plus the problems met on the way (each one line, naming the file).
    #[derive(Debug)]
    pub struct LoadedCatalog {
        pub catalog: Catalog,
        pub warnings: Vec<String>,
        /// Index upkeep worth a line but not a problem: a missing or stale index rebuilt.
        pub notes: Vec<String>,
    }

    /// The clouds of the shipped default catalog, with its manifest.
    #[cfg(feature = "embedded-default")]
    pub fn embedded_default() -> (Vec<(&'static str, &'static [u8])>, Manifest) {
        let manifest = embedded::EMBEDDED_MANIFEST
            .and_then(|text| Manifest::from_json(std::path::Path::new("<embedded manifest.json>"), text).ok())
            .unwrap_or_default();
        (embedded::EMBEDDED_CLOUDS.to_vec(), manifest)
    }

    #[cfg(not(feature = "embedded-default"))]
    pub fn embedded_default() -> (Vec<(&'static str, &'static [u8])>, Manifest) {
        (Vec::new(), Manifest::default())
    }

    /// The index (see [`crate::index`]) shipped beside an embedded cloud's Parquet bytes, if any.
    #[cfg(feature = "embedded-default")]
    fn embedded_index(cloud: &str) -> Option<&'static [u8]> {
        embedded::EMBEDDED_INDEXES.iter().find(|(c, _)| *c == cloud).map(|(_, b)| *b)
    }

    #[cfg(not(feature = "embedded-default"))]
    fn embedded_index(_cloud: &str) -> Option<&'static [u8]> {
        None
    }

    impl Catalog {
        /// The embedded default catalog, overridden per cloud by the user's catalogs in
        /// `$SKYCAT_HOME/catalogs`. A user file that cannot be read is reported in `warnings`
        /// and its cloud falls back to the shipped rows: a corrupt download never leaves a user
        /// without prices.
        ///
        /// Each file is read through its query index ([`crate::index`]), which is rebuilt when
        /// missing or stale (a note) and bypassed with a warning when corrupt.
        pub fn load(home: &SkycatHome) -> Result<LoadedCatalog> {
            Catalog::load_with(home, true, &OfferFilter::all())
        }

        /// [`Catalog::load`] keeping only the rows `filter` keeps: files of clouds it excludes
        /// are not read, and the index turns only the kept rows into offers (the sources count
        /// the rows kept).
        pub fn load_filtered(home: &SkycatHome, filter: &OfferFilter) -> Result<LoadedCatalog> {
            Catalog::load_with(home, true, filter)
        }

        /// [`Catalog::load`] decoding every Parquet file and ignoring (and writing) no index: the
        /// reference the index is tested and benchmarked against.
        pub fn load_parquet(home: &SkycatHome) -> Result<LoadedCatalog> {
            Catalog::load_with(home, false, &OfferFilter::all())
        }

        fn load_with(home: &SkycatHome, use_index: bool, filter: &OfferFilter) -> Result<LoadedCatalog> {
            let (embedded, embedded_manifest) = embedded_default();
            let mut warnings = Vec::new();
            let mut notes = Vec::new();
            let mut per_cloud: BTreeMap<String, (Vec<Offer>, CloudSource)> = BTreeMap::new();

            let dir = home.catalogs_dir();
            let manifest_path = dir.join("manifest.json");
            let user_manifest = match Manifest::load(&manifest_path) {
                Ok(m) => m,
                Err(e) => {
                    warnings.push(format!("{e}; ignoring it"));
                    Manifest::default()
                }
            };
            let mut user_files: Vec<(String, PathBuf)> = match std::fs::read_dir(&dir) {
                Ok(entries) => entries
                    .flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let cloud = name.strip_suffix(".parquet")?.to_string();
                        (!name.starts_with('.') && filter.keeps_cloud(&cloud)).then(|| (cloud, e.path()))
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            user_files.sort();
            // Each file is read through its index (rebuilt when missing or stale); decoding
            // Parquet, where it still happens, runs on all cores.
            let decoded = decode_parallel(user_files, |path| {
                if use_index {
                    index::load_offers_filtered(path, filter)
                } else {
                    let mut offers = crate::parquet::read_offers(path)?;
                    offers.retain(|o| filter.keeps(o));
                    Ok(IndexedOffers { offers, from_index: false, note: None, warning: None })
                }
            });
            for ((cloud, path), result) in decoded {
                match result {
                    Ok(IndexedOffers { offers, note, warning, .. }) => {
                        notes.extend(note);
                        warnings.extend(warning);
                        let source = CloudSource {
                            cloud: cloud.clone(),
                            origin: Origin::User { path: path.clone() },
                            rows: offers.len(),
                            manifest: user_manifest.clouds.get(&cloud).cloned(),
                        };
                        per_cloud.insert(cloud, (offers, source));
                    }
                    Err(e) => warnings.push(format!("{e}; using the shipped catalog for {cloud}")),
                }
            }
            // A user file read replaces its cloud's shipped rows even when the filter kept none of
            // its rows (it is in `per_cloud`, empty).
            let embedded: Vec<(&str, &[u8])> = embedded
                .into_iter()
                .filter(|(cloud, _)| !per_cloud.contains_key(*cloud) && filter.keeps_cloud(cloud))
                .collect();
            let decode_embedded = |cloud: &&str, bytes: &&[u8]| {
                let name = std::path::PathBuf::from(format!("<embedded>/{cloud}.parquet"));
                if use_index {
                    index::load_offers_bytes_filtered(&name, bytes, embedded_index(cloud), filter)
                } else {
                    let mut offers = crate::parquet::read_offers_bytes_at(&name, bytes)?;
                    offers.retain(|o| filter.keeps(o));
                    Ok(IndexedOffers { offers, from_index: false, note: None, warning: None })
                }
            };
            let embedded: Vec<(&str, (&str, &[u8]))> = embedded.into_iter().map(|(c, b)| (c, (c, b))).collect();
            for ((cloud, _), result) in decode_parallel(embedded, |(c, b)| decode_embedded(c, b)) {
                match result {
                    // A shipped index that is missing or stale (catalog-data/ changed without
                    // `build-default-catalog`) only costs time: no note for users.
                    Ok(IndexedOffers { offers, warning, .. }) => {
                        warnings.extend(warning.map(|w| format!("shipped catalog for {cloud}: {w}")));
                        let source = CloudSource {
                            cloud: cloud.to_string(),
                            origin: Origin::Embedded,
                            rows: offers.len(),
                            manifest: embedded_manifest.clouds.get(cloud).cloned(),
                        };
                        per_cloud.insert(cloud.to_string(), (offers, source));
                    }
                    Err(e) => warnings.push(format!("shipped catalog for {cloud}: {e}")),
                }
            }
            // The first cloud's rows grow into the whole catalog: a large vector is extended by
            // remapping its pages, where collecting into a new one would copy (and fault in)
            // every offer again.
            let total: usize = per_cloud.values().map(|(rows, _)| rows.len()).sum();
            let mut offers = Vec::new();
            let mut sources = BTreeMap::new();
            for (cloud, (mut rows, source)) in per_cloud {
                if offers.is_empty() {
                    std::mem::swap(&mut offers, &mut rows);
                    offers.reserve(total - offers.len());
                }
                offers.append(&mut rows);
                sources.insert(cloud, source);
            }
            Ok(LoadedCatalog { catalog: Catalog::with_sources(offers, sources), warnings, notes })
        }
    }
}

#[cfg(feature = "parquet")]
pub use load::{embedded_default, LoadedCatalog};

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn offer(cloud: &str, ty: &str, acc: Option<(&str, f64)>, price: Option<f64>, spot: Option<f64>) -> Offer {
        Offer {
            cloud: cloud.into(),
            instance_type: ty.into(),
            region: "r1".into(),
            zone: None,
            accelerator_name: acc.map(|a| a.0.to_string()).map(Into::into),
            accelerator_count: acc.map_or(0.0, |a| a.1),
            accelerator_memory_gib: None,
            accelerator_vendor: None,
            vcpus: Some(8.0),
            memory_gib: Some(32.0),
            arch: None,
            price,
            spot_price: spot,
            fetched_at: Utc::now(),
            source: "test".into(),
            price_breakdown: None,
            spot_interruption: None,
            hyperv_generations: None,
        }
    }

    #[test]
    fn query_filters_and_sorts() {
        let cat = Catalog::from_offers(vec![
            offer("aws", "p4d", Some(("A100", 8.0)), Some(32.0), Some(12.0)),
            offer("gcp", "a2-8", Some(("A100", 8.0)), Some(29.0), None),
            offer("gcp", "a2-1", Some(("A100", 1.0)), Some(3.6), Some(1.1)),
            offer("aws", "m6i", None, Some(0.4), Some(0.1)),
        ]);
        let q = OfferQuery { accelerator: Some("a100".into()), accelerator_count: Some(8.0), ..Default::default() };
        let hits: Vec<&str> = cat.query(&q).iter().map(|o| o.instance_type.as_ref()).collect();
        // Either market: p4d's spot price (12) beats a2-8's on-demand (29).
        assert_eq!(hits, ["p4d", "a2-8"]);
        let q = OfferQuery { spot: Some(false), ..q };
        let hits: Vec<&str> = cat.query(&q).iter().map(|o| o.instance_type.as_ref()).collect();
        assert_eq!(hits, ["a2-8", "p4d"]);
        let q = OfferQuery { accelerator: Some("A100".into()), spot: Some(true), ..Default::default() };
        let hits: Vec<&str> = cat.query(&q).iter().map(|o| o.instance_type.as_ref()).collect();
        assert_eq!(hits, ["a2-1", "p4d"], "spot only, offers without spot are left out");
        let q = OfferQuery { clouds: vec!["AWS".into()], ..Default::default() };
        assert_eq!(cat.query(&q).len(), 2);
        let q = OfferQuery { min_vcpus: Some(16.0), ..Default::default() };
        assert!(cat.query(&q).is_empty());
        assert_eq!(cat.accelerator_names(), ["A100"]);
    }
}
