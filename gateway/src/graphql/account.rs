//! Accounts: sign-up, sign-in, sign-out, the caller, API tokens, sign-in providers.

use async_graphql::{Context, ID, InputObject, Object, Result};
use axum::http::header::SET_COOKIE;
use governor::clock::{Clock, DefaultClock};

use schema::TxError;
use schema::models::{api_token, auth_session, user};

use super::errors::{self, ApiError, ApiResult};
use super::types::{ApiTokenView, AuthProvider, CreatedApiToken, UserView};
use super::{ClientIp, caller, load, require_user, state, transaction};
use crate::AppState;
use crate::auth::{self, Caller, Credential, Revoked, Scope, password};

#[derive(Default)]
pub struct AccountQuery;

#[derive(Default)]
pub struct AccountMutation;

#[derive(InputObject)]
pub struct SignUpInput {
    pub email: String,
    pub password: String,
    pub display_name: String,
}

#[derive(InputObject)]
pub struct SignInInput {
    pub email: String,
    pub password: String,
}

#[derive(InputObject)]
pub struct CreateApiTokenInput {
    /// What the token is for (shown in the token list).
    pub name: String,
    /// What it may do; at least one.
    pub scopes: Vec<Scope>,
}

#[Object]
impl AccountQuery {
    /// The signed-in user, or null.
    async fn me(&self, ctx: &Context<'_>) -> Option<UserView> {
        caller(ctx).user().map(|u| UserView::of(u, Some(u.id)))
    }

    /// The caller's API tokens that are not revoked, newest first.
    async fn api_tokens(&self, ctx: &Context<'_>) -> Result<Vec<ApiTokenView>> {
        let user_id = require_user(ctx, Scope::Read)?.id;
        let tokens = load(ctx, move |c| api_token::list_active(c, user_id)).await?;
        Ok(tokens.into_iter().map(ApiTokenView::from).collect())
    }

    /// Identity providers configured for sign-in.
    async fn auth_providers(&self, ctx: &Context<'_>) -> Vec<AuthProvider> {
        state(ctx)
            .config
            .auth
            .oidc
            .iter()
            .map(|(name, p)| AuthProvider {
                name: name.clone(),
                display_name: p.display_name.clone().unwrap_or_else(|| name.clone()),
                start_url: format!("/auth/oidc/{name}/start"),
            })
            .collect()
    }
}

/// Refuses when `limiter` has no capacity left for `key`.
pub(crate) fn check_limit<K: std::hash::Hash + Eq + Clone>(
    limiter: &governor::DefaultKeyedRateLimiter<K>,
    key: &K,
) -> ApiResult<()> {
    limiter
        .check_key(key)
        .map_err(|not_until| ApiError::RateLimited {
            retry_after_secs: not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1),
        })
}

/// Starts a browser session for `user_id` and sets its cookie on the response.
pub async fn start_session(state: &AppState, user_id: i64) -> ApiResult<(i64, String)> {
    let secret = auth::new_secret();
    let hash = auth::hash_secret(&secret);
    let now = schema::now_ms();
    let ttl = state.config.auth.session_ttl_hours as i64 * 3_600_000;
    let session = state
        .db
        .interact(move |c| {
            auth_session::create(
                c,
                &auth_session::NewAuthSession {
                    user_id,
                    token_hash: &hash,
                    created_at: now,
                    expires_at: now + ttl,
                },
            )
        })
        .await?;
    let cookie = auth::session_cookie(&secret, ttl / 1000, state.config.cookies_secure());
    Ok((session.id, cookie))
}

#[Object]
impl AccountMutation {
    /// Creates an account with email and password and signs it in (sets the session cookie).
    async fn sign_up(&self, ctx: &Context<'_>, input: SignUpInput) -> Result<UserView> {
        let state = state(ctx);
        if let ClientIp(Some(ip)) = ctx
            .data_opt::<ClientIp>()
            .copied()
            .unwrap_or(ClientIp(None))
        {
            check_limit(&state.rate_limits.sign_up_ip, &ip)?;
        }
        let email = errors::email("input.email", &input.email)?;
        let display_name = errors::text("input.displayName", &input.display_name, 1, 100)?;
        password::check_strength(&input.password)
            .map_err(|m| ApiError::bad_input("input.password", m))?;
        let hash = password::hash(input.password).await.map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::Internal
        })?;
        let now = schema::now_ms();
        let created = transaction(ctx, move |c| {
            if user::find_by_email(c, &email)?.is_some() {
                return Err(TxError::Abort(ApiError::Conflict(
                    "an account with this email exists".into(),
                )));
            }
            Ok(user::create(
                c,
                &user::NewUser {
                    email: Some(&email),
                    email_verified: false,
                    display_name: &display_name,
                    password_hash: Some(&hash),
                    created_at: now,
                },
            )?)
        })
        .await?;
        let (_, cookie) = start_session(state, created.id).await?;
        ctx.append_http_header(SET_COOKIE, cookie);
        Ok(UserView::of(&created, Some(created.id)))
    }

    /// Signs in with email and password (sets the session cookie). Attempts are limited per
    /// client IP, per account from one IP, and per account from all IPs together (looser).
    async fn sign_in(&self, ctx: &Context<'_>, input: SignInInput) -> Result<UserView> {
        let state = state(ctx);
        let ClientIp(ip) = ctx
            .data_opt::<ClientIp>()
            .copied()
            .unwrap_or(ClientIp(None));
        if let Some(ip) = ip {
            check_limit(&state.rate_limits.sign_in_ip, &ip)?;
        }
        let email = errors::email("input.email", &input.email)?;
        if input.password.chars().count() > password::MAX_LENGTH {
            return Err(ApiError::bad_input(
                "input.password",
                format!("must be at most {} characters", password::MAX_LENGTH),
            )
            .into());
        }
        // Per account and source first: guesses from one place stop there, and do not use up
        // the account-wide allowance the owner signs in with.
        check_limit(&state.rate_limits.sign_in_account_ip, &(email.clone(), ip))?;
        check_limit(&state.rate_limits.sign_in_account, &email)?;
        let lookup = email.clone();
        let found = load(ctx, move |c| user::find_by_email(c, &lookup)).await?;
        let wrong = || ApiError::Forbidden("wrong email or password".into());
        let Some(found) = found else {
            password::dummy_verify(input.password).await;
            return Err(wrong().into());
        };
        let Some(stored) = found.password_hash.clone() else {
            password::dummy_verify(input.password).await;
            return Err(wrong().into());
        };
        if !password::verify(input.password, stored).await {
            return Err(wrong().into());
        }
        let (_, cookie) = start_session(state, found.id).await?;
        ctx.append_http_header(SET_COOKIE, cookie);
        Ok(UserView::of(&found, Some(found.id)))
    }

    /// Ends this browser session (clears the cookie). Open subscriptions on it end at once.
    async fn sign_out(&self, ctx: &Context<'_>) -> Result<bool> {
        let state = state(ctx);
        let session_id = session_of(caller(ctx))?;
        let now = schema::now_ms();
        load(ctx, move |c| auth_session::revoke(c, session_id, now)).await?;
        state.revocations.announce(Revoked::Session(session_id));
        ctx.append_http_header(
            SET_COOKIE,
            auth::clear_session_cookie(state.config.cookies_secure()),
        );
        Ok(true)
    }

    /// Ends every browser session of the caller, on every device. Returns how many were active.
    async fn sign_out_everywhere(&self, ctx: &Context<'_>) -> Result<i32> {
        let state = state(ctx);
        session_of(caller(ctx))?;
        let user_id = require_user(ctx, Scope::Write)?.id;
        let now = schema::now_ms();
        let n = load(ctx, move |c| auth_session::revoke_all(c, user_id, now)).await?;
        state.revocations.announce(Revoked::AllSessionsOf(user_id));
        ctx.append_http_header(
            SET_COOKIE,
            auth::clear_session_cookie(state.config.cookies_secure()),
        );
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }

    /// Creates an API token for scripts. Its secret is in the answer and never shown again.
    /// Only from a browser session: a token cannot mint tokens.
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        input: CreateApiTokenInput,
    ) -> Result<CreatedApiToken> {
        session_of(caller(ctx))?;
        let user_id = require_user(ctx, Scope::Write)?.id;
        let name = errors::text("input.name", &input.name, 1, 100)?;
        if input.scopes.is_empty() {
            return Err(ApiError::bad_input("input.scopes", "give at least one scope").into());
        }
        let mut scopes: Vec<&str> = input.scopes.iter().map(|s| s.as_str()).collect();
        scopes.sort_unstable();
        scopes.dedup();
        let scopes = scopes.join(" ");
        let secret = format!("{}{}", auth::TOKEN_PREFIX, auth::new_secret());
        let hash = auth::hash_secret(&secret);
        let now = schema::now_ms();
        let token = load(ctx, move |c| {
            api_token::create(
                c,
                &api_token::NewApiToken {
                    user_id,
                    name: &name,
                    token_hash: &hash,
                    scopes: &scopes,
                    created_at: now,
                },
            )
        })
        .await?;
        Ok(CreatedApiToken {
            token: token.into(),
            secret,
        })
    }

    /// Revokes one of the caller's API tokens; requests with it fail from now on.
    async fn revoke_api_token(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let user_id = require_user(ctx, Scope::Write)?.id;
        let token_id = errors::parse_id("id", &id)?;
        let now = schema::now_ms();
        if !load(ctx, move |c| api_token::revoke(c, user_id, token_id, now)).await? {
            return Err(ApiError::NotFound("API token").into());
        }
        state(ctx).revocations.announce(Revoked::Token(token_id));
        Ok(true)
    }
}

/// The session id of a cookie-authenticated caller.
fn session_of(caller: &Caller) -> ApiResult<i64> {
    match caller {
        Caller::Anonymous => Err(ApiError::Unauthenticated),
        Caller::User {
            credential: Credential::Session { session_id },
            ..
        } => Ok(*session_id),
        Caller::User {
            credential: Credential::Token { .. },
            ..
        } => Err(ApiError::Forbidden(
            "only a signed-in browser session can do this, not an API token".into(),
        )),
    }
}
