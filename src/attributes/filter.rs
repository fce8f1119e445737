//! The `Filter` grammar (Image Search's): conditions on attributes joined by `AND` / `OR`,
//! with parentheses; parsed into a [`Filter`] tree and evaluated against an image's
//! [`Attributes`].
//!
//! ```text
//! filter    := or
//! or        := and ( OR and )*
//! and       := primary ( AND primary )*
//! primary   := '(' or ')' | condition
//! condition := int_attr[2-4] ( > | >= | < | <= | = | != ) integer
//!            | int_attr[2-4] [NOT] IN '(' integer ( , integer )* ')'
//!            | str_attr[2-4] ( = | != ) string
//!            | str_attr[2-4] [NOT] IN '(' string ( , string )* ')'
//! string    := "…" or '…' (backslash escapes the quote and itself)
//! ```
//! Keywords and attribute names are case-insensitive; `intAttr2` is read as `int_attr2`
//! (Image Search's own examples spell it both ways). `!=` on integers is ours.
//!
//! An attribute an image never set fails every positive test (`=`, `<`, `in`, …) and
//! passes the negative ones (`!=`, `not in`): "not red" includes the images with no colour.
//!
//! Not here: the length limit's check (the API layer, `rules::FILTER_MAX_CHARS`), SQL
//! (`store::sqlite`), choosing how a filtered search runs (`index`).

use super::{Attributes, Slot};
use crate::rules::{FILTER_MAX_DEPTH, INT_ATTR_MAX, INT_ATTR_SLOTS, STR_ATTR_SLOTS};

/// One image's attributes as a filter reads them.
pub trait AttributeRow {
    /// Integer attribute `slot` (0-based), `None` when unset.
    fn int(&self, slot: usize) -> Option<i64>;
    /// String attribute `slot` (0-based), `None` when unset.
    fn str(&self, slot: usize) -> Option<&str>;
}

impl AttributeRow for Attributes {
    fn int(&self, slot: usize) -> Option<i64> {
        self.ints.get(slot).copied().flatten()
    }

    fn str(&self, slot: usize) -> Option<&str> {
        self.strs.get(slot).and_then(|s| s.as_deref())
    }
}

/// A parsed `Filter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Every part holds.
    And(Vec<Filter>),
    /// Some part holds.
    Or(Vec<Filter>),
    Int {
        slot: usize,
        test: IntTest,
    },
    Str {
        slot: usize,
        test: StrTest,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntTest {
    Cmp(CmpOp, i64),
    In(Vec<i64>),
    NotIn(Vec<i64>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrTest {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    NotIn(Vec<String>),
}

/// Why a `Filter` does not parse: where (1-based character) and what was expected there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Filter is invalid at character {at}: {message}")]
pub struct FilterError {
    pub at: usize,
    pub message: String,
}

impl Filter {
    /// Parses a `Filter` expression (the caller has checked its length).
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut p = Parser {
            chars: text.chars().collect(),
            pos: 0,
            depth: 0,
        };
        p.skip_space();
        if p.at_end() {
            return Err(p.error("expected a condition such as int_attr>=100 or str_attr=\"red\", found an empty filter"));
        }
        let f = p.or()?;
        p.skip_space();
        if !p.at_end() {
            return Err(p.error(format!(
                "expected AND, OR or the end of the filter, found {}",
                p.found()
            )));
        }
        Ok(f)
    }

    /// Whether an image with these attributes passes.
    pub fn matches(&self, a: &Attributes) -> bool {
        self.matches_row(a)
    }

    /// [`matches`](Self::matches) for any way of holding one image's attributes (the
    /// index's columns as well as an [`Attributes`]).
    pub fn matches_row(&self, row: &impl AttributeRow) -> bool {
        match self {
            Filter::And(parts) => parts.iter().all(|f| f.matches_row(row)),
            Filter::Or(parts) => parts.iter().any(|f| f.matches_row(row)),
            Filter::Int { slot, test } => match (test, row.int(*slot)) {
                (IntTest::Cmp(CmpOp::Ne, _), None) | (IntTest::NotIn(_), None) => true,
                (_, None) => false,
                (IntTest::Cmp(op, x), Some(v)) => match op {
                    CmpOp::Gt => v > *x,
                    CmpOp::Ge => v >= *x,
                    CmpOp::Lt => v < *x,
                    CmpOp::Le => v <= *x,
                    CmpOp::Eq => v == *x,
                    CmpOp::Ne => v != *x,
                },
                (IntTest::In(xs), Some(v)) => xs.contains(&v),
                (IntTest::NotIn(xs), Some(v)) => !xs.contains(&v),
            },
            Filter::Str { slot, test } => match (test, row.str(*slot)) {
                (StrTest::Ne(_), None) | (StrTest::NotIn(_), None) => true,
                (_, None) => false,
                (StrTest::Eq(x), Some(v)) => v == x,
                (StrTest::Ne(x), Some(v)) => v != x,
                (StrTest::In(xs), Some(v)) => xs.iter().any(|x| x == v),
                (StrTest::NotIn(xs), Some(v)) => !xs.iter().any(|x| x == v),
            },
        }
    }

    /// Whether an image with no attribute set passes (then the images a filter keeps are
    /// not all among those with attributes).
    pub fn matches_unset(&self) -> bool {
        self.matches(&Attributes::NONE)
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

const CONDITION_HINT: &str =
    "an attribute (int_attr, int_attr2, int_attr3, int_attr4, str_attr … str_attr4) or (";

impl Parser {
    fn error(&self, message: impl Into<String>) -> FilterError {
        FilterError {
            at: self.pos + 1,
            message: message.into(),
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// What stands at the cursor, quoted for a message.
    fn found(&self) -> String {
        if self.at_end() {
            return "the end of the filter".into();
        }
        let word: String = self.chars[self.pos..]
            .iter()
            .take_while(|c| !c.is_whitespace())
            .take(20)
            .collect();
        format!("\"{word}\"")
    }

    /// The identifier-like word at the cursor (letters, digits, `_`), not consumed.
    fn word(&self) -> String {
        self.chars[self.pos..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .collect()
    }

    /// Consumes `keyword` (case-insensitive, as a whole word) if it stands at the cursor.
    fn keyword(&mut self, keyword: &str) -> bool {
        self.skip_space();
        let w = self.word();
        if w.eq_ignore_ascii_case(keyword) {
            self.pos += w.chars().count();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut parts = vec![self.primary()?];
        while self.keyword("and") {
            parts.push(self.primary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::And(parts)
        })
    }

    fn primary(&mut self) -> Result<Filter, FilterError> {
        self.skip_space();
        if self.peek() == Some('(') {
            if self.depth >= FILTER_MAX_DEPTH {
                return Err(self.error(format!(
                    "parentheses are nested more than {FILTER_MAX_DEPTH} deep"
                )));
            }
            self.pos += 1;
            self.depth += 1;
            let inner = self.or()?;
            self.skip_space();
            if self.peek() != Some(')') {
                return Err(self.error(format!("expected ) or AND/OR, found {}", self.found())));
            }
            self.pos += 1;
            self.depth -= 1;
            return Ok(inner);
        }
        self.condition()
    }

    fn attribute(&mut self) -> Result<Slot, FilterError> {
        let w = self.word();
        let slot = attribute_slot(&w).ok_or_else(|| {
            self.error(format!("expected {CONDITION_HINT}, found {}", self.found()))
        })?;
        self.pos += w.chars().count();
        Ok(slot)
    }

    fn condition(&mut self) -> Result<Filter, FilterError> {
        let slot = self.attribute()?;
        self.skip_space();
        let name = slot.filter_name();
        // `in` / `not in`
        let negated = self.keyword("not");
        if negated || self.keyword("in") {
            if negated && !self.keyword("in") {
                return Err(self.error(format!("expected IN after NOT, found {}", self.found())));
            }
            return match slot {
                Slot::Int(slot) => {
                    let xs = self.list(&name, |p| p.integer(&name))?;
                    let test = if negated {
                        IntTest::NotIn(xs)
                    } else {
                        IntTest::In(xs)
                    };
                    Ok(Filter::Int { slot, test })
                }
                Slot::Str(slot) => {
                    let xs = self.list(&name, |p| p.string(&name))?;
                    let test = if negated {
                        StrTest::NotIn(xs)
                    } else {
                        StrTest::In(xs)
                    };
                    Ok(Filter::Str { slot, test })
                }
            };
        }
        let op_at = self.pos;
        let op = self.operator();
        match (slot, op) {
            (Slot::Int(slot), Some(op)) => Ok(Filter::Int {
                slot,
                test: IntTest::Cmp(op, self.integer(&name)?),
            }),
            (Slot::Str(slot), Some(CmpOp::Eq)) => Ok(Filter::Str {
                slot,
                test: StrTest::Eq(self.string(&name)?),
            }),
            (Slot::Str(slot), Some(CmpOp::Ne)) => Ok(Filter::Str {
                slot,
                test: StrTest::Ne(self.string(&name)?),
            }),
            (Slot::Int(_), None) => {
                self.pos = op_at;
                Err(self.error(format!(
                    "expected an operator after {name} (>, >=, <, <=, =, !=, in, not in), found {}",
                    self.found()
                )))
            }
            (Slot::Str(_), _) => {
                self.pos = op_at;
                Err(self.error(format!(
                    "expected an operator after {name} (=, !=, in, not in; strings have no order), found {}",
                    self.found()
                )))
            }
        }
    }

    fn operator(&mut self) -> Option<CmpOp> {
        let two: String = self.chars[self.pos..].iter().take(2).collect();
        let (op, len) = match two.as_str() {
            ">=" => (CmpOp::Ge, 2),
            "<=" => (CmpOp::Le, 2),
            "!=" | "<>" => (CmpOp::Ne, 2),
            "==" => (CmpOp::Eq, 2),
            _ => match self.peek()? {
                '>' => (CmpOp::Gt, 1),
                '<' => (CmpOp::Lt, 1),
                '=' => (CmpOp::Eq, 1),
                _ => return None,
            },
        };
        self.pos += len;
        Some(op)
    }

    /// `( item , item … )`
    fn list<T>(
        &mut self,
        name: &str,
        mut item: impl FnMut(&mut Self) -> Result<T, FilterError>,
    ) -> Result<Vec<T>, FilterError> {
        self.skip_space();
        if self.peek() != Some('(') {
            return Err(self.error(format!(
                "expected ( and a list of values after {name} in, found {}",
                self.found()
            )));
        }
        self.pos += 1;
        let mut out = vec![item(self)?];
        loop {
            self.skip_space();
            match self.peek() {
                Some(',') => {
                    self.pos += 1;
                    out.push(item(self)?);
                }
                Some(')') => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => {
                    return Err(self.error(format!(
                        "expected , or ) in the list of {name}, found {}",
                        self.found()
                    )))
                }
            }
        }
    }

    fn integer(&mut self, name: &str) -> Result<i64, FilterError> {
        self.skip_space();
        let start = self.pos;
        if matches!(self.peek(), Some('-' | '+')) {
            self.pos += 1;
        }
        let digits: String = self.chars[self.pos..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        let text: String = self.chars[start..self.pos + digits.len()].iter().collect();
        let value = (!digits.is_empty())
            .then(|| text.parse::<i64>().ok())
            .flatten()
            .filter(|v| v.abs() <= INT_ATTR_MAX);
        match value {
            Some(v) => {
                self.pos += digits.len();
                Ok(v)
            }
            None => {
                self.pos = start;
                Err(self.error(format!(
                    "expected a whole number (±{INT_ATTR_MAX} at most) to compare {name} with, found {}",
                    self.found()
                )))
            }
        }
    }

    fn string(&mut self, name: &str) -> Result<String, FilterError> {
        self.skip_space();
        let quote = match self.peek() {
            Some(q @ ('"' | '\'')) => q,
            _ => {
                return Err(self.error(format!(
                    "expected a quoted string (\"…\") to compare {name} with, found {}",
                    self.found()
                )))
            }
        };
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    self.pos = open;
                    return Err(self.error(format!("this string has no closing {quote}")));
                }
                Some('\\') if matches!(self.chars.get(self.pos + 1), Some(c) if *c == quote || *c == '\\') =>
                {
                    out.push(self.chars[self.pos + 1]);
                    self.pos += 2;
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

/// `int_attr`, `int_attr2`…`int_attr4`, `str_attr`…`str_attr4`, any case, `_` optional.
fn attribute_slot(word: &str) -> Option<Slot> {
    let lower = word.to_ascii_lowercase().replace('_', "");
    let (kind, rest) = if let Some(rest) = lower.strip_prefix("intattr") {
        (0, rest)
    } else if let Some(rest) = lower.strip_prefix("strattr") {
        (1, rest)
    } else {
        return None;
    };
    let index = match rest {
        "" => 0,
        "2" => 1,
        "3" => 2,
        "4" => 3,
        _ => return None,
    };
    match kind {
        0 if index < INT_ATTR_SLOTS => Some(Slot::Int(index)),
        1 if index < STR_ATTR_SLOTS => Some(Slot::Str(index)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
