//! Calendar days (UTC) and the periods charts cover: a day, an ISO week (Monday to Sunday, as
//! the industry's weekly lists) or a custom range, each with the period of the same length just
//! before it, which rank changes are measured against.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use reelrank_core::Timestamp;
use serde::{Serialize, Serializer};

/// A UTC calendar day, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

impl Day {
    /// The day `ts` falls on.
    pub fn of(ts: Timestamp) -> Day {
        Day(ts.millis().div_euclid(Timestamp::DAY_MS) as i32)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Day> {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        Some(Day(date.signed_duration_since(epoch()).num_days() as i32))
    }

    /// The Monday of this day's ISO week.
    pub fn week_start(self) -> Day {
        // 1970-01-01 was a Thursday, three days after a Monday.
        Day(self.0 - (self.0 + 3).rem_euclid(7))
    }

    /// `n` days later (earlier for a negative `n`).
    pub fn plus(self, n: i32) -> Day {
        Day(self.0 + n)
    }

    fn date(self) -> NaiveDate {
        epoch() + chrono::TimeDelta::days(i64::from(self.0))
    }
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let date = self.date();
        write!(f, "{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Consecutive days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    /// The first day.
    pub from: Day,
    /// The last day.
    pub to: Day,
}

impl Span {
    /// The span from `from` to `to`; `None` when `to` comes before `from`.
    pub fn new(from: Day, to: Day) -> Option<Span> {
        (from <= to).then_some(Span { from, to })
    }

    /// How many days it covers.
    pub fn days(self) -> i32 {
        self.to.0 - self.from.0 + 1
    }

    /// Whether `day` is in it.
    pub fn contains(self, day: Day) -> bool {
        self.from <= day && day <= self.to
    }

    /// The span of the same length that ends the day before this one starts.
    pub fn previous(self) -> Span {
        Span { from: self.from.plus(-self.days()), to: self.from.plus(-1) }
    }
}

/// What a chart covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One day.
    Day(Day),
    /// The ISO week (Monday to Sunday) holding a day.
    Week(Day),
    /// Any days.
    Range(Span),
}

impl Period {
    /// The days covered.
    pub fn span(self) -> Span {
        match self {
            Period::Day(day) => Span { from: day, to: day },
            Period::Week(day) => {
                let monday = day.week_start();
                Span { from: monday, to: monday.plus(6) }
            }
            Period::Range(span) => span,
        }
    }

    /// Its wire name: `day`, `week` or `range`.
    pub fn name(self) -> &'static str {
        match self {
            Period::Day(_) => "day",
            Period::Week(_) => "week",
            Period::Range(_) => "range",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_and_weeks_start_on_monday() {
        let day = Day::parse("2026-12-03").unwrap();
        assert_eq!(day.to_string(), "2026-12-03");
        assert_eq!(Day::of(Timestamp::parse("2026-12-03T23:59:59Z").unwrap()), day);
        assert_eq!(Day::parse("1969-12-31"), Some(Day(-1)));
        // 2026-12-03 is a Thursday.
        assert_eq!(day.week_start().to_string(), "2026-11-30");
        assert_eq!(Day::parse("2026-11-30").unwrap().week_start().to_string(), "2026-11-30");
        assert_eq!(Day::parse("2026-12-06").unwrap().week_start().to_string(), "2026-11-30");
        assert_eq!(Day(-1).week_start().to_string(), "1969-12-29");
        assert_eq!(Day::parse("2026-13-01"), None);
    }

    #[test]
    fn the_previous_period_has_the_same_length() {
        let week = Period::Week(Day::parse("2026-12-03").unwrap()).span();
        assert_eq!((week.from.to_string(), week.to.to_string()), ("2026-11-30".into(), "2026-12-06".into()));
        let before = week.previous();
        assert_eq!(
            (before.from.to_string(), before.to.to_string()),
            ("2026-11-23".into(), "2026-11-29".into())
        );
        let range = Span::new(Day(10), Day(12)).unwrap();
        assert_eq!(range.previous(), Span { from: Day(7), to: Day(9) });
        assert!(Span::new(Day(3), Day(2)).is_none());
        assert!(range.contains(Day(12)) && !range.contains(Day(13)));
    }
}
