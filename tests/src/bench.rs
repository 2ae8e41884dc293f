//! What the end-to-end benchmarks (`tests/benches/`) share: their flags and their medians.
//! They print numbers and assert nothing about time (docs/performance.md).

/// The value of `--NAME N` on the benchmark's command line, else `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of some samples (the upper one of an even count); `None` for none. Floats
/// that are not numbers sort last.
pub fn median<T: PartialOrd + Copy>(mut samples: Vec<T>) -> Option<T> {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Greater));
    samples.get(samples.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3, 1, 2]), Some(2));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(3.0));
        assert_eq!(median::<u32>(Vec::new()), None);
    }
}
