//! A bucket source as SkyPilot writes it: `s3://bucket[/prefix]`, `gs://…`, `r2://…`, or
//! `https://<account>.blob.core.windows.net/<container>[/prefix]`.

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    S3,
    R2,
    Gcs,
    Azure,
}

/// A parsed, validated source: the prefix has no empty, `.` or `..` segment and no leading or
/// trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub scheme: Scheme,
    /// Azure's storage account (from the host name); `None` elsewhere.
    pub account: Option<String>,
    pub bucket: String,
    pub prefix: String,
}

const AZURE_HOST_SUFFIX: &str = ".blob.core.windows.net";

impl Source {
    pub fn parse(text: &str) -> Result<Source, Error> {
        let bad = |why: &str| Error::BadSource { text: text.to_string(), why: why.to_string() };
        if text.contains(['?', '#']) || text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("no query, fragment, space or control character is allowed"));
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("expected s3://, gs://, r2:// or https://ACCOUNT.blob.core.windows.net/CONTAINER"))?;
        let (scheme, account, rest) = match scheme {
            "s3" => (Scheme::S3, None, rest),
            "r2" => (Scheme::R2, None, rest),
            "gs" => (Scheme::Gcs, None, rest),
            "https" => {
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                let account = host
                    .strip_suffix(AZURE_HOST_SUFFIX)
                    .ok_or_else(|| bad("an https source must be Azure Blob: https://ACCOUNT.blob.core.windows.net/CONTAINER"))?;
                let ok = (3..=24).contains(&account.len())
                    && account.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                if !ok {
                    return Err(bad("the storage account must be 3-24 lowercase letters and digits"));
                }
                (Scheme::Azure, Some(account.to_string()), path)
            }
            other => return Err(bad(&format!("unknown scheme {other}://; expected s3, gs, r2 or https (Azure Blob)"))),
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(scheme, bucket).map_err(|why| bad(&why))?;
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            for seg in prefix.split('/') {
                if seg.is_empty() || seg == "." || seg == ".." {
                    return Err(bad("the path after the bucket has an empty, `.` or `..` segment"));
                }
            }
        }
        Ok(Source { scheme, account, bucket: bucket.to_string(), prefix: prefix.to_string() })
    }

    /// The URL of `key` (a full object key) in this source's bucket, for messages.
    pub fn url_of(&self, key: &str) -> String {
        let base = match (self.scheme, &self.account) {
            (Scheme::S3, _) => format!("s3://{}", self.bucket),
            (Scheme::R2, _) => format!("r2://{}", self.bucket),
            (Scheme::Gcs, _) => format!("gs://{}", self.bucket),
            (Scheme::Azure, a) => {
                format!("https://{}{AZURE_HOST_SUFFIX}/{}", a.as_deref().unwrap_or(""), self.bucket)
            }
        };
        if key.is_empty() {
            base
        } else {
            format!("{base}/{key}")
        }
    }

    /// This source's URL (bucket and prefix).
    pub fn url(&self) -> String {
        self.url_of(&self.prefix)
    }
}

/// Bucket and container name rules, loose enough for every provider's legal names, strict
/// enough that a name cannot smuggle a path or a host.
fn check_bucket(scheme: Scheme, name: &str) -> Result<(), String> {
    let what = if scheme == Scheme::Azure { "container" } else { "bucket" };
    if name.is_empty() {
        return Err(format!("no {what} name"));
    }
    let max = if scheme == Scheme::Gcs { 222 } else { 63 };
    let legal = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'
            || (c == '.' && scheme != Scheme::Azure)
            || (c == '_' && scheme == Scheme::Gcs)
    };
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() < 3 || name.len() > max || !name.chars().all(legal) || !ends_ok(name.chars().next()) || !ends_ok(name.chars().last())
    {
        return Err(format!(
            "{what} name {name:?} is not legal: 3-{max} lowercase letters, digits{}, starting and ending with a letter or digit",
            match scheme {
                Scheme::Azure => " and hyphens",
                Scheme::Gcs => ", hyphens, dots and underscores",
                _ => ", hyphens and dots",
            }
        ));
    }
    if name.contains("..") {
        return Err(format!("{what} name {name:?} has two dots in a row"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let s = Source::parse("s3://my-bucket/data/train/").unwrap();
        assert_eq!((s.scheme, s.bucket.as_str(), s.prefix.as_str()), (Scheme::S3, "my-bucket", "data/train"));
        assert_eq!(s.url(), "s3://my-bucket/data/train");
        let s = Source::parse("gs://b_1.x").unwrap();
        assert_eq!((s.scheme, s.prefix.as_str()), (Scheme::Gcs, ""));
        assert_eq!(Source::parse("r2://bkt/a").unwrap().scheme, Scheme::R2);
        let s = Source::parse("https://acct01.blob.core.windows.net/cont/x/y.bin").unwrap();
        assert_eq!((s.scheme, s.account.as_deref(), s.bucket.as_str(), s.prefix.as_str()), (Scheme::Azure, Some("acct01"), "cont", "x/y.bin"));
        assert_eq!(s.url_of("x/z"), "https://acct01.blob.core.windows.net/cont/x/z");
    }

    #[test]
    fn refuses_bad_sources_in_one_line() {
        for bad in [
            "bucket/key",
            "ftp://b/k",
            "s3://",
            "s3://B/x",
            "s3://ab",
            "s3://a..b/x",
            "s3://bkt/a/../b",
            "s3://bkt/a//b",
            "s3://bkt/./b",
            "s3://bkt/a?x=1",
            "s3://bkt/a b",
            "https://example.com/c",
            "https://UPPER.blob.core.windows.net/c",
            "https://acct.blob.core.windows.net/c.d",
            "gs://bkt/\n",
        ] {
            let e = Source::parse(bad).expect_err(bad).to_string();
            assert!(e.starts_with("bad source ") && !e.contains('\n'), "{bad}: {e}");
        }
    }
}
