//! AWS Price List bulk offer files: `region_index.json` and `<region>/index.csv`.
//!
//! The CSV has a 5-line preamble (`FormatVersion`, `Disclaimer`, `Publication Date`, `Version`,
//! `OfferCode`), then a header, then rows where every non-empty field is double-quoted and
//! empty fields are bare. A region file is hundreds of MB, mostly Reserved terms and non-Linux
//! rows, so parsing is two passes over a file streamed to disk:
//!
//! 1. a byte pre-filter keeps the header and the lines whose `TermType` field is `OnDemand`
//!    and which contain the quoted tokens `"Linux"`, `"Shared"` and `"Used"` (necessary
//!    conditions: a field equal to `Linux` is written `"Linux"`). It runs only on files whose
//!    header is quoted, i.e. that follow the quoting convention above;
//! 2. polars' CSV reader parses the kept bytes (all columns as strings, only the needed columns
//!    by name), then the exact filters run per row: OnDemand term, Linux, Shared tenancy,
//!    CapacityStatus `Used`, no pre-installed software (`NA`), no licence (`No License
//!    required`), MarketOption `OnDemand`, unit `Hrs`, currency USD, product family
//!    `Compute Instance*`, region code = the region, price > 0.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;

use crate::error::FetchError;

/// One Linux on-demand price row of an offer file.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkRow {
    pub instance_type: String,
    pub vcpus: Option<f64>,
    pub memory_gib: Option<f64>,
    /// `GPU` column: count of GPUs (fractional for partitioned GPUs); None when empty.
    pub gpu_count: Option<f64>,
    pub physical_processor: Option<String>,
    pub price: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkFile {
    pub rows: Vec<BulkRow>,
    pub version: Option<String>,
    pub publication_date: Option<String>,
    /// Data rows in the file.
    pub total_rows: u64,
    /// Rows left out, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
}

const COL_TERM: &str = "TermType";
const COL_PRICE: &str = "PricePerUnit";
const COL_TYPE: &str = "Instance Type";
const COL_OS: &str = "Operating System";
const COL_TENANCY: &str = "Tenancy";
/// Required: without them the file cannot be filtered correctly.
const REQUIRED: &[&str] = &[COL_TERM, COL_PRICE, COL_TYPE, COL_OS, COL_TENANCY];
/// Used when present (the header set varies between file versions).
const OPTIONAL: &[&str] = &[
    "Unit",
    "Currency",
    "Product Family",
    "Region Code",
    "Location Type",
    "vCPU",
    "Memory",
    "GPU",
    "Physical Processor",
    "CapacityStatus",
    "Pre Installed S/W",
    "License Model",
    "MarketOption",
];

/// Split one CSV record (no embedded newlines) into unquoted fields.
fn split_record(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches(['\r', '\n']).chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The `idx`-th field of a quoted CSV line, as raw bytes without quotes (None if the line is
/// shorter). Fields before it must not contain `","` sequences (true for SKU/term/rate codes).
fn nth_field(line: &[u8], idx: usize) -> Option<&[u8]> {
    let mut start = 0usize;
    let mut field = 0usize;
    let mut i = 0usize;
    let mut quoted = false;
    while i < line.len() {
        match line[i] {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                if field == idx {
                    return Some(trim_quotes(&line[start..i]));
                }
                field += 1;
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if field == idx {
        let mut end = line.len();
        while end > start && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
            end -= 1;
        }
        return Some(trim_quotes(&line[start..end]));
    }
    None
}

fn trim_quotes(b: &[u8]) -> &[u8] {
    if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' {
        &b[1..b.len() - 1]
    } else {
        b
    }
}

fn parse_memory_gib(s: &str) -> Option<f64> {
    // "16 GiB", "0.5 GiB", "1,952 GiB"
    let num = s.trim().trim_end_matches("GiB").trim().replace(',', "");
    num.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn parse_num(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() || t == "NA" {
        return None;
    }
    t.replace(',', "").parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Parse an offer CSV at `path` for `region`. `what` names the file in errors (its URL).
pub fn parse_offer_csv(path: &Path, region: &str, what: &str) -> Result<BulkFile, FetchError> {
    parse_offer_csv_opts(path, region, what, true)
}

/// [`parse_offer_csv`] with the byte pre-filter switchable (off: polars parses every row; the
/// benchmark measures both).
pub fn parse_offer_csv_opts(path: &Path, region: &str, what: &str, prefilter: bool) -> Result<BulkFile, FetchError> {
    let file = std::fs::File::open(path).map_err(|e| FetchError::io(path, e))?;
    let mut rd = BufReader::with_capacity(1 << 20, file);
    let mut out = BulkFile::default();

    // Preamble.
    let mut line = String::new();
    for i in 0..5 {
        line.clear();
        let n = rd.read_line(&mut line).map_err(|e| FetchError::io(path, e))?;
        let f = split_record(&line);
        let key = f.first().map(|s| s.as_str()).unwrap_or("");
        let expected = ["FormatVersion", "Disclaimer", "Publication Date", "Version", "OfferCode"][i];
        if n == 0 || key != expected {
            return Err(FetchError::malformed(
                what,
                format!("line {}: expected the preamble record `{expected}`, found `{}`", i + 1, line.trim()),
            ));
        }
        match key {
            "Publication Date" => out.publication_date = f.get(1).cloned(),
            "Version" => out.version = f.get(1).cloned(),
            _ => {}
        }
    }
    // Header.
    let mut header_line = String::new();
    rd.read_line(&mut header_line).map_err(|e| FetchError::io(path, e))?;
    let header = split_record(&header_line);
    for col in REQUIRED {
        if !header.iter().any(|h| h == col) {
            return Err(FetchError::malformed(what, format!("header has no `{col}` column")));
        }
    }
    let term_idx = header.iter().position(|h| h == COL_TERM).unwrap_or(0);
    let quoted = prefilter && header_line.starts_with('"');

    // Pass 1: pre-filter into memory (header + kept lines).
    let mut kept: Vec<u8> = Vec::with_capacity(1 << 20);
    kept.extend_from_slice(header_line.as_bytes());
    if !header_line.ends_with('\n') {
        kept.push(b'\n');
    }
    let mut total = 0u64;
    let mut not_ondemand = 0u64;
    let mut not_linux_shared_used = 0u64;
    if quoted {
        let finder_linux = memchr::memmem::Finder::new(b"\"Linux\"");
        let finder_shared = memchr::memmem::Finder::new(b"\"Shared\"");
        let finder_used = memchr::memmem::Finder::new(b"\"Used\"");
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 4 << 20];
        loop {
            let n = rd.read(&mut chunk).map_err(|e| FetchError::io(path, e))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut start = 0usize;
            for nl in memchr::memchr_iter(b'\n', &buf) {
                let l = &buf[start..=nl];
                start = nl + 1;
                filter_line(
                    l,
                    term_idx,
                    &finder_linux,
                    &finder_shared,
                    &finder_used,
                    &mut kept,
                    &mut total,
                    &mut not_ondemand,
                    &mut not_linux_shared_used,
                );
            }
            buf.drain(..start);
        }
        if !buf.is_empty() {
            let mut l = std::mem::take(&mut buf);
            l.push(b'\n');
            filter_line(
                &l,
                term_idx,
                &finder_linux,
                &finder_shared,
                &finder_used,
                &mut kept,
                &mut total,
                &mut not_ondemand,
                &mut not_linux_shared_used,
            );
        }
    } else {
        rd.read_to_end(&mut kept).map_err(|e| FetchError::io(path, e))?;
    }

    // Pass 2: polars.
    let mut wanted: Vec<&str> = REQUIRED.to_vec();
    wanted.extend(OPTIONAL.iter().filter(|c| header.iter().any(|h| h == *c)));
    let cols: Arc<[PlSmallStr]> = wanted.iter().map(|c| PlSmallStr::from(*c)).collect();
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .with_columns(Some(cols))
        .with_raise_if_empty(false)
        .into_reader_with_file_handle(Cursor::new(kept))
        .finish()
        .map_err(|e| FetchError::malformed(what, e))?;
    if !quoted {
        total = df.height() as u64;
    }
    out.total_rows = total;
    if not_ondemand > 0 {
        out.skipped.insert("aws bulk: not an OnDemand term", not_ondemand);
    }
    if not_linux_shared_used > 0 {
        out.skipped.insert("aws bulk: not Linux/Shared/Used", not_linux_shared_used);
    }

    let col = |name: &str| -> Result<Option<StringChunked>, FetchError> {
        match df.column(name) {
            Ok(c) => c.str().map(|s| Some(s.clone())).map_err(|e| FetchError::malformed(what, e)),
            Err(_) => Ok(None),
        }
    };
    let get = |c: &Option<StringChunked>, i: usize| -> Option<String> {
        c.as_ref().and_then(|c| c.get(i)).map(|s| s.to_string())
    };
    let term = col(COL_TERM)?;
    let price = col(COL_PRICE)?;
    let itype = col(COL_TYPE)?;
    let os = col(COL_OS)?;
    let tenancy = col(COL_TENANCY)?;
    let unit = col("Unit")?;
    let currency = col("Currency")?;
    let family = col("Product Family")?;
    let region_code = col("Region Code")?;
    let location_type = col("Location Type")?;
    let vcpu = col("vCPU")?;
    let memory = col("Memory")?;
    let gpu = col("GPU")?;
    let processor = col("Physical Processor")?;
    let capacity = col("CapacityStatus")?;
    let sw = col("Pre Installed S/W")?;
    let license = col("License Model")?;
    let market = col("MarketOption")?;

    let mut skip = |reason: &'static str| *out.skipped.entry(reason).or_insert(0) += 1;
    for i in 0..df.height() {
        let is = |c: &Option<StringChunked>, want: &str| c.as_ref().and_then(|c| c.get(i)) == Some(want);
        let absent_or = |c: &Option<StringChunked>, ok: &[&str]| match c {
            None => true,
            Some(c) => match c.get(i) {
                None => ok.contains(&""),
                Some(v) => ok.contains(&v),
            },
        };
        if !is(&term, "OnDemand") {
            skip("aws bulk: not an OnDemand term");
            continue;
        }
        if !absent_or(&family, &["Compute Instance", "Compute Instance (bare metal)"]) {
            skip("aws bulk: not a compute instance");
            continue;
        }
        if !is(&os, "Linux") {
            skip("aws bulk: not Linux");
            continue;
        }
        if !is(&tenancy, "Shared") {
            skip("aws bulk: not Shared tenancy");
            continue;
        }
        if !absent_or(&capacity, &["Used"]) {
            skip("aws bulk: capacity reservation row");
            continue;
        }
        if !absent_or(&sw, &["NA", ""]) {
            skip("aws bulk: pre-installed software");
            continue;
        }
        if !absent_or(&license, &["No License required", ""]) {
            skip("aws bulk: licensed");
            continue;
        }
        if !absent_or(&market, &["OnDemand", ""]) {
            skip("aws bulk: other market option");
            continue;
        }
        if !absent_or(&unit, &["Hrs"]) || !absent_or(&currency, &["USD"]) {
            skip("aws bulk: not USD per hour");
            continue;
        }
        let in_region = match &region_code {
            Some(c) => c.get(i) == Some(region),
            None => absent_or(&location_type, &["AWS Region"]),
        };
        if !in_region {
            skip("aws bulk: other location (Local Zone, Wavelength, other region)");
            continue;
        }
        let Some(t) = get(&itype, i).filter(|t| !t.is_empty()) else {
            skip("aws bulk: no instance type");
            continue;
        };
        let p = match get(&price, i).as_deref().map(str::trim).map(str::parse::<f64>) {
            Some(Ok(p)) if p.is_finite() => p,
            _ => {
                return Err(FetchError::malformed(
                    what,
                    format!("row for {t}: PricePerUnit `{}` is not a number", get(&price, i).unwrap_or_default()),
                ))
            }
        };
        if p <= 0.0 {
            skip("aws bulk: zero price");
            continue;
        }
        out.rows.push(BulkRow {
            instance_type: t,
            vcpus: get(&vcpu, i).as_deref().and_then(parse_num),
            memory_gib: get(&memory, i).as_deref().and_then(parse_memory_gib),
            gpu_count: get(&gpu, i).as_deref().and_then(parse_num).filter(|g| *g > 0.0),
            physical_processor: get(&processor, i).filter(|s| !s.is_empty() && s != "NA"),
            price: p,
        });
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn filter_line(
    l: &[u8],
    term_idx: usize,
    linux: &memchr::memmem::Finder,
    shared: &memchr::memmem::Finder,
    used: &memchr::memmem::Finder,
    kept: &mut Vec<u8>,
    total: &mut u64,
    not_ondemand: &mut u64,
    not_lsu: &mut u64,
) {
    if l.iter().all(|b| b.is_ascii_whitespace()) {
        return;
    }
    *total += 1;
    if nth_field(l, term_idx) != Some(b"OnDemand".as_slice()) {
        *not_ondemand += 1;
        return;
    }
    if linux.find(l).is_none() || shared.find(l).is_none() || used.find(l).is_none() {
        *not_lsu += 1;
        return;
    }
    kept.extend_from_slice(l);
}

/// `region_index.json`: `regions` is an object keyed by region code.
pub fn parse_region_index(text: &str, what: &str) -> Result<Vec<String>, FetchError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| FetchError::malformed(what, e))?;
    let regions = v
        .get("regions")
        .and_then(|r| r.as_object())
        .ok_or_else(|| FetchError::malformed(what, "no `regions` object"))?;
    Ok(regions.keys().cloned().collect())
}

/// Whether a region code is a real AWS region (`us-east-1`, `us-gov-west-1`, `eu-central-2`),
/// not a Local Zone / Wavelength code (`us-west-2-lax-1`).
pub fn is_region_code(code: &str) -> bool {
    let parts: Vec<&str> = code.split('-').collect();
    let (head, rest) = match parts.as_slice() {
        [a, "gov", b, n] | [a, "iso", b, n] | [a, "isob", b, n] => (*a, [*b, *n]),
        [a, b, n] => (*a, [*b, *n]),
        _ => return false,
    };
    head.len() == 2
        && head.chars().all(|c| c.is_ascii_lowercase())
        && rest[0].chars().all(|c| c.is_ascii_lowercase())
        && !rest[1].is_empty()
        && rest[1].chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_regions() {
        assert_eq!(split_record("\"a\",,\"b,c\",\"d\"\"e\"\n"), vec!["a", "", "b,c", "d\"e"]);
        assert_eq!(nth_field(b"\"S\",\"T\",\"R\",\"OnDemand\",\"x\"\n", 3), Some(b"OnDemand".as_slice()));
        assert_eq!(nth_field(b"\"S\",,\"R\",\"Reserved\"\n", 3), Some(b"Reserved".as_slice()));
        assert_eq!(nth_field(b"\"S\"\n", 3), None);
        assert!(is_region_code("us-east-1"));
        assert!(is_region_code("us-gov-west-1"));
        assert!(is_region_code("ap-southeast-5"));
        assert!(!is_region_code("us-west-2-lax-1"));
        assert!(!is_region_code("global"));
        assert_eq!(parse_memory_gib("1,952 GiB"), Some(1952.0));
        assert_eq!(parse_memory_gib("0.5 GiB"), Some(0.5));
    }
}
