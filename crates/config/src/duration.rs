//! Durations written the way people write them in config files: `"500ms"`, `"5s"`, `"10m"`.
//!
//! PgBouncer takes bare seconds, which is how `query_timeout = 0.5` turns into a surprise. We
//! accept a number followed by a unit (`ms`, `s`, `m`, `h`, `d`; several parts may be joined, as
//! in `"1m30s"`) and, for PgBouncer habits, a bare integer meaning seconds.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A [`Duration`] that deserializes from `"5s"`-style strings and serializes back to that form,
/// so defaults, the example config and the admin API all show the same spelling.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    /// The wrapped duration.
    pub const fn get(self) -> Duration {
        self.0
    }

    /// True for `0s`, which several settings read as "off".
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// `None` when zero ("off"), otherwise the duration: the form the pool code wants.
    pub const fn non_zero(self) -> Option<Duration> {
        if self.0.is_zero() {
            None
        } else {
            Some(self.0)
        }
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

/// Why a duration string was refused; the message names the accepted units.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. \"500ms\", \"5s\", \"10m\", \"1h\")")]
pub struct DurationParseError {
    input: String,
    reason: &'static str,
}

/// Parses `"1h30m"`, `"250ms"`, `"0s"` or `"15"` (seconds).
pub fn parse_duration(input: &str) -> Result<Duration, DurationParseError> {
    let err = |reason| DurationParseError {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| err("a number needs a unit"))?;
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" | "min" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            "d" => Duration::from_secs(value.saturating_mul(86_400)),
            "us" | "µs" => Duration::from_micros(value),
            _ => return Err(err("unknown unit")),
        };
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    Ok(total)
}

/// Formats with the largest unit that divides the value exactly: 300s → "5m", 1500ms → "1500ms".
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d.subsec_nanos() % 1_000_000 != 0 {
        return format!("{}us", d.as_micros());
    }
    if ms == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"5s\" or \"10m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v)
                    .map(HumanDuration::from_secs)
                    .map_err(|_| E::custom(format!("negative duration {v}")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in ["", "s", "5", "5x", "-5s", "five seconds", "5 parsecs"] {
            if bad == "5" {
                continue; // bare seconds are allowed
            }
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains("invalid duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["0s", "500ms", "5s", "10m", "1h", "2d", "1500ms", "90s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
