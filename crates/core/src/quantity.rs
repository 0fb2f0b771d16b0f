//! Resource quantities (`100m`, `1.5Gi`, `2e3`) as kube's `resource.Quantity` parses them,
//! reduced to what pods need here: their amount, to compare and add.

use serde_json::Value;

/// A resource quantity (`100m`, `1.5Gi`, `2e3`), in billionths: kube's `resource.Quantity`
/// keeps nothing finer (it rounds a smaller non-zero amount up to one billionth). An amount of
/// more than about 10^29 units saturates (kube keeps any decimal amount, and caps binary ones
/// at 2^63 - 1 units): no pod names such an amount, and none panics the parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(pub i128);

/// kube's `ErrFormatWrong`.
const FORMAT_WRONG: &str = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A string of ASCII digits as an integer, saturating.
fn saturating_integer(digits: &str) -> i128 {
    digits.bytes().fold(0i128, |n, d| n.saturating_mul(10).saturating_add(i128::from(d - b'0')))
}

impl Quantity {
    /// A quantity as JSON holds it: a string, a number, or null (zero), as kube reads them.
    pub fn from_json(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::String(text) => Self::parse(text.trim()),
            Value::Number(number) => Self::parse(&number.to_string()),
            Value::Null => Ok(Self(0)),
            _ => Err(FORMAT_WRONG),
        }
    }

    /// kube's `ParseQuantity`, with its three errors.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        Self::parse_with_format(text).map(|(quantity, _)| quantity)
    }

    /// kube's `Quantity.String()` of the quantity JSON holds: its canonical form, in the notation
    /// its suffix was written in (`1000m` is `1`, `1.5` is `1500m`, `1024Mi` is `1Gi`, `2e3`
    /// stays `2e3`), or the error kube's decoder gives.
    pub fn canonical_json(value: &Value) -> Result<String, &'static str> {
        let (quantity, format) = Self::json_with_format(value)?;
        Ok(quantity.canonical(format))
    }

    /// What a pod's resource list keeps of the quantity JSON holds: kube's
    /// `SetDefaults_ResourceList` rounds it up (away from zero) to a thousandth, and the
    /// quantity is written back in its canonical form (`0.0001` is `1m`, `1.5Gi` is `1536Mi`).
    pub fn stored_json(value: &Value) -> Result<String, &'static str> {
        const MILLI: i128 = 1_000_000;
        let (Self(nanos), format) = Self::json_with_format(value)?;
        let rest = nanos % MILLI;
        let rounded = if rest == 0 { nanos } else { (nanos - rest).saturating_add(MILLI * nanos.signum()) };
        Ok(Self(rounded).canonical(format))
    }

    fn json_with_format(value: &Value) -> Result<(Self, Format), &'static str> {
        match value {
            Value::String(text) => Self::parse_with_format(text.trim()),
            Value::Number(number) => Self::parse_with_format(&number.to_string()),
            Value::Null => Ok((Self(0), Format::DecimalSi)),
            _ => Err(FORMAT_WRONG),
        }
    }

    /// kube's `CanonicalizeBytes`: a binary amount of at least 1024 that is a whole number is
    /// printed with the largest binary suffix that keeps it whole; any other amount with the
    /// largest power of a thousand that does (an exponent, in the exponent notation).
    fn canonical(self, format: Format) -> String {
        const UNIT: i128 = 1_000_000_000;
        if self.0 == 0 {
            return "0".to_owned();
        }
        if format == Format::BinarySi && self.0.unsigned_abs() >= 1024 * UNIT.unsigned_abs() && self.0 % UNIT == 0 {
            let (mut amount, mut power) = (self.0 / UNIT, 0);
            while amount % 1024 == 0 && power < BINARY_SUFFIXES.len() - 1 {
                amount /= 1024;
                power += 1;
            }
            return format!("{amount}{}", BINARY_SUFFIXES.get(power).copied().unwrap_or_default());
        }
        // The amount in billionths, as digits and a power of ten that is a multiple of three.
        let (mut mantissa, mut exponent) = (self.0, -9i32);
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        match exponent.rem_euclid(3) {
            1 => (mantissa, exponent) = (mantissa.saturating_mul(10), exponent - 1),
            2 => (mantissa, exponent) = (mantissa.saturating_mul(100), exponent - 2),
            _ => {}
        }
        let suffix = match (format, exponent) {
            (_, 0) => String::new(),
            (Format::DecimalExponent, e) => format!("e{e}"),
            (_, e) => DECIMAL_SUFFIXES.iter().find(|(power, _)| *power == e).map_or_else(|| format!("e{e}"), |(_, s)| (*s).to_owned()),
        };
        format!("{mantissa}{suffix}")
    }

    /// [`Quantity::parse`], with the notation of the quantity's suffix.
    fn parse_with_format(text: &str) -> Result<(Self, Format), &'static str> {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return Err(FORMAT_WRONG);
        }
        let mut pos = 0;
        let negative = match bytes[0] {
            b'-' => {
                pos = 1;
                true
            }
            b'+' => {
                pos = 1;
                false
            }
            _ => false,
        };
        let digits_from = |start: usize| start + bytes[start..].iter().take_while(|b| b.is_ascii_digit()).count();
        let whole_end = digits_from(pos);
        let whole = &text[pos..whole_end];
        pos = whole_end;
        let mut fraction = "";
        if bytes.get(pos) == Some(&b'.') {
            let end = digits_from(pos + 1);
            fraction = &text[pos + 1..end];
            pos = end;
        }
        // The suffix: letters of `eEinumkKMGTP`, then an optional sign and digits (an exponent).
        let suffix_start = pos;
        pos += bytes[pos..].iter().take_while(|b| b"eEinumkKMGTP".contains(b)).count();
        if matches!(bytes.get(pos), Some(b'-' | b'+')) {
            pos += 1;
        }
        pos = digits_from(pos);
        if pos != bytes.len() {
            return Err(FORMAT_WRONG);
        }
        let (binary_shift, decimal_exponent, format) = match &text[suffix_start..] {
            "" => (0, 0, Format::DecimalSi),
            "n" => (0, -9, Format::DecimalSi),
            "u" => (0, -6, Format::DecimalSi),
            "m" => (0, -3, Format::DecimalSi),
            "k" => (0, 3, Format::DecimalSi),
            "M" => (0, 6, Format::DecimalSi),
            "G" => (0, 9, Format::DecimalSi),
            "T" => (0, 12, Format::DecimalSi),
            "P" => (0, 15, Format::DecimalSi),
            "E" => (0, 18, Format::DecimalSi),
            "Ki" => (10, 0, Format::BinarySi),
            "Mi" => (20, 0, Format::BinarySi),
            "Gi" => (30, 0, Format::BinarySi),
            "Ti" => (40, 0, Format::BinarySi),
            "Pi" => (50, 0, Format::BinarySi),
            "Ei" => (60, 0, Format::BinarySi),
            exponent if exponent.len() > 1 && exponent.starts_with(['e', 'E']) => {
                (0, exponent[1..].parse::<i32>().map_err(|_| "unable to parse quantity's suffix")?, Format::DecimalExponent)
            }
            _ => return Err("unable to parse quantity's suffix"),
        };
        // Without a digit, kube parses zero, unless the exponent takes it down its slow path,
        // where an empty number does not parse.
        if whole.is_empty() && fraction.is_empty() && binary_shift == 0 && decimal_exponent < -9 {
            return Err("unable to parse numeric part of quantity");
        }
        // The digits as one number, scaled to billionths: `digits` × 10^`exponent` × 2^shift.
        let joined = format!("{whole}{fraction}");
        let digits = joined.trim_start_matches('0');
        let exponent = i64::from(decimal_exponent) - fraction.len() as i64 + 9;
        let nanos = if digits.is_empty() {
            0
        } else if exponent >= 0 {
            let scale = u32::try_from(exponent).ok().and_then(|e| 10i128.checked_pow(e)).unwrap_or(i128::MAX);
            saturating_integer(digits).saturating_mul(scale).saturating_mul(1i128 << binary_shift)
        } else if binary_shift == 0 {
            // Digits below a billionth are dropped; any of them not zero rounds up by one.
            let kept = usize::try_from(digits.len() as i64 + exponent).unwrap_or(0);
            let dropped_some = digits.as_bytes()[kept..].iter().any(|&d| d != b'0');
            saturating_integer(&digits[..kept]).saturating_add(i128::from(dropped_some))
        } else {
            // A fraction of a binary multiple: shifted first, then divided, rounding up.
            let scaled = saturating_integer(digits).saturating_mul(1i128 << binary_shift);
            match u32::try_from(-exponent).ok().and_then(|e| 10i128.checked_pow(e)) {
                Some(divisor) => scaled / divisor + i128::from(scaled % divisor != 0),
                None => 1,
            }
        };
        Ok((Self(if negative { -nanos } else { nanos }), format))
    }
}

/// The notation of a quantity's suffix, which kube prints it back in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// `Ki`, `Mi`, ... (powers of 1024).
    BinarySi,
    /// `m`, `k`, `M`, ..., or none.
    DecimalSi,
    /// `e3`, `E-2`.
    DecimalExponent,
}

const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
const DECIMAL_SUFFIXES: [(i32, &str); 9] = [(-9, "n"), (-6, "u"), (-3, "m"), (3, "k"), (6, "M"), (9, "G"), (12, "T"), (15, "P"), (18, "E")];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_parse_as_kube_parses_them() {
        let nanos = |text: &str| Quantity::parse(text).map(|q| q.0);
        assert_eq!(nanos("1"), Ok(1_000_000_000));
        assert_eq!(nanos("1000m"), nanos("1"));
        assert_eq!(nanos("0.5"), nanos("500m"));
        assert_eq!(nanos("1Ki"), Ok(1024 * 1_000_000_000));
        assert_eq!(nanos("1.5Gi"), Ok(1_610_612_736 * 1_000_000_000));
        assert_eq!(nanos("2e3"), nanos("2k"));
        assert_eq!(nanos("1E-3"), nanos("1m"));
        assert_eq!(nanos("+1"), nanos("1"));
        assert_eq!(nanos("-1m"), Ok(-1_000_000));
        assert_eq!(nanos("1."), nanos("1"));
        assert_eq!(nanos(".5"), nanos("500m"));
        assert_eq!(nanos("0"), Ok(0));
        assert_eq!(nanos("1n"), Ok(1));
        // Less than a billionth rounds up to one, as kube's RoundUp does.
        assert_eq!(nanos("0.1n"), Ok(1));
        assert_eq!(nanos("1e-100"), Ok(1));
        // Digits past a billionth round up; long strings of digits keep their value.
        assert_eq!(nanos("1.0000000001"), Ok(1_000_000_001));
        assert_eq!(nanos("1.00000000000000000000000000000000000000000000"), nanos("1"));
        assert_eq!(nanos("0000000000000000000000000000000000000000000001"), nanos("1"));
        assert_eq!(nanos("0.0000000001Ki"), Ok(103), "102.4 billionths, rounded up");
        // No digit: zero, except where kube's slow path cannot parse an empty number.
        assert_eq!((nanos("."), nanos("-"), nanos("e5"), nanos("Ki")), (Ok(0), Ok(0), Ok(0), Ok(0)));
        assert_eq!(nanos(".e-10"), Err("unable to parse numeric part of quantity"));
        // Past 128 bits: saturated, no panic.
        assert_eq!(nanos("1e100"), Ok(i128::MAX));
        assert_eq!(nanos("99999999999999999999999999999999999999999999Ei"), Ok(i128::MAX));
        for bad in ["", "abc", "1.5.5", "1 Gi", "1KiB", "1Gi5x"] {
            assert_eq!(nanos(bad), Err(FORMAT_WRONG), "{bad:?}");
        }
        for bad in ["1e", "1mi", "--1", "1ee5"] {
            assert_eq!(nanos(bad), Err("unable to parse quantity's suffix"), "{bad:?}");
        }
        assert_eq!(Quantity::from_json(&json!(2)), Quantity::parse("2"));
        assert_eq!(Quantity::from_json(&json!(0.25)), Quantity::parse("250m"));
        assert_eq!(Quantity::from_json(&json!(true)), Err(FORMAT_WRONG));
        assert_eq!(Quantity::from_json(&Value::Null), Ok(Quantity(0)), "kube reads null as zero");
    }

    #[test]
    fn quantities_print_in_kubes_canonical_form() {
        let canonical = |text: &str| Quantity::canonical_json(&json!(text));
        for (text, shown) in [
            ("1", "1"), ("1000m", "1"), ("1.5", "1500m"), ("0.5", "500m"), ("100m", "100m"), ("1000", "1k"), ("1200", "1200"),
            ("12000", "12k"), ("0", "0"), ("0Gi", "0"), ("1n", "1n"), ("0.1n", "1n"), ("-1", "-1"), ("-1500m", "-1500m"),
            ("1Gi", "1Gi"), ("1024Mi", "1Gi"), ("1.5Gi", "1536Mi"), ("0.5Gi", "512Mi"), ("500Mi", "500Mi"), ("1025Ki", "1025Ki"),
            ("0.5Ki", "512"), ("1.5Ki", "1536"), ("1000Ki", "1000Ki"), ("-2Gi", "-2Gi"), ("2e3", "2e3"), ("1.5e3", "1500"),
            ("1E-3", "1e-3"), ("1e0", "1"), ("1E", "1E"), ("2k", "2k"),
        ] {
            assert_eq!(canonical(text), Ok(shown.to_owned()), "{text:?}");
        }
        assert_eq!(Quantity::canonical_json(&json!(2)), Ok("2".to_owned()));
        assert_eq!(Quantity::canonical_json(&json!(0.25)), Ok("250m".to_owned()));
        assert_eq!(Quantity::canonical_json(&Value::Null), Ok("0".to_owned()));
        assert_eq!(canonical("lots"), Err(FORMAT_WRONG));
        // Saturated amounts print without a panic.
        assert!(canonical("1e100").is_ok() && canonical("99999999999999999999999999999999999999999999Ei").is_ok());
    }

    /// What a pod's resources keep: rounded up, away from zero, to a thousandth
    /// (`SetDefaults_ResourceList`), then in canonical form.
    #[test]
    fn stored_quantities_are_rounded_up_to_a_thousandth() {
        let stored = |text: &str| Quantity::stored_json(&json!(text));
        for (text, kept) in [
            ("0.0001", "1m"), ("1500u", "2m"), ("1n", "1m"), ("0.1", "100m"), ("1000m", "1"), ("1.5Gi", "1536Mi"), ("100Mi", "100Mi"),
            ("2e3", "2e3"), ("0", "0"), ("-0.0001", "-1m"), ("1.0005", "1001m"), ("0.5Ki", "512"),
        ] {
            assert_eq!(stored(text), Ok(kept.to_owned()), "{text:?}");
        }
        assert_eq!(stored("lots"), Err(FORMAT_WRONG));
        assert!(stored("99999999999999999999999999999999999999999999Ei").is_ok(), "saturated, no panic");
    }
}
