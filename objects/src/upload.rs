//! A local file or folder into a bucket prefix, as `aws s3 sync` does it for SkyPilot storage
//! objects: every regular file under the folder becomes `PREFIX/<relative path>`; a file whose
//! object already has its size and is not older is skipped. Large files go up in parts
//! (object_store's multipart writer), several files at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures_util::{stream, StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use crate::{one_line, Error, Source};

/// Files up to this size go up in one PUT; larger ones in parts of this size.
const PART: usize = 8 << 20;

pub use crate::TransferStats as Stats;

/// One file to send and its key.
struct Item {
    path: PathBuf,
    key: ObjPath,
    size: u64,
    modified: Option<SystemTime>,
}

/// Uploads `local` (a file or a folder) under `dst`'s prefix in `store`, `jobs` files at once.
/// A single file lands at `PREFIX/<file name>`. Symbolic links to files are followed; links to
/// folders are not (no cycles).
pub async fn upload(store: Arc<dyn ObjectStore>, local: &Path, dst: &Source, jobs: usize) -> Result<Stats, Error> {
    let started = Instant::now();
    let meta = std::fs::metadata(local).map_err(|e| Error::io(local, e))?;
    let mut items = Vec::new();
    if meta.is_file() {
        let name = local.file_name().and_then(|n| n.to_str()).ok_or_else(|| Error::io(local, "the file name is not UTF-8"))?;
        items.push(item(local, &key_of(&dst.prefix, &[name]), &meta));
    } else {
        walk(local, local, &dst.prefix, &mut items)?;
    }
    let prefix = (!dst.prefix.is_empty()).then(|| ObjPath::from_iter(dst.prefix.split('/')));
    let existing: std::collections::HashMap<ObjPath, ObjectMeta> = store
        .list(prefix.as_ref())
        .map_ok(|m| (m.location.clone(), m))
        .try_collect()
        .await
        .map_err(|e| Error::store(dst, format!("listing: {}", one_line(&e.to_string()))))?;
    let mut stats = Stats::default();
    let mut todo = Vec::new();
    for it in items {
        match existing.get(&it.key) {
            Some(m) if m.size == it.size && it.modified.is_none_or(|t| chrono_secs(t) <= m.last_modified.timestamp()) => stats.skipped += 1,
            _ => todo.push(it),
        }
    }
    let sent: Vec<u64> = stream::iter(todo.into_iter().map(|it| put_one(store.clone(), dst, it)))
        .buffer_unordered(jobs.max(1))
        .try_collect()
        .await?;
    stats.files = sent.len() as u64;
    stats.bytes = sent.iter().sum();
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

fn chrono_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn item(path: &Path, key: &ObjPath, meta: &std::fs::Metadata) -> Item {
    Item { path: path.to_path_buf(), key: key.clone(), size: meta.len(), modified: meta.modified().ok() }
}

fn key_of(prefix: &str, parts: &[&str]) -> ObjPath {
    let head = prefix.split('/').filter(|s| !s.is_empty());
    ObjPath::from_iter(head.chain(parts.iter().copied()))
}

fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<Item>) -> Result<(), Error> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| Error::io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let kind = e.file_type().map_err(|err| Error::io(&path, err))?;
        if kind.is_dir() {
            walk(root, &path, prefix, out)?;
            continue;
        }
        // A link is followed to a file only.
        let meta = std::fs::metadata(&path).map_err(|err| Error::io(&path, err))?;
        if !meta.is_file() {
            continue;
        }
        let rel = path.strip_prefix(root).map_err(|err| Error::io(&path, err))?;
        let parts: Vec<&str> = rel
            .components()
            .map(|c| c.as_os_str().to_str().ok_or_else(|| Error::io(&path, "the path is not UTF-8")))
            .collect::<Result<_, _>>()?;
        out.push(item(&path, &key_of(prefix, &parts), &meta));
    }
    Ok(())
}

async fn put_one(store: Arc<dyn ObjectStore>, dst: &Source, it: Item) -> Result<u64, Error> {
    let fail = |e: &dyn std::fmt::Display| Error::store(dst, format!("uploading {}: {}", it.key, one_line(&e.to_string())));
    if it.size as usize <= PART {
        let data = tokio::fs::read(&it.path).await.map_err(|e| Error::io(&it.path, e))?;
        let n = data.len() as u64;
        store.put(&it.key, PutPayload::from(data)).await.map_err(|e| fail(&e))?;
        return Ok(n);
    }
    let mut file = tokio::fs::File::open(&it.path).await.map_err(|e| Error::io(&it.path, e))?;
    let mut w = BufWriter::with_capacity(store, it.key.clone(), PART).with_max_concurrency(4);
    let n = match tokio::io::copy(&mut file, &mut w).await {
        Ok(n) => n,
        Err(e) => {
            let _ = w.abort().await;
            return Err(fail(&e));
        }
    };
    w.shutdown().await.map_err(|e| fail(&e))?;
    Ok(n)
}
