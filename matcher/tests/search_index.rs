#![allow(clippy::unwrap_used)]
//! Stored searches: operator case files (hits and highlight byte ranges), the presearcher
//! index against the naive evaluator (differential proptest), limits, and add/drop under load.

use dsl::query::parse_query;
use matcher::search::{
    naive, Document, Highlights, SearchError, SearchIndex, SearchLimits, SearchScratch, SearchSet,
    SearchSpec,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::collections::BTreeMap;

fn cases() -> u32 {
    if std::env::var("WEIR_LONG_TESTS").is_ok() {
        2000
    } else {
        48
    }
}

fn parse_expected(s: &str) -> Option<Highlights> {
    if s == "-" {
        return None;
    }
    let mut h = Highlights::new();
    for part in s.split(';') {
        let (f, ranges) = part.split_once('=').expect("field=ranges");
        let v = ranges
            .split(',')
            .map(|r| {
                let (a, b) = r.split_once('-').expect("a-b");
                (a.parse().expect("start"), b.parse().expect("end"))
            })
            .collect();
        h.insert(f.to_string(), v);
    }
    Some(h)
}

#[test]
fn operator_case_file() {
    let text = include_str!("data/search/cases.txt");
    let mut n = 0;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 4, "bad case line: {line}");
        let (q, title, body, want) = (cols[0], cols[1], cols[2], parse_expected(cols[3]));
        let doc = Document::new().with("title", title).with("body", body);
        // Index path.
        let mut idx: SearchIndex = SearchIndex::default();
        let mut sc = SearchScratch::default();
        idx.add("s", SearchSpec::matches("body", q).expect(q))
            .expect(q);
        let hits = idx.match_document(&mut sc, &doc, &mut |_, _| true);
        let got = hits.into_iter().next().map(|h| h.highlights);
        assert_eq!(got, want, "index, query {q}");
        // Naive path.
        let query = parse_query(q).expect(q).with_default_field("body");
        assert_eq!(naive::evaluate(&query, &doc), want, "naive, query {q}");
        n += 1;
    }
    assert!(n >= 40, "only {n} cases");
}

#[test]
fn equality_filters_and_residual() {
    let mut idx: SearchIndex<u32> = SearchIndex::default();
    let mut sc = SearchScratch::default();
    idx.add(
        "en_acme",
        SearchSpec::matches("body", "acme")
            .unwrap()
            .with_equals("lang", &["en"]),
    )
    .unwrap();
    idx.add(
        "src",
        SearchSpec::matches("body", "acme OR NOT x")
            .unwrap()
            .with_equals("source", &["reuters", "ap"]),
    )
    .unwrap();
    idx.add(
        "resid",
        SearchSpec::matches("body", "acme")
            .unwrap()
            .with_residual(7),
    )
    .unwrap();
    let mut names = |d: &Document<'_>, allow: bool| {
        let mut v: Vec<String> = idx
            .match_document(&mut sc, d, &mut |_, r: &u32| allow && *r == 7)
            .into_iter()
            .map(|h| h.search.to_string())
            .collect();
        v.sort();
        v
    };
    let d = Document::new()
        .with("body", "acme")
        .with("lang", "en")
        .with("source", "ap");
    assert_eq!(names(&d, true), ["en_acme", "resid", "src"]);
    assert_eq!(names(&d, false), ["en_acme", "src"]);
    let d = Document::new()
        .with("body", "acme")
        .with("lang", "fr")
        .with("source", "afp");
    assert_eq!(names(&d, true), ["resid"]);
    let d = Document::new()
        .with("body", "nothing")
        .with("source", "reuters");
    assert_eq!(names(&d, true), ["src"]);
}

#[test]
fn limits_and_errors() {
    let mut idx: SearchIndex = SearchIndex::new(SearchLimits {
        max_searches: 2,
        max_query_bytes: 40,
        max_clauses: 4,
    });
    let mut sc = SearchScratch::default();
    idx.add("a", SearchSpec::matches("body", "a").unwrap())
        .unwrap();
    idx.add("b", SearchSpec::matches("body", "b").unwrap())
        .unwrap();
    let e = idx
        .add("c", SearchSpec::matches("body", "c").unwrap())
        .unwrap_err();
    assert_eq!(e, SearchError::TooManySearches { limit: 2 });
    assert!(e.to_string().contains("too many stored searches"));
    // Replacing an existing one is fine at the limit.
    idx.add("b", SearchSpec::matches("body", "bb").unwrap())
        .unwrap();
    let e = idx
        .add("a", SearchSpec::matches("body", "a b c d e").unwrap())
        .unwrap_err();
    assert!(
        matches!(
            e,
            SearchError::QueryTooLarge {
                what: "clauses",
                ..
            }
        ),
        "{e}"
    );
    let e = idx
        .add(
            "a",
            SearchSpec::matches(
                "body",
                "abcdefghijklmnopqrstuvwxyz OR abcdefghijklmnopqrstuvwxyz",
            )
            .unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(e, SearchError::QueryTooLarge { what: "bytes", .. }),
        "{e}"
    );
    let e = idx
        .add("a", SearchSpec::matches("body", "-x").unwrap())
        .unwrap_err();
    assert_eq!(e, SearchError::NegativeOnly);
    let e = idx
        .add("a", SearchSpec::new(parse_query("x").unwrap()))
        .unwrap_err();
    assert!(matches!(e, SearchError::MissingField(_)));
    assert_eq!(idx.stats().rejected, 5);
    // Failed replacements left "a" in place.
    let d = Document::new().with("body", "a");
    assert_eq!(idx.match_document(&mut sc, &d, &mut |_, _| true).len(), 1);
    assert!(SearchSpec::<()>::matches("body", "\"open").is_err());
}

// ───────────────────────── differential ─────────────────────────

const VOCAB: &[&str] = &[
    "acme", "Acme", "ACME", "corp", "recall", "recalls", "recalled", "lawsuit", "café", "cafe",
    "Café", "naïve", "naive", "storm", "a", "b", "acne", "came", "acme's", "zürich", "Zurich",
];
const SEPS: &[&str] = &[" ", " ", " ", ", ", ". ", " — ", "-", " (", ") ", "!\n"];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (prop::sample::select(VOCAB), prop::sample::select(SEPS)),
        0..24,
    )
    .prop_map(|ws| ws.into_iter().map(|(w, s)| format!("{w}{s}")).collect())
}

fn leaf() -> impl Strategy<Value = String> {
    let w = || prop::sample::select(VOCAB);
    prop_oneof![
        4 => w().prop_map(|w| w.to_string()),
        2 => (w(), w()).prop_map(|(a, b)| format!("\"{a} {b}\"")),
        2 => (w(), w(), 0u32..4).prop_map(|(a, b, n)| format!("\"{a} {b}\"~{n}")),
        1 => (w(), w(), w(), 0u32..4).prop_map(|(a, b, c, n)| format!("\"{a} {b} {c}\"~{n}")),
        1 => prop::sample::select(vec!["rec*", "ac*", "caf*", "zü*", "a*", "recall*"]).prop_map(String::from),
        1 => prop::sample::select(vec!["rec?ll", "re*ed", "*me", "c?f?", "?", "a*e*"]).prop_map(String::from),
        1 => prop::sample::select(vec!["/recall(s|ed)?/", "/ac.e/", "/[a-c]+/", "/.*'s/"]).prop_map(String::from),
        1 => (w(), 1u8..=2).prop_map(|(w, d)| format!("{}~{d}", w.replace('\'', ""))),
        2 => (prop::sample::select(vec!["title", "body"]), w()).prop_map(|(f, w)| format!("{f}:{w}")),
    ]
}

fn query_text() -> impl Strategy<Value = String> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} AND {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} OR {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} -{b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("+{a} AND NOT {b}")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) OR NOT ({b})")),
        ]
    })
}

type Answer = BTreeMap<String, Highlights>;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn index_equals_naive(
        queries in prop::collection::vec(query_text(), 1..24),
        docs in prop::collection::vec((text(), text()), 1..8),
    ) {
        let mut idx: SearchIndex = SearchIndex::default();
        let mut sc = SearchScratch::default();
        let mut parsed = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            let name = format!("q{i}");
            let query = match parse_query(q) {
                Ok(x) => x.with_default_field("body"),
                Err(e) => panic!("generated query {q} does not parse: {e}"),
            };
            match idx.add(&name, SearchSpec::new(query.clone())) {
                Ok(()) => parsed.push((name, query)),
                Err(SearchError::NegativeOnly) => prop_assert!(query.is_negative_only()),
                Err(e) => panic!("{q}: {e}"),
            }
        }
        // The first document before `prepare` (changed pattern groups matched one pattern
        // at a time), the others after.
        for (i, (title, body)) in docs.iter().enumerate() {
            if i == 1 {
                idx.prepare();
            }
            let doc = Document::new().with("title", title).with("body", body);
            let got: Answer = idx
                .match_document(&mut sc, &doc, &mut |_, _| true)
                .into_iter()
                .map(|h| (h.search.to_string(), h.highlights))
                .collect();
            let want: Answer = parsed
                .iter()
                .filter_map(|(n, q)| naive::evaluate(q, &doc).map(|h| (n.clone(), h)))
                .collect();
            prop_assert_eq!(got, want, "title={:?} body={:?}", title, body);
        }
    }
}

/// Prefixes and wildcards only (no regex or fuzzy term, which turn the index's
/// head/tail pattern filter off), so that filter is on in every case.
fn pattern_leaf() -> impl Strategy<Value = String> {
    let w = || prop::sample::select(VOCAB);
    prop_oneof![
        2 => w().prop_map(|w| w.to_string()),
        3 => prop::sample::select(vec![
            "rec*", "ac*", "caf*", "zü*", "a*", "recall*", "lawsu*", "stor*", "cafe*", "naï*",
        ])
        .prop_map(String::from),
        3 => prop::sample::select(vec![
            "rec?ll", "re*ed", "*me", "c?f?", "?", "a*e*", "*ll*", "?cme", "*'s", "zür?ch",
            "st*m", "*uit", "ca?é", "rec*s",
        ])
        .prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn index_equals_naive_patterns_only(
        queries in prop::collection::vec(
            (pattern_leaf(), pattern_leaf(), 0u8..3).prop_map(|(a, b, op)| match op {
                0 => a,
                1 => format!("{a} OR {b}"),
                _ => format!("{a} AND {b}"),
            }),
            1..16,
        ),
        docs in prop::collection::vec((text(), text()), 1..8),
    ) {
        let mut idx: SearchIndex = SearchIndex::default();
        let mut sc = SearchScratch::default();
        let mut parsed = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            let query = match parse_query(q) {
                Ok(x) => x.with_default_field("body"),
                Err(e) => panic!("generated query {q} does not parse: {e}"),
            };
            let name = format!("q{i}");
            if idx.add(&name, SearchSpec::new(query.clone())).is_ok() {
                parsed.push((name, query));
            }
            // Prepared now and then: later patterns join the built head/tail filter and
            // DFA shards incrementally.
            if i % 3 == 0 {
                idx.prepare();
            }
        }
        idx.prepare();
        for (title, body) in &docs {
            let doc = Document::new().with("title", title).with("body", body);
            let got: Answer = idx
                .match_document(&mut sc, &doc, &mut |_, _| true)
                .into_iter()
                .map(|h| (h.search.to_string(), h.highlights))
                .collect();
            let want: Answer = parsed
                .iter()
                .filter_map(|(n, q)| naive::evaluate(q, &doc).map(|h| (n.clone(), h)))
                .collect();
            prop_assert_eq!(got, want, "title={:?} body={:?}", title, body);
        }
    }
}

/// Interleave adds, replaces and drops with documents; after every change the index must
/// answer exactly what the naive evaluator gives for the searches live at that point.
#[test]
fn register_and_drop_under_load() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let qs = query_text();
    let ts = text();
    let mut idx: SearchIndex = SearchIndex::default();
    let mut sc = SearchScratch::default();
    let mut live: BTreeMap<String, dsl::query::Query> = BTreeMap::new();
    let steps = if std::env::var("WEIR_LONG_TESTS").is_ok() {
        20_000
    } else {
        2_000
    };
    let mut hits_seen = 0usize;
    for step in 0..steps {
        let r: f64 = rng.gen();
        if r < 0.35 {
            let name = format!("s{}", rng.gen_range(0..60));
            let q = qs.new_tree(&mut runner).unwrap().current();
            let query = parse_query(&q).unwrap().with_default_field("body");
            match idx.add(&name, SearchSpec::new(query.clone())) {
                Ok(()) => {
                    live.insert(name, query);
                }
                Err(SearchError::NegativeOnly) => {}
                Err(e) => panic!("{q}: {e}"),
            }
        } else if r < 0.55 {
            let name = format!("s{}", rng.gen_range(0..60));
            assert_eq!(
                idx.remove(&name),
                live.remove(&name).is_some(),
                "step {step}"
            );
        } else {
            let (title, body) = (
                ts.new_tree(&mut runner).unwrap().current(),
                ts.new_tree(&mut runner).unwrap().current(),
            );
            let doc = Document::new().with("title", &title).with("body", &body);
            let got: Answer = idx
                .match_document(&mut sc, &doc, &mut |_, _| true)
                .into_iter()
                .map(|h| (h.search.to_string(), h.highlights))
                .collect();
            let want: Answer = live
                .iter()
                .filter_map(|(n, q)| naive::evaluate(q, &doc).map(|h| (n.clone(), h)))
                .collect();
            hits_seen += want.len();
            assert_eq!(got, want, "step {step}: doc {body:?}");
        }
        if step % 4 != 0 {
            idx.prepare();
        }
        assert_eq!(idx.len(), live.len());
    }
    assert!(
        hits_seen > 100,
        "the load test produced too few hits ({hits_seen}) to mean anything"
    );
    // Everything dropped → nothing left anywhere.
    for name in live.keys() {
        assert!(idx.remove(name));
    }
    let s = idx.stats();
    assert_eq!((s.searches, s.patterns, s.always_checked), (0, 0, 0));
}

/// The borrowing API reports the same hits, in the same order, with the same highlight
/// ranges as the allocating one (which is built from it), across two fields and a
/// dropped search; the ranges come grouped by field, sorted.
#[test]
fn borrowing_hits_equal_owned_hits() {
    let mut idx: SearchIndex = SearchIndex::default();
    let mut sc = SearchScratch::default();
    idx.add(
        "a",
        SearchSpec::matches("body", "acme OR title:acme").unwrap(),
    )
    .unwrap();
    idx.add(
        "b",
        SearchSpec::matches("body", "\"acme corp\" -x").unwrap(),
    )
    .unwrap();
    idx.add("c", SearchSpec::matches("body", "zzz").unwrap())
        .unwrap();
    idx.add("d", SearchSpec::matches("body", "ac* AND corp").unwrap())
        .unwrap();
    assert!(idx.remove("d"));
    let d = Document::new()
        .with("title", "Acme news")
        .with("body", "acme corp, and ACME Corp again");
    let owned = idx.match_document(&mut sc, &d, &mut |_, _| true);
    let mut borrowed = Vec::new();
    idx.match_document_with(&mut sc, &d, &mut |_, _| true, &mut |h| {
        let ranges: Vec<(String, usize, usize)> =
            h.ranges().map(|(f, a, b)| (f.to_string(), a, b)).collect();
        borrowed.push((h.search().to_string(), ranges, h.highlights()));
    });
    assert_eq!(owned.len(), 2);
    assert_eq!(borrowed.len(), owned.len());
    for (o, (name, ranges, hl)) in owned.iter().zip(&borrowed) {
        assert_eq!(&*o.search, name);
        assert_eq!(&o.highlights, hl);
        let mut from_map: Vec<(String, usize, usize)> = Vec::new();
        for (f, rs) in &o.highlights {
            from_map.extend(rs.iter().map(|&(a, b)| (f.clone(), a, b)));
        }
        let mut sorted = ranges.clone();
        sorted.sort();
        assert_eq!(sorted, from_map);
    }
    assert_eq!(borrowed[0].0, "a");
    assert_eq!(
        borrowed[1].1,
        [
            ("body".to_string(), 0, 4),
            ("body".to_string(), 5, 9),
            ("body".to_string(), 15, 19),
            ("body".to_string(), 20, 24)
        ]
    );
}

/// One index matched from two threads at once (`&self`, a scratch per thread) answers as
/// from one; a scratch moved between two indexes does not carry the first one's pattern
/// results over; a pattern added after a scratch cached a term's results is seen.
#[test]
fn shared_index_and_scratch_reuse() {
    let mut a: SearchIndex = SearchIndex::default();
    let mut b: SearchIndex = SearchIndex::default();
    a.add("pre", SearchSpec::matches("body", "acm*").unwrap())
        .unwrap();
    b.add("wild", SearchSpec::matches("body", "ac?e").unwrap())
        .unwrap();
    a.prepare();
    b.prepare();
    let d = Document::new().with("body", "acme news");
    let names = |hits: Vec<matcher::search::Hit>| -> Vec<String> {
        hits.into_iter().map(|h| h.search.to_string()).collect()
    };
    let mut sc = SearchScratch::default();
    assert_eq!(
        names(a.match_document(&mut sc, &d, &mut |_, _| true)),
        ["pre"]
    );
    assert_eq!(
        names(b.match_document(&mut sc, &d, &mut |_, _| true)),
        ["wild"]
    );
    assert_eq!(
        names(a.match_document(&mut sc, &d, &mut |_, _| true)),
        ["pre"]
    );
    // A new pattern on a field whose cache already holds "acme".
    a.add("pre2", SearchSpec::matches("body", "ac*").unwrap())
        .unwrap();
    assert_eq!(
        names(a.match_document(&mut sc, &d, &mut |_, _| true)),
        ["pre", "pre2"]
    );
    a.prepare();
    let (a, d) = (&a, &d);
    std::thread::scope(|s| {
        let t: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(move || {
                    let mut sc = SearchScratch::default();
                    (0..200)
                        .map(|_| a.match_document(&mut sc, d, &mut |_, _| true).len())
                        .sum::<usize>()
                })
            })
            .collect();
        for h in t {
            assert_eq!(h.join().unwrap(), 400);
        }
    });
}

#[derive(Debug, Clone)]
enum SetStep {
    /// Names (s0..s11) to drop, (name, query) to add or replace.
    Change(Vec<u8>, Vec<(u8, String)>),
    /// Let go of one of the older handles.
    Release(u8),
    /// Let go of the newest handle: the one before it becomes the newest again.
    Abandon,
    Doc(String, String),
}

fn set_step() -> impl Strategy<Value = SetStep> {
    prop_oneof![
        3 => (
            prop::collection::vec(0u8..12, 0..3),
            prop::collection::vec((0u8..12, query_text()), 0..4)
        )
            .prop_map(|(r, a)| SetStep::Change(r, a)),
        1 => any::<u8>().prop_map(SetStep::Release),
        1 => Just(SetStep::Abandon),
        3 => (text(), text()).prop_map(|(t, b)| SetStep::Doc(t, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Random adds, drops and replaces applied through `SearchSet::with_changes`: every
    /// handle still held — the newest and older ones — matches exactly what the naive
    /// evaluator gives for the searches of its own version. A refused batch changes
    /// nothing; changes to an older handle are refused unless every newer one was let go
    /// (those versions are then undone); once the older handles are let
    /// go, the dropped searches are freed (without waiting for another change).
    #[test]
    fn search_set_versions_equal_naive(steps in prop::collection::vec(set_step(), 1..40)) {
        let mut held: Vec<(SearchSet, BTreeMap<String, dsl::query::Query>)> =
            vec![(SearchSet::default(), BTreeMap::new())];
        let mut sc = SearchScratch::default();
        for step in steps {
            match step {
                SetStep::Change(remove, add) => {
                    let (latest, model) = held.last().cloned().unwrap();
                    let remove: Vec<String> = remove.iter().map(|n| format!("s{n}")).collect();
                    let remove_ref: Vec<&str> = remove.iter().map(|s| s.as_str()).collect();
                    let mut specs = Vec::new();
                    let mut next = model.clone();
                    for n in &remove {
                        next.remove(n);
                    }
                    let mut refused = false;
                    for (n, q) in &add {
                        let query = parse_query(q).unwrap().with_default_field("body");
                        refused |= query.is_negative_only();
                        next.insert(format!("s{n}"), query.clone());
                        specs.push((format!("s{n}"), SearchSpec::new(query)));
                    }
                    match latest.with_changes(&remove_ref, specs) {
                        Ok(set) => {
                            prop_assert!(!refused);
                            prop_assert_eq!(set.version(), latest.version() + 1);
                            prop_assert_eq!(set.len(), next.len());
                            held.push((set, next));
                        }
                        Err((_, e)) => {
                            prop_assert!(refused && e == SearchError::NegativeOnly, "{}", e);
                            prop_assert!(latest.is_latest());
                        }
                    }
                    if held.len() > 1 {
                        let old = &held[0].0;
                        let stale = matches!(
                            old.with_changes(&[], vec![]),
                            Err((_, SearchError::NotLatest { .. }))
                        );
                        prop_assert!(stale);
                    }
                }
                SetStep::Release(i) => {
                    if held.len() > 1 {
                        held.remove(i as usize % (held.len() - 1));
                    }
                }
                SetStep::Abandon => {
                    if held.len() > 1 {
                        held.pop();
                        prop_assert!(held.last().is_some_and(|(s, _)| s.is_latest()));
                    }
                }
                SetStep::Doc(title, body) => {
                    let doc = Document::new().with("title", &title).with("body", &body);
                    for (set, model) in &held {
                        let got: Answer = set
                            .match_document(&mut sc, &doc, &mut |_, _| true)
                            .into_iter()
                            .map(|h| (h.search.to_string(), h.highlights))
                            .collect();
                        let want: Answer = model
                            .iter()
                            .filter_map(|(n, q)| naive::evaluate(q, &doc).map(|h| (n.clone(), h)))
                            .collect();
                        prop_assert_eq!(got, want, "version {} of {}: body={:?}",
                            set.version(), held.len(), body);
                    }
                }
            }
        }
        let (latest, model) = held.pop().unwrap();
        // Letting the older handles go frees what only they could see.
        drop(held);
        let st = latest.stats();
        prop_assert_eq!(st.searches, model.len());
        prop_assert_eq!(st.held, model.len());
    }
}

/// Workers match on their own handles while another thread keeps changing the set: each
/// handle's answer never moves, the newest one sees every change, nothing blocks, and
/// once the old handles are gone only the newest version's searches are held.
#[test]
fn search_set_changes_while_matching() {
    let base = SearchSet::<()>::default()
        .with_changes(
            &[],
            vec![
                ("a".into(), SearchSpec::matches("body", "acme").unwrap()),
                ("b".into(), SearchSpec::matches("body", "corp*").unwrap()),
            ],
        )
        .unwrap();
    // Every search of every version matches this document.
    let d = Document::new().with("body", "acme corporation news");
    let names = |set: &SearchSet, sc: &mut SearchScratch| -> Vec<String> {
        set.match_document(sc, &d, &mut |_, _| true)
            .into_iter()
            .map(|h| h.search.to_string())
            .collect()
    };
    let last = std::thread::scope(|s| {
        let old = base.clone();
        let reader = s.spawn(move || {
            let mut sc = SearchScratch::default();
            for _ in 0..2_000 {
                assert_eq!(names(&old, &mut sc), ["a", "b"]);
            }
        });
        let mut set = base.clone();
        let mut sc = SearchScratch::default();
        for i in 0..300 {
            let n = format!("x{}", i % 7);
            set = if i % 3 == 2 {
                set.with_changes(&[n.as_str(), "a"], vec![]).unwrap()
            } else {
                let add = vec![
                    (n, SearchSpec::matches("body", "news OR n?ws").unwrap()),
                    ("a".into(), SearchSpec::matches("body", "acme").unwrap()),
                ];
                set.with_changes(&[], add).unwrap()
            };
            assert_eq!(names(&set, &mut sc).len(), set.len(), "change {i}");
        }
        reader.join().unwrap();
        set
    });
    drop(base);
    let st = last.stats();
    assert_eq!((st.searches, st.held), (last.len(), last.len()));
}

/// `with_changes` counts what the version will hold (drops and replaces in the same call
/// make room; a name added twice counts once) and refuses all or nothing.
#[test]
fn search_set_limits_all_or_nothing() {
    let limits = SearchLimits {
        max_searches: 3,
        ..SearchLimits::default()
    };
    let q = |t: &str| SearchSpec::matches("body", t).unwrap();
    let set = SearchSet::<()>::new(limits)
        .with_changes(
            &[],
            vec![
                ("a".into(), q("x")),
                ("b".into(), q("y")),
                ("c".into(), q("z")),
            ],
        )
        .unwrap();
    let full = set.with_changes(&[], vec![("d".into(), q("w"))]);
    assert!(matches!(full, Err((n, SearchError::TooManySearches { limit: 3 })) if n == "d"));
    let swapped = set
        .with_changes(&["a"], vec![("d".into(), q("w")), ("d".into(), q("v"))])
        .unwrap();
    assert_eq!(swapped.len(), 3);
    let replaced = swapped
        .with_changes(&["nope"], vec![("b".into(), q("yy"))])
        .unwrap();
    assert_eq!(replaced.len(), 3);
    let bad = replaced.with_changes(
        &["b"],
        vec![("e".into(), q("ok")), ("f".into(), q("/a{1000}{1000}/"))],
    );
    assert!(matches!(bad, Err((n, SearchError::BadPattern { .. })) if n == "f"));
    assert!(replaced.is_latest());
    let mut sc = SearchScratch::default();
    let d = Document::new().with("body", "x y yy z w v ok");
    let hits: Vec<String> = replaced
        .match_document(&mut sc, &d, &mut |_, _| true)
        .into_iter()
        .map(|h| h.search.to_string())
        .collect();
    assert_eq!(hits.len(), 3);
    for n in ["b", "c", "d"] {
        assert!(hits.iter().any(|h| h == n), "{hits:?}");
    }
    assert_eq!(replaced.stats().rejected, 2);
}

/// A pattern freed in one field and its id reused by a pattern of another field: a word
/// the first field's cache remembers as firing the old pattern must not fire the new one.
#[test]
fn reused_pattern_id_across_fields() {
    let mut idx: SearchIndex = SearchIndex::default();
    let mut sc = SearchScratch::default();
    let q = |t: &str| SearchSpec::matches("body", t).unwrap();
    idx.add("a", q("title:ac*")).unwrap();
    idx.add("d", q("title:zq*")).unwrap();
    idx.prepare();
    let d1 = Document::new().with("title", "acme");
    assert_eq!(idx.match_document(&mut sc, &d1, &mut |_, _| true).len(), 1);
    assert!(idx.remove("a"));
    idx.add("b", q("zz*")).unwrap();
    idx.prepare();
    let d2 = Document::new()
        .with("title", "acme")
        .with("body", "nothing");
    assert!(idx
        .match_document(&mut sc, &d2, &mut |_, _| true)
        .is_empty());
    let d3 = Document::new().with("title", "acme").with("body", "zzz");
    let hits = idx.match_document(&mut sc, &d3, &mut |_, _| true);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].highlights.keys().collect::<Vec<_>>(), ["body"]);
}
