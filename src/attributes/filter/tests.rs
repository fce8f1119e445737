use super::*;

fn attrs(ints: [Option<i64>; 4], strs: [Option<&str>; 4]) -> Attributes {
    Attributes {
        ints,
        strs: strs.map(|s| s.map(str::to_string)),
    }
}

fn eval(filter: &str, a: &Attributes) -> bool {
    Filter::parse(filter)
        .unwrap_or_else(|e| panic!("{filter}: {e}"))
        .matches(a)
}

#[test]
fn image_search_examples_parse_and_match() {
    let a = attrs(
        [Some(1000), Some(200), None, None],
        [Some("value1"), Some("str9999"), None, None],
    );
    assert!(eval("int_attr>=100", &a));
    assert!(!eval("str_attr!=\"value1\"", &a));
    assert!(eval("int_attr=1000 AND str_attr=\"value1\"", &a));
    assert!(eval(
        "intAttr = 1000 AND  intAttr2 = 200 AND strAttr = \"value1\" AND strAttr2=\"str9999\"",
        &a
    ));
    assert!(eval("int_attr in (1, 1000)", &a));
    assert!(!eval("int_attr not in (1000)", &a));
    assert!(eval("str_attr2 IN ('a', 'str9999')", &a));
    assert!(eval("str_attr2 Not In ('a')", &a));
}

#[test]
fn and_binds_tighter_than_or_and_parentheses_group() {
    let a = attrs([Some(1), None, None, None], [None; 4]);
    // true OR (false AND false)
    assert!(eval("int_attr=1 OR int_attr=2 AND int_attr=3", &a));
    // (true OR false) AND false
    assert!(!eval("(int_attr=1 OR int_attr=2) AND int_attr=3", &a));
    assert!(eval("((int_attr < 2))", &a));
}

#[test]
fn unset_attributes_fail_positive_tests_and_pass_negative_ones() {
    let none = Attributes::NONE;
    for f in [
        "int_attr=0",
        "int_attr>-5",
        "int_attr in (0)",
        "str_attr=\"\"",
        "str_attr in ('a')",
    ] {
        assert!(!eval(f, &none), "{f}");
    }
    for f in [
        "int_attr!=0",
        "int_attr not in (0)",
        "str_attr!=\"a\"",
        "str_attr not in ('a')",
    ] {
        assert!(eval(f, &none), "{f}");
    }
    assert!(Filter::parse("str_attr != 'red'").unwrap().matches_unset());
    assert!(!Filter::parse("str_attr = 'red'").unwrap().matches_unset());
}

#[test]
fn strings_keep_escapes_and_unicode() {
    let a = attrs([None; 4], [Some("say \"hi\" \\ 风格"), None, None, None]);
    assert!(eval(r#"str_attr = "say \"hi\" \\ 风格""#, &a));
    assert!(eval(r#"str_attr = 'say "hi" \ 风格'"#, &a));
}

#[test]
fn errors_name_the_position_and_what_was_expected() {
    let cases = [
        ("", 1, "empty filter"),
        ("price > 3", 1, "expected an attribute"),
        ("int_attr5 = 1", 1, "expected an attribute"),
        ("int_attr ~ 3", 10, "expected an operator after int_attr (>"),
        ("str_attr > 'a'", 10, "strings have no order"),
        ("int_attr = 'a'", 12, "expected a whole number"),
        (
            "int_attr = 99999999999999999999",
            12,
            "expected a whole number",
        ),
        ("str_attr = red", 12, "expected a quoted string"),
        ("str_attr = 'red", 12, "no closing '"),
        ("int_attr = 1 AND", 17, "expected an attribute"),
        (
            "int_attr = 1 int_attr2 = 2",
            14,
            "expected AND, OR or the end",
        ),
        ("(int_attr = 1", 14, "expected ) or AND/OR"),
        ("int_attr in 1, 2", 13, "expected ( and a list"),
        ("int_attr in (1 2)", 16, "expected , or )"),
        ("int_attr not (1)", 14, "expected IN after NOT"),
    ];
    for (text, at, words) in cases {
        let e = Filter::parse(text).expect_err(text);
        assert_eq!(e.at, at, "{text}: {e}");
        assert!(e.to_string().contains(words), "{text}: {e}");
        assert!(e
            .to_string()
            .starts_with(&format!("Filter is invalid at character {at}: ")));
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!("{}int_attr=1{}", "(".repeat(2000), ")".repeat(2000));
    let e = Filter::parse(&deep).unwrap_err();
    assert!(e.message.contains("nested more than 32"), "{e}");
    let ok = format!("{}int_attr=1{}", "(".repeat(32), ")".repeat(32));
    assert!(Filter::parse(&ok).is_ok());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text either parses or gives an error inside it; never a panic.
        #[test]
        fn any_text_parses_or_errs_in_range(s in ".{0,200}") {
            match Filter::parse(&s) {
                Ok(_) => {}
                Err(e) => prop_assert!(e.at >= 1 && e.at <= s.chars().count() + 1, "{e}"),
            }
        }

        /// A comparison agrees with Rust's on every value.
        #[test]
        fn integer_comparisons_agree(v in -1000i64..1000, x in -1000i64..1000) {
            let a = attrs([Some(v), None, None, None], [None; 4]);
            prop_assert_eq!(eval(&format!("int_attr > {x}"), &a), v > x);
            prop_assert_eq!(eval(&format!("int_attr <= {x}"), &a), v <= x);
            prop_assert_eq!(eval(&format!("int_attr != {x}"), &a), v != x);
        }
    }
}
