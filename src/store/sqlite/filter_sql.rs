//! A `Filter` as an SQL condition on the attribute columns, with every value a bound
//! parameter (nothing the client wrote becomes SQL text). An unset attribute is NULL and
//! follows the grammar's rule: it fails `=`, `<`, `in`… and passes `!=` and `not in`.
//! Not here: parsing (`attributes::filter`).

use rusqlite::types::Value;

use crate::attributes::filter::{CmpOp, IntTest, StrTest};
use crate::attributes::{Filter, Slot};

/// Appends the condition for `filter` to `sql` and its values to `args`.
pub(super) fn push_filter(filter: &Filter, sql: &mut String, args: &mut Vec<Value>) {
    match filter {
        Filter::And(parts) | Filter::Or(parts) => {
            let joiner = if matches!(filter, Filter::And(_)) {
                " AND "
            } else {
                " OR "
            };
            sql.push('(');
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    sql.push_str(joiner);
                }
                push_filter(part, sql, args);
            }
            sql.push(')');
        }
        Filter::Int { slot, test } => {
            let col = Slot::Int(*slot).filter_name();
            match test {
                IntTest::Cmp(op, v) => {
                    let sym = match op {
                        CmpOp::Gt => ">",
                        CmpOp::Ge => ">=",
                        CmpOp::Lt => "<",
                        CmpOp::Le => "<=",
                        CmpOp::Eq => "=",
                        CmpOp::Ne => "!=",
                    };
                    if *op == CmpOp::Ne {
                        sql.push_str(&format!("({col} IS NULL OR {col} != ?)"));
                    } else {
                        sql.push_str(&format!("({col} IS NOT NULL AND {col} {sym} ?)"));
                    }
                    args.push(Value::Integer(*v));
                }
                IntTest::In(vs) | IntTest::NotIn(vs) => {
                    let negated = matches!(test, IntTest::NotIn(_));
                    push_in(&col, negated, vs.len(), sql);
                    args.extend(vs.iter().map(|v| Value::Integer(*v)));
                }
            }
        }
        Filter::Str { slot, test } => {
            let col = Slot::Str(*slot).filter_name();
            match test {
                StrTest::Eq(v) => {
                    sql.push_str(&format!("({col} IS NOT NULL AND {col} = ?)"));
                    args.push(Value::Text(v.clone()));
                }
                StrTest::Ne(v) => {
                    sql.push_str(&format!("({col} IS NULL OR {col} != ?)"));
                    args.push(Value::Text(v.clone()));
                }
                StrTest::In(vs) | StrTest::NotIn(vs) => {
                    let negated = matches!(test, StrTest::NotIn(_));
                    push_in(&col, negated, vs.len(), sql);
                    args.extend(vs.iter().map(|v| Value::Text(v.clone())));
                }
            }
        }
    }
}

fn push_in(col: &str, negated: bool, n: usize, sql: &mut String) {
    let marks = vec!["?"; n].join(", ");
    if negated {
        sql.push_str(&format!("({col} IS NULL OR {col} NOT IN ({marks}))"));
    } else {
        sql.push_str(&format!("({col} IS NOT NULL AND {col} IN ({marks}))"));
    }
}
