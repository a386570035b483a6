//! Timestamps as Unix milliseconds.
//!
//! On the wire a timestamp is either an RFC 3339 string (`"2026-05-01T12:00:00Z"`) or an integer
//! number of milliseconds since the Unix epoch; it is always written back as RFC 3339. Storing plain
//! milliseconds keeps both databases and all arithmetic (decay, windows, charts) simple.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds in one day.
    pub const DAY_MS: i64 = 86_400_000;

    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        Timestamp(Utc::now().timestamp_millis())
    }

    /// From whole seconds since the epoch (MovieLens and most logs use seconds).
    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Midnight UTC of a calendar date.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Timestamp> {
        let date = chrono::NaiveDate::from_ymd_opt(year, month, day)?;
        Some(Timestamp(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis()))
    }

    /// Parses RFC 3339 (`2026-05-01T12:00:00Z`) or a plain date (`2026-05-01`, midnight UTC).
    pub fn parse(text: &str) -> Option<Timestamp> {
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Some(Timestamp(t.timestamp_millis()));
        }
        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        Some(Timestamp(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis()))
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// The calendar year (UTC).
    pub fn year(self) -> i32 {
        use chrono::Datelike;
        self.to_datetime().map_or(1970, |t| t.year())
    }

    fn to_datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => write!(f, "{}ms", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 date-time string or integer Unix milliseconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v).map(Timestamp).map_err(|_| E::custom("timestamp out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(Timestamp(v as i64))
                } else {
                    Err(E::custom("timestamp must be whole milliseconds"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).ok_or_else(|| E::custom(format!("`{v}` is not an RFC 3339 date-time")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_wire_forms() {
        let a: Timestamp = serde_json::from_str("\"2026-05-01T12:00:00Z\"").unwrap();
        let b: Timestamp = serde_json::from_str("1777636800000").unwrap();
        assert_eq!(a, b);
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"2026-05-01T12:00:00Z\"");
        assert_eq!(Timestamp::parse("2026-05-01"), Timestamp::from_ymd(2026, 5, 1));
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
        assert!(serde_json::from_str::<Timestamp>("1.5").is_err());
    }
}
