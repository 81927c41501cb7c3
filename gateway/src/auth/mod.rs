//! Who is calling: cookie sessions for people, bearer API tokens for scripts, anonymous otherwise.
//!
//! Secrets (session cookies, API tokens) are random 32-byte values shown to their owner once and
//! stored only as SHA-256 hashes. A caller is resolved from the request headers on every HTTP
//! request and once per websocket connection (`connection_init`); long-lived subscriptions also
//! end when their session is revoked (see [`Revocations`]).

pub mod csrf;
pub mod oidc;
pub mod password;
pub mod rate_limit;

use std::fmt;

use axum::http::HeaderMap;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use schema::models::user::User;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "classroom_session";
/// Prefix of API token secrets, so they are recognisable in logs and secret scanners.
pub const TOKEN_PREFIX: &str = "clsrm_";

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, async_graphql::Enum)]
pub enum Scope {
    /// Queries and subscriptions.
    Read,
    /// Mutations (class management, sessions, roles).
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    pub fn parse_list(s: &str) -> Vec<Scope> {
        s.split_whitespace()
            .filter_map(|w| match w {
                "read" => Some(Scope::Read),
                "write" => Some(Scope::Write),
                _ => None,
            })
            .collect()
    }
}

/// How a signed-in caller proved who they are.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// A browser session cookie.
    Session { session_id: i64 },
    /// An API token with its scopes.
    Token { token_id: i64, scopes: Vec<Scope> },
}

/// The caller of one request or websocket connection.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Caller {
    /// No credential, or one that is unknown, expired or revoked.
    #[default]
    Anonymous,
    /// A signed-in user.
    User {
        user: Box<User>,
        credential: Credential,
    },
}

impl Caller {
    pub fn user(&self) -> Option<&User> {
        match self {
            Caller::User { user, .. } => Some(user),
            Caller::Anonymous => None,
        }
    }

    /// Whether the caller's credential allows `scope` (sessions allow everything).
    pub fn has_scope(&self, scope: Scope) -> bool {
        match self {
            Caller::User {
                credential: Credential::Session { .. },
                ..
            } => true,
            Caller::User {
                credential: Credential::Token { scopes, .. },
                ..
            } => scopes.contains(&scope),
            Caller::Anonymous => false,
        }
    }

    pub fn session_id(&self) -> Option<i64> {
        match self {
            Caller::User {
                credential: Credential::Session { session_id },
                ..
            } => Some(*session_id),
            _ => None,
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Anonymous => f.write_str("anonymous"),
            Caller::User {
                user,
                credential: Credential::Session { .. },
            } => write!(f, "user {} (session)", user.id),
            Caller::User {
                user,
                credential: Credential::Token { token_id, .. },
            } => {
                write!(f, "user {} (token {token_id})", user.id)
            }
        }
    }
}

/// A new random secret: URL-safe base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a secret: SHA-256, hex. Secrets are high-entropy, so a fast hash suffices.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The credential a request carries: `Authorization: Bearer` wins over the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    None,
    Bearer(String),
    Cookie(String),
}

/// Reads the credential from request headers.
pub fn presented(headers: &HeaderMap) -> Presented {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| {
            auth.strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
        });
    if let Some(token) = bearer {
        return Presented::Bearer(token.trim().to_owned());
    }
    for value in headers.get_all(axum::http::header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, v)) = pair.trim().split_once('=')
                && name == SESSION_COOKIE
                && !v.is_empty()
            {
                return Presented::Cookie(v.to_owned());
            }
        }
    }
    Presented::None
}

/// Resolves a presented credential against the database.
pub async fn resolve(db: &schema::Db, presented: Presented) -> Result<Caller, schema::DbError> {
    let now = schema::now_ms();
    match presented {
        Presented::None => Ok(Caller::Anonymous),
        Presented::Cookie(secret) => {
            let hash = hash_secret(&secret);
            let found = db
                .interact(move |c| schema::models::auth_session::find_active(c, &hash, now))
                .await?;
            Ok(
                found.map_or(Caller::Anonymous, |(session, user)| Caller::User {
                    user: Box::new(user),
                    credential: Credential::Session {
                        session_id: session.id,
                    },
                }),
            )
        }
        Presented::Bearer(secret) => {
            let hash = hash_secret(&secret);
            let found = db
                .interact(move |c| schema::models::api_token::authenticate(c, &hash, now))
                .await?;
            Ok(
                found.map_or(Caller::Anonymous, |(token, user)| Caller::User {
                    user: Box::new(user),
                    credential: Credential::Token {
                        token_id: token.id,
                        scopes: Scope::parse_list(&token.scopes),
                    },
                }),
            )
        }
    }
}

/// `Set-Cookie` value that stores a session secret.
pub fn session_cookie(secret: &str, max_age_secs: i64, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie(secure: bool) -> String {
    session_cookie("", 0, secure)
}

/// What was revoked, announced to open websockets so their subscriptions end at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Session(i64),
    AllSessionsOf(i64),
    Token(i64),
}

/// The revocation announcements. Cheap to clone.
#[derive(Clone)]
pub struct Revocations(broadcast::Sender<Revoked>);

impl Default for Revocations {
    fn default() -> Self {
        Revocations(broadcast::channel(256).0)
    }
}

impl Revocations {
    pub fn announce(&self, revoked: Revoked) {
        // No receiver means no open subscription: nothing to end.
        let _ = self.0.send(revoked);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Revoked> {
        self.0.subscribe()
    }
}

/// Whether `revoked` ends the credential of `caller`.
pub fn ends(caller: &Caller, revoked: Revoked) -> bool {
    match (caller, revoked) {
        (
            Caller::User {
                credential: Credential::Session { session_id },
                ..
            },
            Revoked::Session(id),
        ) => *session_id == id,
        (
            Caller::User {
                user,
                credential: Credential::Session { .. },
            },
            Revoked::AllSessionsOf(uid),
        ) => user.id == uid,
        (
            Caller::User {
                credential: Credential::Token { token_id, .. },
                ..
            },
            Revoked::Token(id),
        ) => *token_id == id,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_wins_over_cookie_and_cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), Presented::None);
        h.insert(
            "cookie",
            HeaderValue::from_static("a=b; classroom_session=s3cret; c=d"),
        );
        assert_eq!(presented(&h), Presented::Cookie("s3cret".into()));
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer clsrm_tok"),
        );
        assert_eq!(presented(&h), Presented::Bearer("clsrm_tok".into()));
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("classroom_session="));
        assert_eq!(
            presented(&h),
            Presented::None,
            "an emptied cookie is no credential"
        );
    }

    #[test]
    fn secrets_are_random_and_hashes_stable() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_secret("x"), hash_secret("x"));
        assert_eq!(hash_secret("x").len(), 64);
        assert_ne!(hash_secret(&a), a);
    }

    #[test]
    fn cookies_are_http_only_lax_and_secure_over_https() {
        let c = session_cookie("abc", 60, false);
        assert_eq!(
            c,
            "classroom_session=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        assert!(session_cookie("abc", 60, true).ends_with("; Secure"));
        assert!(clear_session_cookie(false).contains("Max-Age=0"));
    }
}
