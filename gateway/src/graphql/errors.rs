//! API errors with a machine-readable `extensions.code`, and input validation helpers.
//!
//! Clients see a message and a code, never internals: database and other server faults are logged
//! here and reported as `INTERNAL`.

use async_graphql::{Error, ErrorExtensions, ID};

/// Every error the API returns.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// No valid credential (or a revoked one).
    Unauthenticated,
    /// Signed in, but the role or token scope does not allow it.
    Forbidden(String),
    /// The thing does not exist (or the caller may not know it exists).
    NotFound(&'static str),
    /// An argument is invalid; `field` names it (dotted path for input objects).
    BadInput { field: String, message: String },
    /// The request conflicts with the current state (already live, email taken).
    Conflict(String),
    /// Too many attempts; retry after the given seconds.
    RateLimited { retry_after_secs: u64 },
    /// A server fault, already logged.
    Internal,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_input(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadInput {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::BadInput { .. } => "BAD_USER_INPUT",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::Internal => "INTERNAL",
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Error {
        let code = e.code();
        let message = match &e {
            ApiError::Unauthenticated => "sign in first".to_owned(),
            ApiError::Forbidden(m) | ApiError::Conflict(m) => m.clone(),
            ApiError::NotFound(what) => format!("{what} not found"),
            ApiError::BadInput { field, message } => format!("{field}: {message}"),
            ApiError::RateLimited { retry_after_secs } => {
                format!("too many attempts; try again in {retry_after_secs} s")
            }
            ApiError::Internal => "internal error".to_owned(),
        };
        Error::new(message).extend_with(|_, ext| {
            ext.set("code", code);
            match &e {
                ApiError::BadInput { field, .. } => ext.set("field", field.as_str()),
                ApiError::RateLimited { retry_after_secs } => {
                    ext.set("retryAfter", *retry_after_secs)
                }
                _ => {}
            }
        })
    }
}

impl From<schema::DbError> for ApiError {
    fn from(e: schema::DbError) -> ApiError {
        tracing::error!(error = %e, "database error");
        ApiError::Internal
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> ApiError {
        tracing::error!(error = %e, "database error");
        ApiError::Internal
    }
}

/// Parses an `ID` argument into a row id.
pub fn parse_id(field: &str, id: &ID) -> ApiResult<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_input(field, "not a valid id"))
}

/// Trims `value` and checks its length in characters; `min` 1 means it must not be blank.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> ApiResult<String> {
    let value = value.trim();
    let n = value.chars().count();
    if n < min {
        return Err(ApiError::bad_input(
            field,
            if min == 1 {
                "must not be empty".to_owned()
            } else {
                format!("must be at least {min} characters")
            },
        ));
    }
    if n > max {
        return Err(ApiError::bad_input(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// A plausible email address, lower-cased.
pub fn email(field: &str, value: &str) -> ApiResult<String> {
    let value = text(field, value, 3, 254)?.to_lowercase();
    let valid = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    }) && !value.contains(char::is_whitespace);
    if !valid {
        return Err(ApiError::bad_input(field, "is not an email address"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_code_and_field() {
        let e: Error = ApiError::bad_input("input.title", "must not be empty").into();
        let ext = e.extensions.expect("extensions");
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("BAD_USER_INPUT"))
        );
        assert_eq!(
            ext.get("field"),
            Some(&async_graphql::Value::from("input.title"))
        );
        assert_eq!(e.message, "input.title: must not be empty");
    }

    #[test]
    fn validation() {
        assert_eq!(text("t", "  Physics  ", 1, 10).unwrap(), "Physics");
        assert!(text("t", "   ", 1, 10).is_err());
        assert!(text("t", "abcdefghijk", 1, 10).is_err());
        assert_eq!(email("e", " Ada@Example.org ").unwrap(), "ada@example.org");
        for bad in [
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a da@example.org",
        ] {
            assert!(email("e", bad).is_err(), "{bad}");
        }
        assert_eq!(parse_id("id", &ID::from("42")).unwrap(), 42);
        assert!(parse_id("id", &ID::from("x")).is_err());
        assert!(parse_id("id", &ID::from("-1")).is_err());
    }
}
