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

/// SUM: exact for integers (until i64 overflow, then float), float otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Sum {
    int: i64,
    #[serde(with = "crate::serde_f64")]
    float: f64,
    /// A float was added or the integer part overflowed.
    is_float: bool,
    n: u64,
}

impl Sum {
    pub fn add(&mut self, v: Num) {
        self.n += 1;
        match v {
            Num::Int(i) if !self.is_float => match self.int.checked_add(i) {
                Some(s) => self.int = s,
                None => {
                    self.is_float = true;
                    self.float += self.int as f64 + i as f64;
                    self.int = 0;
                }
            },
            v => {
                self.is_float = true;
                self.float += v.as_f64();
            }
        }
    }

    pub fn merge(&mut self, o: &Sum) {
        self.n += o.n;
        if !self.is_float && !o.is_float {
            if let Some(s) = self.int.checked_add(o.int) {
                self.int = s;
                return;
            }
        }
        self.is_float = true;
        self.float += o.float + o.int as f64 + self.int as f64;
        self.int = 0;
    }

    /// None when no value was added (SQL: SUM of no rows is NULL).
    pub fn value(&self) -> Option<Num> {
        if self.n == 0 {
            None
        } else if self.is_float {
            Some(Num::Float(self.float + self.int as f64))
        } else {
            Some(Num::Int(self.int))
        }
    }

    pub fn count(&self) -> u64 {
        self.n
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

/// AVG as (sum, count).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Avg {
    #[serde(with = "crate::serde_f64")]
    sum: f64,
    n: u64,
}

impl Avg {
    pub fn add(&mut self, v: Num) {
        self.sum += v.as_f64();
        self.n += 1;
    }

    pub fn merge(&mut self, o: &Avg) {
        self.sum += o.sum;
        self.n += o.n;
    }

    pub fn value(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
