//! Latency samples per operation and the summary the report prints.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Default, Clone)]
pub struct Samples {
    by_op: BTreeMap<&'static str, Vec<u32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpSummary {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Samples {
    pub fn record(&mut self, op: &'static str, took: Duration) {
        let micros = took.as_micros().min(u32::MAX as u128) as u32;
        self.by_op.entry(op).or_default().push(micros);
    }

    pub fn merge(&mut self, other: Samples) {
        for (op, mut v) in other.by_op {
            self.by_op.entry(op).or_default().append(&mut v);
        }
    }

    pub fn calls(&self) -> usize {
        self.by_op.values().map(Vec::len).sum()
    }

    pub fn summary(&mut self) -> BTreeMap<&'static str, OpSummary> {
        self.by_op
            .iter_mut()
            .map(|(op, v)| {
                v.sort_unstable();
                let pick = |q: f64| {
                    if v.is_empty() {
                        return 0.0;
                    }
                    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
                    v[i] as f64 / 1000.0
                };
                (
                    *op,
                    OpSummary {
                        count: v.len(),
                        p50_ms: pick(0.50),
                        p90_ms: pick(0.90),
                        p99_ms: pick(0.99),
                        max_ms: v.last().map(|m| *m as f64 / 1000.0).unwrap_or(0.0),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let mut s = Samples::default();
        for ms in 1..=100 {
            s.record("op", Duration::from_millis(ms));
        }
        let sum = s.summary();
        let op = &sum["op"];
        assert_eq!(op.count, 100);
        assert_eq!(op.p50_ms, 50.0);
        assert_eq!(op.p99_ms, 99.0);
        assert_eq!(op.max_ms, 100.0);
    }
}
