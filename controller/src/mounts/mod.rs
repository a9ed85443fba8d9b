//! SkyPilot's `file_mounts`, typed, and their sync to the nodes.
//!
//! ```yaml
//! file_mounts:
//!   ~/config.yaml: ./config.yaml          # a local file or folder: packed where the CLI runs
//!   /data/imagenet: s3://my-bucket/imagenet  # a bucket prefix: the node's agent copies it
//!   /ckpt:
//!     source: gs://my-ckpts
//!     mode: MOUNT                          # COPY | MOUNT | MOUNT_CACHED (rclone on the node)
//! ```
//!
//! Local sources never come from the server's disk: `skycat launch` packs them on the user's
//! machine, and `skycat jobs launch` uploads them (`POST /v1/uploads`) so that the server only
//! relays the archive it was sent. Buckets are read by the node's agent
//! (`skycat-agent objects copy|mount`) with the credentials passed on its stdin, never in argv.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod storage;
mod sync;
pub(crate) use sync::PreparedMounts;
pub use storage::{StorageObject, StoreKind};

/// One `file_mounts` entry: where on the node, and from what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileMount {
    /// Absolute, or `~/…` in the node user's home.
    pub dst: String,
    pub source: MountSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MountSource {
    /// A file or folder on the machine running the CLI.
    Local { path: PathBuf },
    /// A client's upload kept by the server (`file` when it holds one file named as `dst`).
    /// Set by the server only.
    Uploaded { archive: PathBuf, file: bool },
    /// Objects in a bucket: `s3://`, `gs://`, `r2://`, or
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER`, with an optional prefix.
    Bucket { url: String, mode: MountMode },
    /// A bucket skycat makes (SkyPilot's storage object, `name:`), then mounts as a bucket.
    Storage { storage: StorageObject, mode: MountMode },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MountMode {
    Copy,
    Mount,
    MountCached,
}

/// A `file_mounts` entry that cannot be honoured; `field` is `file_mounts.<dst>[.key]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct MountError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> MountError {
    MountError { field: field.into(), message: message.into() }
}

/// Which object store a bucket URL names, or None for a local path. Unknown schemes are errors:
/// a typo must not become a local path.
pub fn bucket_store(url: &str) -> Result<Option<&'static str>, String> {
    let Some((scheme, rest)) = url.split_once("://") else { return Ok(None) };
    let store = match scheme {
        "s3" => "s3",
        "gs" => "gcs",
        "r2" => "r2",
        "https" if rest.split('/').next().is_some_and(|h| h.ends_with(".blob.core.windows.net")) => "azure",
        _ => {
            return Err(format!(
                "{url}: unsupported source; use a local path, s3://, gs://, r2:// or https://ACCOUNT.blob.core.windows.net/CONTAINER"
            ))
        }
    };
    let bucket = match store {
        "azure" => rest.split('/').nth(1).unwrap_or(""),
        _ => rest.split('/').next().unwrap_or(""),
    };
    if bucket.is_empty() {
        return Err(format!("{url}: no bucket name"));
    }
    Ok(Some(store))
}

/// Parses the task's `file_mounts`. Relative local paths are relative to `base` (the YAML's
/// folder, as in SkyPilot) and `~` is `home` (this machine's).
pub fn parse(mounts: &BTreeMap<String, Value>, base: Option<&Path>, home: Option<&Path>) -> Result<Vec<FileMount>, MountError> {
    let mut out = Vec::new();
    for (dst, v) in mounts {
        let field = format!("file_mounts.{dst}");
        check_dst(dst).map_err(|m| err(&field, m))?;
        let source = match v {
            Value::String(s) => source_of(s, MountMode::Copy, base, home).map_err(|m| err(&field, m))?,
            Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| !["source", "name", "store", "mode", "persistent", "_force_delete"].contains(&k.as_str())) {
                    return Err(err(format!("{field}.{k}"), "unknown storage field; known: source, name, store, mode, persistent"));
                }
                // SkyPilot's default for storage objects is MOUNT.
                let mode = match o.get("mode") {
                    None | Some(Value::Null) => MountMode::Mount,
                    Some(Value::String(m)) => match m.to_ascii_uppercase().as_str() {
                        "COPY" => MountMode::Copy,
                        "MOUNT" => MountMode::Mount,
                        "MOUNT_CACHED" => MountMode::MountCached,
                        _ => return Err(err(format!("{field}.mode"), format!("{m:?}: expected COPY, MOUNT or MOUNT_CACHED"))),
                    },
                    Some(other) => return Err(err(format!("{field}.mode"), format!("{other}: expected COPY, MOUNT or MOUNT_CACHED"))),
                };
                if let Some(name) = o.get("name").filter(|n| !n.is_null()) {
                    let storage = storage_object(&field, name, o, base, home)?;
                    out.push(FileMount { dst: dst.clone(), source: MountSource::Storage { storage, mode } });
                    continue;
                }
                let src = match o.get("source") {
                    Some(Value::String(s)) => s,
                    Some(Value::Array(_)) => return Err(err(format!("{field}.source"), "a list of sources needs `name:` (a bucket skycat makes and fills with them)")),
                    _ => return Err(err(format!("{field}.source"), "missing: give the bucket, e.g. source: s3://BUCKET/PREFIX")),
                };
                let source = source_of(src, mode, base, home).map_err(|m| err(format!("{field}.source"), m))?;
                if let (MountSource::Bucket { url, .. }, Some(Value::String(store))) = (&source, o.get("store")) {
                    let named = bucket_store(url).ok().flatten().unwrap_or("");
                    if !store.eq_ignore_ascii_case(named) && !(store.eq_ignore_ascii_case("azure") && named == "azure") {
                        return Err(err(format!("{field}.store"), format!("{store} does not match the source {url} ({named})")));
                    }
                }
                if matches!(source, MountSource::Local { .. }) {
                    return Err(err(format!("{field}.source"), "a local source with storage options needs `name:` (the bucket skycat makes for it); or give the local path directly: `DST: PATH`"));
                }
                source
            }
            other => return Err(err(&field, format!("{other}: expected a local path, a bucket URL or a storage mapping"))),
        };
        out.push(FileMount { dst: dst.clone(), source });
    }
    Ok(out)
}

/// A storage object: `name` (the bucket), `store`, local `source`(s), `persistent`.
fn storage_object(field: &str, name: &Value, o: &serde_json::Map<String, Value>, base: Option<&Path>, home: Option<&Path>) -> Result<StorageObject, MountError> {
    let Value::String(name) = name else { return Err(err(format!("{field}.name"), "must be a bucket name")) };
    let store = match o.get("store") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(StoreKind::parse(s).ok_or_else(|| {
            err(format!("{field}.store"), format!("{s:?} is not supported; use s3, gcs, r2 or azure"))
        })?),
        Some(other) => return Err(err(format!("{field}.store"), format!("{other}: expected s3, gcs, r2 or azure"))),
    };
    // The same name rules as a bucket URL of that store (Azure's are the strictest).
    let probe = match store {
        Some(StoreKind::Azure) => format!("https://acct.blob.core.windows.net/{name}"),
        Some(StoreKind::Gcs) => format!("gs://{name}"),
        _ => format!("s3://{name}"),
    };
    skycat_objects::Source::parse(&probe)
        .ok()
        .filter(|s| s.prefix.is_empty())
        .ok_or_else(|| err(format!("{field}.name"), format!("{name:?} is not a legal bucket name (3-63 lowercase letters, digits, '-' and '.')")))?;
    let texts: Vec<&str> = match o.get("source") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| err(format!("{field}.source"), "a list of local paths is expected")))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(err(format!("{field}.source"), format!("{other}: expected a local path or a list of them"))),
    };
    let mut sources = Vec::new();
    for t in texts {
        match source_of(t, MountMode::Copy, base, home).map_err(|m| err(format!("{field}.source"), m))? {
            MountSource::Local { path } => sources.push(path),
            _ => {
                return Err(err(
                    format!("{field}.source"),
                    format!("{t}: with `name:` the source is local files that skycat uploads; to use an existing bucket, drop `name:` and give source: {t}"),
                ))
            }
        }
    }
    let persistent = match o.get("persistent") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(err(format!("{field}.persistent"), format!("{other}: expected true or false"))),
    };
    Ok(StorageObject { name: name.clone(), store, sources, persistent })
}

fn check_dst(dst: &str) -> Result<(), String> {
    if !(dst.starts_with('/') || dst == "~" || dst.starts_with("~/")) {
        return Err("the destination must be an absolute path or start with ~/".into());
    }
    if dst.split('/').any(|c| c == "..") {
        return Err("the destination has a `..` component".into());
    }
    if dst == "/" || dst == "~" {
        return Err("the destination cannot be / or ~ itself".into());
    }
    Ok(())
}

fn source_of(src: &str, mode: MountMode, base: Option<&Path>, home: Option<&Path>) -> Result<MountSource, String> {
    if bucket_store(src)?.is_some() {
        return Ok(MountSource::Bucket { url: src.trim_end_matches('/').to_string(), mode });
    }
    if mode != MountMode::Copy {
        return Err(format!("{src}: mode {mode:?} needs a bucket source; a local path is always copied"));
    }
    let path = match src.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => match home {
            Some(h) => h.join(rest.trim_start_matches('/')),
            None => return Err(format!("{src}: HOME is not set")),
        },
        _ => match base {
            Some(b) if Path::new(src).is_relative() => b.join(src.trim_start_matches("./")),
            _ => PathBuf::from(src),
        },
    };
    Ok(MountSource::Local { path })
}

/// `(folder to unpack into, archive entry name)` for a file mount of one file: the file is
/// archived under its destination's name and unpacked into the destination's folder.
pub fn file_dst_parts(dst: &str) -> (String, String) {
    let (dir, name) = dst.rsplit_once('/').unwrap_or(("~", dst));
    (if dir.is_empty() { "/".to_string() } else { dir.to_string() }, name.to_string())
}

/// The environment variables a node's agent needs to read buckets of `store`, as named by
/// object_store and rclone. Values come from this machine's environment and travel as secrets.
pub fn credential_env_names(store: &str) -> &'static [&'static str] {
    match store {
        "s3" => &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"],
        "r2" => &[
            "R2_ACCESS_KEY_ID",
            "R2_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "R2_ACCOUNT_ID",
            "R2_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL",
        ],
        "gcs" => &["GOOGLE_SERVICE_ACCOUNT_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "SKYCAT_GCS_ENDPOINT"],
        "azure" => &[
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_SAS_TOKEN",
            "AZURE_STORAGE_CONNECTION_STRING",
            "AZURE_STORAGE_USE_EMULATOR",
            "AZURITE_BLOB_STORAGE_URL",
            "SKYCAT_AZURE_BLOB_ENDPOINT",
            "AZURE_STORAGE_ACCOUNT",
        ],
        _ => &[],
    }
}

/// The credentials the bucket mounts need, from `lookup` (this machine's environment). A
/// `GOOGLE_APPLICATION_CREDENTIALS` file is read here and sent as its contents
/// (`GOOGLE_SERVICE_ACCOUNT_KEY`): the node has no such file.
pub fn credentials_for(mounts: &[FileMount], lookup: impl Fn(&str) -> Option<String>) -> Result<BTreeMap<String, String>, MountError> {
    let mut env = BTreeMap::new();
    for m in mounts {
        let stores: Vec<&str> = match &m.source {
            MountSource::Bucket { url, .. } => vec![bucket_store(url).ok().flatten().unwrap_or("")],
            MountSource::Storage { storage, .. } => match storage.store {
                Some(k) => vec![k.as_str()],
                // Chosen by the cluster's cloud at launch: any of them.
                None => vec!["s3", "gcs", "r2", "azure"],
            },
            _ => continue,
        };
        for name in stores.into_iter().flat_map(credential_env_names) {
            let Some(v) = lookup(name).filter(|v| !v.is_empty()) else { continue };
            if *name == "GOOGLE_APPLICATION_CREDENTIALS" {
                let key = std::fs::read_to_string(&v)
                    .map_err(|e| err(format!("file_mounts.{}", m.dst), format!("GOOGLE_APPLICATION_CREDENTIALS={v}: {e}")))?;
                env.insert("GOOGLE_SERVICE_ACCOUNT_KEY".to_string(), key);
            } else {
                env.insert(name.to_string(), v);
            }
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mounts(v: Value) -> Result<Vec<FileMount>, MountError> {
        let m: BTreeMap<String, Value> = serde_json::from_value(v).unwrap();
        parse(&m, Some(Path::new("/work/proj")), Some(Path::new("/home/me")))
    }

    #[test]
    fn local_paths_buckets_and_storage_mappings() {
        let got = mounts(json!({
            "~/cfg.yaml": "./cfg.yaml",
            "/data/abs": "/srv/data",
            "/data/home": "~/datasets/x",
            "/in": "s3://bucket/prefix/",
            "/gcs": "gs://b",
            "/r2": "r2://b/p",
            "/az": "https://acct.blob.core.windows.net/container/p",
            "/m": {"source": "s3://bucket", "mode": "MOUNT"},
            "/d": {"source": "gs://b/x"},
            "/c": {"source": "s3://bucket/x", "mode": "copy", "store": "s3"},
        }))
        .unwrap();
        let by: BTreeMap<_, _> = got.into_iter().map(|m| (m.dst, m.source)).collect();
        assert_eq!(by["~/cfg.yaml"], MountSource::Local { path: "/work/proj/cfg.yaml".into() });
        assert_eq!(by["/data/abs"], MountSource::Local { path: "/srv/data".into() });
        assert_eq!(by["/data/home"], MountSource::Local { path: "/home/me/datasets/x".into() });
        assert_eq!(by["/in"], MountSource::Bucket { url: "s3://bucket/prefix".into(), mode: MountMode::Copy });
        assert_eq!(by["/az"], MountSource::Bucket { url: "https://acct.blob.core.windows.net/container/p".into(), mode: MountMode::Copy });
        assert_eq!(by["/m"], MountSource::Bucket { url: "s3://bucket".into(), mode: MountMode::Mount });
        assert_eq!(by["/d"], MountSource::Bucket { url: "gs://b/x".into(), mode: MountMode::Mount });
        assert_eq!(by["/c"], MountSource::Bucket { url: "s3://bucket/x".into(), mode: MountMode::Copy });
    }

    #[test]
    fn storage_objects_with_a_name() {
        let got = mounts(json!({
            "/ckpt": {"name": "my-ckpts", "store": "S3", "source": "./out", "persistent": false, "mode": "COPY"},
            "/many": {"name": "many-dirs", "source": ["./a", "~/b"]},
            "/empty": {"name": "empty-one", "store": "gcs"},
        }))
        .unwrap();
        let by: BTreeMap<_, _> = got.into_iter().map(|m| (m.dst, m.source)).collect();
        let obj = |name: &str, store, sources: Vec<&str>, persistent| StorageObject {
            name: name.into(),
            store,
            sources: sources.into_iter().map(PathBuf::from).collect(),
            persistent,
        };
        assert_eq!(by["/ckpt"], MountSource::Storage { storage: obj("my-ckpts", Some(StoreKind::S3), vec!["/work/proj/out"], false), mode: MountMode::Copy });
        assert_eq!(by["/many"], MountSource::Storage { storage: obj("many-dirs", None, vec!["/work/proj/a", "/home/me/b"], true), mode: MountMode::Mount });
        assert_eq!(by["/empty"], MountSource::Storage { storage: obj("empty-one", Some(StoreKind::Gcs), vec![], true), mode: MountMode::Mount });
        // Credentials: the named store's, or every store's when the cloud picks it.
        let m = mounts(json!({"/a": {"name": "bkt-a", "store": "gcs"}})).unwrap();
        let got = credentials_for(&m, |k| (k == "STORAGE_EMULATOR_HOST" || k == "AWS_ACCESS_KEY_ID").then(|| "x".into())).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), ["STORAGE_EMULATOR_HOST"]);
        let m = mounts(json!({"/a": {"name": "bkt-a"}})).unwrap();
        let all = credentials_for(&m, |k| (k != "GOOGLE_APPLICATION_CREDENTIALS").then(|| "x".into())).unwrap();
        assert_eq!(all.len(), 21, "{all:?}");
    }

    #[test]
    fn bad_entries_name_the_field() {
        let cases = [
            (json!({"rel/path": "/x"}), "file_mounts.rel/path", "absolute"),
            (json!({"/a/../b": "/x"}), "file_mounts./a/../b", ".."),
            (json!({"/x": "cos://b"}), "file_mounts./x", "unsupported"),
            (json!({"/x": "s3://"}), "file_mounts./x", "no bucket"),
            (json!({"/x": 3}), "file_mounts./x", "expected"),
            (json!({"/x": {"source": "s3://b", "mode": "FAST"}}), "file_mounts./x.mode", "COPY"),
            (json!({"/x": {"source": "s3://b", "colour": 1}}), "file_mounts./x.colour", "unknown"),
            (json!({"/x": {"name": "Bad_Name", "source": "./d"}}), "file_mounts./x.name", "not a legal bucket name"),
            (json!({"/x": {"name": "ok-name", "store": "ibm"}}), "file_mounts./x.store", "not supported"),
            (json!({"/x": {"name": "ok-name", "source": "s3://other"}}), "file_mounts./x.source", "drop `name:`"),
            (json!({"/x": {"name": "ok-name", "persistent": "no"}}), "file_mounts./x.persistent", "true or false"),
            (json!({"/x": {"mode": "COPY"}}), "file_mounts./x.source", "missing"),
            (json!({"/x": {"source": "./local", "mode": "COPY"}}), "file_mounts./x.source", "needs `name:`"),
            (json!({"/x": {"source": "gs://b", "store": "s3"}}), "file_mounts./x.store", "does not match"),
        ];
        for (v, field, words) in cases {
            let e = mounts(v.clone()).unwrap_err();
            assert_eq!(e.field, field, "{v}");
            assert!(e.to_string().contains(words) && !e.to_string().contains('\n'), "{v}: {e}");
        }
    }

    #[test]
    fn file_destinations_split_and_credentials_follow_the_stores() {
        assert_eq!(file_dst_parts("~/cfg.yaml"), ("~".into(), "cfg.yaml".into()));
        assert_eq!(file_dst_parts("/etc/app/x.conf"), ("/etc/app".into(), "x.conf".into()));
        assert_eq!(file_dst_parts("/x"), ("/".into(), "x".into()));
        let m = mounts(json!({"/a": "s3://b", "/g": "gs://c", "/l": "./x"})).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sa.json");
        std::fs::write(&key, "{\"type\":\"service_account\"}").unwrap();
        let env: BTreeMap<&str, String> = [
            ("AWS_ACCESS_KEY_ID", "AKIA".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t".to_string()),
            ("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string()),
            ("AZURE_STORAGE_ACCOUNT_KEY", "not needed".to_string()),
        ]
        .into();
        let got = credentials_for(&m, |k| env.get(k).cloned()).unwrap();
        assert_eq!(got.keys().map(String::as_str).collect::<Vec<_>>(), ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GOOGLE_SERVICE_ACCOUNT_KEY"]);
        assert!(got["GOOGLE_SERVICE_ACCOUNT_KEY"].contains("service_account"));
    }
}
