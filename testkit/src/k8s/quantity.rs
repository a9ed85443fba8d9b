//! Kubernetes resource quantities (`500m`, `2`, `64Gi`, `1.5G`, `1e3`), as in the API reference's
//! `Quantity` (k8s.io/apimachinery/pkg/api/resource): a decimal number with an optional binary
//! (Ki Mi Gi Ti Pi Ei), decimal (n u m "" k M G T P E) or exponent (e3, E-2) suffix. The
//! scheduler compares sums of them, so they are kept as integer milli-units (i128: 64Ei in
//! milli-units still fits).

/// Parses a quantity into milli-units (`"500m"` → 500, `"2"` → 2000, `"1Ki"` → 1_024_000).
/// Fractions below a milli-unit round up, as the API server rounds requests up. None when it is
/// not a quantity.
pub fn parse_milli(text: &str) -> Option<i128> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let (sign, body) = match text.as_bytes()[0] {
        b'-' => (-1, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    let number_end = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    // Scale as (numerator, power of ten), applied to the digits once.
    let (multiplier, power10): (i128, i32) = match suffix {
        "" => (1, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        exp if exp.starts_with('e') || exp.starts_with('E') => (1, exp[1..].parse::<i32>().ok().filter(|e| e.abs() <= 18)?),
        _ => return None,
    };
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.len() + frac_part.len() > 30 {
        return None;
    }
    let digits: i128 = format!("{int_part}{frac_part}").parse().ok()?;
    // value = digits * 10^(power10 - frac_len) * multiplier, in milli-units: one more 10^3.
    let exponent = power10 - frac_part.len() as i32 + 3;
    let scaled = digits.checked_mul(multiplier)?;
    let milli = if exponent >= 0 {
        scaled.checked_mul(10i128.checked_pow(exponent as u32)?)?
    } else {
        let divisor = 10i128.checked_pow((-exponent) as u32)?;
        (scaled + divisor - 1) / divisor
    };
    Some(sign * milli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reference_forms() {
        assert_eq!(parse_milli("500m"), Some(500));
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("1Ki"), Some(1024 * 1000));
        assert_eq!(parse_milli("64Gi"), Some(64 * (1i128 << 30) * 1000));
        assert_eq!(parse_milli("1.5G"), Some(1_500_000_000_000));
        assert_eq!(parse_milli("128974848"), Some(128_974_848_000));
        assert_eq!(parse_milli("129e6"), Some(129_000_000_000));
        assert_eq!(parse_milli("123Mi"), Some(123 * (1 << 20) * 1000));
        assert_eq!(parse_milli("100k"), Some(100_000_000));
        assert_eq!(parse_milli("1n"), Some(1)); // rounded up
        assert_eq!(parse_milli(""), None);
        assert_eq!(parse_milli("abc"), None);
        assert_eq!(parse_milli("1.2.3"), None);
        assert_eq!(parse_milli("5Xi"), None);
    }
}
