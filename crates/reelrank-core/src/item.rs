//! Catalog items: episodes, films, shows and short videos.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::validate::{
    check_id, check_labels, check_language, check_optional_id, check_region, check_text, check_time_range,
};
use crate::{FieldError, Timestamp, Validate};

/// Longest playable item accepted, in seconds (a full day of live replay).
pub const MAX_DURATION_S: f64 = 86_400.0;

/// A piece of content that can be recommended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Platform identifier.
    pub item_id: String,
    /// Display title.
    #[serde(default)]
    pub title: String,
    /// Content category; charts and diversity rules work per category.
    pub category: Category,
    /// Free-form labels (genres, topics).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Who made or uploaded it.
    #[serde(default)]
    pub creator_id: Option<String>,
    /// Playing time in seconds; needed to turn watch time into a completion ratio.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Spoken language (BCP 47 tag such as `en`, `zh-CN`).
    #[serde(default)]
    pub language: Option<String>,
    /// ISO 3166 alpha-2 codes where it may be shown; empty means everywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Start of the licence window.
    #[serde(default)]
    pub available_from: Option<Timestamp>,
    /// End of the licence window.
    #[serde(default)]
    pub available_until: Option<Timestamp>,
    /// When it went online on the platform.
    #[serde(default)]
    pub published_at: Option<Timestamp>,
    /// The series (micro-drama, drama) this item is an episode of.
    #[serde(default)]
    pub series_id: Option<String>,
    /// Episode number within `series_id`, from 1.
    #[serde(default)]
    pub episode: Option<u32>,
    /// Minimum viewer age (0 = all audiences).
    #[serde(default)]
    pub age_rating: Option<u8>,
    /// Moderation state; when absent the ingest default applies.
    #[serde(default)]
    pub status: Option<ModerationStatus>,
    /// Moderation flags such as `rumor` or `abuse`.
    #[serde(default)]
    pub flags: Vec<String>,
}

impl Item {
    /// A minimal item of the given category; the other fields empty.
    pub fn new(item_id: impl Into<String>, category: Category) -> Item {
        Item {
            item_id: item_id.into(),
            title: String::new(),
            category,
            tags: Vec::new(),
            creator_id: None,
            duration_s: None,
            language: None,
            regions: Vec::new(),
            available_from: None,
            available_until: None,
            published_at: None,
            series_id: None,
            episode: None,
            age_rating: None,
            status: None,
            flags: Vec::new(),
        }
    }

    /// Whether it can no longer be served as it stands at `now`: taken down, refused in review, or
    /// past the end of its licence. Only a new upsert brings it back.
    pub fn is_gone(&self, now: Timestamp) -> bool {
        matches!(self.status, Some(ModerationStatus::Removed | ModerationStatus::Rejected))
            || self.available_until.is_some_and(|until| until < now)
    }
}

impl Validate for Item {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_id(&mut errors, "item_id", &self.item_id);
        check_text(&mut errors, "title", &self.title, 1024);
        if self.category.as_str().trim().is_empty() {
            errors.push(FieldError::new("category", "must not be empty"));
        }
        check_text(&mut errors, "category", self.category.as_str(), 64);
        check_labels(&mut errors, "tags", &self.tags, 100);
        check_optional_id(&mut errors, "creator_id", &self.creator_id);
        if let Some(d) = self.duration_s {
            if !(d.is_finite() && d > 0.0 && d <= MAX_DURATION_S) {
                errors.push(FieldError::new(
                    "duration_s",
                    format!("{d} is not a duration in seconds within (0, {MAX_DURATION_S}]"),
                ));
            }
        }
        check_language(&mut errors, "language", &self.language);
        for (i, region) in self.regions.iter().enumerate() {
            check_region(&mut errors, &format!("regions[{i}]"), region);
        }
        let earliest = Timestamp::from_ymd(1850, 1, 1).expect("valid date");
        let latest = Timestamp::from_ymd(2200, 1, 1).expect("valid date");
        for (field, ts) in [
            ("available_from", self.available_from),
            ("available_until", self.available_until),
            ("published_at", self.published_at),
        ] {
            if let Some(ts) = ts {
                check_time_range(&mut errors, field, ts, earliest, latest);
            }
        }
        if let (Some(from), Some(until)) = (self.available_from, self.available_until) {
            if until <= from {
                errors.push(FieldError::new("available_until", "must be after available_from"));
            }
        }
        check_optional_id(&mut errors, "series_id", &self.series_id);
        match (self.episode, &self.series_id) {
            (Some(0), _) => errors.push(FieldError::new("episode", "episodes are numbered from 1")),
            (Some(_), None) => errors.push(FieldError::new("episode", "an episode needs a series_id")),
            _ => {}
        }
        if let Some(age) = self.age_rating {
            if age > 21 {
                errors.push(FieldError::new("age_rating", format!("{age} is not a minimum age in 0..=21")));
            }
        }
        check_labels(&mut errors, "flags", &self.flags, 16);
        errors
    }
}

/// Content category. The platforms reelrank serves share a known set; other names are kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Multi-episode drama series.
    Series,
    /// Variety and reality shows.
    Variety,
    /// Feature films, including web movies.
    Movie,
    /// Documentaries.
    Documentary,
    /// Animation.
    Animation,
    /// Vertical micro-drama episodes of one to three minutes.
    MicroDrama,
    /// User-generated short videos.
    ShortVideo,
    /// Any other category name.
    Other(String),
}

impl Category {
    /// The known categories, in a stable order.
    pub const KNOWN: [Category; 7] = [
        Category::Series,
        Category::Variety,
        Category::Movie,
        Category::Documentary,
        Category::Animation,
        Category::MicroDrama,
        Category::ShortVideo,
    ];

    /// The wire name (`micro_drama`).
    pub fn as_str(&self) -> &str {
        match self {
            Category::Series => "series",
            Category::Variety => "variety",
            Category::Movie => "movie",
            Category::Documentary => "documentary",
            Category::Animation => "animation",
            Category::MicroDrama => "micro_drama",
            Category::ShortVideo => "short_video",
            Category::Other(name) => name,
        }
    }

    /// Maps a wire name to a category; unknown names become [`Category::Other`].
    pub fn from_name(name: &str) -> Category {
        Category::KNOWN
            .into_iter()
            .find(|c| c.as_str() == name)
            .unwrap_or_else(|| Category::Other(name.to_owned()))
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Category {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Category {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Category, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(Category::from_name(&name))
    }
}

/// Where an item stands in content review. Only `approved` items are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModerationStatus {
    /// Waiting for review.
    Pending,
    /// Reviewed and allowed.
    Approved,
    /// Reviewed and refused.
    Rejected,
    /// Taken down after having been approved.
    Removed,
}

impl ModerationStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModerationStatus::Pending => "pending",
            ModerationStatus::Approved => "approved",
            ModerationStatus::Rejected => "rejected",
            ModerationStatus::Removed => "removed",
        }
    }

    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<ModerationStatus> {
        [Self::Pending, Self::Approved, Self::Rejected, Self::Removed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::from_json_value;

    fn item(json: serde_json::Value) -> Item {
        from_json_value(json).unwrap()
    }

    #[test]
    fn taken_down_refused_and_expired_items_are_gone() {
        let now = Timestamp(1_000);
        let with =
            |status, until| Item { status, available_until: until, ..Item::new("i", Category::Series) };
        assert!(!with(None, None).is_gone(now));
        assert!(!with(Some(ModerationStatus::Pending), Some(Timestamp(1_000))).is_gone(now));
        assert!(!with(Some(ModerationStatus::Approved), None).is_gone(now));
        assert!(with(Some(ModerationStatus::Removed), None).is_gone(now));
        assert!(with(Some(ModerationStatus::Rejected), None).is_gone(now));
        assert!(with(Some(ModerationStatus::Approved), Some(Timestamp(999))).is_gone(now));
    }

    #[test]
    fn full_item_round_trips() {
        let it = item(serde_json::json!({
            "item_id": "ep-1", "title": "Return of the Heiress, ep. 1", "category": "micro_drama",
            "tags": ["romance", "revenge"], "creator_id": "studio-7", "duration_s": 95.0,
            "language": "zh-CN", "regions": ["CN", "SG"], "available_from": "2026-01-01T00:00:00Z",
            "available_until": "2027-01-01", "published_at": 1767225600000i64, "series_id": "heiress",
            "episode": 1, "age_rating": 12, "status": "approved", "flags": []
        }));
        assert_eq!(it.category, Category::MicroDrama);
        assert!(it.validate().is_empty(), "{:?}", it.validate());
        let back: Item = serde_json::from_str(&serde_json::to_string(&it).unwrap()).unwrap();
        assert_eq!(back, it);
    }

    #[test]
    fn other_categories_are_kept() {
        let it = item(serde_json::json!({"item_id": "x", "category": "live_replay"}));
        assert_eq!(it.category, Category::Other("live_replay".into()));
        assert_eq!(it.category.as_str(), "live_replay");
    }

    #[test]
    fn bad_values_name_their_field() {
        let fields = |json| item(json).validate().into_iter().map(|e| e.field).collect::<Vec<_>>();
        assert_eq!(fields(serde_json::json!({"item_id": " ", "category": "movie"})), ["item_id"]);
        assert_eq!(
            fields(serde_json::json!({"item_id": "a", "category": "movie", "duration_s": -3})),
            ["duration_s"]
        );
        assert_eq!(
            fields(serde_json::json!({"item_id": "a", "category": "movie", "duration_s": 1e9})),
            ["duration_s"]
        );
        assert_eq!(
            fields(serde_json::json!({"item_id": "a", "category": "movie", "regions": ["CN", "china"]})),
            ["regions[1]"]
        );
        assert_eq!(
            fields(serde_json::json!({"item_id": "a", "category": "movie", "published_at": "1200-01-01"})),
            ["published_at"]
        );
        assert_eq!(
            fields(serde_json::json!({"item_id": "a", "category": "movie",
                "available_from": "2026-02-01", "available_until": "2026-01-01"})),
            ["available_until"]
        );
        assert_eq!(
            fields(serde_json::json!({"item_id": "a", "category": "movie", "episode": 3})),
            ["episode"]
        );
    }

    #[test]
    fn unknown_status_is_a_type_error() {
        let err =
            from_json_value::<Item>(serde_json::json!({"item_id": "a", "category": "movie", "status": "ok"}));
        assert_eq!(err.unwrap_err().field, "status");
    }
}
