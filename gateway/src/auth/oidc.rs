//! Sign-in with OpenID Connect providers from the configuration: authorization code flow with
//! PKCE (S256), `state` and `nonce` checked, accounts linked by verified email.
//!
//! `GET /auth/oidc/{provider}/start?return_to=/path` stores the flow (state, PKCE verifier, nonce)
//! in the database and redirects to the provider. `GET /auth/oidc/{provider}/callback` takes the
//! flow back by `state` (once), exchanges the code, verifies the ID token, finds or creates the
//! user, starts a session and redirects to `return_to`. Provider metadata is discovered on first
//! use and cached.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope as OidcScope, TokenResponse,
};
use serde::Deserialize;
use tokio::sync::OnceCell;

use schema::TxError;
use schema::models::{auth_identity, login_flow, user};

use crate::AppState;
use crate::config::OidcProviderConfig;

/// How long a started sign-in may take before its state expires.
pub const FLOW_TTL: Duration = Duration::from_secs(600);

/// Configured providers, with their discovered metadata once fetched.
#[derive(Default)]
pub struct Providers {
    providers: HashMap<String, Provider>,
    http: Option<openidconnect::reqwest::Client>,
}

struct Provider {
    config: OidcProviderConfig,
    metadata: OnceCell<CoreProviderMetadata>,
}

impl Providers {
    pub fn new(configs: &std::collections::BTreeMap<String, OidcProviderConfig>) -> Providers {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would expose the token endpoint to SSRF through redirects.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .ok();
        Providers {
            providers: configs
                .iter()
                .map(|(name, config)| {
                    (
                        name.clone(),
                        Provider {
                            config: config.clone(),
                            metadata: OnceCell::new(),
                        },
                    )
                })
                .collect(),
            http,
        }
    }
}

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// A sign-in failure shown to the person (as plain text with a link back).
fn failure(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><title>Sign-in failed</title><h1>Sign-in failed</h1><p>{}</p><p><a href=\"/\">Back</a></p>",
        message.replace('<', "&lt;")
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn build_client(state: &AppState, name: &str) -> Result<Client, Response> {
    let providers = &state.oidc;
    let provider = providers
        .providers
        .get(name)
        .ok_or_else(|| failure(StatusCode::NOT_FOUND, "unknown sign-in provider"))?;
    let http = providers
        .http
        .as_ref()
        .ok_or_else(|| failure(StatusCode::INTERNAL_SERVER_ERROR, "no HTTP client"))?;
    let metadata = provider
        .metadata
        .get_or_try_init(|| async {
            let issuer =
                IssuerUrl::new(provider.config.issuer.clone()).map_err(|e| e.to_string())?;
            CoreProviderMetadata::discover_async(issuer, http)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e: String| {
            tracing::error!(provider = name, error = %e, "OIDC discovery failed");
            failure(
                StatusCode::BAD_GATEWAY,
                "the sign-in provider cannot be reached",
            )
        })?;
    let redirect = RedirectUrl::new(format!(
        "{}/auth/oidc/{name}/callback",
        state.config.public_url()
    ))
    .map_err(|_| failure(StatusCode::INTERNAL_SERVER_ERROR, "bad public URL"))?;
    Ok(CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(provider.config.client_id.clone()),
        Some(ClientSecret::new(provider.config.client_secret.clone())),
    )
    .set_redirect_uri(redirect))
}

#[derive(Deserialize)]
pub struct StartParams {
    return_to: Option<String>,
}

/// Only same-site paths: `/x`, never `//host` or a full URL.
fn safe_return_to(value: Option<String>) -> String {
    match value {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= 512 =>
        {
            p
        }
        _ => "/".to_owned(),
    }
}

/// `GET /auth/oidc/{provider}/start`
pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<StartParams>,
) -> Response {
    let client = match build_client(&state, &name).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(OidcScope::new("email".into()))
        .add_scope(OidcScope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let flow = login_flow::LoginFlow {
        state: csrf.secret().clone(),
        provider: name,
        pkce_verifier: verifier.secret().clone(),
        nonce: nonce.secret().clone(),
        return_to: safe_return_to(params.return_to),
        expires_at: schema::now_ms() + FLOW_TTL.as_millis() as i64,
    };
    if let Err(e) = state
        .db
        .interact(move |c| login_flow::create(c, &flow))
        .await
    {
        tracing::error!(error = %e, "storing the sign-in flow failed");
        return failure(StatusCode::SERVICE_UNAVAILABLE, "try again in a moment");
    }
    Redirect::to(url.as_str()).into_response()
}

#[derive(Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// What the provider vouched for.
struct Claims {
    subject: String,
    email: Option<String>,
    email_verified: bool,
    name: Option<String>,
}

/// `GET /auth/oidc/{provider}/callback`
pub async fn callback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<CallbackParams>,
) -> Response {
    if let Some(error) = params.error {
        let detail = params.error_description.unwrap_or_default();
        return failure(
            StatusCode::BAD_REQUEST,
            &format!("the provider said: {error} {detail}"),
        );
    }
    let (Some(code), Some(csrf)) = (params.code, params.state) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "the provider's answer lacks code or state",
        );
    };
    let now = schema::now_ms();
    let flow = match state
        .db
        .interact(move |c| login_flow::take(c, &csrf, now))
        .await
    {
        Ok(Some(flow)) if flow.provider == name => flow,
        Ok(_) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "this sign-in expired or was already used; start again",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the sign-in flow failed");
            return failure(StatusCode::SERVICE_UNAVAILABLE, "try again in a moment");
        }
    };
    let client = match build_client(&state, &name).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let claims = match exchange(&state, &client, code, &flow).await {
        Ok(claims) => claims,
        Err(message) => {
            tracing::warn!(provider = %name, error = %message, "OIDC sign-in refused");
            return failure(
                StatusCode::BAD_REQUEST,
                "the provider's answer could not be verified",
            );
        }
    };
    let user_id = match link(&state, &name, claims).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "linking the OIDC account failed");
            return failure(StatusCode::SERVICE_UNAVAILABLE, "try again in a moment");
        }
    };
    match crate::graphql::account::start_session(&state, user_id).await {
        Ok((_, cookie)) => (
            [(header::SET_COOKIE, cookie)],
            Redirect::to(&flow.return_to),
        )
            .into_response(),
        Err(_) => failure(StatusCode::SERVICE_UNAVAILABLE, "try again in a moment"),
    }
}

async fn exchange(
    state: &AppState,
    client: &Client,
    code: String,
    flow: &login_flow::LoginFlow,
) -> Result<Claims, String> {
    let http = state.oidc.http.as_ref().ok_or("no HTTP client")?;
    let response = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| e.to_string())?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
        .request_async(http)
        .await
        .map_err(|e| format!("token exchange: {e}"))?;
    let id_token = response.id_token().ok_or("no ID token in the answer")?;
    let claims = id_token
        .claims(&client.id_token_verifier(), &Nonce::new(flow.nonce.clone()))
        .map_err(|e| format!("ID token: {e}"))?;
    Ok(Claims {
        subject: claims.subject().as_str().to_owned(),
        email: claims.email().map(|e| e.as_str().to_lowercase()),
        email_verified: claims.email_verified() == Some(true),
        name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
    })
}

/// The user for these claims: the linked one; else the account with the same verified email
/// (linked now); else a new account.
async fn link(state: &AppState, provider: &str, claims: Claims) -> Result<i64, schema::DbError> {
    let provider = provider.to_owned();
    let now = schema::now_ms();
    let result = state
        .db
        .transaction(move |c| -> Result<i64, TxError<()>> {
            if let Some(identity) = auth_identity::find(c, &provider, &claims.subject)? {
                return Ok(identity.user_id);
            }
            let verified_email = claims.email.as_deref().filter(|_| claims.email_verified);
            let existing = match verified_email {
                Some(email) => user::find_by_email(c, email)?,
                None => None,
            };
            let user_id = match existing {
                Some(u) => {
                    user::mark_email_verified(c, u.id)?;
                    u.id
                }
                None => {
                    let display = claims
                        .name
                        .clone()
                        .or_else(|| {
                            verified_email
                                .and_then(|e| e.split('@').next())
                                .map(str::to_owned)
                        })
                        .unwrap_or_else(|| "New user".to_owned());
                    user::create(
                        c,
                        &user::NewUser {
                            email: verified_email,
                            email_verified: verified_email.is_some(),
                            display_name: &display,
                            password_hash: None,
                            created_at: now,
                        },
                    )?
                    .id
                }
            };
            auth_identity::create(
                c,
                &auth_identity::NewAuthIdentity {
                    user_id,
                    provider: &provider,
                    subject: &claims.subject,
                    email: claims.email.as_deref(),
                    created_at: now,
                },
            )?;
            Ok(user_id)
        })
        .await?;
    Ok(result.unwrap_or_default())
}
