//! Go's duration syntax (`10m`, `1h30m`, `1.5s`, `0`), which kubectl's `--duration` takes.

/// Nanoseconds in `text`, or why it is not a duration. Negative values are allowed (`-1s`) so
/// callers can say why they refuse them.
pub fn parse_nanos(text: &str) -> Result<i128, String> {
    let invalid = || format!("invalid duration {text:?}");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(|| format!("missing unit in duration {text:?}"))?;
        let (number, after) = rest.split_at(number_len);
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {text:?}")),
            _ => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid())? };
        let mut part = whole.checked_mul(scale).ok_or_else(invalid)?;
        let mut divisor: i128 = 1;
        for digit in fraction.bytes() {
            if !digit.is_ascii_digit() || divisor >= 1_000_000_000_000_000_000 {
                return Err(invalid());
            }
            divisor *= 10;
            part = part.checked_add(i128::from(digit - b'0') * scale / divisor).ok_or_else(invalid)?;
        }
        total = total.checked_add(part).filter(|t| *t <= i128::from(i64::MAX)).ok_or_else(invalid)?;
        rest = after;
    }
    Ok(if negative { -total } else { total })
}

/// Whole seconds: plain (`3600`) or a Go duration (`24h`, `90m`, `1h30m`).
pub fn parse_seconds(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    let invalid = || format!("invalid duration {text:?} (use e.g. 3600, 90m or 24h)");
    let nanos = parse_nanos(text).map_err(|_| invalid())?;
    if nanos % 1_000_000_000 != 0 {
        return Err(invalid());
    }
    i64::try_from(nanos / 1_000_000_000).map_err(|_| invalid())
}

/// A positive duration such as `--interval 10s`.
pub fn parse_positive(text: &str) -> Result<std::time::Duration, String> {
    let nanos = parse_nanos(text)?;
    if nanos <= 0 {
        return Err(format!("duration {text:?} must be greater than 0"));
    }
    u64::try_from(nanos).map(std::time::Duration::from_nanos).map_err(|_| format!("duration {text:?} is too long"))
}

/// `1h2m3s` with zero units left out (`0s` for zero): a relative time for people.
pub fn format_seconds(seconds: i64) -> String {
    let (sign, mut s) = if seconds < 0 { ("-", seconds.unsigned_abs()) } else { ("", seconds.unsigned_abs()) };
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::from(sign);
    for (unit, size) in [("h", 3600), ("m", 60)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_nanos("10m"), Ok(600_000_000_000));
        assert_eq!(parse_nanos("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_nanos("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_nanos("0"), Ok(0));
        assert_eq!(parse_nanos("-1s"), Ok(-1_000_000_000));
        assert_eq!(parse_nanos("250ms"), Ok(250_000_000));
        assert!(parse_nanos("10").is_err());
        assert!(parse_nanos("").is_err());
        assert!(parse_nanos("1x").is_err());
        assert!(parse_nanos("m").is_err());
        assert!(parse_nanos("99999999999999999999999h").is_err());
    }

    #[test]
    fn whole_seconds() {
        assert_eq!(parse_seconds("3600"), Ok(3600));
        assert_eq!(parse_seconds("24h"), Ok(86_400));
        assert_eq!(parse_seconds("1h30m"), Ok(5400));
        assert_eq!(parse_seconds("90s"), Ok(90));
        for bad in ["", "h", "1d", "1h3", "-", "99999999999999999999h", "1.5s"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn positive_durations() {
        assert_eq!(parse_positive("10s"), Ok(std::time::Duration::from_secs(10)));
        assert!(parse_positive("0").is_err());
        assert!(parse_positive("-1s").is_err());
    }

    #[test]
    fn printed_like_go() {
        assert_eq!(format_seconds(0), "0s");
        assert_eq!(format_seconds(552), "9m12s");
        assert_eq!(format_seconds(3600), "1h");
        assert_eq!(format_seconds(-180), "-3m");
    }
}
