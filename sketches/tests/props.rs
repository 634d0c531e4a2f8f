//! Property tests: serialization round trips, merge laws, corrupt input.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sketches::accumulator::{build_state, AccSpec, AggState, Value};
use sketches::bloom::Bloom;
use sketches::hll::{Hll, HLL_FORMAT_VERSION};
use sketches::options::SketchOptions;
use sketches::quantiles::DDSketch;
use sketches::topk::{Item, TopK};
use sketches::{Sketch, SketchError, FORMAT_VERSION};

fn cases() -> u32 {
    if std::env::var("WEIR_LONG_TESTS").is_ok() {
        1000
    } else {
        48
    }
}

fn hll_of(p: u8, xs: &[u64]) -> Hll {
    let mut h = Hll::new(p).unwrap();
    for x in xs {
        h.insert(x);
    }
    h
}

fn dd_of(xs: &[f64]) -> DDSketch {
    let mut s = DDSketch::with_max_bins(0.02, 128).unwrap();
    for &x in xs {
        s.add(x);
    }
    s
}

fn bloom_of(xs: &[u64]) -> Bloom {
    let mut b = Bloom::new(500, 0.02).unwrap();
    for x in xs {
        b.insert(x);
    }
    b
}

fn topk_of(xs: &[u64]) -> TopK {
    let mut t = TopK::new(8).unwrap();
    for &x in xs {
        t.insert(Item::Int((x % 20) as i64), 1);
    }
    t
}

fn roundtrip<S: Sketch + PartialEq + std::fmt::Debug>(
    s: &S,
    version: u8,
) -> Result<(), TestCaseError> {
    let b = s.to_bytes();
    prop_assert_eq!(b[0], version);
    let back = S::from_bytes(&b).unwrap();
    prop_assert_eq!(&back, s);
    let j = serde_json::to_string(s).unwrap();
    let back: S = serde_json::from_str(&j).unwrap();
    prop_assert_eq!(&back, s);
    Ok(())
}

fn values() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(0u64..3000, 0..1500)
}

fn floats() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![-1e6f64..1e6, 1e-3f64..1e3, Just(0.0), prop::num::f64::ANY,],
        0..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn serialization_round_trips(xs in values(), fs in floats(), p in 4u8..=14) {
        roundtrip(&hll_of(p, &xs), HLL_FORMAT_VERSION)?;
        roundtrip(&dd_of(&fs), FORMAT_VERSION)?;
        roundtrip(&bloom_of(&xs), FORMAT_VERSION)?;
        roundtrip(&topk_of(&xs), FORMAT_VERSION)?;
    }

    #[test]
    fn accumulator_state_round_trips(xs in values(), fs in floats()) {
        let specs = vec![
            AccSpec::CountStar, AccSpec::Sum, AccSpec::Min, AccSpec::Max, AccSpec::Avg,
            AccSpec::CountDistinct, AccSpec::Percentile { fractions: vec!["0.5".into(), "0.99".into()] },
            AccSpec::TopK { k: 3 }, AccSpec::Set,
        ];
        let mut st = build_state(&specs, &SketchOptions::default()).unwrap();
        for (x, f) in xs.iter().zip(fs.iter().cycle()) {
            for a in st.iter_mut() {
                a.update(Value::Int(*x as i64));
                a.update(Value::Float(*f));
            }
        }
        let j = serde_json::to_string(&st).unwrap();
        let back: Vec<sketches::accumulator::Accumulator> = serde_json::from_str(&j).unwrap();
        prop_assert_eq!(&back, &st);
        for a in &st {
            let back = sketches::accumulator::Accumulator::from_bytes(&a.to_bytes()).unwrap();
            prop_assert_eq!(&back, a);
        }
        let pc = postcard::to_allocvec(&st).unwrap();
        let back: Vec<sketches::accumulator::Accumulator> = postcard::from_bytes(&pc).unwrap();
        prop_assert_eq!(&back, &st);
    }

    #[test]
    fn merge_laws(a in values(), b in values(), c in values(), p in 4u8..=14) {
        // HLL: commutative, associative, idempotent; empty is the identity.
        let (ha, hb, hc) = (hll_of(p, &a), hll_of(p, &b), hll_of(p, &c));
        let mut ab = ha.clone(); ab.merge(&hb).unwrap();
        let mut ba = hb.clone(); ba.merge(&ha).unwrap();
        prop_assert_eq!(ab.estimate(), ba.estimate());
        let mut ab_c = ab.clone(); ab_c.merge(&hc).unwrap();
        let mut bc = hb.clone(); bc.merge(&hc).unwrap();
        let mut a_bc = ha.clone(); a_bc.merge(&bc).unwrap();
        prop_assert_eq!(ab_c.estimate(), a_bc.estimate());
        let mut aa = ha.clone(); aa.merge(&ha).unwrap();
        prop_assert_eq!(aa.estimate(), ha.estimate());
        let mut ae = ha.clone(); ae.merge(&Hll::new(p).unwrap()).unwrap();
        prop_assert_eq!(ae.estimate(), ha.estimate());
        // merge(a, b) == sketch(a ∪ b)
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        prop_assert_eq!(ab.estimate(), hll_of(p, &all).estimate());

        // Bloom: merge is exactly the union sketch.
        let mut bl = bloom_of(&a); bl.merge(&bloom_of(&b)).unwrap();
        prop_assert_eq!(&bl, &bloom_of(&all));

        // Top-k: counts bound the true counts of the union.
        let mut t = topk_of(&a); t.merge(&topk_of(&b)).unwrap();
        prop_assert_eq!(t.total(), all.len() as u64);
        for e in t.top(8) {
            let Item::Int(i) = e.item else { unreachable!() };
            let truth = all.iter().filter(|&&x| (x % 20) as i64 == i).count() as u64;
            prop_assert!(e.count >= truth && e.count - e.error <= truth);
        }
    }

    /// Exact aggregates: merge(a, b) gives exactly the aggregate of a ∪ b.
    #[test]
    fn exact_merge_is_union(a in prop::collection::vec(-1000i64..1000, 0..50), b in prop::collection::vec(-1000i64..1000, 0..50), fl in prop::collection::vec(-10.0f64..10.0, 0..5)) {
        let specs = vec![AccSpec::CountStar, AccSpec::Count, AccSpec::Sum, AccSpec::Min, AccSpec::Max, AccSpec::Avg];
        let o = SketchOptions::default();
        let feed = |xs: &[i64], fs: &[f64]| {
            let mut st = build_state(&specs, &o).unwrap();
            for &x in xs {
                st.iter_mut().for_each(|acc| { acc.update(Value::Int(x)); });
            }
            for &f in fs {
                st.iter_mut().for_each(|acc| { acc.update(Value::Float(f)); });
            }
            st
        };
        let mut m = feed(&a, &fl);
        m.merge_from(&feed(&b, &[])).unwrap();
        let all: Vec<i64> = a.iter().chain(&b).copied().collect();
        let u = feed(&all, &fl);
        for (x, y) in m.iter().zip(&u) {
            let (x, y) = (x.result_json(), y.result_json());
            match (x.as_f64(), y.as_f64()) {
                (Some(p), Some(q)) => prop_assert!((p - q).abs() <= 1e-9 * q.abs().max(1.0), "{} vs {}", p, q),
                _ => prop_assert_eq!(x, y),
            }
        }
        // COUNT(*) counts a NULL row, COUNT(x) and the others skip it.
        let before: Vec<_> = m.iter().map(|a| a.result_json()).collect();
        m.iter_mut().for_each(|acc| { acc.update(Value::Null); });
        prop_assert_eq!(m[0].result_json(), serde_json::json!(all.len() + fl.len() + 1));
        for i in 1..m.len() {
            prop_assert_eq!(&m[i].result_json(), &before[i]);
        }
    }

    #[test]
    fn ddsketch_merge_is_union(a in floats(), b in floats()) {
        let mut m = dd_of(&a); m.merge(&dd_of(&b)).unwrap();
        let all: Vec<f64> = a.iter().chain(&b).copied().collect();
        let u = dd_of(&all);
        prop_assert_eq!(m.count(), u.count());
        if !m.collapsed() && !u.collapsed() {
            for q in [0.0, 0.25, 0.5, 0.9, 0.99, 1.0] {
                prop_assert_eq!(m.quantile(q), u.quantile(q));
            }
        }
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics(xs in values(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut b = hll_of(12, &xs).to_bytes();
        for (i, v) in &flips {
            let n = b.len();
            b[i % n] ^= v;
        }
        let _ = Hll::from_bytes(&b);
        let _ = DDSketch::from_bytes(&b);
        let _ = Bloom::from_bytes(&b);
        let _ = TopK::from_bytes(&b);
        let n = b.len();
        let _ = Hll::from_bytes(&b[..cut % n]);
    }
}

#[test]
fn version_and_kind_are_checked() {
    let mut b = Hll::new(12).unwrap().to_bytes();
    // HLL bytes carry their own version (2, packed registers); other sketches are at 1.
    assert!(matches!(
        Bloom::from_bytes(&b),
        Err(SketchError::Version {
            found: HLL_FORMAT_VERSION,
            ..
        })
    ));
    let bloom = Bloom::new(100, 0.01).unwrap().to_bytes();
    assert!(matches!(
        Hll::from_bytes(&bloom),
        Err(SketchError::Kind { .. })
    ));
    b[1] = Bloom::KIND;
    assert!(matches!(Hll::from_bytes(&b), Err(SketchError::Kind { .. })));
    b[1] = Hll::KIND;
    b[0] = 99;
    assert!(matches!(
        Hll::from_bytes(&b),
        Err(SketchError::Version { found: 99, .. })
    ));
    assert!(Hll::from_bytes(&[]).is_err());
}

#[test]
fn state_vec_merge() {
    let specs = vec![AccSpec::CountStar, AccSpec::CountDistinct];
    let o = SketchOptions::default();
    let mut a = build_state(&specs, &o).unwrap();
    let mut b = build_state(&specs, &o).unwrap();
    for i in 0..10 {
        a.iter_mut().for_each(|x| {
            x.update(Value::Int(i));
        });
        b.iter_mut().for_each(|x| {
            x.update(Value::Int(i + 5));
        });
    }
    a.merge_from(&b).unwrap();
    assert_eq!(a[0].result_json(), serde_json::json!(20));
    assert_eq!(a[1].result_json(), serde_json::json!(15));
}
