//! Behaviour events: what a user did with an item.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validate::{check_id, check_optional_id, check_text, check_time_range, earliest_plausible};
use crate::{FieldError, Timestamp, Validate};

/// Longest watch time accepted for one `watch` event: one day, in milliseconds.
pub const MAX_WATCH_MS: f64 = 86_400_000.0;

/// How far in the future an event timestamp may lie (clock skew between devices and servers).
pub const MAX_CLOCK_SKEW_MS: i64 = Timestamp::DAY_MS;

/// One user action on one item, appended to the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Idempotency key: an event whose `event_id` was already stored is ignored.
    #[serde(default)]
    pub event_id: Option<String>,
    /// Who acted.
    pub user_id: String,
    /// On what.
    pub item_id: String,
    /// What happened.
    pub kind: EventKind,
    /// Watch milliseconds for `watch`, the rating for `rate`; unused by other kinds.
    #[serde(default)]
    pub value: Option<f64>,
    /// When it happened.
    pub ts: Timestamp,
    /// The recommendation response that showed the item, joining outcomes to impressions.
    #[serde(default)]
    pub request_id: Option<String>,
    /// The experiment variant that served the item (the server sets it on the impressions it
    /// logs; clients may echo it on outcomes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Where it happened.
    #[serde(default)]
    pub context: Option<EventContext>,
}

/// The kinds of behaviour reelrank learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The item was shown.
    Impression,
    /// Playback started.
    Play,
    /// Playback time; `value` is milliseconds watched.
    Watch,
    /// Played to the end.
    Finish,
    /// Liked.
    Like,
    /// Shared.
    Share,
    /// Commented on.
    Comment,
    /// Followed the item's creator.
    Follow,
    /// Swiped away quickly.
    Skip,
    /// Explicit negative feedback.
    NotInterested,
    /// Reported as abusive, false or illegal.
    Report,
    /// An explicit rating; `value` is the score.
    Rate,
}

impl Event {
    /// `kind` by `user_id` on `item_id` at `ts`, nothing else known (no id, value, request,
    /// variant or context).
    pub fn new(
        user_id: impl Into<String>,
        item_id: impl Into<String>,
        kind: EventKind,
        ts: Timestamp,
    ) -> Event {
        Event {
            event_id: None,
            user_id: user_id.into(),
            item_id: item_id.into(),
            kind,
            value: None,
            ts,
            request_id: None,
            variant: None,
            context: None,
        }
    }
}

impl EventKind {
    /// Every kind, in declaration order (also the order of their numeric codes).
    pub const ALL: [EventKind; 12] = [
        EventKind::Impression,
        EventKind::Play,
        EventKind::Watch,
        EventKind::Finish,
        EventKind::Like,
        EventKind::Share,
        EventKind::Comment,
        EventKind::Follow,
        EventKind::Skip,
        EventKind::NotInterested,
        EventKind::Report,
        EventKind::Rate,
    ];

    /// The wire name (`not_interested`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Impression => "impression",
            EventKind::Play => "play",
            EventKind::Watch => "watch",
            EventKind::Finish => "finish",
            EventKind::Like => "like",
            EventKind::Share => "share",
            EventKind::Comment => "comment",
            EventKind::Follow => "follow",
            EventKind::Skip => "skip",
            EventKind::NotInterested => "not_interested",
            EventKind::Report => "report",
            EventKind::Rate => "rate",
        }
    }

    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// A stable small integer, used as the stored representation.
    pub fn code(self) -> i16 {
        EventKind::ALL.iter().position(|k| *k == self).expect("listed") as i16
    }

    /// Inverse of [`EventKind::code`].
    pub fn from_code(code: i16) -> Option<EventKind> {
        usize::try_from(code).ok().and_then(|i| EventKind::ALL.get(i).copied())
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an event happened; used as context features.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventContext {
    /// Device class (`ios`, `android`, `web`, `tv`).
    #[serde(default)]
    pub device: Option<String>,
    /// Page or surface (`feed`, `search`, `series`).
    #[serde(default)]
    pub page: Option<String>,
    /// Local hour of day, 0..=23.
    #[serde(default)]
    pub hour: Option<u8>,
}

impl Validate for Event {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_optional_id(&mut errors, "event_id", &self.event_id);
        check_id(&mut errors, "user_id", &self.user_id);
        check_id(&mut errors, "item_id", &self.item_id);
        check_optional_id(&mut errors, "request_id", &self.request_id);
        check_optional_id(&mut errors, "variant", &self.variant);
        let latest = Timestamp(Timestamp::now().0 + MAX_CLOCK_SKEW_MS);
        check_time_range(&mut errors, "ts", self.ts, earliest_plausible(), latest);
        match (self.kind, self.value) {
            (EventKind::Watch, None) => {
                errors.push(FieldError::new("value", "a watch event needs milliseconds watched"))
            }
            (EventKind::Watch, Some(ms)) if !(ms.is_finite() && (0.0..=MAX_WATCH_MS).contains(&ms)) => errors
                .push(FieldError::new(
                    "value",
                    format!("{ms} is not a watch time in milliseconds within 0..={MAX_WATCH_MS}"),
                )),
            (EventKind::Rate, None) => errors.push(FieldError::new("value", "a rate event needs the rating")),
            (EventKind::Rate, Some(r)) if !(r.is_finite() && (0.0..=10.0).contains(&r)) => {
                errors.push(FieldError::new("value", format!("{r} is not a rating within 0..=10")))
            }
            (_, Some(v)) if !v.is_finite() => {
                errors.push(FieldError::new("value", "must be a finite number"))
            }
            _ => {}
        }
        if let Some(ctx) = &self.context {
            for (field, text) in [("context.device", &ctx.device), ("context.page", &ctx.page)] {
                if let Some(text) = text {
                    check_text(&mut errors, field, text, 64);
                }
            }
            if let Some(hour) = ctx.hour {
                if hour > 23 {
                    errors.push(FieldError::new("context.hour", format!("{hour} is not an hour in 0..=23")));
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::from_json_value;

    fn event(json: serde_json::Value) -> Result<Event, FieldError> {
        from_json_value(json)
    }

    #[test]
    fn kinds_have_stable_codes() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_code(kind.code()), Some(kind));
            assert_eq!(EventKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::Impression.code(), 0);
        assert_eq!(EventKind::Rate.code(), 11);
    }

    #[test]
    fn unknown_kind_is_named() {
        let err = event(
            serde_json::json!({"user_id": "u", "item_id": "i", "kind": "dance", "ts": 1_700_000_000_000i64}),
        );
        assert_eq!(err.unwrap_err().field, "kind");
    }

    #[test]
    fn values_are_checked_per_kind() {
        let check = |json| event(json).unwrap().validate().into_iter().map(|e| e.field).collect::<Vec<_>>();
        let ts = 1_700_000_000_000i64;
        assert!(
            check(serde_json::json!({"user_id": "u", "item_id": "i", "kind": "like", "ts": ts})).is_empty()
        );
        assert_eq!(
            check(serde_json::json!({"user_id": "u", "item_id": "i", "kind": "watch", "ts": ts})),
            ["value"]
        );
        assert_eq!(
            check(
                serde_json::json!({"user_id": "u", "item_id": "i", "kind": "watch", "value": -5, "ts": ts})
            ),
            ["value"]
        );
        assert_eq!(
            check(serde_json::json!({"user_id": "u", "item_id": "i", "kind": "rate", "value": 11, "ts": ts})),
            ["value"]
        );
        // Seconds sent where milliseconds are expected land in 1970 and are refused.
        assert_eq!(
            check(serde_json::json!({"user_id": "u", "item_id": "i", "kind": "play", "ts": 1_700_000_000})),
            ["ts"]
        );
        assert_eq!(
            check(
                serde_json::json!({"user_id": "u", "item_id": "i", "kind": "play", "ts": "2999-01-01T00:00:00Z"})
            ),
            ["ts"]
        );
        assert_eq!(
            check(
                serde_json::json!({"user_id": "", "item_id": "i", "kind": "play", "ts": ts, "context": {"hour": 30}})
            ),
            ["user_id", "context.hour"]
        );
    }
}
