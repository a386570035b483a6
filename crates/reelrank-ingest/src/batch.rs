//! Decoding of ingest request bodies: a JSON array or NDJSON, validated as a whole.
//!
//! Either every record of a batch is acceptable and the batch is returned, or the caller gets the
//! list of problems, each naming the record's index and the field, and must write nothing.

use std::fmt;

use reelrank_core::{from_json_value, FieldError, Validate};
use serde::de::{DeserializeOwned, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserializer, Serialize};

/// At most this many problems are reported for one batch; the rest are summarised.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// A problem with record `index` (0-based position in the array, or line order in NDJSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordError {
    /// Position of the record in the batch.
    pub index: usize,
    /// Field path within the record; empty when the record itself is malformed.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    /// More records than the configured limit.
    #[error("batch has more than {max_records} records")]
    TooLarge {
        /// The limit.
        max_records: usize,
    },
    /// The batch holds no record at all.
    #[error("batch is empty")]
    Empty,
    /// Some records are malformed or invalid (at most [`MAX_REPORTED_ERRORS`] listed).
    #[error("{} invalid record(s)", .0.len())]
    Invalid(Vec<RecordError>),
}

/// Decodes and validates a batch of records of type `T`.
///
/// The format is taken from the first non-blank byte: `[` starts a JSON array, anything else is read
/// as NDJSON (one JSON object per non-blank line).
pub fn decode_batch<T: DeserializeOwned + Validate>(
    body: &[u8],
    max_records: usize,
) -> Result<Vec<T>, BatchError> {
    let values = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(BatchError::Empty),
        Some(b'[') => json_array(body, max_records)?,
        Some(_) => ndjson(body, max_records)?,
    };
    if values.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut records = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        match from_json_value::<T>(value) {
            Ok(record) => {
                let problems = record.validate();
                errors.extend(problems.into_iter().map(|e| located(index, e)));
                records.push(record);
            }
            Err(e) => errors.push(located(index, e)),
        }
        if errors.len() >= MAX_REPORTED_ERRORS {
            errors.truncate(MAX_REPORTED_ERRORS);
            break;
        }
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        Err(BatchError::Invalid(errors))
    }
}

fn located(index: usize, error: FieldError) -> RecordError {
    RecordError { index, field: error.field, message: error.message }
}

fn malformed(index: usize, message: impl Into<String>) -> BatchError {
    BatchError::Invalid(vec![RecordError { index, field: String::new(), message: message.into() }])
}

/// Parses a JSON array element by element, so a syntax error can be pinned to the element it is in.
fn json_array(body: &[u8], max_records: usize) -> Result<Vec<serde_json::Value>, BatchError> {
    let mut values = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Elements { values: &mut values, max_records }.deserialize(&mut de).and_then(|()| de.end());
    match parsed {
        Ok(()) => Ok(values),
        Err(_) if values.len() > max_records => Err(BatchError::TooLarge { max_records }),
        Err(err) => Err(malformed(values.len(), format!("malformed JSON: {err}"))),
    }
}

struct Elements<'a> {
    values: &'a mut Vec<serde_json::Value>,
    max_records: usize,
}

impl<'de> DeserializeSeed<'de> for Elements<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<serde_json::Value>()? {
            self.values.push(value);
            if self.values.len() > self.max_records {
                return Err(serde::de::Error::custom("too many records"));
            }
        }
        Ok(())
    }
}

fn ndjson(body: &[u8], max_records: usize) -> Result<Vec<serde_json::Value>, BatchError> {
    let mut values = Vec::new();
    for line in body.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if values.len() == max_records {
            return Err(BatchError::TooLarge { max_records });
        }
        let index = values.len();
        let text = std::str::from_utf8(line).map_err(|e| {
            malformed(index, format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to()))
        })?;
        let value =
            serde_json::from_str(text).map_err(|e| malformed(index, format!("malformed JSON line: {e}")))?;
        values.push(value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use reelrank_core::Event;

    use super::*;

    const OK: &str = r#"{"user_id":"u","item_id":"i","kind":"play","ts":"2026-01-01T00:00:00Z"}"#;

    fn errors(body: &[u8]) -> Vec<(usize, String)> {
        match decode_batch::<Event>(body, 10) {
            Err(BatchError::Invalid(errors)) => errors.into_iter().map(|e| (e.index, e.field)).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn array_and_ndjson_decode_alike() {
        let array = format!("[{OK},{OK}]");
        let lines = format!("{OK}\n\n{OK}\n");
        assert_eq!(decode_batch::<Event>(array.as_bytes(), 10).unwrap().len(), 2);
        assert_eq!(decode_batch::<Event>(lines.as_bytes(), 10).unwrap().len(), 2);
    }

    #[test]
    fn malformed_json_names_the_record() {
        assert_eq!(errors(format!("[{OK}, {OK}, {{\"user_id\": ]").as_bytes()), [(2, String::new())]);
        assert_eq!(errors(format!("{OK}\n{{oops\n").as_bytes()), [(1, String::new())]);
    }

    #[test]
    fn non_utf8_names_the_record() {
        let mut body = format!("[{OK},").into_bytes();
        body.extend_from_slice(b"{\"user_id\":\"\xff\xfe\",\"item_id\":\"i\",\"kind\":\"play\",\"ts\":1}]");
        assert_eq!(errors(&body), [(1, String::new())]);
        let mut lines = format!("{OK}\n").into_bytes();
        lines.extend_from_slice(b"{\"user_id\":\"\xc3\x28\"}\n");
        assert_eq!(errors(&lines), [(1, String::new())]);
    }

    #[test]
    fn type_and_value_errors_name_record_and_field() {
        let body = format!(
            r#"[{OK}, {{"user_id":"u","item_id":"i","kind":"play","ts":true}}, {{"user_id":"","item_id":"i","kind":"like","ts":"2026-01-01"}}]"#
        );
        assert_eq!(errors(body.as_bytes()), [(1, "ts".to_owned()), (2, "user_id".to_owned())]);
    }

    #[test]
    fn size_limits() {
        let many = format!("[{}]", [OK; 11].join(","));
        assert_eq!(decode_batch::<Event>(many.as_bytes(), 10), Err(BatchError::TooLarge { max_records: 10 }));
        let lines = [OK; 11].join("\n");
        assert_eq!(
            decode_batch::<Event>(lines.as_bytes(), 10),
            Err(BatchError::TooLarge { max_records: 10 })
        );
        assert_eq!(decode_batch::<Event>(b"  \n", 10), Err(BatchError::Empty));
        assert_eq!(decode_batch::<Event>(b"[]", 10), Err(BatchError::Empty));
    }
}
