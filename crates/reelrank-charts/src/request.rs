//! A chart as asked for in words — the API's query string, the command line's flags — checked
//! into a [`ChartQuery`], with an error that names the parameter at fault.

use reelrank_core::Category;
use serde::Deserialize;

use crate::day::{Day, Period, Span};
use crate::ChartQuery;

/// Rows a chart returns unless asked otherwise.
pub const DEFAULT_ROWS: usize = 50;
/// Rows a chart returns at most.
pub const MAX_ROWS: usize = 1000;

/// A chart asked for: `category` (a category's name, or `all`), `period` (`day`, `week` or
/// `range`; `range` when `from` and `to` are given, else `week`), `date` (`YYYY-MM-DD`, a day of
/// the period; the log's newest day by default), `from` and `to` (a range's first and last days)
/// and `limit` (rows).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartRequest {
    /// A category's name, or `all`.
    pub category: Option<String>,
    /// `day`, `week` or `range`.
    pub period: Option<String>,
    /// A day of the period.
    pub date: Option<String>,
    /// A range's first day.
    pub from: Option<String>,
    /// A range's last day.
    pub to: Option<String>,
    /// Rows wanted.
    pub limit: Option<usize>,
}

/// A parameter that does not make sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("parameter `{parameter}`: {message}")]
pub struct RequestError {
    /// Its name.
    pub parameter: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn error(parameter: &'static str, message: impl Into<String>) -> RequestError {
    RequestError { parameter, message: message.into() }
}

fn day(parameter: &'static str, text: &str) -> Result<Day, RequestError> {
    Day::parse(text).ok_or_else(|| error(parameter, format!("expected a date as YYYY-MM-DD, got {text:?}")))
}

impl ChartRequest {
    /// The query asked for; `today` is the day a chart covers when no date is given.
    pub fn query(&self, today: Day) -> Result<ChartQuery, RequestError> {
        let category = match self.category.as_deref().map(str::trim) {
            None | Some("" | "all") => None,
            Some(name) => Some(Category::from_name(name)),
        };
        let range = self.from.is_some() || self.to.is_some();
        let date = self.date.as_deref().map(|text| day("date", text)).transpose()?.unwrap_or(today);
        let period = match self.period.as_deref().unwrap_or(if range { "range" } else { "week" }) {
            "day" if !range => Period::Day(date),
            "week" if !range => Period::Week(date),
            "day" | "week" => return Err(error("from", "`from` and `to` go with `period=range`")),
            "range" => {
                let (Some(from), Some(to)) = (&self.from, &self.to) else {
                    return Err(error(
                        if self.from.is_none() { "from" } else { "to" },
                        "a range needs `from` and `to`",
                    ));
                };
                let span = Span::new(day("from", from)?, day("to", to)?)
                    .ok_or_else(|| error("to", "the range ends before it starts"))?;
                if span.days() > 366 {
                    return Err(error("to", "a range covers at most 366 days"));
                }
                Period::Range(span)
            }
            other => return Err(error("period", format!("expected day, week or range, got {other:?}"))),
        };
        let limit = self.limit.unwrap_or(DEFAULT_ROWS);
        if !(1..=MAX_ROWS).contains(&limit) {
            return Err(error("limit", format!("expected 1 to {MAX_ROWS}, got {limit}")));
        }
        Ok(ChartQuery { category, period, limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(pairs: &[(&str, &str)]) -> Result<ChartQuery, RequestError> {
        let mut request = ChartRequest::default();
        for &(key, value) in pairs {
            let value = Some(value.to_owned());
            match key {
                "category" => request.category = value,
                "period" => request.period = value,
                "date" => request.date = value,
                "from" => request.from = value,
                "to" => request.to = value,
                _ => request.limit = value.map(|v| v.parse().unwrap()),
            }
        }
        request.query(Day::parse("2026-12-01").unwrap())
    }

    #[test]
    fn requests_default_and_resolve() {
        let today = Day::parse("2026-12-01").unwrap();
        assert_eq!(ask(&[]).unwrap(), ChartQuery { category: None, period: Period::Week(today), limit: 50 });
        let day =
            ask(&[("category", "micro_drama"), ("period", "day"), ("date", "2026-11-03"), ("limit", "5")]);
        let want = Period::Day(Day::parse("2026-11-03").unwrap());
        assert_eq!(day.unwrap(), ChartQuery { category: Some(Category::MicroDrama), period: want, limit: 5 });
        let range = ask(&[("from", "2026-11-01"), ("to", "2026-11-10")]).unwrap();
        assert_eq!(range.period.span().days(), 10);
        assert_eq!(ask(&[("category", "all")]).unwrap().category, None);
    }

    #[test]
    fn errors_name_the_parameter() {
        let fault = |pairs: &[(&str, &str)]| ask(pairs).unwrap_err().parameter;
        assert_eq!(fault(&[("date", "2026-02-30")]), "date");
        assert_eq!(fault(&[("period", "month")]), "period");
        assert_eq!(fault(&[("period", "range"), ("from", "2026-11-01")]), "to");
        assert_eq!(fault(&[("from", "2026-11-10"), ("to", "2026-11-01")]), "to");
        assert_eq!(fault(&[("period", "day"), ("from", "2026-11-10"), ("to", "2026-11-11")]), "from");
        assert_eq!(fault(&[("limit", "0")]), "limit");
        assert_eq!(
            ask(&[("date", "yesterday")]).unwrap_err().to_string(),
            "parameter `date`: expected a date as YYYY-MM-DD, got \"yesterday\""
        );
    }
}
