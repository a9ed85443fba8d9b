//! Watches (API concepts, "Efficient detection of changes"): a chunked stream of WatchEvent lines,
//! `{"type":"ADDED|MODIFIED|DELETED","object":{…}}`, for the changes after `resourceVersion`.
//! Without one (or with "0") the stream starts with an ADDED event per current object. A
//! resourceVersion older than the kept event log answers an ERROR event with a 410 Expired Status,
//! as a compacted server does. `timeoutSeconds` ends the stream. `sendInitialEvents=true`
//! (streaming lists) sends the current objects, then a BOOKMARK marking the end of them.
//!
//! With a selector, a change that makes an object match is sent as ADDED and one that makes it
//! stop matching as DELETED, as the real watch cache does.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::json;
use tokio::sync::broadcast;

use super::listing::Selectors;
use super::routes::{json_response, lock, refuse, Call, Shared};
use super::state::{Event, Resource, Stored};

struct Filter {
    resource: Resource,
    namespace: Option<String>,
    selectors: Selectors,
}

impl Filter {
    fn matches(&self, resource: Resource, stored: &Stored) -> bool {
        resource == self.resource
            && self.namespace.as_deref().is_none_or(|ns| stored.value["metadata"]["namespace"] == ns)
            && self.selectors.matches(&stored.value)
    }

    /// The event as this watch reports it, if at all: a change that makes the object match is
    /// ADDED, one that makes it stop matching is DELETED (carrying the new object).
    fn translate(&self, event: &Event) -> Option<&'static str> {
        let now = self.matches(event.resource, &event.stored);
        let before = event.previous.as_ref().map(|p| self.matches(event.resource, p));
        match (event.event_type, before, now) {
            ("MODIFIED", Some(false), true) => Some("ADDED"),
            ("MODIFIED", Some(true), false) => Some("DELETED"),
            (event_type, _, true) => Some(event_type),
            _ => None,
        }
    }
}

fn event_line(event_type: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(event_type.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

struct Stream {
    pending: VecDeque<Bytes>,
    receiver: Option<broadcast::Receiver<Arc<Event>>>,
    filter: Filter,
    deadline: tokio::time::Instant,
}

pub fn serve(state: &Shared, call: &Call, resource: Resource, namespace: Option<String>, selectors: Selectors) -> Response {
    let from = call.param("resourceVersion").unwrap_or("");
    // Streaming lists (KEP-3157): the current state as ADDED events, then a BOOKMARK annotated
    // `k8s.io/initial-events-end`, whatever resourceVersion the request names (NotOlderThan).
    let initial_events = matches!(call.param("sendInitialEvents"), Some("true" | "1"));
    let from: Option<u64> = match from {
        _ if initial_events => None,
        "" | "0" => None,
        n => match n.parse() {
            Ok(v) => Some(v),
            Err(_) => return refuse(state, call, 400, "BadRequest", &format!("invalid resource version: {n}")),
        },
    };
    let timeout = call.param("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).filter(|t| *t > 0).unwrap_or(1800);
    let filter = Filter { resource, namespace, selectors };
    let mut pending = VecDeque::new();
    let s = lock(state);
    let receiver = match from {
        None => {
            // The current state as ADDED events (the "Get State and Start at Most Recent" rule).
            let mut add = |stored: &Stored| {
                if filter.matches(resource, stored) {
                    pending.push_back(event_line("ADDED", &stored.bytes));
                }
            };
            match resource {
                Resource::Node => s.nodes.values().for_each(|n| add(n)),
                Resource::Pod => s.pods.values().for_each(|p| add(&p.stored)),
                Resource::Service => s.services.values().for_each(|v| add(v)),
            }
            if initial_events {
                let kind = match resource {
                    Resource::Node => "Node",
                    Resource::Pod => "Pod",
                    Resource::Service => "Service",
                };
                let bookmark = json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": s.resource_version().to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"}}});
                pending.push_back(event_line("BOOKMARK", bookmark.to_string().as_bytes()));
            }
            Some(s.events_tx.subscribe())
        }
        Some(after) if after < s.oldest_watchable() => {
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {after} ({})", s.oldest_watchable() + 1), "reason": "Expired", "code": 410});
            pending.push_back(event_line("ERROR", status.to_string().as_bytes()));
            None
        }
        Some(after) => {
            for event in s.events_after(after) {
                if let Some(event_type) = filter.translate(&event) {
                    pending.push_back(event_line(event_type, &event.stored.bytes));
                }
            }
            Some(s.events_tx.subscribe())
        }
    };
    drop(s);
    let stream = Stream { pending, receiver, filter, deadline: tokio::time::Instant::now() + Duration::from_secs(timeout) };
    let body = futures_util::stream::unfold(stream, |mut st| async move {
        loop {
            if let Some(line) = st.pending.pop_front() {
                return Some((Ok::<Bytes, Infallible>(line), st));
            }
            let receiver = st.receiver.as_mut()?;
            let event = match tokio::time::timeout_at(st.deadline, receiver.recv()).await {
                Ok(Ok(event)) => event,
                // Timed out, lagged (a slow reader is dropped, as the server drops it) or closed.
                _ => return None,
            };
            if let Some(event_type) = st.filter.translate(&event) {
                st.pending.push_back(event_line(event_type, &event.stored.bytes));
            }
        }
    });
    let mut response = json_response(200, Vec::new());
    *response.body_mut() = Body::from_stream(body);
    response
}
