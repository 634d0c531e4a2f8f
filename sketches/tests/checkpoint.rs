//! A checkpoint (serde JSON or postcard) of windows full of real sketches, restored midway,
//! gives exactly the same output records as an uninterrupted run.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sketches::accumulator::{build_state, AccSpec, Accumulator, Value};
use sketches::options::SketchOptions;
use sketches::window::{WindowConfig, WindowKind, Windowed};

type W = Windowed<String, Vec<Accumulator>>;

fn specs() -> Vec<AccSpec> {
    vec![
        AccSpec::CountStar,
        AccSpec::Sum,
        AccSpec::Min,
        AccSpec::Avg,
        AccSpec::CountDistinct,
        AccSpec::Percentile {
            fractions: vec!["0.5".into(), "0.99".into()],
        },
        AccSpec::TopK { k: 3 },
        AccSpec::Set,
    ]
}

fn new_windows(kind: WindowKind) -> W {
    let o = SketchOptions {
        bloom_capacity: 100,
        ..SketchOptions::default()
    };
    let mut cfg = WindowConfig::new(kind);
    cfg.retention = 50;
    Windowed::new(cfg, build_state(&specs(), &o).unwrap()).unwrap()
}

fn run(kind: WindowKind, events: &[(i64, u8, i64)], cut: Option<(usize, bool)>) -> Vec<String> {
    let mut w = new_windows(kind);
    let mut out = Vec::new();
    let mut max_ts = i64::MIN;
    for (i, &(ts, g, v)) in events.iter().enumerate() {
        if let Some((at, json)) = cut {
            if i == at {
                w = if json {
                    serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap()
                } else {
                    postcard::from_bytes(&postcard::to_allocvec(&w).unwrap()).unwrap()
                };
                w.check_version().unwrap();
            }
        }
        let key = format!("g{g}");
        w.add(&key, ts, |s| {
            for a in s.iter_mut() {
                a.update(Value::Int(v));
                a.update(Value::Float(v as f64 * 1.5 + 0.25));
            }
        })
        .unwrap();
        max_ts = max_ts.max(ts);
        if i % 4 == 3 {
            for c in w.advance_watermark(max_ts - 5).unwrap() {
                out.push(render(&c.group, c.span.start, &c.state));
            }
        }
        if let WindowKind::Sliding { .. } = kind {
            if let Some((span, s)) = w.query_sliding(&key, ts).unwrap() {
                out.push(render(&key, span.start, &s));
            }
        }
    }
    for c in w.close_all().unwrap() {
        out.push(render(&c.group, c.span.start, &c.state));
    }
    out
}

fn render(g: &str, start: i64, s: &[Accumulator]) -> String {
    let vals: Vec<_> = s.iter().map(|a| a.result_json()).collect();
    format!("{g}@{start}: {}", serde_json::Value::Array(vals))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if std::env::var("WEIR_LONG_TESTS").is_ok() { 500 } else { 32 }))]

    #[test]
    fn restore_midway_changes_nothing(
        kind in prop_oneof![
            Just(WindowKind::Tumbling { size: 10 }),
            Just(WindowKind::Hopping { size: 12, advance: 4 }),
            Just(WindowKind::Sliding { size: 20, pane: 2 }),
            Just(WindowKind::Session { gap: 6 }),
        ],
        events in prop::collection::vec((0i64..200, 0u8..3, -50i64..5000), 1..80),
        cut in any::<prop::sample::Index>(),
        json in any::<bool>(),
    ) {
        let mut events = events;
        events.sort_by_key(|e| e.0);
        let at = cut.index(events.len());
        let plain = run(kind, &events, None);
        let restored = run(kind, &events, Some((at, json)));
        prop_assert!(!plain.is_empty());
        prop_assert_eq!(plain, restored);
    }
}
