//! The web console at `/console`: plain HTML, CSS and JavaScript embedded in the binary
//! (no build step). It holds no privileges of its own: the browser signs every request with
//! the user's AccessKey pair (V3 `ACS3-HMAC-SHA256`, WebCrypto) and calls `/` like any SDK.
//! The pages are served with a strict Content-Security-Policy (own origin only).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::response::{new_request_id, render_error, ResponseFormat};

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const SIGN_JS: &str = include_str!("console/sign.js");
const STYLE_CSS: &str = include_str!("console/style.css");

/// Own origin only; images from `data:`/`blob:` (thumbnails and the dropped query image).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The embedded file at `name`, with its content type.
pub fn file(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "" | "index.html" => Some((INDEX_HTML, "text/html; charset=utf-8")),
        "app.js" => Some((APP_JS, "text/javascript; charset=utf-8")),
        "sign.js" => Some((SIGN_JS, "text/javascript; charset=utf-8")),
        "style.css" => Some((STYLE_CSS, "text/css; charset=utf-8")),
        _ => None,
    }
}

pub async fn index() -> Response {
    serve("")
}

pub async fn asset(Path(name): Path<String>) -> Response {
    serve(&name)
}

fn serve(name: &str) -> Response {
    let Some((body, content_type)) = file(name) else {
        let err = ApiError::PathNotFound(format!("/console/{name}"));
        let mut resp = (
            StatusCode::NOT_FOUND,
            render_error(&err, &new_request_id(), "", ResponseFormat::Json),
        )
            .into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(ResponseFormat::Json.content_type()),
        );
        return resp;
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_embedded_files_only() {
        assert!(file("").is_some_and(|(b, t)| b.contains("<html") && t.starts_with("text/html")));
        assert!(file("app.js").is_some());
        assert!(file("sign.js").is_some());
        assert!(file("style.css").is_some());
        assert!(file("../Cargo.toml").is_none());
        assert!(file("secret").is_none());
    }

    #[test]
    fn index_references_only_embedded_assets() {
        let (html, _) = file("").unwrap_or(("", ""));
        for asset in ["/console/app.js", "/console/style.css"] {
            assert!(html.contains(asset), "{asset}");
        }
        assert!(APP_JS.contains("/console/sign.js"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
