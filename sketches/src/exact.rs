//! Exact mergeable aggregates: COUNT, SUM, MIN, MAX, AVG.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A number as it came in: integers stay integers while they can.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Num {
    Int(i64),
    Float(#[serde(with = "crate::serde_f64")] f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    pub fn to_json(self) -> serde_json::Value {
        match self {
            Num::Int(i) => i.into(),
            Num::Float(f) => serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
        }
    }

    fn cmp_num(self, o: Num) -> Ordering {
        match (self, o) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            (a, b) => a.as_f64().total_cmp(&b.as_f64()),
        }
    }
}

/// COUNT(*) or COUNT(expr).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Count(pub u64);

/// SUM: exact whatever the order of additions and merges. Integers add up in an `i64`
/// while they fit (the fast path), floats and integer overflow go to an [`ExactSum`]; the
/// result is an integer when only integers were added and their total fits an `i64`, else
/// the exact total rounded once to a double.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Sum {
    int: i64,
    exact: ExactSum,
    /// A float was added.
    is_float: bool,
    n: u64,
}

impl Sum {
    pub fn add(&mut self, v: Num) {
        self.n += 1;
        match v {
            Num::Int(i) => self.add_int(i),
            Num::Float(f) => {
                self.is_float = true;
                self.exact.add_f64(f);
            }
        }
    }

    fn add_int(&mut self, i: i64) {
        match self.int.checked_add(i) {
            Some(s) => self.int = s,
            None => {
                self.exact.add_i128(self.int as i128 + i as i128);
                self.int = 0;
            }
        }
    }

    pub fn merge(&mut self, o: &Sum) {
        self.n += o.n;
        self.is_float |= o.is_float;
        self.add_int(o.int);
        self.exact.merge(&o.exact);
    }

    /// The exact total (integers and floats together).
    fn total(&self) -> ExactSum {
        let mut t = self.exact.clone();
        t.add_i128(self.int as i128);
        t
    }

    /// The total rounded once to a double.
    pub fn to_f64(&self) -> f64 {
        if self.exact.is_empty() {
            self.int as f64
        } else {
            self.total().to_f64()
        }
    }

    /// None when no value was added (SQL: SUM of no rows is NULL).
    pub fn value(&self) -> Option<Num> {
        if self.n == 0 {
            None
        } else if self.is_float {
            Some(Num::Float(self.to_f64()))
        } else if self.exact.is_empty() {
            Some(Num::Int(self.int))
        } else {
            let t = self.total();
            Some(t.to_i64().map_or_else(|| Num::Float(t.to_f64()), Num::Int))
        }
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.exact.memory_bytes()
    }
}

/// MIN (`is_max = false`) or MAX.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Extreme {
    pub is_max: bool,
    pub value: Option<Num>,
}

impl Extreme {
    pub fn new(is_max: bool) -> Self {
        Extreme {
            is_max,
            value: None,
        }
    }

    pub fn add(&mut self, v: Num) {
        if let Num::Float(f) = v {
            if f.is_nan() {
                return;
            }
        }
        self.value = Some(match self.value {
            None => v,
            Some(cur) => {
                let better = if self.is_max {
                    v.cmp_num(cur) == Ordering::Greater
                } else {
                    v.cmp_num(cur) == Ordering::Less
                };
                if better {
                    v
                } else {
                    cur
                }
            }
        });
    }

    pub fn merge(&mut self, o: &Extreme) {
        if let Some(v) = o.value {
            self.add(v);
        }
    }
}

/// AVG: the exact [`Sum`] rounded once, divided by the count (so the same bits whatever
/// the order of additions and merges).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Avg {
    sum: Sum,
}

impl Avg {
    pub fn add(&mut self, v: Num) {
        self.sum.add(v);
    }

    pub fn merge(&mut self, o: &Avg) {
        self.sum.merge(&o.sum);
    }

    pub fn value(&self) -> Option<f64> {
        let n = self.sum.count();
        (n > 0).then(|| self.sum.to_f64() / n as f64)
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.sum.memory_bytes()
    }
}

/// An exact sum of finite `f64`s and `i64`s: a fixed-point number counted in units of
/// 2⁻¹⁰⁷⁴ (the smallest subnormal), so every finite double is an integer multiple of the
/// unit and every sum of them is exact. The number is held in signed 64-bit limbs of 32-bit
/// digits ("carry-save": a limb may hold more than 32 bits between normalizations), only
/// over the range of digits the added values touch. The value does not depend on the order
/// of additions and merges, and [`ExactSum::to_f64`] rounds it once, to nearest-even, so
/// the result is the same bits whatever the order. (Neal's "superaccumulator", sized down
/// to the digits in use; see docs/metrics.md, "Exact sums".)
#[derive(Debug, Clone, Default)]
pub struct ExactSum {
    /// Global index of `limbs[0]`: limb `i` weighs 2^(32·(lo + i)) units.
    lo: u32,
    limbs: Vec<i64>,
    /// Additions since the last normalization; each adds less than 2³² to a limb.
    pending: u32,
}

/// Normalize once this many additions may have piled up in a limb (keeps |limb| < 2⁶³).
const PENDING_LIMIT: u32 = 1 << 29;
/// Limbs a value may span: 2¹⁰²⁴ / 2⁻¹⁰⁷⁴ needs 66 digits, plus room for 2⁶⁴ additions.
const MAX_LIMBS: u32 = 72;

impl PartialEq for ExactSum {
    fn eq(&self, other: &Self) -> bool {
        let (mut a, mut b) = (self.clone(), other.clone());
        a.normalize();
        b.normalize();
        a.trim();
        b.trim();
        (a.limbs.is_empty() && b.limbs.is_empty()) || (a.lo == b.lo && a.limbs == b.limbs)
    }
}

impl ExactSum {
    /// Adds `±mag · 2^shift` units.
    fn add_shifted(&mut self, mag: u128, shift: u32, negative: bool) {
        if mag == 0 {
            return;
        }
        if self.pending >= PENDING_LIMIT {
            self.normalize();
        }
        self.pending += 1;
        let k0 = shift / 32;
        let r = shift % 32;
        // mag · 2^r spans at most 160 bits: `low` and the bits shifted out of it.
        let low = mag << r;
        let high = if r == 0 { 0 } else { (mag >> (128 - r)) as u64 };
        let bits = 128 - mag.leading_zeros() + r;
        let nd = bits.div_ceil(32);
        self.reserve(k0, k0 + nd - 1);
        let base = (k0 - self.lo) as usize;
        let Some(limbs) = self.limbs.get_mut(base..base + nd as usize) else {
            return;
        };
        for (j, l) in limbs.iter_mut().enumerate() {
            let d = if j < 4 {
                ((low >> (32 * j)) & 0xFFFF_FFFF) as i64
            } else {
                high as i64
            };
            if negative {
                *l -= d
            } else {
                *l += d
            }
        }
    }

    /// Makes limbs `from..=to` (global indices) exist.
    #[inline]
    fn reserve(&mut self, from: u32, to: u32) {
        if from >= self.lo && ((to - self.lo) as usize) < self.limbs.len() {
            return;
        }
        if self.limbs.is_empty() {
            self.lo = from;
            self.limbs = vec![0; (to - from + 1) as usize];
            return;
        }
        if from < self.lo {
            let extra = (self.lo - from) as usize;
            self.limbs.splice(0..0, std::iter::repeat_n(0, extra));
            self.lo = from;
        }
        let end = self.lo as usize + self.limbs.len();
        if to as usize >= end {
            self.limbs.resize(to as usize + 1 - self.lo as usize, 0);
        }
    }

    /// Adds a finite double (non-finite values are the caller's to refuse; they are
    /// ignored here).
    pub fn add_f64(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        let bits = x.to_bits();
        let exp = ((bits >> 52) & 0x7FF) as u32;
        let frac = bits & ((1u64 << 52) - 1);
        let (mant, shift) = if exp == 0 {
            (frac, 0)
        } else {
            (frac | (1u64 << 52), exp - 1)
        };
        self.add_shifted(mant as u128, shift, x.is_sign_negative());
    }

    /// Adds an integer exactly.
    pub fn add_i128(&mut self, i: i128) {
        self.add_shifted(i.unsigned_abs(), 1074, i < 0);
    }

    pub fn merge(&mut self, o: &ExactSum) {
        if o.limbs.is_empty() {
            return;
        }
        self.reserve(o.lo, o.lo + o.limbs.len() as u32 - 1);
        for (i, l) in o.limbs.iter().enumerate() {
            let idx = (o.lo - self.lo) as usize + i;
            if let Some(s) = self.limbs.get_mut(idx) {
                *s += *l;
            }
        }
        self.pending += o.pending + 1;
        if self.pending >= PENDING_LIMIT {
            self.normalize();
        }
    }

    /// Propagates carries: every limb but the top one ends in `[0, 2³²)`, the top one in
    /// `[-2³², 2³²)`.
    fn normalize(&mut self) {
        let n = self.limbs.len();
        for i in 0..n {
            let c = self.limbs[i] >> 32;
            if c != 0 && i + 1 < n {
                self.limbs[i] -= c << 32;
                self.limbs[i + 1] += c;
            }
        }
        // The top limb: carry upward while it is out of one digit's range (a negative
        // number keeps a small negative top limb).
        while let Some(&top) = self.limbs.last() {
            if (-(1i64 << 32)..(1i64 << 32)).contains(&top) {
                break;
            }
            let c = top >> 32;
            if let Some(t) = self.limbs.last_mut() {
                *t -= c << 32;
            }
            self.limbs.push(c);
        }
        self.pending = 0;
    }

    /// Drops zero limbs at both ends (after [`ExactSum::normalize`]).
    fn trim(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
        let zeros = self.limbs.iter().take_while(|l| **l == 0).count();
        if zeros > 0 {
            self.limbs.drain(..zeros);
            self.lo += zeros as u32;
        }
        if self.limbs.is_empty() {
            self.lo = 0;
        }
    }

    /// Nothing was ever added.
    pub fn is_empty(&self) -> bool {
        self.limbs.is_empty()
    }

    pub fn is_zero(&self) -> bool {
        let mut c = self.clone();
        c.normalize();
        c.trim();
        c.limbs.is_empty()
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.limbs.capacity() * 8
    }

    /// The sum rounded once to the nearest double (ties to even); ±infinity beyond the
    /// range of doubles.
    pub fn to_f64(&self) -> f64 {
        let (negative, m) = self.magnitude();
        let Some(&top) = m.limbs.last() else {
            return 0.0;
        };
        // Magnitude = Σ limbs[i] · 2^(32·(lo+i)), every limb in [0, 2³²).
        let top_idx = m.lo + m.limbs.len() as u32 - 1;
        let bitlen = 32 * top_idx + (64 - top.leading_zeros());
        let bit = |pos: u32| m.bit(pos);
        let mag = if bitlen <= 53 {
            // Exact: at most 53 bits over units of 2⁻¹⁰⁷⁴ (a subnormal or the smallest
            // normals), so the product below is exact.
            let mut v = 0u64;
            for pos in 0..bitlen {
                v |= bit(pos) << pos;
            }
            v as f64 * f64::from_bits(1)
        } else {
            let mut shift = bitlen - 53;
            let mut top53 = 0u64;
            for pos in shift..bitlen {
                top53 |= bit(pos) << (pos - shift);
            }
            let round = bit(shift - 1) == 1;
            let sticky = (m.lo * 32..shift - 1).any(|p| bit(p) == 1);
            if round && (sticky || top53 & 1 == 1) {
                top53 += 1;
                if top53 == 1 << 53 {
                    top53 >>= 1;
                    shift += 1;
                }
            }
            // value = top53 · 2^(shift − 1074), top53 in [2⁵², 2⁵³): leading bit 2^(shift − 1022).
            let e = shift as i64 - 1022;
            if e > 1023 {
                f64::INFINITY
            } else {
                f64::from_bits((((e + 1023) as u64) << 52) | (top53 & ((1u64 << 52) - 1)))
            }
        };
        if negative {
            -mag
        } else {
            mag
        }
    }

    /// The sum as an integer when it is one that fits an `i64`.
    pub fn to_i64(&self) -> Option<i64> {
        let (negative, m) = self.magnitude();
        let Some(&top) = m.limbs.last() else {
            return Some(0);
        };
        let top_idx = m.lo + m.limbs.len() as u32 - 1;
        let bitlen = 32 * top_idx + (64 - top.leading_zeros());
        // Integers are multiples of 2¹⁰⁷⁴ units: no bit below 1074, at most 64 above.
        if m.lo * 32 < 1074 && (m.lo * 32..1074).any(|p| m.bit(p) == 1) {
            return None;
        }
        if bitlen > 1074 + 64 {
            return None;
        }
        let mut v = 0u64;
        for pos in 1074..bitlen {
            v |= m.bit(pos) << (pos - 1074);
        }
        if negative {
            0i64.checked_sub_unsigned(v)
        } else {
            i64::try_from(v).ok()
        }
    }

    /// (sign, magnitude): normalized, trimmed, every limb in `[0, 2³²)`.
    fn magnitude(&self) -> (bool, ExactSum) {
        let mut m = self.clone();
        m.normalize();
        m.trim();
        let negative = m.limbs.last().is_some_and(|t| *t < 0);
        if negative {
            for l in m.limbs.iter_mut() {
                *l = -*l;
            }
            m.normalize();
            m.trim();
        }
        (negative, m)
    }

    /// Bit `pos` of a magnitude.
    fn bit(&self, pos: u32) -> u64 {
        let k = pos / 32;
        if k < self.lo {
            return 0;
        }
        self.limbs
            .get((k - self.lo) as usize)
            .map_or(0, |l| ((*l as u64) >> (pos % 32)) & 1)
    }
}

/// The checkpointed form: normalized, trimmed limbs.
#[derive(Serialize, Deserialize)]
struct ExactRepr {
    lo: u32,
    limbs: Vec<i64>,
}

impl Serialize for ExactSum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = self.clone();
        m.normalize();
        m.trim();
        ExactRepr {
            lo: m.lo,
            limbs: m.limbs,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ExactSum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = ExactRepr::deserialize(d)?;
        if r.lo as u64 + r.limbs.len() as u64 > MAX_LIMBS as u64 {
            return Err(serde::de::Error::custom("exact sum out of range"));
        }
        if r.limbs.iter().any(|l| l.unsigned_abs() > 1 << 62) {
            return Err(serde::de::Error::custom("exact sum limb out of range"));
        }
        let mut e = ExactSum {
            lo: r.lo,
            limbs: r.limbs,
            pending: 0,
        };
        e.normalize();
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    /// Shewchuk's exact partials with the correctly rounded final step of Python's
    /// `math.fsum`: an independent reference for the exact, once-rounded sum (inputs kept
    /// below 1e300 so no partial overflows).
    fn fsum(xs: &[f64]) -> f64 {
        let mut partials: Vec<f64> = Vec::new();
        for &x0 in xs {
            let mut x = x0;
            let mut i = 0;
            for j in 0..partials.len() {
                let mut y = partials[j];
                if x.abs() < y.abs() {
                    std::mem::swap(&mut x, &mut y);
                }
                let hi = x + y;
                let lo = y - (hi - x);
                if lo != 0.0 {
                    partials[i] = lo;
                    i += 1;
                }
                x = hi;
            }
            partials.truncate(i);
            partials.push(x);
        }
        let mut n = partials.len();
        let mut hi = 0.0;
        if n > 0 {
            n -= 1;
            hi = partials[n];
            let mut lo = 0.0;
            while n > 0 {
                let x = hi;
                n -= 1;
                let y = partials[n];
                hi = x + y;
                let yr = hi - x;
                lo = y - yr;
                if lo != 0.0 {
                    break;
                }
            }
            if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0))
            {
                let y = lo * 2.0;
                let x = hi + y;
                let yr = x - hi;
                if y == yr {
                    hi = x;
                }
            }
        }
        hi
    }

    fn exact_of(xs: &[f64]) -> f64 {
        let mut e = ExactSum::default();
        for x in xs {
            e.add_f64(*x);
        }
        e.to_f64()
    }

    /// Doubles over the whole exponent range (subnormals included), both signs.
    fn any_double() -> impl Strategy<Value = f64> {
        prop_oneof![
            (any::<u64>()).prop_map(|b| f64::from_bits(
                b & !(0x7FFu64 << 52) | (((b >> 52) & 0x7FF) % 0x7F0) << 52
            )),
            (-1e6f64..1e6),
            (0u32..1000).prop_map(|i| i as f64 * 0.1),
            (any::<i32>()).prop_map(|i| i as f64 * 1e-3),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if std::env::var("WEIR_LONG_TESTS").is_ok() { 5000 } else { 256 }))]

        /// Any permutation and any split into merged parts (through a checkpoint's JSON
        /// and back) gives identical bits for SUM and AVG: serve and run agree.
        #[test]
        fn sum_avg_identical_bits_under_any_order_and_merge(
            xs in proptest::collection::vec(prop_oneof![
                any_double().prop_map(Num::Float),
                any::<i64>().prop_map(Num::Int),
                (-1000i64..1000).prop_map(Num::Int),
            ], 0..60),
            seed in any::<u64>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..5),
        ) {
            let mut one = Sum::default();
            let mut avg1 = Avg::default();
            for v in &xs {
                one.add(*v);
                avg1.add(*v);
            }
            let mut ys = xs.clone();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            ys.shuffle(&mut rng);
            let mut bounds: Vec<usize> = cuts.iter().map(|c| if ys.is_empty() { 0 } else { c % (ys.len() + 1) }).collect();
            bounds.push(0);
            bounds.push(ys.len());
            bounds.sort_unstable();
            let mut parts = Vec::new();
            for w in bounds.windows(2) {
                let mut s = Sum::default();
                let mut a = Avg::default();
                for v in &ys[w[0]..w[1]] {
                    s.add(*v);
                    a.add(*v);
                }
                let s: Sum = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
                let a: Avg = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
                parts.push((s, a));
            }
            parts.shuffle(&mut rng);
            let (mut s2, mut a2) = (Sum::default(), Avg::default());
            for (s, a) in &parts {
                s2.merge(s);
                a2.merge(a);
            }
            let bits = |n: Option<Num>| n.map(|n| match n { Num::Int(i) => (0, i as u64), Num::Float(f) => (1, f.to_bits()) });
            prop_assert_eq!(bits(one.value()), bits(s2.value()));
            prop_assert_eq!(avg1.value().map(f64::to_bits), a2.value().map(f64::to_bits));
        }

        /// The exact sum rounded once equals Shewchuk/fsum's correctly rounded sum.
        #[test]
        fn exact_sum_equals_fsum_reference(xs in proptest::collection::vec(
            any_double().prop_filter("no overflow in the reference", |x| x.abs() < 1e300), 0..80)) {
            prop_assert_eq!(exact_of(&xs).to_bits(), fsum(&xs).to_bits());
        }

        /// Multiples of 2⁻²⁰: the exact sum is an i128 of units, rounded once by `as f64`.
        #[test]
        fn exact_sum_equals_integer_reference(ks in proptest::collection::vec(-(1i64 << 60)..(1i64 << 60), 0..100)) {
            let scale = 2f64.powi(-20);
            let xs: Vec<f64> = ks.iter().map(|k| *k as f64 * scale).collect();
            let total: i128 = xs.iter().map(|x| (x / scale) as i128).sum();
            prop_assert_eq!(exact_of(&xs).to_bits(), ((total as f64) * scale).to_bits());
        }
    }

    #[test]
    fn float_sum_does_not_depend_on_order() {
        // Naively (0.1 + 0.2) + 0.3 = 0.6000000000000001 but 0.1 + (0.2 + 0.3) = 0.6.
        assert_ne!((0.1 + 0.2) + 0.3, 0.1 + (0.2 + 0.3));
        let sum = |xs: &[f64]| {
            let mut s = Sum::default();
            xs.iter().for_each(|x| s.add(Num::Float(*x)));
            s.value()
        };
        assert_eq!(sum(&[0.1, 0.2, 0.3]), Some(Num::Float(0.6)));
        assert_eq!(sum(&[0.3, 0.2, 0.1]), Some(Num::Float(0.6)));
    }

    #[test]
    fn exact_sum_edges() {
        // Cancellation far beyond a double's precision, no intermediate overflow.
        assert_eq!(exact_of(&[1e308, 1e308, -1e308]), 1e308);
        assert_eq!(exact_of(&[1e308, 1.0, -1e308]), 1.0);
        assert_eq!(exact_of(&[f64::MAX, f64::MAX]), f64::INFINITY);
        assert_eq!(exact_of(&[-f64::MAX, -f64::MAX]), f64::NEG_INFINITY);
        let tiny = f64::from_bits(1);
        assert_eq!(exact_of(&[tiny, tiny, tiny]), f64::from_bits(3));
        assert_eq!(exact_of(&[1.0, tiny, -1.0]), tiny);
        assert_eq!(exact_of(&[]), 0.0);
        // Ties round to even: 2^53 + 1 is halfway between 2^53 and 2^53 + 2.
        assert_eq!(exact_of(&[9007199254740992.0, 1.0]), 9007199254740992.0);
        assert_eq!(
            exact_of(&[9007199254740992.0, 1.0, tiny]),
            9007199254740994.0
        );
        // Integer overflow on the way is not visible in the result.
        let mut a = Sum::default();
        for i in [i64::MAX, 1, -5] {
            a.add(Num::Int(i));
        }
        assert_eq!(a.value(), Some(Num::Int(i64::MAX - 4)));
        let mut b = Sum::default();
        for i in [i64::MAX, i64::MAX] {
            b.add(Num::Int(i));
        }
        assert_eq!(b.value(), Some(Num::Float(2.0 * i64::MAX as f64)));
        let mut c = Sum::default();
        for i in [i64::MIN, -1, 1] {
            c.add(Num::Int(i));
        }
        assert_eq!(c.value(), Some(Num::Int(i64::MIN)));
    }

    #[test]
    fn exact_sum_refuses_corrupt_checkpoints() {
        assert!(serde_json::from_str::<ExactSum>(r#"{"lo":70,"limbs":[1,2,3,4]}"#).is_err());
        assert!(
            serde_json::from_str::<ExactSum>(r#"{"lo":0,"limbs":[9223372036854775807]}"#).is_err()
        );
        let e: ExactSum = serde_json::from_str(r#"{"lo":33,"limbs":[262144]}"#).unwrap();
        assert_eq!(e.to_f64(), 1.0);
    }

    #[test]
    fn sum_stays_integer_then_overflows_to_float() {
        let mut s = Sum::default();
        assert_eq!(s.value(), None);
        s.add(Num::Int(2));
        s.add(Num::Int(3));
        assert_eq!(s.value(), Some(Num::Int(5)));
        s.add(Num::Int(i64::MAX));
        assert!(matches!(s.value(), Some(Num::Float(_))));
        let mut f = Sum::default();
        f.add(Num::Float(0.5));
        f.add(Num::Int(1));
        assert_eq!(f.value(), Some(Num::Float(1.5)));
    }

    #[test]
    fn min_max_avg() {
        let mut mn = Extreme::new(false);
        let mut mx = Extreme::new(true);
        let mut avg = Avg::default();
        for v in [
            Num::Int(3),
            Num::Float(-1.5),
            Num::Int(10),
            Num::Float(f64::NAN),
        ] {
            mn.add(v);
            mx.add(v);
        }
        for v in [Num::Int(1), Num::Int(2)] {
            avg.add(v);
        }
        assert_eq!(mn.value, Some(Num::Float(-1.5)));
        assert_eq!(mx.value, Some(Num::Int(10)));
        assert_eq!(avg.value(), Some(1.5));
    }
}
