//! A catalog store: skycat's price catalog files published to a bucket prefix, for several
//! `skycat serve` replicas to read. The publish/poll protocol lives here; what the files mean
//! (Parquet, query indexes, the catalog's own `manifest.json`) is the catalog crate's business.
//!
//! Layout under the prefix (see docs/catalog-store.md):
//!
//! ```text
//! <prefix>/current.json              the store manifest: version, content id, files with SHA-256
//! <prefix>/versions/<id>/<file>      immutable: <id> is derived from the files' content
//! ```
//!
//! Publishing uploads every file under a new `versions/<id>/` first, then replaces
//! `current.json` with a conditional put (`If-Match` the ETag read at the start, or
//! `If-None-Match: *` when there is none yet). A reader fetches `current.json` and then exactly
//! the files it names, each checked against its SHA-256, so it sees one version whole or none:
//! files of a version are never rewritten, and the manifest names one version only. Two
//! publishers racing on the same base: the store accepts one conditional put, the other gets
//! [`CatalogStoreError::Conflict`] (or retries on the new base when asked to).
//!
//! Old versions stay for readers in flight: the manifest lists the last `keep` versions, and a
//! prune deletes only folders outside that list and older than a grace period (a folder younger
//! than that may be a concurrent publisher's upload whose manifest swap is still to come).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{one_line, Env, Source};

/// The store manifest's name under the prefix.
pub const MANIFEST: &str = "current.json";
/// The folder of the immutable versions under the prefix.
pub const VERSIONS: &str = "versions";
/// The store manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CatalogStoreError {
    /// The store did not answer, or refused (network, credentials, 5xx after retries).
    #[error("catalog store {url}: {msg}")]
    Unreachable { url: String, msg: String },
    /// `current.json` is not a store manifest this build can read.
    #[error("catalog store {url}: malformed manifest: {why}")]
    Malformed { url: String, why: String },
    /// A file the manifest names is missing or does not match its checksum or size.
    #[error("catalog store {url}: {why}")]
    BadFile { url: String, why: String },
    /// Another publisher replaced the manifest between our read and our conditional put.
    #[error("catalog store {url}: the manifest changed while publishing (it was version {base}{now}); this publish was not installed: run it again to publish on the new version")]
    Conflict { url: String, base: u64, now: String },
    /// Nothing to publish, or a local file that cannot be read.
    #[error("{0}")]
    Local(String),
    #[error("{0}")]
    Config(String),
}

/// One file of a published version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// The file name in the catalogs folder: `<cloud>.parquet`, `<cloud>.idx`, `manifest.json`.
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

/// A version listed in the manifest's history (newest first, the current one included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastVersion {
    pub version: u64,
    pub id: String,
    pub published_at: DateTime<Utc>,
}

/// `current.json`: the one version readers should serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreManifest {
    pub format: u32,
    /// 1 for the first publish, one more with each.
    pub version: u64,
    /// The folder under `versions/` holding this version's files (a digest of their content).
    pub id: String,
    pub published_at: DateTime<Utc>,
    /// Who published (host name and process), for operators.
    pub publisher: String,
    pub files: Vec<StoredFile>,
    /// The versions kept for readers in flight, newest first; prunes delete the others.
    pub history: Vec<PastVersion>,
}

impl StoreManifest {
    /// Parse and validate `current.json`: every name a plain file name, every checksum 64 hex
    /// digits, the id a hex digest, at least one file.
    pub fn parse(url: &str, bytes: &[u8]) -> Result<StoreManifest, CatalogStoreError> {
        let bad = |why: String| CatalogStoreError::Malformed { url: url.to_string(), why };
        let m: StoreManifest = serde_json::from_slice(bytes).map_err(|e| bad(one_line(&e.to_string())))?;
        if m.format != FORMAT {
            return Err(bad(format!("format {} (this build reads format {FORMAT})", m.format)));
        }
        if !is_hex(&m.id, 16..=64) {
            return Err(bad(format!("id {:?} is not a hex digest", m.id)));
        }
        if m.files.is_empty() {
            return Err(bad("it names no file".into()));
        }
        let mut seen = BTreeSet::new();
        for f in &m.files {
            check_name(&f.name).map_err(|why| bad(format!("file {:?}: {why}", f.name)))?;
            if !is_hex(&f.sha256, 64..=64) {
                return Err(bad(format!("file {:?}: sha256 is not 64 hex digits", f.name)));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(bad(format!("file {:?} is listed twice", f.name)));
            }
        }
        if m.history.iter().any(|h| !is_hex(&h.id, 16..=64)) {
            return Err(bad("a history entry's id is not a hex digest".into()));
        }
        Ok(m)
    }
}

fn is_hex(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A file name a version may hold: the catalog's own files only, never a path.
pub fn check_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if !plain {
        return Err("not a plain lowercase file name".into());
    }
    if name == "manifest.json" || name.ends_with(".parquet") || name.ends_with(".idx") {
        Ok(())
    } else {
        Err("not a catalog file (<cloud>.parquet, <cloud>.idx or manifest.json)".into())
    }
}

/// What a read of the manifest found.
#[derive(Debug)]
pub enum ManifestRead {
    /// The ETag given still matches: nothing changed (the store sent no body).
    Unchanged,
    /// Nothing was ever published under this prefix.
    Missing,
    Current { manifest: StoreManifest, etag: String },
}

/// A version's files uploaded, not yet named by the manifest.
#[derive(Debug, Clone)]
pub struct PreparedVersion {
    pub id: String,
    pub files: Vec<StoredFile>,
}

/// A successful publish.
#[derive(Debug, Clone)]
pub struct Published {
    pub manifest: StoreManifest,
    /// The new manifest's ETag (a poll with it is [`ManifestRead::Unchanged`]).
    pub etag: String,
    /// Manifest swaps lost to other publishers before this one won.
    pub conflicts: u32,
    /// Version folders deleted by the prune after the swap.
    pub pruned: usize,
    /// A prune that failed (the publish itself succeeded).
    pub prune_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Versions the manifest keeps listed (and prunes spare), the new one included.
    pub keep: usize,
    /// A version folder younger than this is never pruned.
    pub prune_grace: Duration,
    /// On a lost manifest swap, publish again on the new base this many times; 0: fail with
    /// [`CatalogStoreError::Conflict`].
    pub retries: u32,
    /// Recorded in the manifest.
    pub publisher: String,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions { keep: 5, prune_grace: Duration::from_secs(3600), retries: 0, publisher: default_publisher() }
    }
}

/// `<host>:<pid>`.
pub fn default_publisher() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{}:{}", if host.is_empty() { "unknown" } else { &host }, std::process::id())
}

/// The catalog files of a catalogs folder (`$SKYCAT_HOME/catalogs`): every `<cloud>.parquet`,
/// its `<cloud>.idx` where present, and `manifest.json`; sorted by name.
pub fn catalog_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, CatalogStoreError> {
    let local = |e: std::io::Error, p: &Path| CatalogStoreError::Local(format!("{}: {e}", p.display()));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| local(e, dir))? {
        let entry = entry.map_err(|e| local(e, dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if check_name(&name).is_err() || !entry.file_type().map_err(|e| local(e, &entry.path()))?.is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(|e| local(e, &entry.path()))?;
        out.push((name, bytes));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if !out.iter().any(|(n, _)| n.ends_with(".parquet")) {
        return Err(CatalogStoreError::Local(format!("{}: no <cloud>.parquet file to publish", dir.display())));
    }
    Ok(out)
}

fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A catalog store at one bucket prefix.
#[derive(Clone)]
pub struct CatalogStore {
    store: Arc<dyn ObjectStore>,
    src: Source,
}

/// Client settings for the catalog store: a request may take at most two minutes (a catalog
/// file is a few MB), and a failing one is retried twice within ten seconds, so that a poll of
/// an unreachable store fails fast and the next poll tries again.
pub fn tuning() -> crate::stores::Tuning {
    crate::stores::Tuning {
        request_timeout: Some(Duration::from_secs(120)),
        retry: object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..Default::default()
        },
    }
}

impl CatalogStore {
    /// The store at `url` (`s3://bucket/prefix`, `gs://…`, `r2://…`, Azure), with credentials
    /// and endpoints from `env`.
    pub async fn open(url: &str, env: &Env) -> Result<CatalogStore, CatalogStoreError> {
        let src = Source::parse(url).map_err(|e| CatalogStoreError::Config(format!("--catalog-store: {e}")))?;
        let store = crate::stores::build_tuned(&src, env, &tuning())
            .await
            .map_err(|e| CatalogStoreError::Config(env.redactor().apply(&e.to_string())))?;
        Ok(CatalogStore { store, src })
    }

    pub fn new(store: Arc<dyn ObjectStore>, src: Source) -> CatalogStore {
        CatalogStore { store, src }
    }

    /// The store's URL (bucket and prefix).
    pub fn url(&self) -> String {
        self.src.url()
    }

    fn key(&self, rel: &str) -> String {
        if self.src.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.src.prefix)
        }
    }

    fn path(&self, rel: &str) -> ObjectPath {
        ObjectPath::from(self.key(rel))
    }

    fn unreachable(&self, rel: &str, e: impl std::fmt::Display) -> CatalogStoreError {
        CatalogStoreError::Unreachable { url: self.src.url_of(&self.key(rel)), msg: one_line(&e.to_string()) }
    }

    /// Read `current.json`; with `known_etag`, a conditional GET (`If-None-Match`) that costs
    /// no body when nothing changed.
    pub async fn read_manifest(&self, known_etag: Option<&str>) -> Result<ManifestRead, CatalogStoreError> {
        let opts = GetOptions { if_none_match: known_etag.map(str::to_string), ..Default::default() };
        let got = match self.store.get_opts(&self.path(MANIFEST), opts).await {
            Ok(g) => g,
            Err(object_store::Error::NotModified { .. }) => return Ok(ManifestRead::Unchanged),
            Err(object_store::Error::NotFound { .. }) => return Ok(ManifestRead::Missing),
            Err(e) => return Err(self.unreachable(MANIFEST, e)),
        };
        let etag = got.meta.e_tag.clone().unwrap_or_default();
        let bytes = got.bytes().await.map_err(|e| self.unreachable(MANIFEST, e))?;
        if etag.is_empty() {
            return Err(self.unreachable(MANIFEST, "the store sent no ETag for the manifest (conditional updates need one)"));
        }
        let manifest = StoreManifest::parse(&self.src.url_of(&self.key(MANIFEST)), &bytes)?;
        Ok(ManifestRead::Current { manifest, etag })
    }

    /// The files `m` names, each checked against its size and SHA-256, in the manifest's order.
    pub async fn download(&self, m: &StoreManifest) -> Result<Vec<(String, Vec<u8>)>, CatalogStoreError> {
        // One task per file (a catalog is a handful of files), on owned data so that the
        // future stays `Send` for any caller.
        let mut tasks = tokio::task::JoinSet::new();
        for (i, f) in m.files.iter().enumerate() {
            let rel = format!("{VERSIONS}/{}/{}", m.id, f.name);
            let (store, path, f, version) = (self.store.clone(), self.path(&rel), f.clone(), m.version);
            let url = self.src.url_of(&self.key(&rel));
            tasks.spawn(async move {
                let unreachable = |e: object_store::Error| CatalogStoreError::Unreachable { url: url.clone(), msg: one_line(&e.to_string()) };
                let bytes = match store.get(&path).await {
                    Ok(g) => g.bytes().await.map_err(unreachable)?,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(CatalogStoreError::BadFile {
                            url: url.clone(),
                            why: format!("missing, though manifest version {version} names it"),
                        })
                    }
                    Err(e) => return Err(unreachable(e)),
                };
                if bytes.len() as u64 != f.size || sha256_hex(&bytes) != f.sha256 {
                    return Err(CatalogStoreError::BadFile {
                        url: url.clone(),
                        why: format!("does not match manifest version {version} (size or SHA-256 differs)"),
                    });
                }
                Ok((i, f.name, bytes.to_vec()))
            });
        }
        let mut out = Vec::with_capacity(m.files.len());
        while let Some(r) = tasks.join_next().await {
            let r = r.map_err(|e| CatalogStoreError::Local(format!("download task failed: {e}")))?;
            out.push(r?);
        }
        out.sort_by_key(|(i, _, _)| *i);
        Ok(out.into_iter().map(|(_, n, b)| (n, b)).collect())
    }

    /// Publish `files` as the next version: upload them under `versions/<id>/`, then swap the
    /// manifest conditionally (see the module documentation), then prune.
    pub async fn publish(&self, files: Vec<(String, Vec<u8>)>, opts: &PublishOptions) -> Result<Published, CatalogStoreError> {
        let prepared = self.upload_version(files).await?;
        let mut conflicts = 0;
        loop {
            let base = match self.read_manifest(None).await? {
                ManifestRead::Current { manifest, etag } => Some((manifest, etag)),
                ManifestRead::Missing => None,
                ManifestRead::Unchanged => unreachable!("read without an ETag"),
            };
            match self.install(&prepared, base.as_ref(), opts).await {
                Err(CatalogStoreError::Conflict { .. }) if conflicts < opts.retries => conflicts += 1,
                Ok(mut p) => {
                    p.conflicts = conflicts;
                    return Ok(p);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Step one of a publish: upload `files` under `versions/<id>/`. Nothing reads them until a
    /// manifest names them.
    pub async fn upload_version(&self, mut files: Vec<(String, Vec<u8>)>) -> Result<PreparedVersion, CatalogStoreError> {
        files.sort_by(|a, b| a.0.cmp(&b.0));
        if !files.iter().any(|(n, _)| n.ends_with(".parquet")) {
            return Err(CatalogStoreError::Local("nothing to publish: no <cloud>.parquet file".into()));
        }
        let mut listed = Vec::with_capacity(files.len());
        let mut digest = Sha256::new();
        for (name, bytes) in &files {
            check_name(name).map_err(|why| CatalogStoreError::Local(format!("{name}: {why}")))?;
            let sha = sha256_hex(bytes);
            digest.update(format!("{name}\0{sha}\n"));
            listed.push(StoredFile { name: name.clone(), sha256: sha, size: bytes.len() as u64 });
        }
        // Content-addressed: the same files always land in the same folder, so a retry, or two
        // publishers of identical content, never rewrite a file with other bytes.
        let id: String = digest.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (name, bytes) in files {
            let rel = format!("{VERSIONS}/{id}/{name}");
            let (store, path, url) = (self.store.clone(), self.path(&rel), self.src.url_of(&self.key(&rel)));
            tasks.spawn(async move {
                store
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .map(|_| ())
                    .map_err(|e| CatalogStoreError::Unreachable { url, msg: one_line(&e.to_string()) })
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| CatalogStoreError::Local(format!("upload task failed: {e}")))??;
        }
        Ok(PreparedVersion { id, files: listed })
    }

    /// Step two: replace the manifest `base` (read with its ETag; `None`: there is none yet) by
    /// one naming `prepared`, with a conditional put, then prune. Another publisher's swap since
    /// `base` was read makes this fail with [`CatalogStoreError::Conflict`].
    pub async fn install(
        &self,
        prepared: &PreparedVersion,
        base: Option<&(StoreManifest, String)>,
        opts: &PublishOptions,
    ) -> Result<Published, CatalogStoreError> {
        let id = &prepared.id;
        let version = base.map_or(1, |(m, _)| m.version + 1);
        let published_at = Utc::now();
        let mut history = vec![PastVersion { version, id: id.clone(), published_at }];
        if let Some((m, _)) = base {
            history.extend(m.history.iter().filter(|h| &h.id != id).cloned());
        }
        history.truncate(opts.keep.max(1));
        let manifest = StoreManifest {
            format: FORMAT,
            version,
            id: id.clone(),
            published_at,
            publisher: opts.publisher.clone(),
            files: prepared.files.clone(),
            history,
        };
        let mut text = serde_json::to_vec_pretty(&manifest).map_err(|e| CatalogStoreError::Local(e.to_string()))?;
        text.push(b'\n');
        let mode = match base {
            Some((_, etag)) => PutMode::Update(UpdateVersion { e_tag: Some(etag.clone()), version: None }),
            None => PutMode::Create,
        };
        let put = PutOptions { mode, ..Default::default() };
        match self.store.put_opts(&self.path(MANIFEST), PutPayload::from(text), put).await {
            Ok(r) => {
                let etag = r.e_tag.unwrap_or_default();
                let (pruned, prune_error) = match self.prune(&manifest, opts.prune_grace).await {
                    Ok(n) => (n, None),
                    Err(e) => (0, Some(e.to_string())),
                };
                Ok(Published { manifest, etag, conflicts: 0, pruned, prune_error })
            }
            Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => {
                let now = match self.read_manifest(None).await {
                    Ok(ManifestRead::Current { manifest: m, .. }) => format!(", now version {} by {}", m.version, m.publisher),
                    _ => String::new(),
                };
                Err(CatalogStoreError::Conflict {
                    url: self.src.url_of(&self.key(MANIFEST)),
                    base: base.map_or(0, |(m, _)| m.version),
                    now,
                })
            }
            Err(e) => Err(self.unreachable(MANIFEST, e)),
        }
    }

    /// Delete the version folders `current` does not list that are older than `grace`; returns
    /// how many were deleted.
    pub async fn prune(&self, current: &StoreManifest, grace: Duration) -> Result<usize, CatalogStoreError> {
        let kept: BTreeSet<&str> = current.history.iter().map(|h| h.id.as_str()).chain([current.id.as_str()]).collect();
        let listing = self
            .store
            .list_with_delimiter(Some(&self.path(VERSIONS)))
            .await
            .map_err(|e| self.unreachable(VERSIONS, e))?;
        let cutoff = Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let mut deleted = 0;
        for dir in listing.common_prefixes {
            let Some(id) = dir.filename() else { continue };
            if kept.contains(id) {
                continue;
            }
            let objects: Vec<_> = self
                .store
                .list(Some(&dir))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()
                .map_err(|e| self.unreachable(VERSIONS, e))?;
            let objects: Vec<object_store::ObjectMeta> = objects;
            if objects.iter().any(|o| o.last_modified > cutoff) {
                continue;
            }
            for o in &objects {
                match self.store.delete(&o.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.unreachable(o.location.as_ref(), e)),
                }
            }
            deleted += 1;
        }
        Ok(deleted)
    }

    /// The raw object store, for tests and tools that inspect the bucket.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The full key of `rel` under this store's prefix.
    pub fn key_of(&self, rel: &str) -> String {
        self.key(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v = serde_json::json!({
            "format": 1, "version": 3, "id": "0123456789abcdef01234567",
            "published_at": "2026-12-01T00:00:00Z", "publisher": "h:1",
            "files": [{"name": "aws.parquet", "sha256": "a".repeat(64), "size": 10}],
            "history": [{"version": 3, "id": "0123456789abcdef01234567", "published_at": "2026-12-01T00:00:00Z"}]
        });
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn manifest_validation_names_the_problem() {
        assert_eq!(StoreManifest::parse("u", &manifest_json(|_| {})).unwrap().version, 3);
        let cases: Vec<(Box<dyn FnOnce(&mut serde_json::Value)>, &str)> = vec![
            (Box::new(|v| v["format"] = 9.into()), "format 9"),
            (Box::new(|v| v["files"][0]["name"] = "../x.parquet".into()), "not a plain"),
            (Box::new(|v| v["files"][0]["name"] = "notes.txt".into()), "not a catalog file"),
            (Box::new(|v| v["files"][0]["sha256"] = "zz".into()), "sha256"),
            (Box::new(|v| v["files"] = serde_json::json!([])), "names no file"),
            (Box::new(|v| v["id"] = "../../etc".into()), "not a hex digest"),
            (Box::new(|v| v["version"] = "three".into()), "invalid type"),
        ];
        for (edit, want) in cases {
            let e = StoreManifest::parse("s3://b/p/current.json", &manifest_json(edit)).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("s3://b/p/current.json") && !e.contains('\n'), "{e}");
        }
        let e = StoreManifest::parse("u", b"{not json").unwrap_err().to_string();
        assert!(e.starts_with("catalog store u: malformed manifest"), "{e}");
    }

    #[test]
    fn only_catalog_files_are_published() {
        let dir = tempfile::tempdir().unwrap();
        assert!(catalog_files(dir.path()).unwrap_err().to_string().contains("no <cloud>.parquet"));
        for n in ["aws.parquet", "aws.idx", "manifest.json", ".aws.parquet.tmp", "notes.txt"] {
            std::fs::write(dir.path().join(n), n).unwrap();
        }
        let names: Vec<String> = catalog_files(dir.path()).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["aws.idx", "aws.parquet", "manifest.json"]);
    }
}
