//! Value parsers for numeric command-line options, with readable errors.
//!
//! clap's own parsers reject `--threads 0` only where the type forbids it (it silently
//! became 1) and turn `--trials -1` into "unexpected argument '-1' found". These parse any
//! whole number (signed, so that a negative one is read as a number; the options using them
//! set `allow_negative_numbers`) and say what is wrong with it.

/// Parses a whole number of at least 1 (`--trials`, `--threads`, `--population`, ...).
pub fn positive(s: &str) -> Result<usize, String> {
    at_least(s, 1)
}

/// Parses a whole number of at least 0 (`--confirm`).
pub fn non_negative(s: &str) -> Result<usize, String> {
    at_least(s, 0)
}

/// Parses a whole number ≥ `min` that fits in a `usize`.
fn at_least(s: &str, min: usize) -> Result<usize, String> {
    let t = s.trim();
    let n: i128 = t.parse().map_err(|_| {
        format!("`{s}` is not a whole number (expected an integer of at least {min})")
    })?;
    if n < min as i128 {
        return Err(format!("{n} is too small: it must be at least {min}"));
    }
    usize::try_from(n).map_err(|_| format!("{n} is too large (at most {})", usize::MAX))
}

/// Parses a seed: any whole number from 0 to 2⁶⁴−1.
pub fn seed(s: &str) -> Result<u64, String> {
    let n: i128 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number (a seed is 0 to {})", u64::MAX))?;
    u64::try_from(n).map_err(|_| format!("{n} is not a seed (0 to {})", u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_accepts_whole_numbers_of_at_least_one_and_explains_the_rest() {
        assert_eq!(positive("64"), Ok(64));
        assert_eq!(positive(" 1 "), Ok(1));
        assert!(positive("0").unwrap_err().contains("at least 1"));
        assert!(positive("-1").unwrap_err().contains("-1 is too small"));
        assert!(positive("1.5").unwrap_err().contains("not a whole number"));
        assert!(positive("abc").unwrap_err().contains("not a whole number"));
        assert!(positive("99999999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(non_negative("0"), Ok(0));
        assert!(non_negative("-2").unwrap_err().contains("at least 0"));
        assert_eq!(seed("18446744073709551615"), Ok(u64::MAX));
        assert!(seed("-1").unwrap_err().contains("not a seed"));
    }
}
