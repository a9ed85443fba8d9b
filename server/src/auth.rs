//! Bearer-token authentication of the API.
//!
//! Who may call what:
//! * `/healthz`: anyone.
//! * `/v1/agents/heartbeat`: the agents, with their cluster's token (checked by that route).
//! * `/v1/*` (managed jobs): an API token, always ([`require_token`]); the caller becomes a
//!   [`Principal`] in the request's extensions.
//! * `/optimize`, `/catalog/*`, `/metrics`, `/openapi.json`: an API token unless the server is
//!   configured with `public_read` (the CLI makes that the default on loopback only).
//!
//! Tokens are checked by a [`TokenVerifier`] (the controller's state DB in `skycat serve`),
//! optionally behind a [`CachedVerifier`] that spares a busy client a database read per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    User,
}

/// The holder of a valid API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// Whether the caller may see and act on what `owner` owns.
    pub fn may_see(&self, owner: &str) -> bool {
        self.role == Role::Admin || self.name == owner
    }
}

/// Checks API tokens.
#[async_trait::async_trait]
pub trait TokenVerifier: Send + Sync {
    /// The token's holder; None for an unknown or revoked token. Err when the check itself
    /// failed (the store is unavailable).
    async fn verify(&self, token: &str) -> Result<Option<Principal>, String>;
}

/// The token checker the routes share.
#[derive(Clone)]
pub struct Auth {
    pub verifier: Arc<dyn TokenVerifier>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth")
    }
}

impl Auth {
    /// `verifier` behind a [`CachedVerifier`] with [`TOKEN_CACHE_TTL`].
    pub fn cached(verifier: impl TokenVerifier + 'static) -> Auth {
        Auth { verifier: Arc::new(CachedVerifier::new(Arc::new(verifier), TOKEN_CACHE_TTL)) }
    }
}

/// How long [`Auth::cached`] trusts a token it has seen accepted: also the longest a revoked
/// token keeps working in a running server.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);

/// Most tokens a [`CachedVerifier`] remembers; past it, it forgets the expired ones, or all.
const TOKEN_CACHE_MAX: usize = 4096;

/// A [`TokenVerifier`] that remembers, for `ttl`, the tokens its inner verifier accepted, so that
/// a client sending many requests costs one check per `ttl` rather than one per request.
///
/// Revocation: `skycat serve token revoke` writes the state DB from another process, which this
/// one cannot hear of, so a revoked token keeps working here for at most `ttl` after its last
/// check (keep `ttl` to a second or two); [`forget_all`](Self::forget_all) drops every entry at
/// once. Unknown or revoked tokens and failed checks are never remembered, so a refusal is always
/// fresh. Entries are keyed by the token's SHA-256, not the token itself.
pub struct CachedVerifier {
    inner: Arc<dyn TokenVerifier>,
    ttl: Duration,
    seen: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl CachedVerifier {
    pub fn new(inner: Arc<dyn TokenVerifier>, ttl: Duration) -> Self {
        CachedVerifier { inner, ttl, seen: Mutex::new(HashMap::new()) }
    }

    /// Forgets every token: the next request of each is checked by the inner verifier.
    pub fn forget_all(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[async_trait::async_trait]
impl TokenVerifier for CachedVerifier {
    async fn verify(&self, token: &str) -> Result<Option<Principal>, String> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Some((p, until)) = self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            if now < *until {
                return Ok(Some(p.clone()));
            }
        }
        let verdict = self.inner.verify(token).await?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match &verdict {
            Some(p) => {
                if seen.len() >= TOKEN_CACHE_MAX {
                    seen.retain(|_, (_, until)| now < *until);
                    if seen.len() >= TOKEN_CACHE_MAX {
                        seen.clear();
                    }
                }
                seen.insert(key, (p.clone(), now + self.ttl));
            }
            None => {
                seen.remove(&key);
            }
        }
        Ok(verdict)
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Lets the request through with its [`Principal`] when it carries a live API token; 401
/// otherwise.
pub async fn require_token(State(auth): State<Auth>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let token = bearer(req.headers()).ok_or_else(|| {
        ApiError::unauthorized("this route needs an API token: send `Authorization: Bearer <token>` (the CLI reads SKYCAT_API_TOKEN or $SKYCAT_HOME/credentials; create one with `skycat serve token create`)")
    })?;
    let principal = auth
        .verifier
        .verify(token)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("cannot check the token: {e}")))?
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked API token"))?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens named in `live` are valid; counts its checks; `down` fails them.
    #[derive(Default)]
    struct Fake {
        live: Mutex<Vec<String>>,
        checks: std::sync::atomic::AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl TokenVerifier for Arc<Fake> {
        async fn verify(&self, token: &str) -> Result<Option<Principal>, String> {
            use std::sync::atomic::Ordering::SeqCst;
            self.checks.fetch_add(1, SeqCst);
            if self.down.load(SeqCst) {
                return Err("store down".into());
            }
            let live = self.live.lock().unwrap().iter().any(|t| t == token);
            Ok(live.then(|| Principal { name: token.to_string(), role: Role::User }))
        }
    }

    fn fake(live: &[&str]) -> Arc<Fake> {
        let f = Arc::new(Fake::default());
        *f.live.lock().unwrap() = live.iter().map(|s| s.to_string()).collect();
        f
    }

    fn checks(f: &Fake) -> usize {
        f.checks.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn cache_remembers_accepted_tokens_only() {
        let f = fake(&["a"]);
        let c = CachedVerifier::new(Arc::new(f.clone()), Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(c.verify("a").await.unwrap().unwrap().name, "a");
        }
        assert_eq!(checks(&f), 1);
        // Refusals and failures are checked every time.
        assert!(c.verify("b").await.unwrap().is_none());
        assert!(c.verify("b").await.unwrap().is_none());
        assert_eq!(checks(&f), 3);
        f.down.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(c.verify("b").await.is_err() && c.verify("b").await.is_err());
        assert_eq!(checks(&f), 5);
        // A remembered token does not need the store.
        assert!(c.verify("a").await.unwrap().is_some());
        assert_eq!(checks(&f), 5);
    }

    #[tokio::test]
    async fn a_revoked_token_is_refused_after_the_ttl_or_at_once_when_forgotten() {
        let f = fake(&["a"]);
        let c = CachedVerifier::new(Arc::new(f.clone()), Duration::from_millis(50));
        assert!(c.verify("a").await.unwrap().is_some());
        f.live.lock().unwrap().clear(); // revoked in the store
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(c.verify("a").await.unwrap().is_none());
        assert!(c.verify("a").await.unwrap().is_none());

        let f = fake(&["a"]);
        let c = CachedVerifier::new(Arc::new(f.clone()), Duration::from_secs(60));
        assert!(c.verify("a").await.unwrap().is_some());
        f.live.lock().unwrap().clear();
        c.forget_all();
        assert!(c.verify("a").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn cache_stays_bounded() {
        let names: Vec<String> = (0..TOKEN_CACHE_MAX + 10).map(|i| format!("t{i}")).collect();
        let f = Arc::new(Fake::default());
        *f.live.lock().unwrap() = names.clone();
        let c = CachedVerifier::new(Arc::new(f.clone()), Duration::from_secs(60));
        for n in &names {
            assert!(c.verify(n).await.unwrap().is_some());
        }
        assert!(c.seen.lock().unwrap().len() <= TOKEN_CACHE_MAX);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(axum::http::header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(axum::http::header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(axum::http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(axum::http::header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
        let p = Principal { name: "a".into(), role: Role::User };
        assert!(p.may_see("a") && !p.may_see("b"));
        assert!(Principal { name: "r".into(), role: Role::Admin }.may_see("b"));
    }
}
