//! HTTP basic authentication, when `auth.password` is set. Over plain HTTP the password
//! crosses the network readable: put the page behind TLS (a reverse proxy) when it leaves the
//! machine.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::{App, AuthConfig, page};

pub async fn require(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if allowed(&app.cfg.auth, request.headers()) {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        page::html_headers(),
        page::message_page(
            "Password needed",
            "This touchstream report asks for a user name and password (auth.user and \
             auth.password in its configuration).",
        ),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"touchstream\", charset=\"UTF-8\""),
    );
    response
}

/// No password configured, or the request's `Authorization: Basic` carries the right pair.
fn allowed(auth: &AuthConfig, headers: &HeaderMap) -> bool {
    if auth.password.is_empty() {
        return true;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
    else {
        return false;
    };
    let expected = format!("{}:{}", auth.user, auth.password);
    same(&given, expected.as_bytes())
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn only_the_configured_pair_gets_in() {
        let auth = AuthConfig {
            user: "ana".into(),
            password: "s3cret".into(),
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(allowed(
            &auth,
            &headers(&format!("Basic {}", b64("ana:s3cret")))
        ));
        assert!(!allowed(
            &auth,
            &headers(&format!("Basic {}", b64("ana:s3cre")))
        ));
        assert!(!allowed(
            &auth,
            &headers(&format!("Basic {}", b64("ana:s3cretx")))
        ));
        assert!(!allowed(
            &auth,
            &headers(&format!("Basic {}", b64("bob:s3cret")))
        ));
        assert!(!allowed(&auth, &headers("Basic !!!")));
        assert!(!allowed(&auth, &HeaderMap::new()));
        let open = AuthConfig::default();
        assert!(allowed(&open, &HeaderMap::new()));
    }
}
