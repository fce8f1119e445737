//! A `Filter` as a PostgreSQL condition on the attribute columns, every value a bound
//! parameter (nothing the client wrote becomes SQL text). An unset attribute is NULL and
//! follows the grammar's rule: it fails `=`, `<`, `in`… and passes `!=` and `not in`: the
//! same conditions as the SQLite store's `filter_sql`, with `= ANY($n)` for lists.
//! Not here: parsing (`attributes::filter`).

use super::rows::Sql;
use crate::attributes::filter::{CmpOp, IntTest, StrTest};
use crate::attributes::{Filter, Slot};

/// Appends the condition for `filter` to `sql`, binding its values.
pub(super) fn push_filter(filter: &Filter, sql: &mut Sql) {
    match filter {
        Filter::And(parts) | Filter::Or(parts) => {
            let joiner = if matches!(filter, Filter::And(_)) {
                " AND "
            } else {
                " OR "
            };
            sql.push("(");
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    sql.push(joiner);
                }
                push_filter(part, sql);
            }
            sql.push(")");
        }
        Filter::Int { slot, test } => {
            let col = Slot::Int(*slot).filter_name();
            match test {
                IntTest::Cmp(op, v) => {
                    let p = sql.arg(*v);
                    let text = match op {
                        CmpOp::Ne => format!("({col} IS NULL OR {col} <> {p})"),
                        _ => {
                            let sym = match op {
                                CmpOp::Gt => ">",
                                CmpOp::Ge => ">=",
                                CmpOp::Lt => "<",
                                CmpOp::Le => "<=",
                                _ => "=",
                            };
                            format!("({col} IS NOT NULL AND {col} {sym} {p})")
                        }
                    };
                    sql.push(&text);
                }
                IntTest::In(vs) | IntTest::NotIn(vs) => {
                    let p = sql.arg(vs.clone());
                    push_in(&col, matches!(test, IntTest::NotIn(_)), &p, sql);
                }
            }
        }
        Filter::Str { slot, test } => {
            let col = Slot::Str(*slot).filter_name();
            match test {
                StrTest::Eq(v) => {
                    let p = sql.arg(v.clone());
                    sql.push(&format!("({col} IS NOT NULL AND {col} = {p})"));
                }
                StrTest::Ne(v) => {
                    let p = sql.arg(v.clone());
                    sql.push(&format!("({col} IS NULL OR {col} <> {p})"));
                }
                StrTest::In(vs) | StrTest::NotIn(vs) => {
                    let p = sql.arg(vs.clone());
                    push_in(&col, matches!(test, StrTest::NotIn(_)), &p, sql);
                }
            }
        }
    }
}

/// `col IN (list)` / `col NOT IN (list)` with the list one array parameter. `<> ALL` of an
/// empty array is true and `= ANY` false, like SQL's IN over no values (the grammar never
/// makes an empty list, but the meaning stays right).
fn push_in(col: &str, negated: bool, param: &str, sql: &mut Sql) {
    if negated {
        sql.push(&format!("({col} IS NULL OR {col} <> ALL({param}))"));
    } else {
        sql.push(&format!("({col} IS NOT NULL AND {col} = ANY({param}))"));
    }
}
