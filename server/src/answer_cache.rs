//! Answers of `POST /optimize` remembered per catalog version: a plan is a pure function of the
//! request (body format, body bytes, query parameters), the catalog version and the egress table,
//! so an identical request against the same catalog gets the stored JSON bytes without planning
//! or serialising again. Dashboards and scripts repeat the same few requests; a cache hit costs
//! a hash of the body and a copy of a reference-counted buffer.
//!
//! A swap of the catalog empties the cache (the version no longer matches), so an answer is never
//! older than the catalog in service. Only successful answers are kept. Capacity is bounded in
//! entries and in body size; a full cache is emptied rather than tracked per entry: misses are
//! cheap, and the working set of repeated requests refills it at once.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

use crate::extract::BodyFormat;

/// Most answers kept per catalog version.
pub const CAPACITY: usize = 4096;
/// Larger request bodies are answered but not remembered.
pub const MAX_BODY: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnswerKey {
    format: BodyFormat,
    query: Vec<(String, String)>,
    body: Bytes,
}

impl AnswerKey {
    /// The key of a request, or `None` when its body is too large to remember.
    pub fn of(format: BodyFormat, query: &[(String, String)], body: &Bytes) -> Option<AnswerKey> {
        (body.len() <= MAX_BODY).then(|| AnswerKey { format, query: query.to_vec(), body: body.clone() })
    }
}

#[derive(Default)]
struct Entries {
    version: u64,
    answers: HashMap<AnswerKey, Bytes>,
}

/// See the module documentation.
#[derive(Default)]
pub struct AnswerCache {
    entries: Mutex<Entries>,
}

impl AnswerCache {
    /// The stored answer to `key` under catalog `version`.
    pub fn get(&self, version: u64, key: &AnswerKey) -> Option<Bytes> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        (entries.version == version).then(|| entries.answers.get(key).cloned()).flatten()
    }

    /// Remember `answer` to `key`, computed on catalog `version`. An answer computed on a version
    /// older than the cache's (a swap happened meanwhile) is dropped.
    pub fn put(&self, version: u64, key: AnswerKey, answer: Bytes) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if version < entries.version {
            return;
        }
        if version > entries.version || entries.answers.len() >= CAPACITY {
            entries.answers.clear();
            entries.version = version;
        }
        entries.answers.insert(key, answer);
    }

    /// Answers held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &'static str) -> AnswerKey {
        AnswerKey::of(BodyFormat::Json, &[("hours".into(), "2".into())], &Bytes::from_static(body.as_bytes())).expect("small")
    }

    #[test]
    fn answers_follow_the_catalog_version() {
        let cache = AnswerCache::default();
        cache.put(1, key("a"), Bytes::from_static(b"A1"));
        assert_eq!(cache.get(1, &key("a")).as_deref(), Some(&b"A1"[..]));
        assert_eq!(cache.get(1, &key("b")), None);
        // A new catalog: the old answer is not served, and is gone once a new one is stored.
        assert_eq!(cache.get(2, &key("a")), None);
        cache.put(2, key("b"), Bytes::from_static(b"B2"));
        assert_eq!(cache.len(), 1);
        // An answer computed on the old catalog after the swap is not kept.
        cache.put(1, key("a"), Bytes::from_static(b"A1"));
        assert_eq!(cache.get(2, &key("a")), None);
        assert_eq!(cache.get(1, &key("a")), None);
        // Other query parameters or another format: another key.
        let other = AnswerKey::of(BodyFormat::Yaml, &[("hours".into(), "2".into())], &Bytes::from_static(b"b")).expect("small");
        assert_eq!(cache.get(2, &other), None);
        assert!(AnswerKey::of(BodyFormat::Json, &[], &Bytes::from(vec![b' '; MAX_BODY + 1])).is_none());
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = AnswerCache::default();
        for i in 0..CAPACITY + 1 {
            let k = AnswerKey::of(BodyFormat::Json, &[], &Bytes::from(i.to_string())).expect("small");
            cache.put(1, k, Bytes::from_static(b"x"));
        }
        assert_eq!(cache.len(), 1);
    }
}
