//! Who may use the dashboard.
//!
//! - With a token configured, a request must carry `Authorization: Bearer <token>` or the
//!   [`COOKIE_NAME`] cookie. The page accepts `?token=` once: it sets the cookie (HttpOnly,
//!   SameSite=Strict, percent-encoded) and redirects to the same URL without the token, so the
//!   token does not stay in the address bar or the history. Tokens are compared as SHA-256
//!   digests in constant time, so neither their content nor their length leaks through timing.
//!   The cookie has no `Secure` flag: the dashboard is often reached over plain http on a
//!   loopback or LAN address, where browsers would drop a `Secure` cookie; put TLS in front
//!   before exposing it further.
//! - Without a token, only `Host` headers that are `localhost` or an IP literal are served.
//!   A web page on some other site cannot reach a loopback dashboard through DNS rebinding,
//!   because its requests carry that site's host name.
//! - A state-changing request (anything but GET/HEAD) that carries an `Origin` header must
//!   come from the dashboard's own origin, so another site cannot make an operator's browser
//!   replay dead letters (cross-site request forgery). Scripts that send no `Origin` are not
//!   affected.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api::json_error;
use super::DashboardState;

/// The session cookie the page sets after `?token=`.
pub const COOKIE_NAME: &str = "revsync_token";

pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No token, or a wrong one.
    Unauthenticated,
    /// No token configured and a host name that is neither localhost nor an IP address.
    HostNotAllowed,
    /// A state-changing request from another origin.
    CrossOrigin,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
            Refusal::HostNotAllowed | Refusal::CrossOrigin => StatusCode::FORBIDDEN,
        }
    }
    fn message(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => {
                "authentication required: send `Authorization: Bearer <token>` or open \
                 /dashboard?token=<token> once"
            }
            Refusal::HostNotAllowed => {
                "without a dashboard token only localhost or an IP address may be used as \
                 the host; configure a token to serve the dashboard under a host name"
            }
            Refusal::CrossOrigin => "cross-origin requests may not change anything",
        }
    }
}

/// The tokens a request presents: the bearer token and every `revsync_token` cookie.
fn presented(headers: &HeaderMap) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for value in headers.get_all(header::AUTHORIZATION) {
        let value = value.as_bytes();
        if value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ") {
            out.push(value[7..].trim_ascii().to_vec());
        }
    }
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, raw)) = pair.trim().split_once('=') {
                if name == COOKIE_NAME {
                    out.push(decode_cookie(raw));
                }
            }
        }
    }
    out
}

fn encode_cookie(token: &str) -> String {
    url::form_urlencoded::byte_serialize(token.as_bytes()).collect()
}

fn decode_cookie(raw: &str) -> Vec<u8> {
    // `byte_serialize` leaves no `&` or `=`, so the first key of a form parse is the value.
    url::form_urlencoded::parse(raw.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned().into_bytes())
        .unwrap_or_default()
}

fn matches(expected: &[u8; 32], token: &[u8]) -> bool {
    digest(token).ct_eq(expected).into()
}

/// Whether a `Host` header names a loopback or literal address (`localhost`, `127.0.0.1:8080`,
/// `[::1]:8080`).
fn literal_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((v6, _)) => return v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

fn check(state: &DashboardState, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::trim);
    if method != Method::GET && method != Method::HEAD {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("null");
            let same = match (url::Url::parse(origin), host) {
                (Ok(o), Some(host)) => {
                    let authority = match o.port() {
                        Some(port) => format!("{}:{port}", o.host_str().unwrap_or_default()),
                        None => o.host_str().unwrap_or_default().to_owned(),
                    };
                    authority.eq_ignore_ascii_case(host)
                }
                _ => false,
            };
            if !same {
                return Err(Refusal::CrossOrigin);
            }
        }
    }
    match &state.token_digest {
        Some(expected) => {
            if presented(headers).iter().any(|t| matches(expected, t)) {
                Ok(())
            } else {
                Err(Refusal::Unauthenticated)
            }
        }
        None => match host {
            Some(host) if !literal_host(host) => Err(Refusal::HostNotAllowed),
            _ => Ok(()),
        },
    }
}

/// Guards `/api/v1/…`: JSON refusals.
pub(crate) async fn require_api(
    State(state): State<DashboardState>,
    request: Request,
    next: Next,
) -> Response {
    match check(&state, request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::info!(path = %request.uri().path(), refusal = ?refusal, "dashboard API request refused");
            let mut response = json_error(refusal.status(), refusal.message());
            if refusal == Refusal::Unauthenticated {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"revsync\""),
                );
            }
            response
        }
    }
}

/// Splits `?token=` off a URI: the token, and the same URI without it.
fn take_token(uri: &axum::http::Uri) -> Option<(String, String)> {
    let query = uri.query()?;
    let mut token = None;
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name == "token" {
            token = Some(value.into_owned());
        } else {
            rest.append_pair(&name, &value);
        }
    }
    let rest = rest.finish();
    let location = if rest.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{rest}", uri.path())
    };
    token.map(|t| (t, location))
}

/// Guards `/dashboard`: exchanges `?token=` for the cookie, refuses with a short page.
pub(crate) async fn require_page(
    State(state): State<DashboardState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some((token, location)) = take_token(request.uri()) {
        let accepted = match &state.token_digest {
            Some(expected) => matches(expected, token.as_bytes()),
            None => true, // nothing to check: just drop it from the address bar
        };
        if !accepted {
            tracing::info!("dashboard token refused");
            return refusal_page(Refusal::Unauthenticated);
        }
        let mut response = (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, "no-store".to_owned()),
                (header::REFERRER_POLICY, "no-referrer".to_owned()),
            ],
        )
            .into_response();
        if state.token_digest.is_some() {
            let cookie = format!(
                "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict",
                encode_cookie(&token)
            );
            if let Ok(cookie) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
        }
        return response;
    }
    match check(&state, request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal_page(refusal),
    }
}

fn refusal_page(refusal: Refusal) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>revsync</title>\
         <p>{}</p>\n",
        // The messages are fixed text without markup characters.
        refusal.message().replace('<', "&lt;").replace('>', "&gt;")
    );
    (
        refusal.status(),
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn literal_hosts() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:80",
            "10.0.0.7",
        ] {
            assert!(literal_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "[nope]:1",
            "127.0.0.1.nip.io",
        ] {
            assert!(!literal_host(bad), "{bad}");
        }
    }

    #[test]
    fn bearer_and_cookie_are_both_read() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bEaReR  abc ".parse().unwrap());
        h.insert(
            header::COOKIE,
            "a=1; revsync_token=x%26y%3D; b=2".parse().unwrap(),
        );
        assert_eq!(presented(&h), vec![b"abc".to_vec(), b"x&y=".to_vec()]);
    }

    proptest! {
        #[test]
        fn cookie_encoding_round_trips(token in ".+") {
            let encoded = encode_cookie(&token);
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b','));
            prop_assert_eq!(decode_cookie(&encoded), token.into_bytes());
        }
    }
}
