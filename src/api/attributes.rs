//! Our attribute extension at the edge: `IntAttr`…`IntAttr4` and `StrAttr`…`StrAttr4` on
//! AddImage and UpdateImage, `Filter` on SearchImage and ListImages, and each image's
//! attributes in ListImages and SearchImage answers (only those set, so a client that
//! never sets one sees the 2020-03-20 fields and nothing else).
//!
//! Not here: the grammar and the value rules (`attributes`, `rules`), what the service does
//! with them.

use serde_json::{Map, Value};

use super::error::ApiError;
use super::params::Params;
use crate::attributes::{check_str_attr, parse_int_attr, Attributes, Filter, Slot};
use crate::rules::FILTER_MAX_CHARS;
use crate::service::images::AttrFilter;

/// The attributes the request sets (an empty value counts as not sent).
pub fn attributes(params: &Params) -> Result<Attributes, ApiError> {
    let mut out = Attributes::NONE;
    for slot in Slot::all() {
        let name = slot.param_name();
        let Some(value) = params.get_non_empty(&name) else {
            continue;
        };
        let bad = |e: crate::attributes::AttributeError| ApiError::InvalidAttribute(e.to_string());
        match slot {
            Slot::Int(i) => out.ints[i] = Some(parse_int_attr(&name, value).map_err(bad)?),
            Slot::Str(i) => {
                check_str_attr(&name, value).map_err(bad)?;
                out.strs[i] = Some(value.to_string());
            }
        }
    }
    Ok(out)
}

/// The request's `Filter`, parsed; `None` when absent or empty.
pub fn filter(params: &Params) -> Result<Option<AttrFilter>, ApiError> {
    let Some(text) = params.get_non_empty("Filter") else {
        return Ok(None);
    };
    let chars = text.chars().count();
    if chars > FILTER_MAX_CHARS {
        return Err(ApiError::InvalidFilter(format!(
            "Filter is {chars} characters long; at most {FILTER_MAX_CHARS} are allowed"
        )));
    }
    let filter = Filter::parse(text).map_err(|e| ApiError::InvalidFilter(e.to_string()))?;
    Ok(Some(AttrFilter {
        text: text.to_string(),
        filter,
    }))
}

/// Adds the attributes that are set to an image's JSON object (`IntAttr`: number,
/// `StrAttr`: string).
pub fn render(attributes: &Attributes, object: &mut Value) {
    let Some(map): Option<&mut Map<String, Value>> = object.as_object_mut() else {
        return;
    };
    for slot in Slot::all() {
        let value = match slot {
            Slot::Int(i) => attributes.ints[i].map(Value::from),
            Slot::Str(i) => attributes.strs[i].clone().map(Value::String),
        };
        if let Some(v) = value {
            map.insert(slot.param_name(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(body: &str) -> Params {
        Params::parse("", Some(body.as_bytes())).unwrap()
    }

    #[test]
    fn attribute_parameters() {
        let a = attributes(&params("IntAttr=5&IntAttr4=-2&StrAttr2=red&StrAttr3=")).unwrap();
        assert_eq!(a.ints, [Some(5), None, None, Some(-2)]);
        assert_eq!(a.strs[1].as_deref(), Some("red"));
        assert_eq!(a.strs[2], None, "an empty value is not sent");
        let e = attributes(&params("IntAttr2=cheap")).unwrap_err();
        assert_eq!(e.code(), "InvalidParameter.Attribute");
        assert!(e.to_string().contains("IntAttr2 is \"cheap\""), "{e}");
        let long = format!("StrAttr={}", "x".repeat(129));
        assert!(attributes(&params(&long))
            .unwrap_err()
            .to_string()
            .contains("129 characters"));
    }

    #[test]
    fn filter_parameter() {
        assert!(filter(&params("")).unwrap().is_none());
        let f = filter(&params("Filter=int_attr%3E%3D100"))
            .unwrap()
            .unwrap();
        assert_eq!(f.text, "int_attr>=100");
        let e = filter(&params("Filter=int_attr%3E%3D")).unwrap_err();
        assert_eq!(e.code(), "InvalidParameter.Filter");
        assert!(e.to_string().contains("at character 11"), "{e}");
        let long = format!("Filter={}", "(".repeat(4097));
        assert!(filter(&params(&long))
            .unwrap_err()
            .to_string()
            .contains("4097 characters"));
    }

    #[test]
    fn only_set_attributes_are_rendered() {
        let mut a = Attributes::NONE;
        a.ints[1] = Some(7);
        a.strs[0] = Some("red".into());
        let mut v = json!({"DataId": "1"});
        render(&a, &mut v);
        assert_eq!(v, json!({"DataId": "1", "IntAttr2": 7, "StrAttr": "red"}));
        let mut plain = json!({"DataId": "1"});
        render(&Attributes::NONE, &mut plain);
        assert_eq!(plain, json!({"DataId": "1"}));
    }
}
