//! Response bodies the SDKs can read: JSON or XML (`Format=XML`), success and error, plus
//! the `RequestId` generator.
//!
//! XML follows the convention of the Tea SDK's own XML codec (`darabonba.utils.xml`), whose
//! parser turns repeated sibling elements into a list: a JSON array under key `K` becomes
//! one `<K>` element per item, so `{"Data":{"DbList":[{"Name":"a"},{"Name":"b"}]}}` renders
//! as `<Data><DbList><Name>a</Name></DbList><DbList><Name>b</Name></DbList></Data>`. An empty
//! array or `null` renders as an empty element `<K/>`, as that codec writes them. The V1 SDK
//! (`aliyun-python-sdk-core`) does not parse XML at all; it hands the raw body back.
//!
//! Not here: HTTP status and headers beyond the content type (the integrator sets them from
//! [`ApiError::http_status`] and [`ResponseFormat::content_type`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::error::ApiError;
use super::params::Params;

/// Content type of JSON bodies.
pub const JSON_CONTENT_TYPE: &str = "application/json;charset=utf-8";
/// Content type of XML bodies. Exactly this string: the Tea SDK parses an error body as
/// XML only when the content type equals it, and as JSON otherwise.
pub const XML_CONTENT_TYPE: &str = "text/xml;charset=utf-8";

/// The body format a client asked for with `Format`; JSON unless it said `XML`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResponseFormat {
    #[default]
    Json,
    Xml,
}

impl ResponseFormat {
    /// `Format=XML` (any case) → XML; anything else, or absent → JSON.
    pub fn from_params(params: &Params) -> Self {
        match params.get("Format") {
            Some(f) if f.eq_ignore_ascii_case("XML") => ResponseFormat::Xml,
            _ => ResponseFormat::Json,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ResponseFormat::Json => JSON_CONTENT_TYPE,
            ResponseFormat::Xml => XML_CONTENT_TYPE,
        }
    }
}

/// A new request id: 32 upper-case hex digits in UUID layout (`8-4-4-4-12`), random
/// (version-4 style) from the OS CSPRNG. Should that ever fail, time + a process counter
/// keep it unique within this process.
pub fn new_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seq = COUNTER.fetch_add(1, Ordering::Relaxed) ^ (u64::from(std::process::id()) << 40);
        b[..8].copy_from_slice(&nanos.to_be_bytes());
        b[8..].copy_from_slice(&seq.to_be_bytes());
    }
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The error body: `{"RequestId","HostId","Code","Message"}` or `<Error>` with those
/// children. `host_id` is the host the client addressed (e.g. the `Host` header).
pub fn render_error(
    err: &ApiError,
    request_id: &str,
    host_id: &str,
    format: ResponseFormat,
) -> String {
    let fields = [
        ("RequestId", request_id.to_owned()),
        ("HostId", host_id.to_owned()),
        ("Code", err.code().to_owned()),
        ("Message", err.message()),
    ];
    match format {
        ResponseFormat::Json => {
            let parts: Vec<String> = fields
                .into_iter()
                .map(|(k, v)| format!("\"{k}\":{}", Value::String(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        ResponseFormat::Xml => {
            let mut out = String::from(XML_DECLARATION);
            out.push_str("<Error>");
            for (k, v) in fields {
                write_element(&mut out, k, &Value::String(v));
            }
            out.push_str("</Error>");
            out
        }
    }
}

/// A success body. `body` is the whole response object, `RequestId` included, e.g.
/// `{"RequestId": id, "Data": {...}}`; in XML it sits under `<{action}Response>`.
pub fn render_success(action: &str, body: &Value, format: ResponseFormat) -> String {
    match format {
        ResponseFormat::Json => body.to_string(),
        ResponseFormat::Xml => to_xml(&format!("{action}Response"), body),
    }
}

/// Renders `value` as an XML document with root element `root` (convention in the module
/// doc). Object keys must be XML names; any other character in a key becomes `_`.
pub fn to_xml(root: &str, value: &Value) -> String {
    let mut out = String::from(XML_DECLARATION);
    write_element(&mut out, root, value);
    out
}

const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

fn write_element(out: &mut String, name: &str, value: &Value) {
    let name = xml_name(name);
    match value {
        // Arrays repeat their element name, one element per item.
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                write_element(out, &name, item);
            }
        }
        Value::Array(_) | Value::Null => {
            out.push('<');
            out.push_str(&name);
            out.push_str("/>");
        }
        Value::Object(map) => {
            open(out, &name);
            for (k, v) in map {
                write_element(out, k, v);
            }
            close(out, &name);
        }
        Value::String(s) => {
            open(out, &name);
            escape_text(out, s);
            close(out, &name);
        }
        Value::Bool(b) => {
            open(out, &name);
            out.push_str(if *b { "true" } else { "false" });
            close(out, &name);
        }
        Value::Number(n) => {
            open(out, &name);
            out.push_str(&n.to_string());
            close(out, &name);
        }
    }
}

fn open(out: &mut String, name: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
}

fn close(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn xml_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// Escapes markup characters. Characters XML 1.0 cannot carry at all (most C0 controls)
/// become U+FFFD; `\r` is written as `&#13;` so parsers do not normalise it away.
fn escape_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_ids_are_uuid_shaped_upper_hex_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = new_request_id();
            assert_eq!(id.len(), 36);
            let groups: Vec<&str> = id.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(id
                .chars()
                .all(|c| c == '-' || c.is_ascii_digit() || c.is_ascii_uppercase()));
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn format_param_selects_xml_case_insensitively() {
        let p = |q| Params::parse(q, None).unwrap();
        assert_eq!(
            ResponseFormat::from_params(&p("Format=XML")),
            ResponseFormat::Xml
        );
        assert_eq!(
            ResponseFormat::from_params(&p("Format=xml")),
            ResponseFormat::Xml
        );
        assert_eq!(
            ResponseFormat::from_params(&p("Format=JSON")),
            ResponseFormat::Json
        );
        assert_eq!(ResponseFormat::from_params(&p("")), ResponseFormat::Json);
        assert_eq!(ResponseFormat::Xml.content_type(), "text/xml;charset=utf-8");
    }

    #[test]
    fn json_error_body_has_the_four_fields() {
        let err = ApiError::InvalidParameter("Name \"a\" is too short".into());
        let body = render_error(&err, "RID", "127.0.0.1:8080", ResponseFormat::Json);
        assert!(
            body.starts_with("{\"RequestId\":\"RID\",\"HostId\""),
            "{body}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({"RequestId": "RID", "HostId": "127.0.0.1:8080",
                   "Code": "InvalidParameter", "Message": "Name \"a\" is too short"})
        );
    }

    #[test]
    fn xml_error_body_is_escaped() {
        let err = ApiError::BadRequest("a<b & \"c\"".into());
        let body = render_error(&err, "RID", "h", ResponseFormat::Xml);
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><RequestId>RID</RequestId>\
             <HostId>h</HostId><Code>InvalidParameter.BadRequest</Code>\
             <Message>a&lt;b &amp; &quot;c&quot;</Message></Error>"
        );
    }

    #[test]
    fn xml_success_repeats_array_elements() {
        let body = json!({
            "RequestId": "RID",
            "Data": {"DbList": [{"Name": "a"}, {"Name": "b<"}], "Token": null, "Empty": []},
        });
        let xml = render_success("ListImageDbs", &body, ResponseFormat::Xml);
        // Key order within an object follows serde_json's map order, so check pieces.
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListImageDbsResponse>"));
        assert!(xml.ends_with("</ListImageDbsResponse>"), "{xml}");
        for piece in [
            "<RequestId>RID</RequestId>",
            "<DbList><Name>a</Name></DbList><DbList><Name>b&lt;</Name></DbList>",
            "<Token/>",
            "<Empty/>",
        ] {
            assert!(xml.contains(piece), "{piece} in {xml}");
        }
        assert_eq!(
            render_success("X", &body, ResponseFormat::Json),
            body.to_string()
        );
    }

    #[test]
    fn xml_scalars_and_awkward_text() {
        let v = json!({"Score": 9.5, "TotalCount": 3, "Ok": true, "ExtraData": "风景\r\u{1}\tx"});
        let xml = to_xml("R", &v);
        assert!(xml.contains("<Score>9.5</Score>"), "{xml}");
        assert!(xml.contains("<TotalCount>3</TotalCount>"), "{xml}");
        assert!(xml.contains("<Ok>true</Ok>"), "{xml}");
        assert!(
            xml.contains("<ExtraData>风景&#13;\u{FFFD}\tx</ExtraData>"),
            "{xml}"
        );
        assert_eq!(xml_name("1 a"), "_1_a");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use serde_json::{json, Map};

        /// Reads back what `to_xml` writes: elements, self-closed elements and escaped text
        /// (no attributes, comments or CDATA, which it never writes). Returns the text of
        /// every leaf element in document order, with its element name.
        fn xml_leaves(xml: &str) -> Vec<(String, String)> {
            let body = xml.strip_prefix(XML_DECLARATION).expect("declaration");
            let mut leaves = Vec::new();
            let mut rest = body;
            let mut open_name: Option<String> = None;
            while let Some(lt) = rest.find('<') {
                let text = &rest[..lt];
                let gt = rest[lt..].find('>').expect("tag end") + lt;
                let tag = &rest[lt + 1..gt];
                if let Some(name) = tag.strip_prefix('/') {
                    if open_name.as_deref() == Some(name) {
                        leaves.push((name.to_owned(), unescape(text)));
                    }
                    open_name = None;
                } else if let Some(name) = tag.strip_suffix('/') {
                    leaves.push((name.to_owned(), String::new()));
                    open_name = None;
                } else {
                    assert!(text.is_empty(), "text between elements: {text:?}");
                    open_name = Some(tag.to_owned());
                }
                rest = &rest[gt + 1..];
            }
            leaves
        }

        fn unescape(s: &str) -> String {
            s.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&#13;", "\r")
                .replace("&amp;", "&")
        }

        /// What XML 1.0 can carry of `s`: the documented substitutions.
        fn xml_safe(s: &str) -> String {
            s.chars()
                .map(|c| match c {
                    '\t' | '\n' | '\r' => c,
                    c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
                    c => c,
                })
                .collect()
        }

        proptest! {
            /// Any string values, in objects and arrays: the XML body carries each one in
            /// order (markup escaped, nothing lost but what XML cannot hold), and the JSON
            /// body parses back to the same value.
            #[test]
            fn bodies_carry_every_string_value(
                values in proptest::collection::vec(any::<String>(), 1..6),
                n in any::<i64>(), flag in any::<bool>(),
            ) {
                let mut data = Map::new();
                data.insert("Items".into(), json!(values.iter().map(|v| json!({"Name": v})).collect::<Vec<_>>()));
                data.insert("Count".into(), json!(n));
                data.insert("More".into(), json!(flag));
                let body = json!({"RequestId": "R", "Data": data});

                let parsed: Value = serde_json::from_str(&render_success("X", &body, ResponseFormat::Json)).unwrap();
                prop_assert_eq!(&parsed, &body);

                let leaves = xml_leaves(&render_success("X", &body, ResponseFormat::Xml));
                let names: Vec<String> = leaves.iter().filter(|(k, _)| k == "Name").map(|(_, v)| v.clone()).collect();
                let expected: Vec<String> = values.iter().map(|v| xml_safe(v)).collect();
                prop_assert_eq!(names, expected);
                prop_assert!(leaves.contains(&("Count".to_owned(), n.to_string())));
                prop_assert!(leaves.contains(&("More".to_owned(), flag.to_string())));
            }
        }
    }
}
