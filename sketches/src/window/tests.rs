use super::*;
use proptest::prelude::*;

/// Test state: the multiset of event values (sorted), so contents can be compared exactly.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Ev(Vec<i64>);

impl AggState for Ev {
    fn merge_from(&mut self, o: &Self) -> Result<(), SketchError> {
        self.0.extend_from_slice(&o.0);
        self.0.sort_unstable();
        Ok(())
    }
    fn memory_bytes(&self) -> usize {
        self.0.len() * 8
    }
}

fn push(v: i64) -> impl FnOnce(&mut Ev) {
    move |s: &mut Ev| {
        s.0.push(v);
        s.0.sort_unstable();
    }
}

fn w(kind: WindowKind) -> Windowed<String, Ev> {
    Windowed::new(WindowConfig::new(kind), Ev::default()).unwrap()
}

fn add(win: &mut Windowed<String, Ev>, g: &str, ts: i64) -> AddOutcome {
    win.add(&g.to_string(), ts, push(ts)).unwrap()
}

fn summary(c: &[Closed<String, Ev>]) -> Vec<(String, i64, i64, Vec<i64>)> {
    c.iter()
        .map(|c| (c.group.clone(), c.span.start, c.span.end, c.state.0.clone()))
        .collect()
}

fn row(g: &str, s: i64, e: i64, v: &[i64]) -> (String, i64, i64, Vec<i64>) {
    (g.to_string(), s, e, v.to_vec())
}

#[test]
fn tumbling_out_of_order_and_late() {
    let mut win = w(WindowKind::Tumbling { size: 10 });
    for ts in [1, 5, 12, 3] {
        assert_eq!(add(&mut win, "a", ts), AddOutcome::Applied);
    }
    assert!(
        win.advance_watermark(9).unwrap().is_empty(),
        "end 10 not reached"
    );
    let c = win.advance_watermark(10).unwrap();
    assert_eq!(summary(&c), vec![row("a", 0, 10, &[1, 3, 5])]);
    assert_eq!(c[0].last_event, 5);
    // 8 is before the watermark: late, not applied.
    assert_eq!(add(&mut win, "a", 8), AddOutcome::Late { watermark: 10 });
    assert_eq!(add(&mut win, "a", 15), AddOutcome::Applied);
    let c = win.advance_watermark(25).unwrap();
    assert_eq!(summary(&c), vec![row("a", 10, 20, &[12, 15])]);
    assert_eq!(win.stats().late_events, 1);
    assert_eq!(win.group_count(), 0, "empty group evicted");
    // A watermark that does not advance changes nothing.
    assert!(win.advance_watermark(20).unwrap().is_empty());
}

#[test]
fn hopping_windows_share_panes() {
    let mut win = w(WindowKind::Hopping {
        size: 10,
        advance: 5,
    });
    for ts in [6, 1, 12] {
        add(&mut win, "a", ts);
    }
    add(&mut win, "b", 7);
    let c = win.advance_watermark(10).unwrap();
    assert_eq!(
        summary(&c),
        vec![
            row("a", -5, 5, &[1]),
            row("a", 0, 10, &[1, 6]),
            row("b", 0, 10, &[7]),
        ]
    );
    let c = win.advance_watermark(15).unwrap();
    assert_eq!(
        summary(&c),
        vec![row("a", 5, 15, &[6, 12]), row("b", 5, 15, &[7])]
    );
    let c = win.close_all().unwrap();
    assert_eq!(summary(&c), vec![row("a", 10, 20, &[12])]);
    assert_eq!(win.group_count(), 0);
}

#[test]
fn hopping_with_non_dividing_advance() {
    // SIZE 10, ADVANCE 4: panes of gcd = 2.
    let mut win = w(WindowKind::Hopping {
        size: 10,
        advance: 4,
    });
    add(&mut win, "a", 9);
    let c = win.close_all().unwrap();
    // Windows containing 9: starts 0, 4, 8.
    assert_eq!(
        summary(&c),
        vec![
            row("a", 0, 10, &[9]),
            row("a", 4, 14, &[9]),
            row("a", 8, 18, &[9])
        ]
    );
}

#[test]
fn sliding_queries() {
    let mut win = w(WindowKind::Sliding { size: 60, pane: 10 });
    for ts in [5, 15, 65, 130] {
        add(&mut win, "a", ts);
    }
    let g = "a".to_string();
    let q = |win: &mut Windowed<String, Ev>, at| {
        win.query_sliding(&g, at)
            .unwrap()
            .map(|(s, e)| (s.start, s.end, e.0))
    };
    assert_eq!(q(&mut win, 59), Some((0, 60, vec![5, 15])));
    assert_eq!(
        q(&mut win, 60),
        Some((10, 70, vec![15, 65])),
        "includes t's pane"
    );
    assert_eq!(q(&mut win, 61), Some((10, 70, vec![15, 65])));
    assert_eq!(q(&mut win, 129), None, "[70, 130) holds nothing");
    assert_eq!(
        q(&mut win, 130),
        Some((80, 140, vec![130])),
        "an event at t counts"
    );
    // Sliding windows never "close".
    assert!(win.advance_watermark(100).unwrap().is_empty());
    // Panes older than size + retention behind the watermark are evicted.
    assert_eq!(q(&mut win, 59), None);
    assert_eq!(add(&mut win, "a", 99), AddOutcome::Late { watermark: 100 });
}

#[test]
fn peek_open_windows() {
    let g = "a".to_string();
    let mut win = w(WindowKind::Hopping {
        size: 10,
        advance: 5,
    });
    for ts in [1, 6, 12] {
        add(&mut win, "a", ts);
    }
    let p = win.peek_open(&g, 7).unwrap().unwrap();
    assert_eq!((p.0.start, p.0.end, p.1 .0), (5, 15, vec![6, 12]));
    assert!(win.peek_open(&"zz".to_string(), 7).unwrap().is_none());
    let mut s = w(WindowKind::Session { gap: 10 });
    add(&mut s, "a", 3);
    add(&mut s, "a", 8);
    let p = s.peek_open(&g, 15).unwrap().unwrap();
    assert_eq!((p.0.start, p.0.end, p.1 .0), (3, 18, vec![3, 8]));
    assert!(s.peek_open(&g, 18).unwrap().is_none());
}

fn with_retention(kind: WindowKind, retention: i64) -> Windowed<String, Ev> {
    let mut cfg = WindowConfig::new(kind);
    cfg.retention = retention;
    Windowed::new(cfg, Ev::default()).unwrap()
}

#[test]
fn late_emit_updates_open_and_retained_windows() {
    let g = "a".to_string();
    let mut win = with_retention(
        WindowKind::Hopping {
            size: 10,
            advance: 5,
        },
        100,
    );
    add(&mut win, "a", 1);
    add(&mut win, "a", 6);
    let c = win.advance_watermark(11).unwrap();
    assert_eq!(
        summary(&c),
        vec![row("a", -5, 5, &[1]), row("a", 0, 10, &[1, 6])]
    );
    assert_eq!(add(&mut win, "a", 7), AddOutcome::Late { watermark: 11 });
    let r = win.add_late(&g, 7, push(7)).unwrap();
    assert!(r.applied_open, "[5, 15) is still open");
    assert_eq!(summary(&r.updated), vec![row("a", 0, 10, &[1, 6, 7])]);
    assert_eq!(r.missed, 0);
    let c = win.advance_watermark(15).unwrap();
    assert_eq!(summary(&c), vec![row("a", 5, 15, &[6, 7])]);
    // A late event for a group never seen: only open windows get it, nothing re-closes.
    let r = win.add_late(&"b".to_string(), 12, push(12)).unwrap();
    assert!(r.applied_open && r.updated.is_empty() && r.missed == 1);
    let c = win.advance_watermark(25).unwrap();
    assert_eq!(summary(&c), vec![row("b", 10, 20, &[12])]);
}

#[test]
fn late_emit_without_retention_is_missed() {
    let mut win = w(WindowKind::Tumbling { size: 10 });
    add(&mut win, "a", 1);
    win.advance_watermark(10).unwrap();
    let r = win.add_late(&"a".to_string(), 3, push(3)).unwrap();
    assert!(!r.applied_open && r.updated.is_empty());
    assert_eq!(r.missed, 1);
    assert!(
        win.close_all().unwrap().is_empty(),
        "nothing re-emitted later"
    );
    // Not late: same as add.
    let r = win.add_late(&"a".to_string(), 12, push(12)).unwrap();
    assert!(r.applied_open);
    assert_eq!(
        summary(&win.close_all().unwrap()),
        vec![row("a", 10, 20, &[12])]
    );
}

#[test]
fn late_emit_sessions_and_sliding() {
    let g = "a".to_string();
    let mut s = with_retention(WindowKind::Session { gap: 10 }, 100);
    add(&mut s, "a", 1);
    assert_eq!(
        summary(&s.advance_watermark(20).unwrap()),
        vec![row("a", 1, 11, &[1])]
    );
    let r = s.add_late(&g, 5, push(5)).unwrap();
    assert_eq!(summary(&r.updated), vec![row("a", 1, 11, &[1, 5])]);
    let r = s.add_late(&g, 15, push(15)).unwrap();
    assert!(
        r.applied_open && r.updated.is_empty(),
        "[15, 25) is still open"
    );
    assert_eq!(
        summary(&s.advance_watermark(25).unwrap()),
        vec![row("a", 15, 25, &[15])]
    );

    let mut sl = w(WindowKind::Sliding { size: 60, pane: 10 });
    add(&mut sl, "a", 41);
    sl.advance_watermark(45).unwrap();
    let r = sl.add_late(&g, 25, push(25)).unwrap();
    assert!(r.applied_open);
    let (_, st) = sl.query_sliding(&g, 41).unwrap().unwrap();
    assert_eq!(st.0, vec![25, 41]);
    sl.advance_watermark(200).unwrap();
    assert_eq!(sl.add_late(&g, 25, push(25)).unwrap().missed, 1);
}

#[test]
fn sliding_default_pane() {
    assert_eq!(
        WindowKind::sliding(3_600_000),
        WindowKind::Sliding {
            size: 3_600_000,
            pane: 60_000
        }
    );
    assert_eq!(
        WindowKind::sliding(7),
        WindowKind::Sliding { size: 7, pane: 1 }
    );
}

#[test]
fn session_merge_bridge_and_close() {
    let mut win = w(WindowKind::Session { gap: 10 });
    for ts in [1, 5, 30, 20] {
        add(&mut win, "a", ts);
    }
    // 1,5 → [1,15); 20 → [20,30); 30 → [30,40) (touching, not overlapping).
    let c = win.advance_watermark(16).unwrap();
    assert_eq!(summary(&c), vec![row("a", 1, 15, &[1, 5])]);
    assert_eq!(add(&mut win, "a", 10), AddOutcome::Late { watermark: 16 });
    // 25 overlaps both open sessions and bridges them.
    add(&mut win, "a", 25);
    assert!(win.advance_watermark(39).unwrap().is_empty());
    let c = win.advance_watermark(40).unwrap();
    assert_eq!(summary(&c), vec![row("a", 20, 40, &[20, 25, 30])]);
}

#[test]
fn max_groups_guard_counts_and_recovers() {
    let mut cfg = WindowConfig::new(WindowKind::Tumbling { size: 10 });
    cfg.max_groups = 2;
    let mut win: Windowed<String, Ev> = Windowed::new(cfg, Ev::default()).unwrap();
    assert_eq!(add(&mut win, "a", 1), AddOutcome::Applied);
    assert_eq!(add(&mut win, "b", 1), AddOutcome::Applied);
    assert_eq!(add(&mut win, "c", 1), AddOutcome::GroupDropped);
    assert_eq!(
        add(&mut win, "a", 2),
        AddOutcome::Applied,
        "existing groups still work"
    );
    assert_eq!(win.stats().dropped_group_events, 1);
    let c = win.advance_watermark(10).unwrap();
    // c's event is not merged anywhere.
    assert_eq!(
        summary(&c),
        vec![row("a", 0, 10, &[1, 2]), row("b", 0, 10, &[1])]
    );
    assert_eq!(
        add(&mut win, "c", 11),
        AddOutcome::Applied,
        "slots freed after close"
    );
}

#[test]
fn retention_keeps_closed_windows_then_evicts() {
    let mut cfg = WindowConfig::new(WindowKind::Tumbling { size: 10 });
    cfg.retention = 20;
    let mut win: Windowed<String, Ev> = Windowed::new(cfg, Ev::default()).unwrap();
    add(&mut win, "a", 3);
    win.advance_watermark(10).unwrap();
    let g = "a".to_string();
    assert_eq!(
        win.closed_window(&g, 0).map(|c| c.state.0.clone()),
        Some(vec![3])
    );
    assert_eq!(win.closed_windows(&g).count(), 1);
    win.advance_watermark(29).unwrap();
    assert!(win.closed_window(&g, 0).is_some());
    win.advance_watermark(30).unwrap();
    assert!(win.closed_window(&g, 0).is_none());
    assert_eq!(win.stats().windows_evicted, 1);
}

#[test]
fn extreme_times_are_errors_not_panics() {
    let mut win = w(WindowKind::Hopping {
        size: 10,
        advance: 5,
    });
    assert!(win.add(&"a".to_string(), i64::MIN, push(0)).is_err());
    assert!(win.add(&"a".to_string(), i64::MAX, push(0)).is_err());
    add(&mut win, "a", -3);
    add(&mut win, "a", 1 << 59);
    assert_eq!(win.advance_watermark(i64::MAX).unwrap().len(), 4);
    let mut s = w(WindowKind::Session { gap: 1 << 50 });
    add(&mut s, "a", 1 << 60);
    assert_eq!(s.close_all().unwrap().len(), 1);
    let mut sl = w(WindowKind::Sliding {
        size: 1 << 40,
        pane: 1 << 30,
    });
    add(&mut sl, "a", -(1 << 60));
    assert!(sl
        .query_sliding(&"a".to_string(), i64::MAX)
        .unwrap()
        .is_none());
    assert!(sl.advance_watermark(i64::MAX).unwrap().is_empty());
    let e = |k| Windowed::<String, Ev>::new(WindowConfig::new(k), Ev::default()).is_err();
    assert!(e(WindowKind::Tumbling { size: i64::MAX }));
}

#[test]
fn bad_configs() {
    let e = |k| Windowed::<String, Ev>::new(WindowConfig::new(k), Ev::default()).is_err();
    assert!(e(WindowKind::Tumbling { size: 0 }));
    assert!(e(WindowKind::Hopping {
        size: 10,
        advance: 20
    }));
    assert!(e(WindowKind::Sliding { size: 10, pane: 3 }));
    assert!(e(WindowKind::Session { gap: -1 }));
    let mut cfg = WindowConfig::new(WindowKind::Tumbling { size: 10 });
    cfg.max_groups = 0;
    assert!(Windowed::<String, Ev>::new(cfg, Ev::default()).is_err());
}

/// Brute force: windows of `kind` over the applied events, as (group, start, end, values).
fn reference(kind: WindowKind, events: &[(String, i64)]) -> Vec<(String, i64, i64, Vec<i64>)> {
    let mut out = Vec::new();
    match kind {
        WindowKind::Session { gap } => {
            let mut groups: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for (g, t) in events {
                groups.entry(g.clone()).or_default().push(*t);
            }
            for (g, mut ts) in groups {
                ts.sort_unstable();
                let mut cur: Vec<i64> = Vec::new();
                for t in ts {
                    if let Some(&l) = cur.last() {
                        if t >= l + gap {
                            out.push(row(&g, cur[0], l + gap, &cur));
                            cur.clear();
                        }
                    }
                    cur.push(t);
                }
                if let Some(&l) = cur.last() {
                    out.push(row(&g, cur[0], l + gap, &cur));
                }
            }
        }
        _ => {
            let (size, adv) = match kind {
                WindowKind::Tumbling { size } => (size, size),
                WindowKind::Hopping { size, advance } => (size, advance),
                _ => unreachable!(),
            };
            let mut set: BTreeSet<(String, i64)> = BTreeSet::new();
            for (g, t) in events {
                let mut s = t.div_euclid(adv) * adv;
                while s + size > *t {
                    set.insert((g.clone(), s));
                    s -= adv;
                }
            }
            for (g, s) in set {
                let mut v: Vec<i64> = events
                    .iter()
                    .filter(|(h, t)| *h == g && *t >= s && *t < s + size)
                    .map(|(_, t)| *t)
                    .collect();
                v.sort_unstable();
                out.push(row(&g, s, s + size, &v));
            }
        }
    }
    out.sort_by(|a, b| (a.2, a.1, &a.0).cmp(&(b.2, b.1, &b.0)));
    out
}

fn kinds() -> impl Strategy<Value = WindowKind> {
    prop_oneof![
        (1i64..20).prop_map(|size| WindowKind::Tumbling { size }),
        (1i64..8, 1i64..4)
            .prop_map(|(a, m)| WindowKind::Hopping {
                size: a * m + a % 3,
                advance: a
            })
            .prop_filter(
                "advance <= size",
                |k| matches!(k, WindowKind::Hopping{size, advance} if advance <= size)
            ),
        (1i64..15).prop_map(|gap| WindowKind::Session { gap }),
    ]
}

/// Ops: Some((group, ts)) = an event; None = advance the watermark to max ts − delay.
fn ops() -> impl Strategy<Value = Vec<Option<(u8, i64)>>> {
    prop::collection::vec(
        prop_oneof![4 => (0u8..3, -20i64..120).prop_map(Some), 1 => Just(None)],
        0..60,
    )
}

fn cases() -> u32 {
    if std::env::var("WEIR_LONG_TESTS").is_ok() {
        2000
    } else {
        96
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Every window with data closes exactly once, with exactly the applied events of its
    /// range; late events are exactly those before the watermark at their arrival; a
    /// checkpoint (serde JSON round trip) midway changes nothing.
    #[test]
    fn windows_match_reference(kind in kinds(), ops in ops(), delay in 0i64..15, cut in 0usize..60) {
        let mut win = w(kind);
        let mut applied = Vec::new();
        let mut closed = Vec::new();
        let mut max_ts = i64::MIN;
        let mut late = 0;
        for (i, op) in ops.iter().enumerate() {
            if i == cut {
                let json = serde_json::to_string(&win).unwrap();
                win = serde_json::from_str(&json).unwrap();
                win.check_version().unwrap();
            }
            match op {
                Some((g, ts)) => {
                    let g = format!("g{g}");
                    let before = win.watermark();
                    match win.add(&g, *ts, push(*ts)).unwrap() {
                        AddOutcome::Applied => {
                            prop_assert!(before.is_none_or(|wm| *ts >= wm));
                            applied.push((g, *ts));
                            max_ts = max_ts.max(*ts);
                        }
                        AddOutcome::Late { watermark } => {
                            prop_assert!(*ts < watermark);
                            late += 1;
                        }
                        AddOutcome::GroupDropped => prop_assert!(false, "no cap set"),
                    }
                }
                None if max_ts > i64::MIN => {
                    let wm = max_ts - delay;
                    for c in win.advance_watermark(wm).unwrap() {
                        prop_assert!(c.span.end <= wm);
                        closed.push(c);
                    }
                }
                None => {}
            }
        }
        closed.extend(win.close_all().unwrap());
        prop_assert_eq!(win.stats().late_events, late);
        let mut got = summary(&closed);
        got.sort_by(|a, b| (a.2, a.1, &a.0).cmp(&(b.2, b.1, &b.0)));
        prop_assert_eq!(got, reference(kind, &applied));
    }

    /// Sliding queries equal a brute-force filter of the events in the queried span.
    #[test]
    fn sliding_matches_reference(
        mut events in prop::collection::vec((0i64..400, 0u8..2), 0..80),
        queries in prop::collection::vec(-10i64..450, 1..20),
        pane in prop::sample::select(vec![1i64, 3, 5]),
        n in 1i64..30,
    ) {
        let size = pane * n;
        let mut win = w(WindowKind::Sliding { size, pane });
        for (ts, g) in &events {
            win.add(&format!("g{g}"), *ts, push(*ts)).unwrap();
        }
        for at in queries {
            for g in ["g0", "g1"] {
                let got = win.query_sliding(&g.to_string(), at).unwrap();
                let end = sliding_end(at, pane);
                let mut want: Vec<i64> = events
                    .iter()
                    .filter(|(t, h)| format!("g{h}") == g && *t >= end - size && *t < end)
                    .map(|(t, _)| *t)
                    .collect();
                want.sort_unstable();
                match got {
                    Some((span, s)) => {
                        prop_assert_eq!(span, Span { start: end - size, end });
                        prop_assert_eq!(s.0, want);
                    }
                    None => prop_assert!(want.is_empty()),
                }
            }
            // Updates after a query must invalidate the cached blocks.
            let t = (at * 7).rem_euclid(400);
            win.add(&"g0".to_string(), t, push(t)).unwrap();
            events.push((t, 0));
        }
    }

    /// With the watermark advancing (blocks pre-merged eagerly, panes evicted past
    /// size + retention), queries still equal a brute-force filter of the applied events.
    #[test]
    fn sliding_with_watermark_matches_reference(
        events in prop::collection::vec((0i64..600, 0u8..2), 0..120),
        pane in prop::sample::select(vec![1i64, 2, 5]),
        n in 1i64..40,
        delay in 0i64..20,
        retention in 0i64..50,
        query_every in 1usize..10,
    ) {
        let size = pane * n;
        let mut cfg = WindowConfig::new(WindowKind::Sliding { size, pane });
        cfg.retention = retention;
        let mut win: Windowed<String, Ev> = Windowed::new(cfg, Ev::default()).unwrap();
        let mut applied: Vec<(i64, u8)> = Vec::new();
        let mut max_ts = i64::MIN;
        for (i, (ts, g)) in events.iter().enumerate() {
            if let AddOutcome::Applied = win.add(&format!("g{g}"), *ts, push(*ts)).unwrap() {
                applied.push((*ts, *g));
                max_ts = max_ts.max(*ts);
            }
            win.advance_watermark(max_ts - delay).unwrap();
            if i % query_every == 0 {
                let wm = max_ts - delay;
                // Queries that reach no further back than the retained range.
                for at in [wm, wm + 3, max_ts, wm - retention] {
                    let end = sliding_end(at, pane);
                    if end - size + pane + size + retention <= wm {
                        continue;
                    }
                    for g in ["g0", "g1"] {
                        let got = win.query_sliding(&g.to_string(), at).unwrap();
                        let mut want: Vec<i64> = applied
                            .iter()
                            .filter(|(t, h)| format!("g{h}") == g && *t >= end - size && *t < end)
                            .map(|(t, _)| *t)
                            .collect();
                        want.sort_unstable();
                        match got {
                            Some((_, s)) => prop_assert_eq!(s.0, want, "at={} wm={}", at, wm),
                            None => prop_assert!(want.is_empty(), "at={} wm={} want={:?}", at, wm, want),
                        }
                    }
                }
            }
        }
    }

    /// Any times, any durations: errors, never panics (overflow checks are on in tests).
    #[test]
    fn no_panics_on_extreme_inputs(
        kind_sel in 0u8..4,
        d1 in prop_oneof![1i64..100, Just(MAX_DURATION), Just(i64::MAX)],
        d2 in prop_oneof![1i64..100, Just(MAX_DURATION)],
        ops in prop::collection::vec((any::<i64>(), prop_oneof![any::<i64>(), -200i64..200], 0u8..5), 0..40),
        retention in prop_oneof![Just(0i64), Just(i64::MAX), 0i64..100],
    ) {
        let kind = match kind_sel {
            0 => WindowKind::Tumbling { size: d1 },
            1 => WindowKind::Hopping { size: d1.max(d2), advance: d2.min(d1) },
            2 => WindowKind::Sliding { size: d1, pane: 1 },
            _ => WindowKind::Session { gap: d1 },
        };
        let mut cfg = WindowConfig::new(kind);
        cfg.retention = retention;
        let Ok(mut win) = Windowed::<String, Ev>::new(cfg, Ev::default()) else { return Ok(()) };
        for (a, b, op) in ops {
            match op {
                0 => { let _ = win.add(&"g".to_string(), b, push(b)); }
                1 => { let _ = win.advance_watermark(a); }
                2 => { let _ = win.query_sliding(&"g".to_string(), a); let _ = win.peek_open(&"g".to_string(), a); }
                3 => { let _ = win.add_late(&"g".to_string(), b, push(b)); }
                _ => { let _ = win.close_all(); }
            }
        }
    }

    /// late = 'emit' with long retention: the last version of every emitted window holds
    /// exactly the events (on time or late) in its range.
    #[test]
    fn late_emit_matches_reference(kind in kinds(), ops in ops(), delay in 0i64..15) {
        let mut win = with_retention(kind, 1 << 40);
        let mut all: Vec<(String, i64)> = Vec::new();
        let mut last: BTreeMap<(String, i64, i64), Vec<i64>> = BTreeMap::new();
        let mut max_ts = i64::MIN;
        for op in &ops {
            match op {
                Some((g, ts)) => {
                    let g = format!("g{g}");
                    match win.add(&g, *ts, push(*ts)).unwrap() {
                        AddOutcome::Applied => all.push((g, *ts)),
                        AddOutcome::Late { .. } => {
                            let r = win.add_late(&g, *ts, push(*ts)).unwrap();
                            all.push((g.clone(), *ts));
                            for c in r.updated {
                                last.insert((c.group, c.span.start, c.span.end), c.state.0);
                            }
                        }
                        AddOutcome::GroupDropped => prop_assert!(false),
                    }
                    max_ts = max_ts.max(*ts);
                }
                None if max_ts > i64::MIN => {
                    for c in win.advance_watermark(max_ts - delay).unwrap() {
                        let k = (c.group, c.span.start, c.span.end);
                        prop_assert!(!last.contains_key(&k), "window closed twice: {:?}", k);
                        last.insert(k, c.state.0);
                    }
                }
                None => {}
            }
        }
        for c in win.close_all().unwrap() {
            last.insert((c.group, c.span.start, c.span.end), c.state.0);
        }
        for ((g, s, e), got) in last {
            let mut want: Vec<i64> = match kind {
                // Session spans grow with late events; compare by the events they hold.
                WindowKind::Session { .. } => got.clone(),
                _ => all.iter().filter(|(h, t)| *h == g && *t >= s && *t < e).map(|(_, t)| *t).collect(),
            };
            want.sort_unstable();
            prop_assert_eq!(got, want, "window {} [{}, {})", g, s, e);
        }
    }
}
