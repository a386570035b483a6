//! Validation at the edge: every problem names the field it is about.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Timestamp;

/// One problem with one field of one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// Dotted path of the field (`regions[2]`, `context.hour`); empty when the record as a whole is wrong.
    pub field: String,
    /// What is wrong, in words.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// Semantic checks that types alone cannot express (ranges, formats, consistency).
pub trait Validate {
    /// Every problem found; empty when the record is acceptable.
    fn validate(&self) -> Vec<FieldError>;
}

/// Deserialises a parsed JSON value into a record, naming the offending field on failure
/// (`"duration_s": invalid type: string "long", expected f64`).
pub fn from_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        // serde reports a missing field at the parent's path; lift the name into `field`.
        let field = quoted_field(&inner)
            .filter(|_| inner.starts_with("missing field"))
            .map(|name| if path == "." { name.to_owned() } else { format!("{path}.{name}") })
            .unwrap_or(if path == "." { String::new() } else { path });
        FieldError::new(field, inner)
    })
}

fn quoted_field(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// Longest identifier (user, item, creator, series, event, request ids) accepted, in bytes.
pub(crate) const MAX_ID_BYTES: usize = 256;

pub(crate) fn check_id(errors: &mut Vec<FieldError>, field: &str, id: &str) {
    if id.trim().is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if id.len() > MAX_ID_BYTES {
        errors.push(FieldError::new(field, format!("longer than {MAX_ID_BYTES} bytes")));
    } else if id.chars().any(char::is_control) {
        errors.push(FieldError::new(field, "contains control characters"));
    }
}

pub(crate) fn check_optional_id(errors: &mut Vec<FieldError>, field: &str, id: &Option<String>) {
    if let Some(id) = id {
        check_id(errors, field, id);
    }
}

pub(crate) fn check_text(errors: &mut Vec<FieldError>, field: &str, text: &str, max_bytes: usize) {
    if text.len() > max_bytes {
        errors.push(FieldError::new(field, format!("longer than {max_bytes} bytes")));
    }
}

pub(crate) fn check_labels(errors: &mut Vec<FieldError>, field: &str, labels: &[String], max_count: usize) {
    if labels.len() > max_count {
        errors.push(FieldError::new(field, format!("more than {max_count} entries")));
    }
    for (i, label) in labels.iter().enumerate() {
        let name = format!("{field}[{i}]");
        if label.trim().is_empty() {
            errors.push(FieldError::new(name, "must not be empty"));
        } else if label.len() > 64 {
            errors.push(FieldError::new(name, "longer than 64 bytes"));
        }
    }
}

/// Earliest timestamp accepted anywhere: older values are almost always seconds sent as
/// milliseconds (or garbage).
pub(crate) fn earliest_plausible() -> Timestamp {
    Timestamp::from_ymd(1990, 1, 1).expect("valid date")
}

pub(crate) fn check_time_range(
    errors: &mut Vec<FieldError>,
    field: &str,
    ts: Timestamp,
    earliest: Timestamp,
    latest: Timestamp,
) {
    if ts < earliest || ts > latest {
        errors.push(FieldError::new(
            field,
            format!("{ts} is outside the accepted range {earliest} .. {latest}"),
        ));
    }
}

pub(crate) fn check_language(errors: &mut Vec<FieldError>, field: &str, language: &Option<String>) {
    if let Some(lang) = language {
        let ok = !lang.is_empty()
            && lang.len() <= 35
            && lang
                .split('-')
                .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()));
        if !ok {
            errors.push(FieldError::new(
                field,
                format!("`{lang}` is not a language tag such as `en` or `zh-CN`"),
            ));
        }
    }
}

pub(crate) fn check_region(errors: &mut Vec<FieldError>, field: &str, region: &str) {
    if region.len() != 2 || !region.chars().all(|c| c.is_ascii_uppercase()) {
        errors
            .push(FieldError::new(field, format!("`{region}` is not an ISO 3166 alpha-2 code such as `CN`")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rec {
        id: String,
        inner: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[test]
    fn errors_name_the_field() {
        let e = from_json_value::<Rec>(serde_json::json!({"inner": {"n": 1}})).unwrap_err();
        assert_eq!(e.field, "id");
        let e = from_json_value::<Rec>(serde_json::json!({"id": "a", "inner": {"n": "x"}})).unwrap_err();
        assert_eq!(e.field, "inner.n");
        let e =
            from_json_value::<Rec>(serde_json::json!({"id": "a", "inner": {"n": 1, "m": 2}})).unwrap_err();
        assert_eq!(e.field, "inner.m");
        let e = from_json_value::<Rec>(serde_json::json!({"id": "a", "inner": {}})).unwrap_err();
        assert_eq!(e.field, "inner.n");
    }
}
