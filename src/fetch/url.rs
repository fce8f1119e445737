//! The rules of an `ImageUrl` as the client wrote it, and of a redirect target: http(s)
//! only, ASCII only, no credentials, a host, a bounded length. Checked before anything is
//! resolved or connected. Not here: where the URL may point (`guard.rs`).

use url::{Host, Url};

use super::error::FetchError;
use crate::rules::IMAGE_URL_MAX_LEN;

/// Check `ImageUrl` as the client sent it, without fetching: the same rules as
/// [`ImageFetcher::fetch`] applies first (scheme, ASCII, credentials, length). Lets a
/// handler refuse a bad request before doing anything else.
pub fn check_image_url(raw: &str) -> Result<(), FetchError> {
    parse_image_url(raw).map(|_| ())
}

pub(super) fn parse_image_url(raw: &str) -> Result<Url, FetchError> {
    if raw.trim().is_empty() {
        return Err(FetchError::InvalidUrl("is empty".into()));
    }
    // Before parsing: `Url::parse` would percent-encode a path or punycode a host, and the
    // spec refuses the characters themselves.
    if let Some((at, ch)) = raw.char_indices().find(|(_, c)| !c.is_ascii()) {
        return Err(FetchError::NonAscii { ch, at });
    }
    if raw.len() > IMAGE_URL_MAX_LEN {
        return Err(FetchError::InvalidUrl(format!(
            "is {} characters long; at most {IMAGE_URL_MAX_LEN} are accepted",
            raw.len()
        )));
    }
    let url =
        Url::parse(raw).map_err(|e| FetchError::InvalidUrl(format!("is not a valid URL ({e})")))?;
    check_parsed(&url).map_err(|why| match why {
        UrlProblem::Credentials => FetchError::Credentials,
        UrlProblem::Other(m) => FetchError::InvalidUrl(m),
    })?;
    Ok(url)
}

pub(super) enum UrlProblem {
    Credentials,
    Other(String),
}

/// Rules shared by the client's URL and redirect targets.
pub(super) fn check_parsed(url: &Url) -> Result<(), UrlProblem> {
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(UrlProblem::Other(format!(
                "must use the http or https scheme, not \"{other}\""
            )))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    match url.host() {
        None => Err(UrlProblem::Other("has no host".into())),
        Some(Host::Domain("")) => Err(UrlProblem::Other("has an empty host".into())),
        Some(_) => Ok(()),
    }
}
