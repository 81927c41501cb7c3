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

/// Whether `c` shows nothing by itself: whitespace, zero-width and other format characters
/// (joiners, direction marks, the byte order mark, soft hyphen), fillers that render blank, and
/// variation selectors and tags. Text made only of these is empty to a reader.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// Invisible characters that may be trimmed from the ends of a text without changing what it
/// shows (not joiners or variation selectors, which belong to the character before them).
fn is_blank_padding(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}'
                | '\u{2060}'
                | '\u{FEFF}'
                | '\u{180E}'
                | '\u{3164}'
                | '\u{FFA0}'
                | '\u{2800}'
        )
}

/// Every text argument goes through here before it is used or stored: control characters
/// (NUL first: PostgreSQL refuses it in text, SQLite would store it) are refused, blank padding
/// is trimmed, and the length is checked in characters. `min` 1 means it must show something: a
/// text made only of invisible characters (zero-width spaces, say) is empty.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> ApiResult<String> {
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::bad_input(
            field,
            "must not contain control characters (such as NUL)",
        ));
    }
    let value = value.trim_matches(is_blank_padding);
    let n = value.chars().count();
    let shows_nothing = value.chars().all(is_invisible);
    if n < min || (min >= 1 && shows_nothing) {
        return Err(ApiError::bad_input(
            field,
            if min == 1 || shows_nothing {
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
        // Invisible characters only: empty. Padding goes; joiners inside an emoji stay.
        for blank in [
            "\u{200B}\u{200B}",
            "\u{FEFF} \u{200D}",
            "\u{2800}",
            "\u{3164}\u{00AD}",
        ] {
            let e = text("t", blank, 1, 10).unwrap_err();
            assert_eq!(
                e,
                ApiError::bad_input("t", "must not be empty"),
                "{blank:?}"
            );
        }
        assert_eq!(
            text("t", "\u{200B}Physics\u{200B}", 1, 10).unwrap(),
            "Physics"
        );
        assert_eq!(
            text("t", "\u{2764}\u{FE0F}", 1, 10).unwrap(),
            "\u{2764}\u{FE0F}"
        );
        assert_eq!(text("t", "", 0, 10).unwrap(), "");
        // Control characters are refused wherever they are; line breaks and tabs are text.
        for bad in ["a\0b", "\0", "a\u{7}", "x\u{9B}"] {
            assert!(text("t", bad, 0, 10).is_err(), "{bad:?}");
        }
        assert_eq!(text("t", "a\nb\tc", 1, 10).unwrap(), "a\nb\tc");
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
