//! Durations as configuration spells them: "250ms", "5s", "10m", "1h" (Envoy/Istio style).

/// Why a duration could not be read; the text names the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    NoUnit(String),
    NotANumber(String),
    UnknownUnit { text: String, unit: String },
    TooLarge(String),
}

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DurationError::NoUnit(text) => write!(f, "\"{text}\" has no unit (use ms, s, m or h)"),
            DurationError::NotANumber(text) => {
                write!(f, "\"{text}\" does not start with a whole number")
            }
            DurationError::UnknownUnit { text, unit } => write!(
                f,
                "\"{text}\" has unknown unit \"{unit}\" (use ms, s, m or h)"
            ),
            DurationError::TooLarge(text) => write!(f, "\"{text}\" is too large"),
        }
    }
}

/// Parses a duration into milliseconds.
pub fn parse_millis(text: &str) -> Result<u64, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError::NoUnit(text.to_string()))?;
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits
        .parse()
        .map_err(|_| DurationError::NotANumber(text.to_string()))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(DurationError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
            })
        }
    };
    amount
        .checked_mul(scale)
        .ok_or_else(|| DurationError::TooLarge(text.to_string()))
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
