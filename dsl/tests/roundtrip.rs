//! print → parse gives back the same tree, for random trees (proptest) and for every
//! statement of the language contract and the Flink examples.
//!
//! The generators produce only forms the parser can produce: no negative number literals
//! in expressions (`-5` is `Neg(5)`), `*` only as a call argument, Seq/Alt/FollowedBy with at
//! least two items, non-empty names, finite floats. Spans never take part in equality.
//! `WEIR_LONG_TESTS=1` runs many more cases.

#![allow(clippy::unwrap_used)]

use dsl::ast::*;
use dsl::parse::{parse_expr, parse_pattern, parse_statements, RESERVED};
use proptest::prelude::*;

fn cases() -> u32 {
    if std::env::var_os("WEIR_LONG_TESTS").is_some() {
        5_000
    } else {
        96
    }
}

fn sp() -> Span {
    Span::default()
}

fn e(kind: ExprKind) -> Expr {
    Expr { kind, span: sp() }
}

fn ident() -> impl Strategy<Value = Ident> {
    prop_oneof![
        6 => "[A-Za-z_][A-Za-z0-9_]{0,6}",
        1 => proptest::sample::select(RESERVED).prop_map(|s| s.to_lowercase()),
        1 => "[a-zA-Z \"'.;é(-]{1,5}",
        1 => proptest::sample::select(&["IF", "EXISTS", "NEXT", "ROW", "FIRST", "LAST", "ONE", "ASC", "DESC", "AFTER", "SKIP", "TO", "SIZE", "GAP", "EMIT", "MINUTES"][..]).prop_map(str::to_string),
    ]
    .prop_map(Ident::new)
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(f64::abs),
        (0u32..100_000).prop_map(|n| n as f64 / 100.0),
    ]
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        (0..=i64::MAX).prop_map(Literal::Int),
        float().prop_map(Literal::Float),
        ".{0,8}".prop_map(Literal::String),
    ]
}

fn binop() -> impl Strategy<Value = BinaryOp> {
    use BinaryOp::*;
    proptest::sample::select(vec![
        Or, And, Eq, NotEq, Lt, LtEq, Gt, GtEq, Add, Sub, Mul, Div, Mod, RegexMatch, Matches,
    ])
}

fn arg(inner: BoxedStrategy<Expr>) -> impl Strategy<Value = Expr> {
    prop_oneof![
        6 => inner,
        1 => Just(e(ExprKind::Wildcard(None))),
        1 => ident().prop_map(|v| e(ExprKind::Wildcard(Some(v)))),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        literal().prop_map(|l| e(ExprKind::Literal(l))),
        proptest::collection::vec(ident(), 1..4).prop_map(|p| e(ExprKind::Path(p))),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        let b = |x: Expr| Box::new(x);
        prop_oneof![
            (any::<bool>(), inner.clone()).prop_map(move |(not, x)| e(ExprKind::Unary {
                op: if not { UnaryOp::Not } else { UnaryOp::Neg },
                expr: b(x)
            })),
            (binop(), inner.clone(), inner.clone()).prop_map(move |(op, l, r)| e(
                ExprKind::Binary {
                    op,
                    left: b(l),
                    right: b(r)
                }
            )),
            (inner.clone(), any::<bool>()).prop_map(move |(x, negated)| e(ExprKind::IsNull {
                expr: b(x),
                negated
            })),
            (
                inner.clone(),
                proptest::collection::vec(inner.clone(), 1..4),
                any::<bool>()
            )
                .prop_map(move |(x, list, negated)| e(ExprKind::InList {
                    expr: b(x),
                    list,
                    negated
                })),
            (inner.clone(), inner.clone(), inner.clone(), any::<bool>()).prop_map(
                move |(x, low, high, negated)| e(ExprKind::Between {
                    expr: b(x),
                    low: b(low),
                    high: b(high),
                    negated
                })
            ),
            (inner.clone(), inner.clone(), any::<bool>()).prop_map(move |(x, p, negated)| e(
                ExprKind::Like {
                    expr: b(x),
                    pattern: b(p),
                    negated
                }
            )),
            (
                proptest::option::of(inner.clone()),
                proptest::collection::vec((inner.clone(), inner.clone()), 1..3),
                proptest::option::of(inner.clone())
            )
                .prop_map(move |(o, whens, el)| e(ExprKind::Case {
                    operand: o.map(b),
                    whens,
                    else_: el.map(b)
                })),
            (ident(), proptest::collection::vec(arg(inner.clone()), 0..3))
                .prop_map(|(name, args)| e(ExprKind::Function { name, args })),
        ]
    })
}

fn pattern() -> impl Strategy<Value = Pattern> {
    let leaf = prop_oneof![
        4 => ident().prop_map(Pattern::Var),
        1 => ident().prop_map(Pattern::Absent),
        // the empty pattern `()`
        1 => Just(Pattern::Seq(Vec::new())),
        1 => any::<bool>().prop_map(|end| Pattern::Anchor { end, span: sp() }),
    ];
    leaf.prop_recursive(4, 40, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Pattern::Seq),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Pattern::FollowedBy),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Pattern::Alt),
            inner.clone().prop_map(|p| Pattern::Exclude(Box::new(p))),
            (
                inner,
                0u32..=10_000,
                proptest::option::of(0u32..=10_000),
                any::<bool>()
            )
                .prop_map(|(p, a, b, greedy)| {
                    let (min, max) = match b {
                        Some(b) => (a.min(b), Some(a.max(b))),
                        None => (a, None),
                    };
                    Pattern::Repeat {
                        inner: Box::new(p),
                        min,
                        max,
                        greedy,
                        span: sp(),
                    }
                }),
        ]
    })
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..=1_000_000_000_000_000).boxed(),
        (
            0u64..1000,
            proptest::sample::select(vec![1u64, 1000, 60_000, 3_600_000, 86_400_000])
        )
            .prop_map(|(n, u)| n * u)
            .boxed(),
    ]
    .prop_map(|millis| Duration { millis, span: sp() })
}

fn with_option() -> impl Strategy<Value = WithOption> {
    let value = prop_oneof![
        ".{0,8}".prop_map(Literal::String),
        (i64::MIN + 1..=i64::MAX).prop_map(Literal::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Literal::Float),
        any::<bool>().prop_map(Literal::Bool),
    ];
    (ident(), value).prop_map(|(key, value)| WithOption {
        key,
        value,
        span: sp(),
    })
}

fn data_type() -> impl Strategy<Value = DataType> {
    use DataType::*;
    proptest::sample::select(vec![String, Int, Float, Bool, Timestamp, Json])
}

fn select_item() -> impl Strategy<Value = SelectItem> {
    (expr(), proptest::option::of(ident())).prop_map(|(expr, alias)| SelectItem {
        expr,
        alias,
        span: sp(),
    })
}

fn rule() -> impl Strategy<Value = CreateRule> {
    let after = prop_oneof![
        Just(AfterMatch::SkipPastLastRow),
        Just(AfterMatch::SkipToNextRow),
        ident().prop_map(AfterMatch::SkipToFirst),
        ident().prop_map(AfterMatch::SkipToLast),
    ];
    (
        (any::<bool>(), ident(), any::<bool>(), ident()),
        proptest::collection::vec(expr(), 0..3),
        proptest::option::of(ident()),
        proptest::collection::vec(
            (expr(), ident()).prop_map(|(expr, alias)| Measure {
                expr,
                alias,
                span: sp(),
            }),
            0..3,
        ),
        pattern(),
        proptest::option::of(duration()),
        proptest::collection::vec(
            (ident(), expr()).prop_map(|(var, cond)| Define {
                var,
                cond,
                span: sp(),
            }),
            0..3,
        ),
        proptest::option::of(after),
    )
        .prop_map(
            |(
                (or_replace, name, mr, from),
                partition_by,
                order_by,
                measures,
                pattern,
                within,
                define,
                after_match,
            )| {
                CreateRule {
                    or_replace,
                    name,
                    syntax: if mr {
                        RuleSyntax::MatchRecognize
                    } else {
                        RuleSyntax::Native
                    },
                    from,
                    partition_by,
                    order_by: if mr { order_by } else { None },
                    measures,
                    pattern,
                    within,
                    define,
                    after_match,
                }
            },
        )
}

fn statement() -> impl Strategy<Value = StatementKind> {
    let stream = (
        any::<bool>(),
        ident(),
        proptest::collection::vec(
            (ident(), data_type()).prop_map(|(name, ty)| ColumnDef {
                name,
                ty,
                span: sp(),
            }),
            1..4,
        ),
        proptest::collection::vec(with_option(), 0..3),
    )
        .prop_map(|(or_replace, name, columns, options)| {
            StatementKind::CreateStream(CreateStream {
                or_replace,
                name,
                columns,
                options,
            })
        });
    let search = (
        any::<bool>(),
        ident(),
        ident(),
        expr(),
        proptest::collection::vec(select_item(), 0..3),
        proptest::collection::vec(with_option(), 0..2),
    )
        .prop_map(|(or_replace, name, from, filter, emit, options)| {
            StatementKind::CreateSearch(CreateSearch {
                or_replace,
                name,
                from,
                filter,
                emit,
                options,
            })
        });
    let window = prop_oneof![
        duration().prop_map(|size| WindowKind::Tumbling { size }),
        (duration(), duration()).prop_map(|(size, advance)| WindowKind::Hopping { size, advance }),
        duration().prop_map(|size| WindowKind::Sliding { size }),
        duration().prop_map(|gap| WindowKind::Session { gap }),
    ]
    .prop_map(|kind| Window { kind, span: sp() });
    let metric = (
        (any::<bool>(), ident(), ident()),
        proptest::collection::vec(select_item(), 1..3),
        proptest::option::of(expr()),
        proptest::collection::vec(expr(), 0..2),
        window,
        proptest::collection::vec(with_option(), 0..2),
    )
        .prop_map(
            |((or_replace, name, from), items, filter, group_by, window, options)| {
                StatementKind::CreateMetric(CreateMetric {
                    or_replace,
                    name,
                    items,
                    from,
                    filter,
                    group_by,
                    window,
                    options,
                })
            },
        );
    let drop = (
        proptest::sample::select(vec![
            ObjectKind::Stream,
            ObjectKind::Rule,
            ObjectKind::Search,
            ObjectKind::Metric,
        ]),
        any::<bool>(),
        ident(),
    )
        .prop_map(|(kind, if_exists, name)| {
            StatementKind::Drop(Drop {
                kind,
                if_exists,
                name,
            })
        });
    prop_oneof![
        stream,
        rule().prop_map(StatementKind::CreateRule),
        search,
        metric,
        drop,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn expr_print_parse(x in expr()) {
        let text = x.to_string();
        let back = parse_expr(&text);
        prop_assert!(back.is_ok(), "{text}\n{:?}", back);
        prop_assert_eq!(back.unwrap(), x, "{}", text);
    }

    #[test]
    fn pattern_print_parse(p in pattern()) {
        let text = p.to_string();
        let back = parse_pattern(&text);
        prop_assert!(back.is_ok(), "{text}\n{:?}", back);
        prop_assert_eq!(back.unwrap(), p, "{}", text);
    }

    #[test]
    fn statement_print_parse(k in statement()) {
        let text = Statement { kind: k.clone(), span: sp() }.to_string();
        let (stmts, diags) = parse_statements(&text);
        prop_assert!(diags.is_empty(), "{text}\n{diags:?}");
        prop_assert_eq!(stmts.len(), 1);
        prop_assert_eq!(&stmts[0].kind, &k, "{}", text);
    }

    #[test]
    fn statements_concatenate(ks in proptest::collection::vec(statement(), 0..4)) {
        let text: String = ks
            .iter()
            .map(|k| format!("{}\n", Statement { kind: k.clone(), span: sp() }))
            .collect();
        let (stmts, diags) = parse_statements(&text);
        prop_assert!(diags.is_empty(), "{text}\n{diags:?}");
        let back: Vec<StatementKind> = stmts.into_iter().map(|s| s.kind).collect();
        prop_assert_eq!(back, ks);
    }
}

/// parse → print → parse gives the same tree, and printing is a fixed point.
fn reprint(src: &str) {
    let (stmts, diags) = parse_statements(src);
    assert!(
        diags.iter().all(|d| d.severity == dsl::Severity::Warning),
        "{diags:?}"
    );
    assert!(!stmts.is_empty());
    for s in stmts {
        let text = s.to_string();
        let (again, diags) = parse_statements(&text);
        assert!(diags.is_empty(), "{text}\n{diags:?}");
        assert_eq!(again.len(), 1, "{text}");
        assert_eq!(again[0], s, "{text}");
        assert_eq!(again[0].to_string(), text);
    }
}

#[test]
fn language_doc_reprints() {
    reprint(include_str!("data/language_doc.weir"));
}

#[test]
fn cep_basic_rules_reprint() {
    reprint(include_str!("data/cep_basic_rules.weir"));
}

#[test]
fn flink_examples_reprint() {
    reprint(include_str!("data/flink_examples.weir"));
}

#[test]
fn canonical_text_examples() {
    let cases = [
        ("a + b * c", "a + b * c"),
        ("(a + b) * c", "(a + b) * c"),
        ("a - (b - c)", "a - (b - c)"),
        ("(a - b) - c", "a - b - c"),
        ("not (a and b) or c", "NOT (a AND b) OR c"),
        ("- -5", "- -5"),
        ("-(-5)", "- -5"),
        ("x != 1", "x <> 1"),
        ("(a = b) = c", "a = b = c"),
        ("a = (b = c)", "a = (b = c)"),
        ("\"select\" + \"a b\"", "\"select\" + \"a b\""),
        ("'it''s'", "'it''s'"),
        ("1.50", "1.5"),
        ("1e3", "1000.0"),
        ("count(*)", "count(*)"),
        ("count ( v . * )", "count(v.*)"),
        ("a not between 1 and 2 and b", "a NOT BETWEEN 1 AND 2 AND b"),
        (
            "case when a then b else c end",
            "CASE WHEN a THEN b ELSE c END",
        ),
        ("x IS NOT NULL", "x IS NOT NULL"),
        ("body matches 'q'", "body MATCHES 'q'"),
    ];
    for (src, want) in cases {
        let got = parse_expr(src).unwrap_or_else(|d| panic!("{src}: {d:?}"));
        assert_eq!(got.to_string(), want, "{src}");
    }
    let pats = [
        ("A B+ C*", "A B+ C*"),
        ("A??", "A??"),
        ("A+?", "A+?"),
        ("A{2,}?", "A{2,}?"),
        ("A{0,1}", "A?"),
        ("A{ 3 }", "A{3}"),
        ("A{,5}", "A{,5}"),
        ("(A B)+", "(A B)+"),
        ("A | B C -> D", "A | B C -> D"),
        ("(A | B) C", "(A | B) C"),
        ("a !v b", "a !v b"),
        ("((A))", "A"),
    ];
    for (src, want) in pats {
        let got = parse_pattern(src).unwrap_or_else(|d| panic!("{src}: {d:?}"));
        assert_eq!(got.to_string(), want, "{src}");
    }
}

#[test]
fn durations_print_in_the_rule_spelling() {
    let (s, d) = parse_statements(
        "CREATE RULE r AS FROM s PATTERN (a) WITHIN INTERVAL '90' SECOND;\n\
         CREATE RULE r AS SELECT * FROM s MATCH_RECOGNIZE (PATTERN (a) WITHIN 2 HOURS);\n\
         CREATE RULE r AS FROM s PATTERN (a) WITHIN 1 DAY;\n\
         CREATE RULE r AS FROM s PATTERN (a) WITHIN 1500 MILLISECONDS;",
    );
    assert!(d.is_empty(), "{d:?}");
    let text: Vec<String> = s.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        text[0],
        "CREATE RULE r AS FROM s PATTERN (a) WITHIN 90 SECONDS;"
    );
    assert_eq!(
        text[1],
        "CREATE RULE r AS SELECT * FROM s MATCH_RECOGNIZE (ONE ROW PER MATCH PATTERN (a) WITHIN INTERVAL '2' HOUR);"
    );
    assert_eq!(text[2], "CREATE RULE r AS FROM s PATTERN (a) WITHIN 1 DAY;");
    assert_eq!(
        text[3],
        "CREATE RULE r AS FROM s PATTERN (a) WITHIN 1500 MILLISECONDS;"
    );
}

// ───────────────────────────── spans ─────────────────────────────

fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    out.push(e);
    match &e.kind {
        ExprKind::Literal(_) | ExprKind::Path(_) | ExprKind::Wildcard(_) => {}
        ExprKind::Unary { expr, .. } | ExprKind::IsNull { expr, .. } => walk(expr, out),
        ExprKind::Binary { left, right, .. } => {
            walk(left, out);
            walk(right, out);
        }
        ExprKind::InList { expr, list, .. } => {
            walk(expr, out);
            list.iter().for_each(|x| walk(x, out));
        }
        ExprKind::Between {
            expr, low, high, ..
        } => {
            walk(expr, out);
            walk(low, out);
            walk(high, out);
        }
        ExprKind::Like { expr, pattern, .. } => {
            walk(expr, out);
            walk(pattern, out);
        }
        ExprKind::Case {
            operand,
            whens,
            else_,
        } => {
            operand.iter().for_each(|x| walk(x, out));
            for (c, v) in whens {
                walk(c, out);
                walk(v, out);
            }
            else_.iter().for_each(|x| walk(x, out));
        }
        ExprKind::Function { args, .. } => args.iter().for_each(|x| walk(x, out)),
    }
}

fn statement_exprs(k: &StatementKind) -> Vec<&Expr> {
    let mut out = Vec::new();
    match k {
        StatementKind::CreateRule(r) => {
            r.partition_by.iter().for_each(|e| walk(e, &mut out));
            r.measures.iter().for_each(|m| walk(&m.expr, &mut out));
            r.define.iter().for_each(|d| walk(&d.cond, &mut out));
        }
        StatementKind::CreateSearch(s) => {
            walk(&s.filter, &mut out);
            s.emit.iter().for_each(|i| walk(&i.expr, &mut out));
        }
        StatementKind::CreateMetric(m) => {
            m.items.iter().for_each(|i| walk(&i.expr, &mut out));
            m.filter.iter().for_each(|e| walk(e, &mut out));
            m.group_by.iter().for_each(|e| walk(e, &mut out));
        }
        StatementKind::CreateStream(_) | StatementKind::Drop(_) => {}
    }
    out
}

/// Every expression's span covers exactly its text: parsing that text alone gives the
/// same expression. Durations and statements are checked the same way.
fn check_spans(src: &str) -> Result<(), TestCaseError> {
    let (stmts, _) = parse_statements(src);
    for s in &stmts {
        let text = &src[s.span.start..s.span.end];
        prop_assert!(text.ends_with(';'), "{text}");
        let (again, _) = parse_statements(text);
        prop_assert_eq!(&again, &vec![s.clone()]);
        for e in statement_exprs(&s.kind) {
            let piece = &src[e.span.start..e.span.end];
            // `*` alone only parses as a call argument.
            if matches!(e.kind, ExprKind::Wildcard(None)) {
                prop_assert_eq!(piece, "*");
                continue;
            }
            let back = parse_expr(piece);
            prop_assert!(back.is_ok(), "{piece:?}: {back:?}");
            prop_assert_eq!(&back.unwrap(), e, "{}", piece);
        }
        if let StatementKind::CreateRule(r) = &s.kind {
            if let Some(d) = r.within {
                let piece = &src[d.span.start..d.span.end];
                prop_assert_eq!(
                    dsl::parse::parse_duration(piece).map(|x| x.millis),
                    Ok(d.millis)
                );
            }
            for d in &r.define {
                prop_assert!(src[d.span.start..d.span.end]
                    .starts_with(&src[d.var.span.start..d.var.span.end]));
            }
        }
    }
    Ok(())
}

#[test]
fn spans_cover_their_text_in_the_examples() {
    for src in [
        include_str!("data/language_doc.weir"),
        include_str!("data/flink_examples.weir"),
        include_str!("data/cep_basic_rules.weir"),
    ] {
        check_spans(src).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn spans_cover_their_text(k in statement()) {
        // Spread the printed text over several lines with comments to move offsets around.
        let text = Statement { kind: k, span: sp() }
            .to_string()
            .replacen(" AS ", " /* c */ AS\n  ", 2);
        check_spans(&format!("-- lead\n\n{text}\n"))?;
    }
}
