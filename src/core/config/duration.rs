//! Durations as configuration spells them: "250ms", "5s", "10m", "1h" (Envoy/Istio style).

/// Parses a duration into milliseconds.
pub fn parse_millis(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("\"{text}\" has no unit (use ms, s, m or h)"))?;
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("\"{text}\" does not start with a whole number"))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "\"{text}\" has unknown unit \"{unit}\" (use ms, s, m or h)"
            ))
        }
    };
    amount
        .checked_mul(scale)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_units_envoy_users_write() {
        assert_eq!(parse_millis("250ms"), Ok(250));
        assert_eq!(parse_millis("5s"), Ok(5_000));
        assert_eq!(parse_millis("10m"), Ok(600_000));
        assert_eq!(parse_millis("1h"), Ok(3_600_000));
        assert_eq!(parse_millis("0s"), Ok(0));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        for bad in [
            "",
            "5",
            "s",
            "5 sec",
            "-1s",
            "1.5s",
            "99999999999999999999s",
        ] {
            assert!(parse_millis(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
