//! Percentiles and medians.

/// Latencies in microseconds, sorted once.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    sorted: Vec<u32>,
}

impl Latencies {
    /// Sorts `values` (µs).
    pub fn new(mut values: Vec<u32>) -> Self {
        values.sort_unstable();
        Self { sorted: values }
    }

    /// The `p` quantile (0..=1) in milliseconds (nearest rank); 0 when empty.
    pub fn ms(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        let i = ((self.sorted.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.sorted[i]) / 1000.0
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN if empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quantiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let l = Latencies::new((1..=100).map(|x| x * 1000).collect());
        assert_eq!(l.ms(0.0), 1.0);
        assert_eq!(l.ms(1.0), 100.0);
        assert_eq!(l.ms(0.5), 51.0);
    }
}
