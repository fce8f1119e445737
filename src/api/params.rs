//! Request parameters and headers as the gateway sees them: the raw query string and an
//! `application/x-www-form-urlencoded` body decoded into ordered (name, value) pairs, and
//! the request headers with lower-case names.
//!
//! Every pair is kept, in order and with its source, because signing covers all of them,
//! empty values included (`SignatureType=`). Not here: deciding which parameters are
//! required or valid (`auth.rs`, the handlers), and anything HTTP-framework specific.

use thiserror::Error;

use super::error::ApiError;
use crate::rules::REQUEST_MAX_PARAMS;

/// Why the parameters could not be decoded. Always the client's fault: maps to 400
/// `InvalidParameter.BadRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamsError {
    #[error("malformed percent-encoding in the {0}")]
    BadPercentEncoding(ParamSource),
    #[error("a parameter in the {0} is not valid UTF-8 after decoding")]
    NotUtf8(ParamSource),
    #[error("it carries more than {REQUEST_MAX_PARAMS} parameters")]
    TooMany,
}

impl From<ParamsError> for ApiError {
    fn from(e: ParamsError) -> Self {
        ApiError::BadRequest(format!("The request is malformed: {e}."))
    }
}

/// Where a parameter came from. V3 signs only the query-string ones in its canonical query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamSource {
    Query,
    Body,
}

impl std::fmt::Display for ParamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ParamSource::Query => "query string",
            ParamSource::Body => "form body",
        })
    }
}

/// One decoded parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: String,
    pub source: ParamSource,
}

/// All parameters of a request: the query string's first, then the form body's, each in
/// the order they were sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<Param>,
}

impl Params {
    /// Decodes `query` (without the leading `?`) and, when given, a form-encoded body.
    ///
    /// In both, `+` means space: that is the form-urlencoded rule, and servers commonly
    /// apply it to query strings too (the SDKs never send a raw `+`: they write `%20`/`%2B`).
    /// A segment without `=` is a name with an empty value; empty segments are skipped.
    pub fn parse(query: &str, form_body: Option<&[u8]>) -> Result<Self, ParamsError> {
        // Counted before anything is decoded or allocated.
        let count = count_pairs(query.as_bytes()) + form_body.map_or(0, count_pairs);
        if count > REQUEST_MAX_PARAMS {
            return Err(ParamsError::TooMany);
        }
        let mut pairs = Vec::with_capacity(count);
        decode_form(query.as_bytes(), ParamSource::Query, &mut pairs)?;
        if let Some(body) = form_body {
            decode_form(body, ParamSource::Body, &mut pairs)?;
        }
        Ok(Params { pairs })
    }

    /// Decodes the query and, when the headers declare a form content type, the body.
    /// A body of any other type is not parameters (and V1 does not sign it).
    pub fn from_request(query: &str, headers: &Headers, body: &[u8]) -> Result<Self, ParamsError> {
        let form = headers.is_form_urlencoded().then_some(body);
        Self::parse(query, form)
    }

    /// The first value of `name` (query before body), if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// Like [`Params::get`], but an empty value counts as absent.
    pub fn get_non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Every parameter, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Param> {
        self.pairs.iter()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The action: the `Action` parameter, else the `x-acs-action` header (Tea SDK).
    pub fn action<'a>(&'a self, headers: &'a Headers) -> Option<&'a str> {
        self.get_non_empty("Action")
            .or_else(|| headers.get("x-acs-action").filter(|v| !v.is_empty()))
    }

    /// The API version: the `Version` parameter, else the `x-acs-version` header.
    pub fn version<'a>(&'a self, headers: &'a Headers) -> Option<&'a str> {
        self.get_non_empty("Version")
            .or_else(|| headers.get("x-acs-version").filter(|v| !v.is_empty()))
    }
}

impl<'a> IntoIterator for &'a Params {
    type Item = &'a Param;
    type IntoIter = std::slice::Iter<'a, Param>;
    fn into_iter(self) -> Self::IntoIter {
        self.pairs.iter()
    }
}

/// Request headers with lower-case names, in arrival order; repeated names are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    /// Builds from (name, value) pairs; names are lower-cased here so callers need not.
    /// From axum: `Headers::new(map.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))))`
    /// (a value that is not visible ASCII is then dropped, and a signature over it fails).
    pub fn new<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let entries = pairs
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref().to_owned()))
            .collect();
        Headers { entries }
    }

    /// The first value of `name` (give it lower-case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (give it lower-case), in arrival order.
    pub fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.entries
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether `content-type` is `application/x-www-form-urlencoded` (any parameters, any case).
    pub fn is_form_urlencoded(&self) -> bool {
        self.get("content-type").is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
    }
}

/// Non-empty `&`-separated segments: the pairs `decode_form` will make.
fn count_pairs(input: &[u8]) -> usize {
    input
        .split(|&b| b == b'&')
        .filter(|s| !s.is_empty())
        .count()
}

fn decode_form(input: &[u8], source: ParamSource, out: &mut Vec<Param>) -> Result<(), ParamsError> {
    for segment in input.split(|&b| b == b'&') {
        if segment.is_empty() {
            continue;
        }
        let (name, value) = match segment.iter().position(|&b| b == b'=') {
            Some(i) => (&segment[..i], &segment[i + 1..]),
            None => (segment, &b""[..]),
        };
        out.push(Param {
            name: percent_decode(name, source)?,
            value: percent_decode(value, source)?,
            source,
        });
    }
    Ok(())
}

/// Decodes `%XX` escapes and `+` (space); the result must be UTF-8.
fn percent_decode(input: &[u8], source: ParamSource) -> Result<String, ParamsError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => {
                let hi = input.get(i + 1).and_then(|&b| hex_val(b));
                let lo = input.get(i + 2).and_then(|&b| hex_val(b));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(ParamsError::BadPercentEncoding(source)),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ParamsError::NotUtf8(source))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_parameters_are_refused_before_decoding() {
        // 4 million empty-valued pairs in an 8 MB body: refused, not decoded.
        let body = "a=&".repeat(4_000_000);
        let err = Params::parse("Action=AddImage", Some(body.as_bytes())).unwrap_err();
        assert_eq!(err, ParamsError::TooMany);
        let api = ApiError::from(err);
        assert_eq!(
            (api.code(), api.http_status()),
            ("InvalidParameter.BadRequest", 400)
        );
        assert!(
            api.message().contains("more than 100 parameters"),
            "{}",
            api.message()
        );
        // The cap counts query and body together; empty segments are not pairs.
        let at_cap = "x=1&".repeat(REQUEST_MAX_PARAMS - 1);
        let p = Params::parse("Action=A", Some(at_cap.as_bytes())).unwrap();
        assert_eq!(p.len(), REQUEST_MAX_PARAMS);
        assert!(Params::parse("Action=A&B=1", Some(at_cap.as_bytes())).is_err());
        assert_eq!(Params::parse("&&&&a=1&&&", None).unwrap().len(), 1);
    }

    fn pairs(p: &Params) -> Vec<(&str, &str, ParamSource)> {
        p.iter()
            .map(|p| (p.name.as_str(), p.value.as_str(), p.source))
            .collect()
    }

    #[test]
    fn query_and_body_keep_order_empty_values_and_source() {
        let p = Params::parse(
            "Version=2020-03-20&SignatureType=&Bare&&Timestamp=2026-11-24T19%3A42%3A58Z",
            Some("DbName=default&ExtraData=%E9%A3%8E%E6%99%AF+a%2Ab~c".as_bytes()),
        )
        .unwrap();
        use ParamSource::*;
        assert_eq!(
            pairs(&p),
            vec![
                ("Version", "2020-03-20", Query),
                ("SignatureType", "", Query),
                ("Bare", "", Query),
                ("Timestamp", "2026-11-24T19:42:58Z", Query),
                ("DbName", "default", Body),
                ("ExtraData", "风景 a*b~c", Body),
            ]
        );
        assert_eq!(p.get("SignatureType"), Some(""));
        assert_eq!(p.get_non_empty("SignatureType"), None);
        assert_eq!(p.get("Missing"), None);
    }

    #[test]
    fn first_value_wins_and_raw_utf8_passes() {
        let p = Params::parse("A=1&A=2", Some("A=3&B=风 景".as_bytes())).unwrap();
        assert_eq!(p.get("A"), Some("1"));
        assert_eq!(p.get("B"), Some("风 景"));
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn malformed_input_is_a_bad_request() {
        for (q, b) in [
            ("A=%zz", None),
            ("A=%4", None),
            ("A=%", None),
            ("A=1", Some(&b"B=%FF%FE"[..])),
            ("A=1", Some(&b"B=\xff"[..])),
        ] {
            let err = Params::parse(q, b).unwrap_err();
            let api: ApiError = err.into();
            assert_eq!(api.code(), "InvalidParameter.BadRequest", "{q} {b:?}");
            assert_eq!(api.http_status(), 400);
        }
    }

    #[test]
    fn action_and_version_from_params_or_headers() {
        let h = Headers::new([
            ("X-Acs-Action", "SearchImage"),
            ("x-acs-version", "2020-03-20"),
        ]);
        let p = Params::parse("", None).unwrap();
        assert_eq!(p.action(&h), Some("SearchImage"));
        assert_eq!(p.version(&h), Some("2020-03-20"));
        let p = Params::parse("Action=AddImage&Version=1", None).unwrap();
        assert_eq!(p.action(&h), Some("AddImage"));
        assert_eq!(p.version(&h), Some("1"));
        assert_eq!(p.action(&Headers::default()), Some("AddImage"));
    }

    #[test]
    fn body_is_parsed_only_when_form_encoded() {
        let body = b"DbName=x";
        let form = Headers::new([(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )]);
        assert_eq!(
            Params::from_request("", &form, body).unwrap().get("DbName"),
            Some("x")
        );
        let json = Headers::new([("content-type", "application/json")]);
        assert!(Params::from_request("", &json, body).unwrap().is_empty());
        assert!(Params::from_request("", &Headers::default(), body)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn headers_lookup_is_by_lower_case_name_and_keeps_repeats() {
        let h = Headers::new([("A", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(h.get("a"), Some("1"));
        assert_eq!(h.get_all("a").collect::<Vec<_>>(), vec!["1", "3"]);
        assert_eq!(h.get("c"), None);
    }
}
