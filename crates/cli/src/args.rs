//! Value parsers for numeric and path arguments: every number a user types is checked for its
//! domain when the arguments are parsed, before any file is read or any model is loaded.

use std::path::PathBuf;

/// A count that must be at least 1 (samples, steps, batch sizes, bootstrap resamples).
pub fn count(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|e| format!("`{s}` is not a count: {e}"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

fn finite(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !x.is_finite() {
        return Err(format!("`{s}` is not a finite number"));
    }
    Ok(x)
}

/// A finite number ≥ 0 (loss weights, gate margins, thresholds).
pub fn non_negative(s: &str) -> Result<f64, String> {
    let x = finite(s)?;
    if x < 0.0 {
        return Err(format!("must be ≥ 0, got {s}"));
    }
    Ok(x)
}

/// A finite number > 0 (learning rate, clipping norm, τ, a ratio).
pub fn positive(s: &str) -> Result<f64, String> {
    let x = finite(s)?;
    if x <= 0.0 {
        return Err(format!("must be > 0, got {s}"));
    }
    Ok(x)
}

/// A percentage in [0, 100] (the lms floor).
pub fn percent(s: &str) -> Result<f64, String> {
    let x = finite(s)?;
    if !(0.0..=100.0).contains(&x) {
        return Err(format!("must be in [0, 100], got {s}"));
    }
    Ok(x)
}

/// A path that is not the empty string.
pub fn path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("the path is empty".into());
    }
    Ok(PathBuf::from(s))
}
