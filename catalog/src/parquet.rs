//! Offers to and from Parquet, with polars.
//!
//! One file per cloud. Column names and types are the schema of [`Offer`]; `fetched_at` is a UTC
//! millisecond timestamp. Readers accept integer columns where floats are expected (a hand-made
//! file may write `8` for `8.0`) and tolerate missing optional columns, so that older files stay
//! readable; anything else is an error that names the file and the column.
//!
//! `spot_interruption` holds the Spot Instance Advisor's bucket label (`<5%`, `5-10%`, `10-15%`,
//! `15-20%`, `>20%`) as text, null where unknown: a label reads the same in pandas or duckdb as
//! on AWS's page, where a bucket number would need this crate to decode. Files written before
//! the column existed read as all-unknown.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use polars::prelude::*;

use crate::error::{CatalogError, Result};
use crate::fsutil::{sha256_hex, write_atomic};
use crate::offer::{HypervGenerations, Offer, SpotInterruption};

/// Column names, in file order.
pub const COLUMNS: &[&str] = &[
    "cloud",
    "instance_type",
    "region",
    "zone",
    "accelerator_name",
    "accelerator_count",
    "accelerator_memory_gib",
    "accelerator_vendor",
    "vcpus",
    "memory_gib",
    "arch",
    "price",
    "spot_price",
    "fetched_at",
    "source",
    "price_breakdown",
    "spot_interruption",
    "hyperv_generations",
];

fn str_col<'a>(name: &str, values: impl Iterator<Item = Option<&'a str>>) -> Column {
    let v: Vec<Option<&str>> = values.collect();
    Column::new(name.into(), v)
}

fn f64_col(name: &str, values: impl Iterator<Item = Option<f64>>) -> Column {
    let v: Vec<Option<f64>> = values.collect();
    Column::new(name.into(), v)
}

/// Build the DataFrame for a set of offers.
pub fn offers_to_frame(offers: &[Offer]) -> Result<DataFrame> {
    let o = offers;
    let fetched: Vec<i64> = o.iter().map(|x| x.fetched_at.timestamp_millis()).collect();
    let fetched = Int64Chunked::from_vec("fetched_at".into(), fetched)
        .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        .into_series()
        .into_column();
    let columns = vec![
        str_col("cloud", o.iter().map(|x| Some(&*x.cloud))),
        str_col("instance_type", o.iter().map(|x| Some(&*x.instance_type))),
        str_col("region", o.iter().map(|x| Some(&*x.region))),
        str_col("zone", o.iter().map(|x| x.zone.as_deref())),
        str_col("accelerator_name", o.iter().map(|x| x.accelerator_name.as_deref())),
        f64_col("accelerator_count", o.iter().map(|x| Some(x.accelerator_count))),
        f64_col("accelerator_memory_gib", o.iter().map(|x| x.accelerator_memory_gib)),
        str_col("accelerator_vendor", o.iter().map(|x| x.accelerator_vendor.as_deref())),
        f64_col("vcpus", o.iter().map(|x| x.vcpus)),
        f64_col("memory_gib", o.iter().map(|x| x.memory_gib)),
        str_col("arch", o.iter().map(|x| x.arch.as_deref())),
        f64_col("price", o.iter().map(|x| x.price)),
        f64_col("spot_price", o.iter().map(|x| x.spot_price)),
        fetched,
        str_col("source", o.iter().map(|x| Some(&*x.source))),
        str_col("price_breakdown", o.iter().map(|x| x.price_breakdown.as_deref())),
        str_col("spot_interruption", o.iter().map(|x| x.spot_interruption.map(SpotInterruption::label))),
        Column::new(
            "hyperv_generations".into(),
            o.iter().map(|x| x.hyperv_generations.map(|g| g.label())).collect::<Vec<Option<String>>>(),
        ),
    ];
    DataFrame::new(o.len(), columns).map_err(|e| CatalogError::Invalid(format!("cannot build offer table: {e}")))
}

/// Encode offers as Parquet bytes (zstd).
pub fn write_offers_bytes(offers: &[Offer]) -> Result<Vec<u8>> {
    let mut df = offers_to_frame(offers)?;
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(&mut df)
        .map_err(|e| CatalogError::Invalid(format!("cannot encode Parquet: {e}")))?;
    Ok(buf)
}

/// Write offers to `path` atomically; returns the file's SHA-256 (hex).
pub fn write_offers_atomic(path: &Path, offers: &[Offer]) -> Result<String> {
    let bytes = write_offers_bytes(offers)?;
    write_atomic(path, &bytes)?;
    Ok(sha256_hex(&bytes))
}

/// Read offers from a Parquet file.
pub fn read_offers(path: &Path) -> Result<Vec<Offer>> {
    let bytes = std::fs::read(path).map_err(|e| CatalogError::io(path, e))?;
    read_offers_bytes_at(path, &bytes)
}

/// Read offers from Parquet bytes (the embedded default catalog).
pub fn read_offers_bytes(bytes: &[u8]) -> Result<Vec<Offer>> {
    read_offers_bytes_at(Path::new("<embedded>"), bytes)
}

/// Read offers from Parquet bytes, naming `path` in errors.
///
/// polars can panic on a corrupt file instead of returning an error
/// (pola-rs/polars#15020): such a panic is caught, kept off stderr, and reported as the same
/// one-line "not a readable Parquet file" error as any other undecodable file.
pub fn read_offers_bytes_at(path: &Path, bytes: &[u8]) -> Result<Vec<Offer>> {
    crate::quiet_panic::catch_quietly(|| {
        let df = ParquetReader::new(Cursor::new(bytes)).finish().map_err(|e| {
            CatalogError::file(path, format!("not a readable Parquet file: {}", one_line(&e.to_string())))
        })?;
        frame_to_offers(path, &df)
    })
    .unwrap_or_else(|panic| {
        Err(CatalogError::file(path, format!("not a readable Parquet file: the decoder failed ({panic})")))
    })
}

/// polars errors can span lines (a context chain); warnings are one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

struct Reader<'a> {
    path: &'a Path,
    df: &'a DataFrame,
}

impl Reader<'_> {
    fn err(&self, column: &str, message: impl std::fmt::Display) -> CatalogError {
        CatalogError::Column { path: self.path.to_path_buf(), column: column.into(), message: message.to_string() }
    }

    /// A text column, each distinct value shared by the rows that hold it.
    fn strings(&self, name: &str, required: bool) -> Result<Vec<Option<Arc<str>>>> {
        let Ok(col) = self.df.column(name) else {
            return if required { Err(self.err(name, "missing")) } else { Ok(vec![None; self.df.height()]) };
        };
        let ca = col.str().map_err(|_| self.err(name, format!("expected text, found {}", col.dtype())))?;
        let mut seen: HashMap<&str, Arc<str>> = HashMap::new();
        let values: Vec<Option<Arc<str>>> =
            ca.iter().map(|v| v.map(|s| seen.entry(s).or_insert_with(|| Arc::from(s)).clone())).collect();
        if required {
            if let Some(i) = values.iter().position(Option::is_none) {
                return Err(self.err(name, format!("row {i}: empty value in a required column")));
            }
        }
        Ok(values)
    }

    fn floats(&self, name: &str, required: bool) -> Result<Vec<Option<f64>>> {
        let Ok(col) = self.df.column(name) else {
            return if required { Err(self.err(name, "missing")) } else { Ok(vec![None; self.df.height()]) };
        };
        if !col.dtype().is_primitive_numeric() {
            return Err(self.err(name, format!("expected a number, found {}", col.dtype())));
        }
        let cast = col.cast(&DataType::Float64).map_err(|e| self.err(name, e))?;
        let ca = cast.f64().map_err(|e| self.err(name, e))?;
        let values: Vec<Option<f64>> = ca.iter().collect();
        if let Some(i) = values.iter().position(|v| v.is_some_and(|x| !x.is_finite())) {
            return Err(self.err(name, format!("row {i}: not a finite number")));
        }
        Ok(values)
    }

    /// The optional `spot_interruption` column: advisor labels; any other text is an error.
    fn interruption_buckets(&self, name: &str) -> Result<Vec<Option<SpotInterruption>>> {
        self.strings(name, false)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                None => Ok(None),
                Some(label) => SpotInterruption::from_label(&label).map(Some).ok_or_else(|| {
                    self.err(name, format!("row {i}: {label:?} is not a bucket (<5%, 5-10%, 10-15%, 15-20%, >20%)"))
                }),
            })
            .collect()
    }

    fn hyperv_generations(&self, name: &str) -> Result<Vec<Option<HypervGenerations>>> {
        self.strings(name, false)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                None => Ok(None),
                Some(text) => HypervGenerations::parse(&text).map(Some).map_err(|m| self.err(name, format!("row {i}: {m}"))),
            })
            .collect()
    }

    fn timestamps(&self, name: &str) -> Result<Vec<DateTime<Utc>>> {
        let col = self.df.column(name).map_err(|_| self.err(name, "missing"))?;
        let millis: Vec<Option<i64>> = match col.dtype() {
            DataType::Datetime(unit, _) => {
                let ca = col.datetime().map_err(|e| self.err(name, e))?;
                let per_ms = match unit {
                    TimeUnit::Milliseconds => 1,
                    TimeUnit::Microseconds => 1_000,
                    TimeUnit::Nanoseconds => 1_000_000,
                };
                ca.physical().iter().map(|v| v.map(|x| x / per_ms)).collect()
            }
            other => return Err(self.err(name, format!("expected a UTC timestamp, found {other}"))),
        };
        millis
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.and_then(DateTime::<Utc>::from_timestamp_millis)
                    .ok_or_else(|| self.err(name, format!("row {i}: missing or out-of-range timestamp")))
            })
            .collect()
    }
}

/// Convert a DataFrame with the offer schema into offers.
pub fn frame_to_offers(path: &Path, df: &DataFrame) -> Result<Vec<Offer>> {
    let r = Reader { path, df };
    let cloud = r.strings("cloud", true)?;
    let instance_type = r.strings("instance_type", true)?;
    let region = r.strings("region", true)?;
    let zone = r.strings("zone", false)?;
    let accelerator_name = r.strings("accelerator_name", false)?;
    let accelerator_count = r.floats("accelerator_count", false)?;
    let accelerator_memory_gib = r.floats("accelerator_memory_gib", false)?;
    let accelerator_vendor = r.strings("accelerator_vendor", false)?;
    let vcpus = r.floats("vcpus", false)?;
    let memory_gib = r.floats("memory_gib", false)?;
    let arch = r.strings("arch", false)?;
    let price = r.floats("price", false)?;
    let spot_price = r.floats("spot_price", false)?;
    let fetched_at = r.timestamps("fetched_at")?;
    let source = r.strings("source", true)?;
    let price_breakdown = r.strings("price_breakdown", false)?;
    let spot_interruption = r.interruption_buckets("spot_interruption")?;
    let hyperv_generations = r.hyperv_generations("hyperv_generations")?;

    let mut offers = Vec::with_capacity(df.height());
    let mut it = (
        cloud.into_iter(),
        instance_type.into_iter(),
        region.into_iter(),
        zone.into_iter(),
        accelerator_name.into_iter(),
        accelerator_count.into_iter(),
        accelerator_memory_gib.into_iter(),
        accelerator_vendor.into_iter(),
        vcpus.into_iter(),
        memory_gib.into_iter(),
        arch.into_iter(),
        price.into_iter(),
        spot_price.into_iter(),
        fetched_at.into_iter(),
        source.into_iter(),
        price_breakdown.into_iter(),
        spot_interruption.into_iter(),
        hyperv_generations.into_iter(),
    );
    for i in 0..df.height() {
        let offer = Offer {
            cloud: it.0.next().flatten().unwrap_or_default(),
            instance_type: it.1.next().flatten().unwrap_or_default(),
            region: it.2.next().flatten().unwrap_or_default(),
            zone: it.3.next().flatten(),
            accelerator_name: it.4.next().flatten(),
            accelerator_count: it.5.next().flatten().unwrap_or(0.0),
            accelerator_memory_gib: it.6.next().flatten(),
            accelerator_vendor: it.7.next().flatten(),
            vcpus: it.8.next().flatten(),
            memory_gib: it.9.next().flatten(),
            arch: it.10.next().flatten(),
            price: it.11.next().flatten(),
            spot_price: it.12.next().flatten(),
            fetched_at: it.13.next().unwrap_or_default(),
            source: it.14.next().flatten().unwrap_or_default(),
            price_breakdown: it.15.next().flatten(),
            spot_interruption: it.16.next().flatten(),
            hyperv_generations: it.17.next().flatten(),
        };
        for (column, value) in [("price", offer.price), ("spot_price", offer.spot_price)] {
            if value.is_some_and(|p| p <= 0.0) {
                return Err(CatalogError::Column {
                    path: path.to_path_buf(),
                    column: column.into(),
                    message: format!("row {i}: price must be positive (a missing price is null, never 0)"),
                });
            }
        }
        offers.push(offer);
    }
    Ok(offers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Offer> {
        let t = DateTime::<Utc>::from_timestamp_millis(1_764_000_000_123).expect("valid time");
        vec![
            Offer {
                cloud: "aws".into(),
                instance_type: "p4d.24xlarge".into(),
                region: "us-east-1".into(),
                zone: Some("use1-az2".into()),
                accelerator_name: Some("A100".into()),
                accelerator_count: 8.0,
                accelerator_memory_gib: Some(40.0),
                accelerator_vendor: Some("nvidia".into()),
                vcpus: Some(96.0),
                memory_gib: Some(1152.0),
                arch: Some("x86_64".into()),
                price: Some(32.7726),
                spot_price: Some(12.3456),
                fetched_at: t,
                source: "test".into(),
                price_breakdown: None,
                spot_interruption: Some(SpotInterruption::From10To15),
                hyperv_generations: None,
            },
            Offer {
                cloud: "gcp".into(),
                instance_type: "n1-standard-8".into(),
                region: "us-central1".into(),
                zone: None,
                accelerator_name: None,
                accelerator_count: 0.0,
                accelerator_memory_gib: None,
                accelerator_vendor: None,
                vcpus: None,
                memory_gib: None,
                arch: None,
                price: None,
                spot_price: Some(0.1),
                fetched_at: t,
                source: "test".into(),
                price_breakdown: Some("host".into()),
                spot_interruption: None,
                hyperv_generations: Some(HypervGenerations::parse("V1,V2").expect("generations")),
            },
        ]
    }

    #[test]
    fn round_trip_is_exact() {
        let offers = sample();
        let bytes = write_offers_bytes(&offers).expect("encode");
        let back = read_offers_bytes(&bytes).expect("decode");
        assert_eq!(back, offers);
    }

    #[test]
    fn atomic_write_then_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("aws.parquet");
        let sha = write_offers_atomic(&path, &sample()).expect("write");
        assert_eq!(sha.len(), 64);
        assert_eq!(read_offers(&path).expect("read"), sample());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn truncated_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("aws.parquet");
        let bytes = write_offers_bytes(&sample()).expect("encode");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
        let err = read_offers(&path).expect_err("truncated file must fail").to_string();
        assert!(err.contains("aws.parquet"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn bad_hyperv_generation_is_an_error_naming_the_column_and_row() {
        let mut df = offers_to_frame(&sample()).expect("frame");
        df.with_column(Column::new("hyperv_generations".into(), vec![None, Some("V1,Gen2")])).expect("replace");
        let err = frame_to_offers(Path::new("azure.parquet"), &df).expect_err("not a generation").to_string();
        assert!(err.contains("hyperv_generations") && err.contains("row 1") && err.contains("Gen2"), "{err}");
        // A file written before the column existed reads as "unknown".
        let _ = df.drop_in_place("hyperv_generations").expect("drop");
        let back = frame_to_offers(Path::new("azure.parquet"), &df).expect("older file");
        assert!(back.iter().all(|o| o.hyperv_generations.is_none()));
    }

    #[test]
    fn unknown_interruption_label_is_an_error_naming_the_column() {
        let mut df = offers_to_frame(&sample()).expect("frame");
        df.with_column(Column::new("spot_interruption".into(), vec![Some("sometimes"), None])).expect("replace");
        let err = frame_to_offers(Path::new("aws.parquet"), &df).expect_err("not a bucket").to_string();
        assert!(err.contains("spot_interruption") && err.contains("sometimes"), "{err}");
    }

    #[test]
    fn file_without_interruption_column_reads_as_unknown() {
        let mut df = offers_to_frame(&sample()).expect("frame");
        let _ = df.drop_in_place("spot_interruption").expect("drop");
        let back = frame_to_offers(Path::new("old.parquet"), &df).expect("old files load");
        assert!(back.iter().all(|o| o.spot_interruption.is_none()));
        assert_eq!(back[0].price, sample()[0].price);
    }

    #[test]
    fn zero_price_is_rejected() {
        let mut offers = sample();
        offers[0].price = Some(0.0);
        let bytes = write_offers_bytes(&offers).expect("encode");
        let err = read_offers_bytes(&bytes).expect_err("0 is not a price").to_string();
        assert!(err.contains("`price`"), "{err}");
    }
}
