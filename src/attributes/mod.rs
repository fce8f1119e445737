//! An image's attributes (our extension, with Image Search's names): up to four integers
//! (`IntAttr`, `IntAttr2`…`IntAttr4`) and four strings (`StrAttr`…`StrAttr4`) a shop sets
//! when it adds an image (price band, brand, stock) and filters by when it searches or
//! lists (`filter`: the `Filter` grammar, parsed into a [`Filter`] and evaluated here).
//!
//! A shared definition: the API layer parses parameters into [`Attributes`], the store keeps
//! them in columns, the index keeps them in memory for filtered search. Not here: the limits
//! (`rules`), parameter names' error messages (`api::attributes`), SQL (`store::sqlite`).

pub mod filter;

pub use filter::{Filter, FilterError};

use crate::rules::{INT_ATTR_MAX, INT_ATTR_SLOTS, STR_ATTR_MAX_CHARS, STR_ATTR_SLOTS};

/// One image's attributes; `None` is an attribute never set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub ints: [Option<i64>; INT_ATTR_SLOTS],
    pub strs: [Option<String>; STR_ATTR_SLOTS],
}

/// Which attribute: an integer or a string slot, 0-based (`IntAttr2` is `Int(1)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Int(usize),
    Str(usize),
}

impl Slot {
    /// Every slot, integers first.
    pub fn all() -> impl Iterator<Item = Slot> {
        (0..INT_ATTR_SLOTS)
            .map(Slot::Int)
            .chain((0..STR_ATTR_SLOTS).map(Slot::Str))
    }

    /// The API parameter and response field: `IntAttr`, `IntAttr2`, …, `StrAttr4`.
    pub fn param_name(self) -> String {
        match self {
            Slot::Int(0) => "IntAttr".into(),
            Slot::Int(i) => format!("IntAttr{}", i + 1),
            Slot::Str(0) => "StrAttr".into(),
            Slot::Str(i) => format!("StrAttr{}", i + 1),
        }
    }

    /// The name in a `Filter` expression: `int_attr`, `int_attr2`, …, `str_attr4`.
    pub fn filter_name(self) -> String {
        match self {
            Slot::Int(0) => "int_attr".into(),
            Slot::Int(i) => format!("int_attr{}", i + 1),
            Slot::Str(0) => "str_attr".into(),
            Slot::Str(i) => format!("str_attr{}", i + 1),
        }
    }
}

impl Attributes {
    /// No attribute set (what every image stored before attributes existed has).
    pub const NONE: Attributes = Attributes {
        ints: [None; INT_ATTR_SLOTS],
        strs: [None, None, None, None],
    };

    pub fn is_empty(&self) -> bool {
        self.ints.iter().all(Option::is_none) && self.strs.iter().all(Option::is_none)
    }

    /// Sets every attribute `update` sets; the others keep their value.
    pub fn merge(&mut self, update: &Attributes) {
        for (mine, new) in self.ints.iter_mut().zip(&update.ints) {
            if new.is_some() {
                *mine = *new;
            }
        }
        for (mine, new) in self.strs.iter_mut().zip(&update.strs) {
            if new.is_some() {
                mine.clone_from(new);
            }
        }
    }
}

/// Why an attribute value is refused. `Display` is the message for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    #[error(
        "{name} is \"{value}\"; it must be a whole number from -{INT_ATTR_MAX} to {INT_ATTR_MAX}"
    )]
    NotAnInteger { name: String, value: String },
    #[error("{name} is {chars} characters long; at most {STR_ATTR_MAX_CHARS} are allowed")]
    TooLong { name: String, chars: usize },
    #[error("{name} contains control characters; use printable text")]
    ControlCharacters { name: String },
}

/// Parses an integer attribute value (decimal, optional sign, within ±[`INT_ATTR_MAX`]).
pub fn parse_int_attr(name: &str, value: &str) -> Result<i64, AttributeError> {
    let bad = || AttributeError::NotAnInteger {
        name: name.to_string(),
        value: value.chars().take(40).collect(),
    };
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let v: i64 = value.parse().map_err(|_| bad())?;
    if v.abs() > INT_ATTR_MAX {
        return Err(bad());
    }
    Ok(v)
}

/// Checks a string attribute value: at most [`STR_ATTR_MAX_CHARS`] characters, no control
/// characters.
pub fn check_str_attr(name: &str, value: &str) -> Result<(), AttributeError> {
    let chars = value.chars().count();
    if chars > STR_ATTR_MAX_CHARS {
        return Err(AttributeError::TooLong {
            name: name.to_string(),
            chars,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(AttributeError::ControlCharacters {
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_image_search() {
        let names: Vec<String> = Slot::all().map(Slot::param_name).collect();
        assert_eq!(
            names,
            [
                "IntAttr", "IntAttr2", "IntAttr3", "IntAttr4", "StrAttr", "StrAttr2", "StrAttr3",
                "StrAttr4"
            ]
        );
        assert_eq!(Slot::Str(3).filter_name(), "str_attr4");
        assert_eq!(Slot::Int(0).filter_name(), "int_attr");
    }

    #[test]
    fn integer_values() {
        assert_eq!(parse_int_attr("IntAttr", "42"), Ok(42));
        assert_eq!(parse_int_attr("IntAttr", "-7"), Ok(-7));
        assert_eq!(parse_int_attr("IntAttr", "+7"), Ok(7));
        assert_eq!(
            parse_int_attr("IntAttr", "9007199254740991"),
            Ok(INT_ATTR_MAX)
        );
        for bad in [
            "",
            "-",
            "1.5",
            "1e3",
            " 1",
            "9007199254740992",
            "99999999999999999999",
            "x",
        ] {
            let e = parse_int_attr("IntAttr2", bad).unwrap_err();
            assert!(e.to_string().starts_with("IntAttr2 is"), "{e}");
        }
    }

    #[test]
    fn string_values() {
        assert!(check_str_attr("StrAttr", &"é".repeat(128)).is_ok());
        assert!(check_str_attr("StrAttr", &"é".repeat(129)).is_err());
        assert!(check_str_attr("StrAttr", "a\nb").is_err());
    }

    #[test]
    fn merge_sets_only_what_is_given() {
        let mut a = Attributes::NONE;
        a.ints[0] = Some(1);
        a.strs[1] = Some("red".into());
        let mut u = Attributes::NONE;
        u.ints[1] = Some(2);
        u.strs[1] = Some("blue".into());
        a.merge(&u);
        assert_eq!(a.ints, [Some(1), Some(2), None, None]);
        assert_eq!(a.strs[1].as_deref(), Some("blue"));
        assert!(!a.is_empty() && Attributes::NONE.is_empty());
    }
}
