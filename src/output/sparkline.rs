//! One-line sparklines (`▁▂▃▄▅▆▇█`) of a metric's history, for `show` on a terminal.

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Draws `values` in at most `width` characters: longer histories are averaged in equal
/// buckets; finite values scale between the lowest and highest bar; a bucket with only NaN is a
/// space, only +inf the highest bar, only -inf the lowest. A flat series is a row of middle bars.
pub fn sparkline(values: &[f64], width: usize) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let n = values.len();
    let cells = n.min(width);
    let buckets: Vec<f64> = (0..cells)
        .map(|i| {
            let (lo, hi) = (i * n / cells, ((i + 1) * n / cells).max(i * n / cells + 1));
            let chunk = &values[lo..hi.min(n)];
            let finite: Vec<f64> = chunk.iter().copied().filter(|v| v.is_finite()).collect();
            if !finite.is_empty() {
                finite.iter().sum::<f64>() / finite.len() as f64
            } else if chunk.contains(&f64::INFINITY) {
                f64::INFINITY
            } else if chunk.contains(&f64::NEG_INFINITY) {
                f64::NEG_INFINITY
            } else {
                f64::NAN
            }
        })
        .collect();
    let finite = buckets.iter().copied().filter(|v| v.is_finite());
    let min = finite.clone().fold(f64::INFINITY, f64::min);
    let max = finite.fold(f64::NEG_INFINITY, f64::max);
    buckets
        .iter()
        .map(|&v| {
            if v.is_nan() {
                ' '
            } else if v == f64::INFINITY {
                BARS[7]
            } else if v == f64::NEG_INFINITY {
                BARS[0]
            } else if max > min {
                let t = (v - min) / (max - min);
                BARS[((t * 7.0).round() as usize).min(7)]
            } else {
                BARS[3]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::sparkline;

    #[test]
    fn rising_falling_and_flat() {
        assert_eq!(
            sparkline(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 20),
            "▁▂▃▄▅▆▇█"
        );
        assert_eq!(sparkline(&[3.0, 2.0, 1.0], 20), "█▅▁");
        assert_eq!(sparkline(&[0.5, 0.5], 20), "▄▄");
        assert_eq!(sparkline(&[], 20), "");
        assert_eq!(sparkline(&[1.0], 0), "");
    }

    #[test]
    fn non_finite_values() {
        assert_eq!(
            sparkline(&[0.0, f64::NAN, 1.0, f64::INFINITY, f64::NEG_INFINITY], 10),
            "▁ ██▁"
        );
        assert_eq!(sparkline(&[f64::NAN, f64::NAN], 10), "  ");
    }

    #[test]
    fn long_histories_are_bucketed_to_the_width() {
        let v: Vec<f64> = (0..100_000).map(|i| i as f64).collect();
        let s = sparkline(&v, 16);
        assert_eq!(s.chars().count(), 16);
        assert!(s.starts_with('▁') && s.ends_with('█'), "{s}");
        // A spike averaged into its bucket still shows.
        let mut flat = vec![0.0; 1000];
        flat[500] = 1000.0;
        let s = sparkline(&flat, 10);
        assert_eq!(s.chars().filter(|c| *c != '▁').count(), 1, "{s}");
    }
}
