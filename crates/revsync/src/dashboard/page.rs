//! The dashboard page: one HTML document with its CSS and script inline (no external assets),
//! assembled once, served with a Content-Security-Policy that allows exactly that script and
//! that style (by SHA-256 hash), requests to its own origin, and nothing else: no images, no
//! frames, no other scripts. Escaping is the script's job (it inserts text only); the policy
//! is the second line of defence.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

const TEMPLATE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

struct Page {
    html: String,
    csp: String,
}

fn csp_hash(text: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

static PAGE: LazyLock<Page> = LazyLock::new(|| Page {
    html: TEMPLATE
        .replacen("{style}", STYLE, 1)
        .replacen("{script}", SCRIPT, 1),
    csp: format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        csp_hash(SCRIPT),
        csp_hash(STYLE)
    ),
});

/// `GET /dashboard`.
pub(crate) async fn dashboard() -> Response {
    let page = &*PAGE;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, page.csp.as_str()),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        page.html.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_embeds_its_assets_and_loads_nothing_from_elsewhere() {
        let html = &PAGE.html;
        assert!(html.contains(SCRIPT) && html.contains(STYLE));
        assert!(!html.contains("{script}") && !html.contains("{style}"));
        for external in ["src=", "href=", "http://", "https://", "@import"] {
            assert!(!html.contains(external), "page references `{external}`");
        }
        // The script never hands data to the HTML parser.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!SCRIPT.contains(sink), "script uses {sink}");
        }
    }
}
