//! Viewers and their attributes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::{check_id, check_labels, check_language, check_region};
use crate::{FieldError, Item, Timestamp, Validate};

/// A viewer of the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Platform identifier.
    pub user_id: String,
    /// Typed attributes used as features: a JSON string is categorical, a number numeric, a list of
    /// strings multi-valued (`{"occupation": "student", "age": 23, "interests": ["cooking"]}`).
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeValue>,
    /// ISO 3166 alpha-2 code of where the user is served.
    #[serde(default)]
    pub region: Option<String>,
    /// Preferred language (BCP 47).
    #[serde(default)]
    pub language: Option<String>,
    /// Year of birth, used for age ratings and minor protection.
    #[serde(default)]
    pub birth_year: Option<i32>,
    /// Whether the feed may be personalised; `false` gives a non-personalised feed. Absent leaves a
    /// stored choice as it was (a catalog sync must not undo a user's opt-out); new users start on.
    #[serde(default)]
    pub personalization: Option<bool>,
    /// A minor whatever `birth_year` says (`true`), for minor mode: age ratings capped below 18
    /// and a daily watch-time cap. Absent leaves a stored mark as it was.
    #[serde(default)]
    pub minor: Option<bool>,
    /// What the user asked of their feed through the user-control API; never set by ingest.
    #[serde(default, skip_deserializing, skip_serializing_if = "UserControls::is_empty")]
    pub controls: UserControls,
}

/// A user's own controls over their feed (`/v1/users/{user_id}/...`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserControls {
    /// Interest tags the user deleted: items carrying one are not recommended to them, and past
    /// positives on such items no longer shape their feed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden_tags: Vec<String>,
    /// Creators the user is not interested in: none of their items is recommended to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_creators: Vec<String>,
    /// When the user last reset their profile: what they did before no longer shapes the feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<Timestamp>,
}

impl UserControls {
    /// Whether the user has set none.
    pub fn is_empty(&self) -> bool {
        self.hidden_tags.is_empty() && self.blocked_creators.is_empty() && self.reset_at.is_none()
    }

    /// Whether `item` is one the user asked not to see: it carries a hidden tag or is by a blocked
    /// creator.
    pub fn hides(&self, item: &Item) -> bool {
        item.tags.iter().any(|tag| self.hidden_tags.contains(tag))
            || item.creator_id.as_ref().is_some_and(|c| self.blocked_creators.contains(c))
    }
}

impl User {
    /// A user with nothing known but the id (what events for unknown users create).
    pub fn new(user_id: impl Into<String>) -> User {
        User {
            user_id: user_id.into(),
            attributes: BTreeMap::new(),
            region: None,
            language: None,
            birth_year: None,
            personalization: None,
            minor: None,
            controls: UserControls::default(),
        }
    }

    /// Whether personalised recommendation is on (the default when never set).
    pub fn personalized(&self) -> bool {
        self.personalization.unwrap_or(true)
    }

    /// The user's age in whole years at `now`, from `birth_year` (at the youngest it could be).
    pub fn age(&self, now: Timestamp) -> Option<i32> {
        self.birth_year.map(|year| (now.year() - year - 1).max(0))
    }

    /// Whether minor mode applies: marked a minor, or younger than 18 by `birth_year`.
    pub fn is_minor(&self, now: Timestamp) -> bool {
        self.minor == Some(true) || self.age(now).is_some_and(|age| age < 18)
    }
}

/// One typed user attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A number (age, tenure days); bucketised into features.
    Numeric(f64),
    /// One value out of a set (occupation, device class).
    Categorical(String),
    /// Several values (declared interests).
    Multi(Vec<String>),
}

impl Validate for User {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_id(&mut errors, "user_id", &self.user_id);
        if self.attributes.len() > 64 {
            errors.push(FieldError::new("attributes", "more than 64 attributes"));
        }
        for (name, value) in &self.attributes {
            let field = format!("attributes.{name}");
            if name.is_empty() || name.len() > 64 {
                errors.push(FieldError::new(&field, "attribute names must have 1 to 64 bytes"));
            }
            match value {
                AttributeValue::Numeric(x) if !x.is_finite() => {
                    errors.push(FieldError::new(field, "must be a finite number"))
                }
                AttributeValue::Categorical(s) if s.is_empty() || s.len() > 256 => {
                    errors.push(FieldError::new(field, "categorical values must have 1 to 256 bytes"))
                }
                AttributeValue::Multi(values) => check_labels(&mut errors, &field, values, 100),
                _ => {}
            }
        }
        if let Some(region) = &self.region {
            check_region(&mut errors, "region", region);
        }
        check_language(&mut errors, "language", &self.language);
        if let Some(year) = self.birth_year {
            let this_year = Timestamp::now().year();
            if !(1900..=this_year).contains(&year) {
                errors.push(FieldError::new(
                    "birth_year",
                    format!("{year} is not a year in 1900..={this_year}"),
                ));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::from_json_value;

    #[test]
    fn attribute_types_follow_json_types() {
        let u: User = from_json_value(serde_json::json!({
            "user_id": "u1", "attributes": {"occupation": "student", "age": 23, "interests": ["food", "travel"]},
            "region": "CN", "birth_year": 2003
        }))
        .unwrap();
        assert_eq!(u.attributes["occupation"], AttributeValue::Categorical("student".into()));
        assert_eq!(u.attributes["age"], AttributeValue::Numeric(23.0));
        assert_eq!(u.attributes["interests"], AttributeValue::Multi(vec!["food".into(), "travel".into()]));
        assert!(u.personalized());
        assert!(u.validate().is_empty());
    }

    #[test]
    fn bad_attributes_are_named() {
        let err = from_json_value::<User>(serde_json::json!({"user_id": "u1", "attributes": {"vip": true}}));
        assert_eq!(err.unwrap_err().field, "attributes.vip");
        let u: User = from_json_value(serde_json::json!({"user_id": "u1", "birth_year": 1700})).unwrap();
        assert_eq!(u.validate()[0].field, "birth_year");
    }
}
