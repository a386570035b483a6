//! The content review workflow: which status changes a moderator may make, the flags they set,
//! and what a decision must say.
//!
//! ```text
//! pending ──> approved ──> removed      (taken down after being public)
//!    │  ^        │           │
//!    v  └────────┘ (back to review)     removed, rejected ──> pending (appeal) or approved
//! rejected                              (reinstated)
//! ```
//!
//! An item never public is rejected, not removed; a public one is removed, not rejected, so the
//! audit log tells the two apart. A decision keeping the status changes flags or records a reason.

use serde::{Deserialize, Serialize};

use crate::validate::check_text;
use crate::{FieldError, ModerationStatus, Validate};

/// The flags a moderator sets: a rumour (false or unverified claims) and abuse (harassment,
/// hate, exploitation). Feeds leave flagged items out (`[serving.pipeline.filters]`).
pub const REVIEW_FLAGS: [&str; 2] = ["rumor", "abuse"];

/// The flag an item carries while its creator is blocked; every feed and chart leaves it out,
/// whatever the filter settings.
pub const CREATOR_BLOCKED: &str = "creator_blocked";

impl ModerationStatus {
    /// Whether a moderator may move an item from this status to `to`.
    pub fn can_become(self, to: ModerationStatus) -> bool {
        use ModerationStatus::{Approved, Pending, Rejected, Removed};
        self == to
            || matches!(
                (self, to),
                (Pending, Approved | Rejected)
                    | (Approved, Removed | Pending)
                    | (Rejected, Pending | Approved)
                    | (Removed, Pending | Approved)
            )
    }
}

/// A moderator's decision on an item (`POST /v1/moderation/items/{item_id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemDecision {
    /// The status it moves to.
    pub status: ModerationStatus,
    /// Its review flags from now on (absent: unchanged).
    #[serde(default)]
    pub flags: Option<Vec<String>>,
    /// Why, for the audit log.
    pub reason: String,
}

/// A moderator's decision on a creator (`POST /v1/moderation/creators/{creator_id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatorDecision {
    /// Blocked (their items leave every response, uploads included) or not.
    pub blocked: bool,
    /// Why, for the audit log.
    pub reason: String,
}

fn check_reason(errors: &mut Vec<FieldError>, reason: &str) {
    if reason.trim().is_empty() {
        errors.push(FieldError::new("reason", "must say why (it goes to the audit log)"));
    }
    check_text(errors, "reason", reason, 2000);
}

impl Validate for ItemDecision {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_reason(&mut errors, &self.reason);
        for flag in self.flags.iter().flatten() {
            if !REVIEW_FLAGS.contains(&flag.as_str()) {
                let known = REVIEW_FLAGS.join(", ");
                errors.push(FieldError::new("flags", format!("unknown flag {flag:?} (known: {known})")));
            }
        }
        errors
    }
}

impl Validate for CreatorDecision {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_reason(&mut errors, &self.reason);
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::from_json_value;

    #[test]
    fn the_workflow_allows_exactly_its_transitions() {
        use ModerationStatus::{Approved, Pending, Rejected, Removed};
        let all = [Pending, Approved, Rejected, Removed];
        let allowed: Vec<(ModerationStatus, ModerationStatus)> = all
            .iter()
            .flat_map(|&a| all.iter().map(move |&b| (a, b)))
            .filter(|(a, b)| a.can_become(*b))
            .collect();
        let mut expected: Vec<_> = all.iter().map(|&s| (s, s)).collect();
        expected.extend([
            (Pending, Approved),
            (Pending, Rejected),
            (Approved, Pending),
            (Approved, Removed),
            (Rejected, Pending),
            (Rejected, Approved),
            (Removed, Pending),
            (Removed, Approved),
        ]);
        assert_eq!(allowed.len(), expected.len());
        assert!(expected.iter().all(|t| allowed.contains(t)));
    }

    #[test]
    fn decisions_need_a_reason_and_known_flags() {
        let decision: ItemDecision = from_json_value(
            serde_json::json!({"status": "removed", "flags": ["rumor"], "reason": "false claim"}),
        )
        .unwrap();
        assert!(decision.validate().is_empty());
        let bad = ItemDecision { flags: Some(vec!["spam".into()]), reason: " ".into(), ..decision };
        let fields: Vec<String> = bad.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["reason", "flags"]);
        assert!(
            from_json_value::<ItemDecision>(serde_json::json!({"status": "gone", "reason": "x"})).is_err()
        );
        let creator = CreatorDecision { blocked: true, reason: String::new() };
        assert_eq!(creator.validate().len(), 1);
    }
}
