//! Accuracy options of a METRIC statement's `WITH (...)` clause that the sketches own.

use crate::{bloom, hll, quantiles, SketchError};
use serde::{Deserialize, Serialize};

/// Sketch parameters, from `WITH (hll_precision = '14', bloom_fpp = '0.001', ...)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SketchOptions {
    /// APPROX_COUNT_DISTINCT: `2^p` registers, 4..=18 (default 12: 4 KiB, ±1.6 %).
    pub hll_precision: u8,
    /// APPROX_SET: target false-positive rate (default 0.01).
    pub bloom_fpp: f64,
    /// APPROX_SET: items per window the filter is sized for (default 10 000).
    pub bloom_capacity: u64,
    /// APPROX_PERCENTILE: relative value error α (default 0.01 = 1 %).
    pub percentile_error: f64,
    /// APPROX_PERCENTILE: bucket limit per sign (default 2048).
    pub percentile_max_bins: u32,
    /// APPROX_TOP_K: items monitored (default `max(10·k, 64)`).
    pub topk_capacity: Option<u32>,
}

impl Default for SketchOptions {
    fn default() -> Self {
        SketchOptions {
            hll_precision: hll::DEFAULT_PRECISION,
            bloom_fpp: bloom::DEFAULT_FPP,
            bloom_capacity: bloom::DEFAULT_CAPACITY,
            percentile_error: quantiles::DEFAULT_ALPHA,
            percentile_max_bins: quantiles::DEFAULT_MAX_BINS,
            topk_capacity: None,
        }
    }
}

/// The option keys [`SketchOptions::set`] recognises.
pub const KEYS: &[&str] = &[
    "hll_precision",
    "bloom_fpp",
    "bloom_capacity",
    "percentile_error",
    "percentile_max_bins",
    "topk_capacity",
];

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, SketchError> {
    value.trim().parse().map_err(|_| {
        SketchError::InvalidParameter(format!("{key}: cannot read '{value}' as a number"))
    })
}

impl SketchOptions {
    /// Apply one `key = 'value'` option. Returns `Ok(false)` if the key is not a sketch
    /// option (e.g. `retention`, `max_groups`, which the window layer reads), and an error
    /// for a known key with a bad value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, SketchError> {
        let mut next = self.clone();
        match key.to_ascii_lowercase().as_str() {
            "hll_precision" => next.hll_precision = parse(key, value)?,
            "bloom_fpp" => next.bloom_fpp = parse(key, value)?,
            "bloom_capacity" => next.bloom_capacity = parse(key, value)?,
            "percentile_error" => next.percentile_error = parse(key, value)?,
            "percentile_max_bins" => next.percentile_max_bins = parse(key, value)?,
            "topk_capacity" => next.topk_capacity = Some(parse(key, value)?),
            _ => return Ok(false),
        }
        next.validate()?;
        *self = next;
        Ok(true)
    }

    /// Check every parameter by building the sketches once.
    pub fn validate(&self) -> Result<(), SketchError> {
        hll::Hll::new(self.hll_precision)?;
        bloom::Bloom::new(self.bloom_capacity, self.bloom_fpp)?;
        quantiles::DDSketch::with_max_bins(self.percentile_error, self.percentile_max_bins)?;
        if let Some(c) = self.topk_capacity {
            crate::topk::TopK::new(c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_reject() {
        let mut o = SketchOptions::default();
        assert_eq!(o.set("hll_precision", "14"), Ok(true));
        assert_eq!(o.hll_precision, 14);
        assert_eq!(o.set("retention", "1 hour"), Ok(false));
        assert!(o.set("hll_precision", "40").is_err());
        assert!(o.set("bloom_fpp", "abc").is_err());
        assert!(o.set("percentile_error", "1.5").is_err());
    }
}
