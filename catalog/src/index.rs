//! The query index: a compact binary copy of one Parquet catalog file, kept beside it as
//! `<cloud>.idx`, that loads without polars.
//!
//! Parquet stays the interchange format (pandas, polars and duckdb read it); the index exists so
//! that a command does not pay to decode Parquet and turn every text cell into its own `String`.
//! Its layout is columnar with interned strings:
//!
//! ```text
//! header  magic "SKYCATIX" | CRC-32 of all that follows u32 | version u32 | body length u64
//! body    Parquet size u64 | Parquet CRC-32 u32          (which file the index was built from)
//!         rows u32 | strings u32 | per string: length u32, UTF-8 bytes
//!         11 text columns, rows × u32 string id each (u32::MAX: none)
//!         6 number columns, rows × f64 bits each (NONE_F64: none)
//!         fetched_at, rows × i64 milliseconds
//! ```
//!
//! All integers are little-endian. The body checksum catches truncation and flipped bits; the
//! recorded Parquet size and CRC-32 catch an index left behind by a newer Parquet file (stale).
//! Indexes are written atomically, after their Parquet file, by [`publish`]; [`load_offers`]
//! rebuilds a missing or stale one and falls back to Parquet (one warning) on a corrupt one.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::DateTime;

use crate::filter::{OfferFilter, RowRule, SizeBounds};
use crate::offer::Offer;

pub const MAGIC: &[u8; 8] = b"SKYCATIX";
/// Bumped on any layout change; an index of another version is rebuilt like a stale one.
/// 2: the `spot_interruption` text column (the advisor's bucket label).
/// 3: the `hyperv_generations` text column (Azure's `V1,V2`).
pub const VERSION: u32 = 3;
/// The file name extension of an index: `aws.parquet` → `aws.idx`.
pub const EXTENSION: &str = "idx";
const HEADER_LEN: usize = 8 + 4 + 8 + 4;
const NONE_STR: u32 = u32::MAX;
/// A NaN payload that stands for "no value" (Parquet catalogs hold finite numbers only).
const NONE_F64: u64 = 0x7ff8_5ca7_1d00_0001;
const STR_COLUMNS: usize = 11;
const F64_COLUMNS: usize = 6;

/// Why an index cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    #[error("not a skycat index (bad magic)")]
    BadMagic,
    #[error("index format version {0}, this skycat reads version {v}", v = VERSION)]
    Version(u32),
    #[error("truncated ({have} bytes, expected {want})")]
    Truncated { have: usize, want: usize },
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("malformed: {0}")]
    Malformed(String),
}

/// Identifies the Parquet bytes an index was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceStamp {
    pub size: u64,
    pub crc32: u32,
}

impl SourceStamp {
    pub fn of(parquet: &[u8]) -> SourceStamp {
        SourceStamp { size: parquet.len() as u64, crc32: crc32fast::hash(parquet) }
    }
}

fn intern<'a>(interner: &mut HashMap<&'a str, u32>, strings: &mut Vec<&'a str>, s: Option<&'a str>) -> u32 {
    match s {
        None => NONE_STR,
        Some(s) => *interner.entry(s).or_insert_with(|| {
            strings.push(s);
            (strings.len() - 1) as u32
        }),
    }
}

/// Encode `offers` (as decoded from the Parquet bytes stamped `stamp`) as an index.
pub fn encode(offers: &[Offer], stamp: SourceStamp) -> Vec<u8> {
    let mut interner: HashMap<&str, u32> = HashMap::new();
    let mut strings: Vec<&str> = Vec::new();
    let mut text: Vec<Vec<u32>> = (0..STR_COLUMNS).map(|_| Vec::with_capacity(offers.len())).collect();
    // Labels are built, not stored, so they live here for the interner to borrow.
    let generations: Vec<Option<String>> = offers.iter().map(|o| o.hyperv_generations.map(|g| g.label())).collect();
    for (o, generation) in offers.iter().zip(&generations) {
        let cells = [
            Some(o.cloud.as_ref()),
            Some(o.instance_type.as_ref()),
            Some(o.region.as_ref()),
            o.zone.as_deref(),
            o.accelerator_name.as_deref(),
            o.accelerator_vendor.as_deref(),
            o.arch.as_deref(),
            Some(o.source.as_ref()),
            o.price_breakdown.as_deref(),
            o.spot_interruption.map(crate::offer::SpotInterruption::label),
            generation.as_deref(),
        ];
        for (col, cell) in text.iter_mut().zip(cells) {
            col.push(intern(&mut interner, &mut strings, cell));
        }
    }
    let mut body = Vec::with_capacity(32 + offers.len() * (STR_COLUMNS * 4 + F64_COLUMNS * 8 + 8));
    body.extend_from_slice(&stamp.size.to_le_bytes());
    body.extend_from_slice(&stamp.crc32.to_le_bytes());
    body.extend_from_slice(&(offers.len() as u32).to_le_bytes());
    body.extend_from_slice(&(strings.len() as u32).to_le_bytes());
    for s in &strings {
        body.extend_from_slice(&(s.len() as u32).to_le_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    for col in &text {
        for v in col {
            body.extend_from_slice(&v.to_le_bytes());
        }
    }
    let numbers: [fn(&Offer) -> Option<f64>; F64_COLUMNS] = [
        |o| Some(o.accelerator_count),
        |o| o.accelerator_memory_gib,
        |o| o.vcpus,
        |o| o.memory_gib,
        |o| o.price,
        |o| o.spot_price,
    ];
    for get in numbers {
        for o in offers {
            let bits = get(o).map_or(NONE_F64, f64::to_bits);
            body.extend_from_slice(&bits.to_le_bytes());
        }
    }
    for o in offers {
        body.extend_from_slice(&o.fetched_at.timestamp_millis().to_le_bytes());
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out[12..]);
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Check the header and the checksum; returns the stamp of the Parquet file the index
/// was built from, and the body to [`decode_body`].
pub fn open(bytes: &[u8]) -> Result<(SourceStamp, &[u8]), IndexError> {
    if bytes.len() >= 8 && &bytes[..8] != MAGIC {
        return Err(IndexError::BadMagic);
    }
    if bytes.len() < HEADER_LEN {
        return Err(IndexError::Truncated { have: bytes.len(), want: HEADER_LEN });
    }
    let stored = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let version = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let body_len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let want = (HEADER_LEN as u64).saturating_add(body_len);
    if bytes.len() as u64 != want {
        return Err(IndexError::Truncated { have: bytes.len(), want: usize::try_from(want).unwrap_or(usize::MAX) });
    }
    // The checksum covers the version too: a flipped version bit is corruption, not a new format.
    let computed = crc32fast::hash(&bytes[12..]);
    if computed != stored {
        return Err(IndexError::Checksum { stored, computed });
    }
    if version != VERSION {
        return Err(IndexError::Version(version));
    }
    let body = &bytes[HEADER_LEN..];
    let mut cur = Cursor { b: body, pos: 0 };
    let size = cur.u64()?;
    let crc32 = cur.u32()?;
    Ok((SourceStamp { size, crc32 }, body))
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or(IndexError::Truncated { have: self.b.len(), want: self.pos.saturating_add(n) })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, IndexError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, IndexError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    /// `rows` little-endian 4- or 8-byte words.
    fn words(&mut self, rows: usize, width: usize) -> Result<&'a [u8], IndexError> {
        self.take(rows.checked_mul(width).ok_or_else(|| IndexError::Malformed("row count overflows".into()))?)
    }
}

fn word32(col: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(col[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
}

fn word64(col: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(col[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}

/// Decode the offers of a body returned by [`open`].
pub fn decode_body(body: &[u8]) -> Result<Vec<Offer>, IndexError> {
    decode_body_filtered(body, &OfferFilter::all())
}

/// Remembers a filter's verdict per string id, so each distinct name is judged once.
struct Verdicts {
    by_id: Vec<u8>,
    none: bool,
}

impl Verdicts {
    const UNKNOWN: u8 = 0;
    const KEEP: u8 = 1;
    const DROP: u8 = 2;

    fn new(strings: usize, none: bool) -> Verdicts {
        Verdicts { by_id: vec![Verdicts::UNKNOWN; strings], none }
    }

    fn keeps(&mut self, id: u32, strings: &[&str], judge: impl Fn(&str) -> bool) -> bool {
        if id == NONE_STR {
            return self.none;
        }
        let Some(slot) = self.by_id.get_mut(id as usize) else { return true };
        if *slot == Verdicts::UNKNOWN {
            *slot = if strings.get(id as usize).is_some_and(|s| judge(s)) { Verdicts::KEEP } else { Verdicts::DROP };
        }
        *slot == Verdicts::KEEP
    }
}

/// The ids and sizes of one row, as a [`RowRule`] judges it.
struct RowIds {
    cloud: u32,
    itype: u32,
    accelerator: u32,
    accelerator_count: f64,
    vcpus: Option<f64>,
    memory_gib: Option<f64>,
}

/// A [`RowRule`] with its verdicts so far, so that each distinct name (and each cloud's size
/// bounds) is judged once per load.
struct RuleState<'r> {
    rule: &'r RowRule,
    clouds: Verdicts,
    accelerators: Verdicts,
    instance_types: Verdicts,
    /// Per instance-type id and has-accelerator: the cloud id judged with, and the verdict.
    machine_types: Vec<[(u32, u8); 2]>,
    bounds: Option<(u32, SizeBounds)>,
}

impl<'r> RuleState<'r> {
    fn new(rule: &'r RowRule, strings: usize) -> RuleState<'r> {
        RuleState {
            rule,
            clouds: Verdicts::new(strings, false),
            accelerators: Verdicts::new(strings, rule.keeps_accelerator(None)),
            instance_types: Verdicts::new(strings, false),
            machine_types: if rule.machine_rule().is_some() { vec![[(NONE_STR, Verdicts::UNKNOWN); 2]; strings] } else { Vec::new() },
            bounds: None,
        }
    }

    fn keeps(&mut self, row: &RowIds, strings: &[&str]) -> bool {
        let rule = self.rule;
        if !self.clouds.keeps(row.cloud, strings, |c| rule.keeps_cloud(c))
            || !self.accelerators.keeps(row.accelerator, strings, |a| rule.keeps_accelerator(Some(a)))
            || !self.instance_types.keeps(row.itype, strings, |t| rule.keeps_instance_type(t))
        {
            return false;
        }
        let Some(machines) = rule.machine_rule() else { return true };
        let name = |id: u32| strings.get(id as usize).copied().unwrap_or_default();
        let has_accelerator = row.accelerator != NONE_STR && row.accelerator_count > 0.0;
        let Some(slot) = self.machine_types.get_mut(row.itype as usize).map(|s| &mut s[has_accelerator as usize]) else {
            return true;
        };
        if slot.0 != row.cloud || slot.1 == Verdicts::UNKNOWN {
            let kept = machines.keeps_type(name(row.cloud), name(row.itype), has_accelerator);
            *slot = (row.cloud, if kept { Verdicts::KEEP } else { Verdicts::DROP });
        }
        if slot.1 != Verdicts::KEEP {
            return false;
        }
        let bounds = match self.bounds {
            Some((cloud, b)) if cloud == row.cloud => b,
            _ => {
                let b = machines.size_bounds(name(row.cloud));
                self.bounds = Some((row.cloud, b));
                b
            }
        };
        bounds.admits(row.vcpus, row.memory_gib)
    }
}

/// Decode the rows of a body returned by [`open`] that `filter` keeps, in file order. Rows it
/// drops are never turned into [`Offer`]s: that is most of the cost of a load.
pub fn decode_body_filtered(body: &[u8], filter: &OfferFilter) -> Result<Vec<Offer>, IndexError> {
    let mut cur = Cursor { b: body, pos: 12 };
    let rows = cur.u32()? as usize;
    let n_strings = cur.u32()? as usize;
    let mut strings: Vec<&str> = Vec::with_capacity(n_strings.min(body.len()));
    for _ in 0..n_strings {
        let len = cur.u32()? as usize;
        let bytes = cur.take(len)?;
        strings.push(std::str::from_utf8(bytes).map_err(|e| IndexError::Malformed(format!("string table: {e}")))?);
    }
    let mut text: Vec<&[u8]> = Vec::with_capacity(STR_COLUMNS);
    for _ in 0..STR_COLUMNS {
        text.push(cur.words(rows, 4)?);
    }
    let mut numbers: Vec<&[u8]> = Vec::with_capacity(F64_COLUMNS);
    for _ in 0..F64_COLUMNS {
        numbers.push(cur.words(rows, 8)?);
    }
    let fetched = cur.words(rows, 8)?;
    if cur.pos != body.len() {
        return Err(IndexError::Malformed(format!("{} bytes after the last column", body.len() - cur.pos)));
    }
    // Each distinct string becomes one shared `Arc<str>` the first time a kept row uses it.
    let mut shared: Vec<Option<Arc<str>>> = vec![None; strings.len()];
    let mut opt = |col: usize, i: usize| -> Result<Option<Arc<str>>, IndexError> {
        let id = word32(text[col], i);
        if id == NONE_STR {
            return Ok(None);
        }
        let slot = shared
            .get_mut(id as usize)
            .ok_or_else(|| IndexError::Malformed(format!("row {i}: string id {id} out of range")))?;
        Ok(Some(slot.get_or_insert_with(|| Arc::from(strings[id as usize])).clone()))
    };
    let num = |col: usize, i: usize| -> Option<f64> {
        match word64(numbers[col], i) {
            NONE_F64 => None,
            bits => Some(f64::from_bits(bits)),
        }
    };
    let mut rules: Vec<RuleState> = filter.rules().unwrap_or_default().iter().map(|r| RuleState::new(r, n_strings)).collect();
    // The rows to keep are chosen first, so that the offers are allocated once at their final
    // size: growing a vector of 20k offers by doubling copies (and faults in) twice the memory.
    let kept: Vec<u32> = if filter.is_all() {
        (0..rows as u32).collect()
    } else {
        (0..rows)
            .filter(|&i| {
                let row = RowIds {
                    cloud: word32(text[0], i),
                    itype: word32(text[1], i),
                    accelerator: word32(text[4], i),
                    accelerator_count: num(0, i).unwrap_or(0.0),
                    vcpus: num(2, i),
                    memory_gib: num(3, i),
                };
                rules.iter_mut().any(|r| r.keeps(&row, &strings))
            })
            .map(|i| i as u32)
            .collect()
    };
    let mut offers = Vec::with_capacity(kept.len());
    for i in kept {
        let i = i as usize;
        let millis = word64(fetched, i) as i64;
        let fetched_at = DateTime::from_timestamp_millis(millis)
            .ok_or_else(|| IndexError::Malformed(format!("row {i}: timestamp out of range")))?;
        let mut req = |col: usize| {
            opt(col, i)?.ok_or_else(|| IndexError::Malformed(format!("row {i}: empty required text")))
        };
        let (cloud, instance_type, region, source) = (req(0)?, req(1)?, req(2)?, req(7)?);
        let spot_interruption = match opt(9, i)? {
            None => None,
            Some(label) => Some(crate::offer::SpotInterruption::from_label(&label).ok_or_else(|| {
                IndexError::Malformed(format!("row {i}: spot_interruption {label:?} is not a bucket"))
            })?),
        };
        let hyperv_generations = match opt(10, i)? {
            None => None,
            Some(text) => Some(
                crate::offer::HypervGenerations::parse(&text)
                    .map_err(|m| IndexError::Malformed(format!("row {i}: hyperv_generations: {m}")))?,
            ),
        };
        offers.push(Offer {
            cloud,
            instance_type,
            region,
            zone: opt(3, i)?,
            accelerator_name: opt(4, i)?,
            accelerator_vendor: opt(5, i)?,
            arch: opt(6, i)?,
            source,
            price_breakdown: opt(8, i)?,
            spot_interruption,
            hyperv_generations,
            accelerator_count: num(0, i).unwrap_or(0.0),
            accelerator_memory_gib: num(1, i),
            vcpus: num(2, i),
            memory_gib: num(3, i),
            price: num(4, i),
            spot_price: num(5, i),
            fetched_at,
        });
    }
    Ok(offers)
}

/// [`open`] then [`decode_body`]: the stamp and the offers of an index.
pub fn decode(bytes: &[u8]) -> Result<(SourceStamp, Vec<Offer>), IndexError> {
    let (stamp, body) = open(bytes)?;
    Ok((stamp, decode_body(body)?))
}

#[cfg(feature = "parquet")]
pub use files::{
    index_path, load_offers, load_offers_bytes, load_offers_bytes_filtered, load_offers_filtered, publish, IndexedOffers,
};

#[cfg(feature = "parquet")]
mod files {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::error::{CatalogError, Result};
    use crate::fsutil::{sha256_hex, write_atomic};
    use crate::parquet;

    /// The index kept beside a Parquet catalog file: `aws.parquet` → `aws.idx`.
    pub fn index_path(parquet: &Path) -> PathBuf {
        parquet.with_extension(EXTENSION)
    }

    /// The offers of one catalog file and how they were read.
    #[derive(Debug)]
    pub struct IndexedOffers {
        pub offers: Vec<Offer>,
        /// Whether the offers came from the index (false: decoded from Parquet).
        pub from_index: bool,
        /// One line when the index was missing or stale and was rebuilt (or could not be).
        pub note: Option<String>,
        /// One line when the index was corrupt and the Parquet file was read instead.
        pub warning: Option<String>,
    }

    /// Write `offers` to the Parquet file `path`, then its index, each atomically; returns the
    /// Parquet file's SHA-256 (hex). The index is built from the Parquet bytes just written, as
    /// decoded, so the two always answer the same. Killed between the two writes, the old index
    /// is left stamped with the old Parquet file: the next load finds it stale and rebuilds it.
    pub fn publish(path: &Path, offers: &[Offer]) -> Result<String> {
        let bytes = parquet::write_offers_bytes(offers)?;
        write_atomic(path, &bytes)?;
        let index = index_path(path);
        match parquet::read_offers_bytes(&bytes) {
            Ok(back) => write_atomic(&index, &encode(&back, SourceStamp::of(&bytes)))?,
            Err(e) => {
                // The Parquet file will not load either; an index of it must not answer instead.
                let _ = std::fs::remove_file(&index);
                return Err(CatalogError::file(path, format!("written but not readable back: {e}")));
            }
        }
        Ok(sha256_hex(&bytes))
    }

    /// The offers of the Parquet file `path`, through its index when that is present, intact and
    /// built from these Parquet bytes. A missing or stale index is rebuilt (a note); a corrupt one
    /// is reported (a warning), the Parquet file is read instead, and the index rewritten. Errors
    /// are the Parquet file's only: an index problem never fails a load.
    pub fn load_offers(path: &Path) -> Result<IndexedOffers> {
        load_offers_filtered(path, &OfferFilter::all())
    }

    /// [`load_offers`], keeping only the rows `filter` keeps. An index rebuilt on the way holds
    /// every row of the Parquet file, whatever the filter.
    pub fn load_offers_filtered(path: &Path, filter: &OfferFilter) -> Result<IndexedOffers> {
        // Mapped, not read: the Parquet bytes are only checksummed against the index's stamp
        // unless the index cannot answer.
        let bytes = map_file(path).map_err(|e| CatalogError::io(path, e))?;
        let index = index_path(path);
        let existing = match map_file(&index) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let warning = format!("{}: cannot read the index ({e}); reading the Parquet file", index.display());
                let mut loaded = read_parquet(path, &bytes, None, Some(warning))?;
                loaded.offers.retain(|o| filter.keeps(o));
                return Ok(loaded);
            }
        };
        let mut loaded = load_unfiltered_or_index(path, &bytes, existing.as_deref(), filter)?;
        if !loaded.from_index {
            let rebuilt = write_atomic(&index, &encode(&loaded.offers, SourceStamp::of(&bytes)));
            if let (Err(e), None) = (&rebuilt, &loaded.warning) {
                loaded.note = Some(format!("{}: cannot write the index: {e}", index.display()));
            }
            loaded.offers.retain(|o| filter.keeps(o));
        }
        Ok(loaded)
    }

    /// A catalog or index file's bytes, mapped rather than read: a command touches only the
    /// columns and rows it needs, and no copy of the file is made. (Checksums still read every
    /// byte.)
    enum FileBytes {
        Mapped(memmap2::Mmap),
        Empty,
    }

    impl std::ops::Deref for FileBytes {
        type Target = [u8];
        fn deref(&self) -> &[u8] {
            match self {
                FileBytes::Mapped(m) => m,
                FileBytes::Empty => &[],
            }
        }
    }

    fn map_file(path: &Path) -> std::io::Result<FileBytes> {
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            // An empty mapping is an error on some systems; an empty file is just corrupt.
            return Ok(FileBytes::Empty);
        }
        // SAFETY: skycat replaces catalog and index files only by renaming a complete new file
        // over them (`write_atomic`), which leaves this mapping on the old file; no skycat
        // process writes one in place. A mapping changes under us only if another program rewrites the
        // file in place while we read it — the same contract ripgrep's mmap search has.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(FileBytes::Mapped(map))
    }

    /// [`load_offers`] on bytes in memory (the embedded catalog): `index` is the index's bytes,
    /// if any. Nothing is written; `from_index` says whether the index was used.
    pub fn load_offers_bytes(path: &Path, parquet: &[u8], index: Option<&[u8]>) -> Result<IndexedOffers> {
        load_offers_bytes_filtered(path, parquet, index, &OfferFilter::all())
    }

    /// [`load_offers_bytes`], keeping only the rows `filter` keeps.
    pub fn load_offers_bytes_filtered(
        path: &Path,
        parquet: &[u8],
        index: Option<&[u8]>,
        filter: &OfferFilter,
    ) -> Result<IndexedOffers> {
        let mut loaded = load_unfiltered_or_index(path, parquet, index, filter)?;
        if !loaded.from_index {
            loaded.offers.retain(|o| filter.keeps(o));
        }
        Ok(loaded)
    }

    /// Through the index, `filter`'s rows; from Parquet (`from_index` false), every row, so
    /// that the caller can rebuild the index before filtering.
    fn load_unfiltered_or_index(
        path: &Path,
        parquet: &[u8],
        index: Option<&[u8]>,
        filter: &OfferFilter,
    ) -> Result<IndexedOffers> {
        let index_name = index_path(path);
        let stamp = SourceStamp::of(parquet);
        let Some(index) = index else {
            let note = format!("{}: no index; built it from the Parquet file", index_name.display());
            return read_parquet(path, parquet, Some(note), None);
        };
        let corrupt = |e: IndexError| {
            format!("{}: corrupt index ({e}); reading the Parquet file instead", index_name.display())
        };
        match open(index) {
            Ok((s, body)) if s == stamp => match decode_body_filtered(body, filter) {
                Ok(offers) => Ok(IndexedOffers { offers, from_index: true, note: None, warning: None }),
                Err(e) => read_parquet(path, parquet, None, Some(corrupt(e))),
            },
            Ok(_) | Err(IndexError::Version(_)) => {
                let note = format!("{}: stale index (the Parquet file changed); rebuilt it", index_name.display());
                read_parquet(path, parquet, Some(note), None)
            }
            Err(e) => read_parquet(path, parquet, None, Some(corrupt(e))),
        }
    }

    fn read_parquet(path: &Path, bytes: &[u8], note: Option<String>, warning: Option<String>) -> Result<IndexedOffers> {
        let offers = parquet::read_offers_bytes_at(path, bytes)?;
        Ok(IndexedOffers { offers, from_index: false, note, warning })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn offer(i: usize) -> Offer {
        Offer {
            cloud: ["aws", "gcp"][i % 2].into(),
            instance_type: format!("t{}", i % 5).into(),
            region: "r".into(),
            zone: [Some("z".into()), None, None][i % 3].clone(),
            accelerator_name: [Some("A100".into()), None][i % 2].clone(),
            accelerator_count: (i % 4) as f64,
            accelerator_memory_gib: None,
            accelerator_vendor: None,
            vcpus: Some(i as f64 + 0.5),
            memory_gib: None,
            arch: Some("x86_64".into()),
            price: Some(1.0 + i as f64),
            spot_price: None,
            fetched_at: DateTime::<Utc>::from_timestamp_millis(1_764_000_000_000 + i as i64).expect("time"),
            source: "test".into(),
            price_breakdown: None,
            spot_interruption: crate::offer::SpotInterruption::from_index(i % 7),
            hyperv_generations: [None, crate::offer::HypervGenerations::parse("V1,V2").ok(), crate::offer::HypervGenerations::parse("V2").ok()][i % 3],
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let offers: Vec<Offer> = (0..50).map(offer).collect();
        let stamp = SourceStamp { size: 7, crc32: 9 };
        let bytes = encode(&offers, stamp);
        assert_eq!(decode(&bytes).expect("decode"), (stamp, offers));
        assert_eq!(decode(&encode(&[], stamp)).expect("empty"), (stamp, Vec::new()));
    }

    #[test]
    fn every_truncation_and_single_bit_flip_is_detected() {
        let offers: Vec<Offer> = (0..6).map(offer).collect();
        let bytes = encode(&offers, SourceStamp { size: 1, crc32: 2 });
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated to {n}");
        }
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[at] ^= 1 << bit;
                assert!(decode(&b).is_err(), "flip byte {at} bit {bit}");
            }
        }
    }
}
