//! Mergeable, serializable sketches and window panes for weir's METRIC statements.
//!
//! Every sketch implements [`Sketch`]: `merge`, `memory_bytes`, and a versioned binary
//! encoding (`to_bytes` / `from_bytes`: one format-version byte, one kind byte, then a
//! postcard payload). Each also derives serde so the engine can embed it in checkpoints.
//! Updating and estimating differ per sketch (an item for [`hll::Hll`], a number for
//! [`quantiles::DDSketch`], …) and live on the types themselves; [`accumulator::Accumulator`]
//! wraps them all behind one value-driven API for the METRIC evaluator.
//!
//! The [`window`] module holds event-time windows (tumbling, hopping, sliding, session) over
//! panes of any mergeable state, grouped by key with a cardinality guard.
//!
//! How the METRIC evaluator plugs in (one `Vec<Accumulator>` per group and pane):
//!
//! ```
//! use sketches::accumulator::{build_state, AccSpec, Value};
//! use sketches::options::SketchOptions;
//! use sketches::window::{AddOutcome, WindowConfig, WindowKind, Windowed};
//!
//! // SELECT COUNT(*), APPROX_COUNT_DISTINCT(user) ... GROUP BY country
//! // WINDOW TUMBLING (SIZE 1 MINUTE) WITH (hll_precision = '14')
//! let mut opts = SketchOptions::default();
//! opts.set("hll_precision", "14").unwrap();
//! let proto = build_state(&[AccSpec::CountStar, AccSpec::CountDistinct], &opts).unwrap();
//! let mut windows = Windowed::new(WindowConfig::new(WindowKind::Tumbling { size: 60_000 }), proto).unwrap();
//!
//! let country = "US".to_string();
//! for (ts, user) in [(1_000, "ann"), (2_000, "bob"), (3_000, "ann")] {
//!     let outcome = windows
//!         .add(&country, ts, |state| {
//!             state[0].update(Value::Null);
//!             state[1].update(Value::Str(user));
//!         })
//!         .unwrap();
//!     assert_eq!(outcome, AddOutcome::Applied); // or Late / GroupDropped: count them
//! }
//! let closed = windows.advance_watermark(60_000).unwrap();
//! assert_eq!(closed.len(), 1);
//! let values: Vec<_> = closed[0].state.iter().map(|a| a.result_json()).collect();
//! assert_eq!(values, vec![serde_json::json!(3), serde_json::json!(2)]);
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod accumulator;
pub mod bloom;
pub mod exact;
pub mod hash;
pub mod hll;
pub mod options;
pub mod quantiles;
pub mod topk;
pub mod window;

use serde::{de::DeserializeOwned, Serialize};

/// Version of the binary encoding written by [`Sketch::to_bytes`] (first byte).
pub const FORMAT_VERSION: u8 = 1;

/// Errors from sketch construction, merging and decoding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SketchError {
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("cannot merge: {0}")]
    Incompatible(String),
    #[error("unsupported sketch format version {found} (this build reads version {expected})")]
    Version { found: u8, expected: u8 },
    #[error("wrong sketch kind: expected {expected}, found {found}")]
    Kind { expected: u8, found: u8 },
    #[error("corrupt sketch bytes: {0}")]
    Decode(String),
}

/// The common API of every sketch and accumulator.
pub trait Sketch: Clone + Serialize + DeserializeOwned {
    /// Kind byte written after the version byte.
    const KIND: u8;
    /// Version byte [`Sketch::to_bytes`] writes for this kind.
    const VERSION: u8 = FORMAT_VERSION;
    /// Version bytes [`Sketch::from_bytes`] reads (older layouts are converted on load).
    const READS: &'static [u8] = &[FORMAT_VERSION];
    /// Fold `other` into `self`; afterwards `self` summarises both inputs.
    fn merge(&mut self, other: &Self) -> Result<(), SketchError>;
    /// Approximate heap + inline bytes used by this sketch.
    fn memory_bytes(&self) -> usize;

    /// Versioned binary encoding.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![Self::VERSION, Self::KIND];
        // postcard into a Vec cannot fail for these plain data types; fall back to an
        // empty payload (decoding then reports a clear error) rather than panicking.
        match postcard::to_allocvec(self) {
            Ok(p) => out.extend_from_slice(&p),
            Err(_) => out.truncate(2),
        }
        out
    }

    /// Decode bytes produced by [`Sketch::to_bytes`].
    fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or_else(|| SketchError::Decode("empty input".into()))?;
        if !Self::READS.contains(&version) {
            return Err(SketchError::Version {
                found: version,
                expected: Self::VERSION,
            });
        }
        let (&kind, payload) = rest
            .split_first()
            .ok_or_else(|| SketchError::Decode("missing kind byte".into()))?;
        if kind != Self::KIND {
            return Err(SketchError::Kind {
                expected: Self::KIND,
                found: kind,
            });
        }
        let v: Self =
            postcard::from_bytes(payload).map_err(|e| SketchError::Decode(e.to_string()))?;
        v.validate()?;
        Ok(v)
    }

    /// Check invariants after decoding (sizes consistent with parameters, …).
    fn validate(&self) -> Result<(), SketchError> {
        Ok(())
    }
}

/// serde for `f64` fields that may hold ±∞/NaN: JSON has no such numbers, so in
/// human-readable formats they are written as the strings `"inf"`, `"-inf"`, `"nan"`.
pub(crate) mod serde_f64 {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() && !v.is_finite() {
            let t = if v.is_nan() {
                "nan"
            } else if *v > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            t.serialize(s)
        } else {
            v.serialize(s)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrText {
        N(f64),
        T(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        if d.is_human_readable() {
            match NumOrText::deserialize(d)? {
                NumOrText::N(v) => Ok(v),
                NumOrText::T(t) => match t.as_str() {
                    "inf" => Ok(f64::INFINITY),
                    "-inf" => Ok(f64::NEG_INFINITY),
                    "nan" => Ok(f64::NAN),
                    other => Err(serde::de::Error::custom(format!("not a number: {other}"))),
                },
            }
        } else {
            f64::deserialize(d)
        }
    }
}
