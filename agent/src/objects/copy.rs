//! `objects copy`: list, plan (every local path checked to stay under DEST), then download
//! with bounded concurrency, each object streamed to a temp file in its final folder and
//! renamed into place once complete and of the listed size.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use skycat_objects::{one_line, Error, Source};

/// A read that yields nothing for this long fails the object (the store's clients have no
/// whole-request timeout, so that large objects may stream for as long as they need).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Listing or a HEAD that takes longer than this fails the copy.
const META_TIMEOUT: Duration = Duration::from_secs(300);
/// Write buffer per download.
const WRITE_BUFFER: usize = 1 << 20;

pub use skycat_objects::TransferStats as Stats;

/// One object to fetch and where it goes.
#[derive(Debug)]
struct Item {
    meta: ObjectMeta,
    target: PathBuf,
}

pub async fn copy(store: Arc<dyn ObjectStore>, src: &Source, dest: &Path, jobs: usize) -> Result<Stats, Error> {
    let started = Instant::now();
    let items = plan(store.as_ref(), src, dest).await?;
    let mut dirs = BTreeSet::new();
    for it in &items {
        if let Some(parent) = it.target.parent() {
            dirs.insert(parent.to_path_buf());
        }
    }
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let results: Vec<Option<u64>> = futures_util::stream::iter(items)
        .map(|it| {
            let store = store.clone();
            async move { fetch(store.as_ref(), src, it).await }
        })
        .buffer_unordered(jobs.max(1))
        .try_collect()
        .await?;
    let mut st = Stats::default();
    for r in results {
        match r {
            Some(bytes) => {
                st.files += 1;
                st.bytes += bytes;
            }
            None => st.skipped += 1,
        }
    }
    st.seconds = started.elapsed().as_secs_f64();
    Ok(st)
}

fn store_error(src: &Source, key: &str, e: &object_store::Error) -> Error {
    Error::Store { url: src.url_of(key), msg: describe(e) }
}

/// The gist of a store error: the provider's error code and message when the body is XML or
/// JSON, else the error's text, on one line.
fn describe(e: &object_store::Error) -> String {
    let text = e.to_string();
    let tag = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_string())
    };
    let kind = match e {
        object_store::Error::NotFound { .. } => "not found",
        object_store::Error::PermissionDenied { .. } => "permission denied",
        object_store::Error::Unauthenticated { .. } => "authentication failed",
        _ => "",
    };
    let detail = match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => one_line(&format!("{c}: {m}")),
        (Some(c), None) => one_line(&c),
        _ => one_line(&text),
    };
    if kind.is_empty() {
        detail
    } else {
        format!("{kind} ({detail})")
    }
}

/// Lists the source and maps each object to its local path.
async fn plan(store: &dyn ObjectStore, src: &Source, dest: &Path) -> Result<Vec<Item>, Error> {
    let prefix = (!src.prefix.is_empty()).then(|| ObjPath::from(src.prefix.as_str()));
    let listing = store.list(prefix.as_ref()).try_collect::<Vec<ObjectMeta>>();
    let mut metas = tokio::time::timeout(META_TIMEOUT, listing)
        .await
        .map_err(|_| Error::Store { url: src.url(), msg: format!("listing took more than {} s", META_TIMEOUT.as_secs()) })?
        .map_err(|e| listing_error(src, &e))?;
    if metas.is_empty() {
        let Some(p) = prefix else {
            return Ok(Vec::new()); // an empty bucket: nothing to copy
        };
        let head = tokio::time::timeout(META_TIMEOUT, store.head(&p))
            .await
            .map_err(|_| Error::Store { url: src.url(), msg: "no answer".into() })?;
        let meta = match head {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::Store { url: src.url(), msg: "no such object, and no object under this prefix".into() })
            }
            Err(e) => return Err(store_error(src, &src.prefix, &e)),
        };
        let name = src.prefix.rsplit('/').next().unwrap_or(&src.prefix);
        let into_dir = dest.is_dir() || dest.as_os_str().to_string_lossy().ends_with('/');
        let target = if into_dir { dest.join(name) } else { dest.to_path_buf() };
        return Ok(vec![Item { meta, target }]);
    }
    metas.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
    // A zero-byte object whose key is also a folder of other keys is a "folder marker": skip
    // it. Any other object that is also a folder cannot be copied next to its children.
    let keys: Vec<String> = metas.iter().map(|m| m.location.to_string()).collect();
    let is_folder = |i: usize| keys.get(i + 1).is_some_and(|next| next.starts_with(&format!("{}/", keys[i])));
    let mut items = Vec::with_capacity(metas.len());
    for (i, meta) in metas.into_iter().enumerate() {
        let key = &keys[i];
        if is_folder(i) {
            if meta.size == 0 {
                continue;
            }
            return Err(Error::Store {
                url: src.url_of(key),
                msg: "is both an object and a folder of other objects: a local folder cannot hold both".into(),
            });
        }
        let rel = match &prefix {
            Some(p) => key.strip_prefix(p.as_ref()).and_then(|r| r.strip_prefix('/')).unwrap_or(""),
            None => key.as_str(),
        };
        let target = safe_join(dest, rel).map_err(|why| Error::UnsafeKey {
            url: src.url_of(key),
            why: why.into(),
            dest: dest.display().to_string(),
        })?;
        items.push(Item { meta, target });
    }
    Ok(items)
}

/// A listing error; object_store refuses a key with `.`/`..` or empty segments while parsing
/// the listing, and that key is named.
fn listing_error(src: &Source, e: &object_store::Error) -> Error {
    if let object_store::Error::InvalidPath { source } = e {
        let text = source.to_string();
        return Error::UnsafeKey {
            url: src.url(),
            why: format!("the listing has an object key that is not a safe relative path ({})", one_line(&text)),
            dest: "the destination".into(),
        };
    }
    store_error(src, &src.prefix, e)
}

/// `dest/rel`, refusing any `rel` that is empty, absolute, or has an empty, `.` or `..`
/// segment or a NUL: the result always lies under `dest`.
pub fn safe_join(dest: &Path, rel: &str) -> Result<PathBuf, &'static str> {
    if rel.is_empty() {
        return Err("the key has no name under the prefix");
    }
    if rel.starts_with('/') {
        return Err("the key is an absolute path");
    }
    let mut out = dest.to_path_buf();
    for seg in rel.split('/') {
        match seg {
            "" => return Err("the key has an empty path segment"),
            "." | ".." => return Err("the key has a `.` or `..` segment"),
            s if s.contains('\0') => return Err("the key has a NUL byte"),
            s => out.push(s),
        }
    }
    Ok(out)
}

/// Whether `target` already holds this object (same size and modification time, as
/// `aws s3 sync` decides).
fn up_to_date(target: &Path, meta: &ObjectMeta) -> bool {
    let Ok(md) = std::fs::metadata(target) else { return false };
    let want: SystemTime = meta.last_modified.into();
    md.is_file() && md.len() == meta.size && md.modified().is_ok_and(|m| m == want)
}

/// Removes a temp file unless disarmed (a failed or cancelled download leaves nothing).
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Downloads one object; `None` when it was already up to date.
async fn fetch(store: &dyn ObjectStore, src: &Source, it: Item) -> Result<Option<u64>, Error> {
    if up_to_date(&it.target, &it.meta) {
        return Ok(None);
    }
    let key = it.meta.location.to_string();
    let name = it.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = it.target.with_file_name(format!(".{name}.skycat-part.{}", std::process::id()));
    let guard = TempGuard(Some(tmp.clone()));
    let file = tokio::fs::File::create(&tmp).await.map_err(|e| Error::io(&tmp, e))?;
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let get = tokio::time::timeout(META_TIMEOUT, store.get(&it.meta.location))
        .await
        .map_err(|_| Error::Store { url: src.url_of(&key), msg: "no answer".into() })?
        .map_err(|e| store_error(src, &key, &e))?;
    let mut stream = get.into_stream();
    let mut written: u64 = 0;
    loop {
        let next = tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await.map_err(|_| Error::Store {
            url: src.url_of(&key),
            msg: format!("the download stalled (nothing for {} s)", IDLE_TIMEOUT.as_secs()),
        })?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| store_error(src, &key, &e))?;
        out.write_all(&chunk).await.map_err(|e| Error::io(&tmp, e))?;
        written += chunk.len() as u64;
    }
    out.flush().await.map_err(|e| Error::io(&tmp, e))?;
    let file = out.into_inner().into_std().await;
    if written != it.meta.size {
        return Err(Error::Store {
            url: src.url_of(&key),
            msg: format!("got {written} bytes, the listing said {}", it.meta.size),
        });
    }
    let _ = file.set_modified(it.meta.last_modified.into());
    drop(file);
    if it.target.is_dir() {
        return Err(Error::io(&it.target, "a folder is in the way of this object"));
    }
    std::fs::rename(&tmp, &it.target).map_err(|e| Error::io(&it.target, e))?;
    let mut guard = guard;
    guard.0 = None;
    Ok(Some(written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_join_stays_under_dest() {
        let d = Path::new("/data");
        assert_eq!(safe_join(d, "a/b.txt").unwrap(), PathBuf::from("/data/a/b.txt"));
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/.", "a\0b"] {
            assert!(safe_join(d, bad).is_err(), "{bad:?}");
        }
    }
}
