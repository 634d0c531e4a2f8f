//! One value-driven API over every aggregate, for the METRIC evaluator: build an
//! [`Accumulator`] per SELECT item from an [`AccSpec`] and [`SketchOptions`], feed it
//! [`Value`]s, merge pane states, and render the output value of §7 of the language.
//! A group's state is an [`AggState`] (one accumulator per SELECT item).

use crate::bloom::Bloom;
use crate::exact::{Avg, Count, Extreme, Num, Sum};
use crate::hash::StableHasher;
use crate::hll::Hll;
use crate::options::SketchOptions;
use crate::quantiles::DDSketch;
use crate::topk::{Item, ItemRef, TopK};
use crate::{Sketch, SketchError};
use serde::{Deserialize, Serialize};
use std::hash::Hasher;

/// An input value, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Value<'_> {
    fn num(&self) -> Option<Num> {
        match *self {
            Value::Int(i) => Some(Num::Int(i)),
            Value::Float(f) if f.is_finite() => Some(Num::Float(f)),
            _ => None,
        }
    }

    /// Stable hash; a float equal to an integer hashes as that integer (1 and 1.0 are the
    /// same value, as in SQL).
    pub fn stable_hash(&self) -> u64 {
        let mut h = StableHasher::default();
        match *self {
            Value::Null => h.write_u8(0),
            Value::Bool(b) => {
                h.write_u8(1);
                h.write_u8(b as u8)
            }
            Value::Int(i) => {
                h.write_u8(2);
                h.write_i64(i)
            }
            Value::Float(f) => {
                if f.fract() == 0.0 && (-9.2e18..=9.2e18).contains(&f) {
                    h.write_u8(2);
                    h.write_i64(f as i64)
                } else {
                    h.write_u8(3);
                    h.write_u64(f.to_bits())
                }
            }
            Value::Str(s) => {
                h.write_u8(4);
                h.write(s.as_bytes());
                h.write_usize(s.len())
            }
        }
        h.finish()
    }

    /// The borrowed form used to count top-k items.
    pub fn to_item_ref(&self) -> ItemRef<'_> {
        match *self {
            Value::Null => ItemRef::Null,
            Value::Bool(b) => ItemRef::Bool(b),
            Value::Int(i) => ItemRef::Int(i),
            Value::Float(f) => {
                if f.fract() == 0.0 && (-9.2e18..=9.2e18).contains(&f) {
                    ItemRef::Int(f as i64)
                } else {
                    ItemRef::Float(f.to_bits())
                }
            }
            Value::Str(s) => ItemRef::Str(s),
        }
    }

    /// The owned form stored in top-k lists.
    pub fn to_item(&self) -> Item {
        match *self {
            Value::Null => Item::Null,
            Value::Bool(b) => Item::Bool(b),
            Value::Int(i) => Item::Int(i),
            Value::Float(f) => {
                if f.fract() == 0.0 && (-9.2e18..=9.2e18).contains(&f) {
                    Item::Int(f as i64)
                } else {
                    Item::Float(f.to_bits())
                }
            }
            Value::Str(s) => Item::Str(s.to_string()),
        }
    }
}

/// What one SELECT item computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccSpec {
    /// COUNT(*): every row.
    CountStar,
    /// COUNT(expr): rows where expr is not NULL.
    Count,
    Sum,
    Min,
    Max,
    Avg,
    /// APPROX_COUNT_DISTINCT(expr)
    CountDistinct,
    /// APPROX_PERCENTILE(expr, f1, f2, ...): fractions as written (e.g. "0.99").
    Percentile {
        fractions: Vec<String>,
    },
    /// APPROX_TOP_K(expr, k)
    TopK {
        k: u32,
    },
    /// APPROX_SET(expr)
    Set,
}

/// The running state of one SELECT item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Accumulator {
    Count {
        count: Count,
        count_nulls: bool,
    },
    Sum(Sum),
    Extreme(Extreme),
    Avg(Avg),
    CountDistinct(Box<Hll>),
    Percentile {
        sketch: Box<DDSketch>,
        /// (text as written, parsed fraction)
        fractions: Vec<(String, f64)>,
    },
    TopK {
        sketch: Box<TopK>,
        k: u32,
    },
    Set(Box<Bloom>),
}

impl AccSpec {
    /// A new empty accumulator. Errors on bad fractions, k = 0 or bad options.
    pub fn build(&self, opts: &SketchOptions) -> Result<Accumulator, SketchError> {
        Ok(match self {
            AccSpec::CountStar => Accumulator::Count {
                count: Count(0),
                count_nulls: true,
            },
            AccSpec::Count => Accumulator::Count {
                count: Count(0),
                count_nulls: false,
            },
            AccSpec::Sum => Accumulator::Sum(Sum::default()),
            AccSpec::Min => Accumulator::Extreme(Extreme::new(false)),
            AccSpec::Max => Accumulator::Extreme(Extreme::new(true)),
            AccSpec::Avg => Accumulator::Avg(Avg::default()),
            AccSpec::CountDistinct => {
                Accumulator::CountDistinct(Box::new(Hll::new(opts.hll_precision)?))
            }
            AccSpec::Percentile { fractions } => {
                if fractions.is_empty() {
                    return Err(SketchError::InvalidParameter(
                        "APPROX_PERCENTILE needs at least one fraction".into(),
                    ));
                }
                let mut fs = Vec::with_capacity(fractions.len());
                for f in fractions {
                    let x: f64 = f.trim().parse().map_err(|_| {
                        SketchError::InvalidParameter(format!("percentile fraction '{f}'"))
                    })?;
                    if !(0.0..=1.0).contains(&x) {
                        return Err(SketchError::InvalidParameter(format!(
                            "percentile fraction {f} is not between 0 and 1"
                        )));
                    }
                    fs.push((f.clone(), x));
                }
                Accumulator::Percentile {
                    sketch: Box::new(DDSketch::with_max_bins(
                        opts.percentile_error,
                        opts.percentile_max_bins,
                    )?),
                    fractions: fs,
                }
            }
            AccSpec::TopK { k } => {
                if *k == 0 {
                    return Err(SketchError::InvalidParameter(
                        "APPROX_TOP_K needs k ≥ 1".into(),
                    ));
                }
                let cap = opts
                    .topk_capacity
                    .unwrap_or_else(|| TopK::default_capacity(*k))
                    .max(*k);
                Accumulator::TopK {
                    sketch: Box::new(TopK::new(cap)?),
                    k: *k,
                }
            }
            AccSpec::Set => {
                Accumulator::Set(Box::new(Bloom::new(opts.bloom_capacity, opts.bloom_fpp)?))
            }
        })
    }
}

impl Accumulator {
    /// Feed one value. Returns false when the value was ignored (NULL, or not a number
    /// for a numeric aggregate).
    pub fn update(&mut self, v: Value<'_>) -> bool {
        match self {
            Accumulator::Count { count, count_nulls } => {
                if *count_nulls || v != Value::Null {
                    count.0 += 1;
                    true
                } else {
                    false
                }
            }
            Accumulator::Sum(s) => v.num().map(|n| s.add(n)).is_some(),
            Accumulator::Extreme(e) => v.num().map(|n| e.add(n)).is_some(),
            Accumulator::Avg(a) => v.num().map(|n| a.add(n)).is_some(),
            Accumulator::Percentile { sketch, .. } => {
                v.num().map(|n| sketch.add(n.as_f64())).unwrap_or(false)
            }
            Accumulator::CountDistinct(h) => {
                if v == Value::Null {
                    return false;
                }
                h.insert_hash(v.stable_hash());
                true
            }
            Accumulator::TopK { sketch, .. } => {
                if v == Value::Null {
                    return false;
                }
                sketch.insert_ref(v.to_item_ref(), 1);
                true
            }
            Accumulator::Set(b) => {
                if v == Value::Null {
                    return false;
                }
                b.insert_hash(v.stable_hash());
                true
            }
        }
    }

    /// For APPROX_SET: was the value (probably) seen? None for other kinds.
    pub fn might_contain(&self, v: Value<'_>) -> Option<bool> {
        match self {
            Accumulator::Set(b) => Some(b.contains_hash(v.stable_hash())),
            _ => None,
        }
    }

    pub fn merge(&mut self, other: &Accumulator) -> Result<(), SketchError> {
        match (self, other) {
            (Accumulator::Count { count: a, .. }, Accumulator::Count { count: b, .. }) => {
                a.0 += b.0
            }
            (Accumulator::Sum(a), Accumulator::Sum(b)) => a.merge(b),
            (Accumulator::Extreme(a), Accumulator::Extreme(b)) if a.is_max == b.is_max => {
                a.merge(b)
            }
            (Accumulator::Avg(a), Accumulator::Avg(b)) => a.merge(b),
            (Accumulator::CountDistinct(a), Accumulator::CountDistinct(b)) => a.merge(b)?,
            (
                Accumulator::Percentile { sketch: a, .. },
                Accumulator::Percentile { sketch: b, .. },
            ) => a.merge(b)?,
            (Accumulator::TopK { sketch: a, .. }, Accumulator::TopK { sketch: b, .. }) => {
                a.merge(b)?
            }
            (Accumulator::Set(a), Accumulator::Set(b)) => a.merge(b)?,
            (a, b) => {
                return Err(SketchError::Incompatible(format!(
                    "cannot merge {} with {}",
                    a.kind_name(),
                    b.kind_name()
                )))
            }
        }
        Ok(())
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Accumulator::Count { .. } => "COUNT",
            Accumulator::Sum(_) => "SUM",
            Accumulator::Extreme(e) if e.is_max => "MAX",
            Accumulator::Extreme(_) => "MIN",
            Accumulator::Avg(_) => "AVG",
            Accumulator::CountDistinct(_) => "APPROX_COUNT_DISTINCT",
            Accumulator::Percentile { .. } => "APPROX_PERCENTILE",
            Accumulator::TopK { .. } => "APPROX_TOP_K",
            Accumulator::Set(_) => "APPROX_SET",
        }
    }

    pub fn memory_bytes(&self) -> usize {
        let inner = match self {
            Accumulator::CountDistinct(h) => h.memory_bytes(),
            Accumulator::Percentile { sketch, fractions } => {
                sketch.memory_bytes() + fractions.capacity() * 32
            }
            Accumulator::TopK { sketch, .. } => sketch.memory_bytes(),
            Accumulator::Set(b) => b.memory_bytes(),
            Accumulator::Sum(s) => s.memory_bytes(),
            Accumulator::Avg(a) => a.memory_bytes(),
            _ => 0,
        };
        std::mem::size_of::<Self>() + inner
    }

    /// The output value of §7: numbers for exact aggregates and distinct counts (NULL for
    /// SUM/MIN/MAX/AVG of no rows), percentiles as a number or an object keyed by the
    /// fraction as written, top-k as `[{"value","count","error"}]`, sets as
    /// `{"approx_count": n}`.
    pub fn result_json(&self) -> serde_json::Value {
        use serde_json::{json, Value as J};
        let num = |f: f64| {
            serde_json::Number::from_f64(f)
                .map(J::Number)
                .unwrap_or(J::Null)
        };
        match self {
            Accumulator::Count { count, .. } => count.0.into(),
            Accumulator::Sum(s) => s.value().map(Num::to_json).unwrap_or(J::Null),
            Accumulator::Extreme(e) => e.value.map(Num::to_json).unwrap_or(J::Null),
            Accumulator::Avg(a) => a.value().map(num).unwrap_or(J::Null),
            Accumulator::CountDistinct(h) => (h.estimate().round() as u64).into(),
            Accumulator::Percentile { sketch, fractions } => {
                let q = |f: f64| sketch.quantile(f).map(num).unwrap_or(J::Null);
                if let [(_, f)] = fractions.as_slice() {
                    q(*f)
                } else {
                    J::Object(fractions.iter().map(|(t, f)| (t.clone(), q(*f))).collect())
                }
            }
            Accumulator::TopK { sketch, k } => J::Array(
                sketch
                    .top(*k as usize)
                    .into_iter()
                    .map(|e| json!({"value": e.item.to_json(), "count": e.count, "error": e.error}))
                    .collect(),
            ),
            Accumulator::Set(b) => json!({"approx_count": b.approx_count().round() as u64}),
        }
    }
}

impl Sketch for Accumulator {
    const KIND: u8 = 16;

    fn merge(&mut self, other: &Self) -> Result<(), SketchError> {
        Accumulator::merge(self, other)
    }

    fn memory_bytes(&self) -> usize {
        Accumulator::memory_bytes(self)
    }

    fn validate(&self) -> Result<(), SketchError> {
        match self {
            Accumulator::CountDistinct(h) => h.validate(),
            Accumulator::Percentile { sketch, fractions } => {
                if fractions.iter().any(|(_, f)| !(0.0..=1.0).contains(f)) {
                    return Err(SketchError::Decode("bad percentile fraction".into()));
                }
                sketch.validate()
            }
            Accumulator::TopK { sketch, .. } => sketch.validate(),
            Accumulator::Set(b) => b.validate(),
            _ => Ok(()),
        }
    }
}

/// The state a window pane or group holds: anything mergeable and serializable.
pub trait AggState: Clone + Serialize + serde::de::DeserializeOwned {
    fn merge_from(&mut self, other: &Self) -> Result<(), SketchError>;
    fn memory_bytes(&self) -> usize;
}

impl AggState for Vec<Accumulator> {
    fn merge_from(&mut self, other: &Self) -> Result<(), SketchError> {
        if self.len() != other.len() {
            return Err(SketchError::Incompatible(format!(
                "states with {} and {} aggregates",
                self.len(),
                other.len()
            )));
        }
        for (a, b) in self.iter_mut().zip(other) {
            a.merge(b)?;
        }
        Ok(())
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.iter().map(Accumulator::memory_bytes).sum::<usize>()
    }
}

/// Build the state of a SELECT list.
pub fn build_state(
    specs: &[AccSpec],
    opts: &SketchOptions,
) -> Result<Vec<Accumulator>, SketchError> {
    specs.iter().map(|s| s.build(opts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_section_7_values() {
        let specs = vec![
            AccSpec::CountStar,
            AccSpec::Count,
            AccSpec::Sum,
            AccSpec::Avg,
            AccSpec::CountDistinct,
            AccSpec::Percentile {
                fractions: vec!["0.5".into(), "0.99".into()],
            },
            AccSpec::Percentile {
                fractions: vec!["0.5".into()],
            },
            AccSpec::TopK { k: 2 },
            AccSpec::Set,
        ];
        let mut st = build_state(&specs, &SketchOptions::default()).unwrap();
        let rows = [Value::Int(10), Value::Null, Value::Int(10), Value::Int(30)];
        for v in rows {
            for a in st.iter_mut() {
                a.update(v);
            }
        }
        let out: Vec<_> = st.iter().map(Accumulator::result_json).collect();
        assert_eq!(out[0], json!(4));
        assert_eq!(out[1], json!(3));
        assert_eq!(out[2], json!(50));
        assert!((out[3].as_f64().unwrap() - 50.0 / 3.0).abs() < 1e-9);
        assert_eq!(out[4], json!(2));
        assert!(out[5].get("0.5").is_some() && out[5].get("0.99").is_some());
        assert!(out[6].is_number());
        assert_eq!(out[7][0], json!({"value": 10, "count": 2, "error": 0}));
        assert_eq!(out[8], json!({"approx_count": 2}));
        assert_eq!(st[8].might_contain(Value::Float(30.0)), Some(true));
    }

    #[test]
    fn bad_specs_are_errors() {
        let o = SketchOptions::default();
        assert!(AccSpec::TopK { k: 0 }.build(&o).is_err());
        assert!(AccSpec::Percentile {
            fractions: vec!["1.5".into()]
        }
        .build(&o)
        .is_err());
        assert!(AccSpec::Percentile { fractions: vec![] }.build(&o).is_err());
    }

    #[test]
    fn merge_kind_mismatch_is_error() {
        let o = SketchOptions::default();
        let mut a = vec![AccSpec::Sum.build(&o).unwrap()];
        let b = vec![AccSpec::Avg.build(&o).unwrap()];
        assert!(a.merge_from(&b).is_err());
    }
}
