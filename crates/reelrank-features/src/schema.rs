//! The feature schema shared by training and serving: which bags of keys describe a user and an
//! item. Every value is hashed with its field ([`feature_key`]), so new values need no vocabulary.
//!
//! - user slots: id, then one slot per attribute name (categorical value, numeric bucket, or the bag
//!   of a multi-valued attribute), then region and language;
//! - item slots: id, category, tags (bag), creator, duration bucket, language, age bucket.
//!
//! Numbers are bucketised on a log scale (four buckets per doubling), which suits ages, durations
//! and counts alike without fitting boundaries to a data set.

use reelrank_core::{AttributeValue, EventContext, Item, Timestamp, User};

use crate::feature_key;

/// A weighted bag of feature keys: one input slot of a tower.
pub type Bag = Vec<(u64, f32)>;

/// Log-scale bucket of a number: `⌊4·log2(1 + |x|)⌋` with the sign of `x`.
pub fn numeric_bucket(x: f64) -> i64 {
    let b = (4.0 * (1.0 + x.abs()).log2()).floor() as i64;
    if x < 0.0 {
        -b
    } else {
        b
    }
}

fn one(field: &str, value: &str) -> Bag {
    vec![(feature_key(field, value), 1.0)]
}

fn optional(field: &str, value: Option<&str>) -> Bag {
    value.map_or_else(Vec::new, |v| one(field, v))
}

/// The key of an item's id embedding (also what a user's history slot reads).
pub fn item_id_key(item_id: &str) -> u64 {
    feature_key("item", item_id)
}

/// Which user attributes become slots: fixed when a model is built, so every user has the same
/// slots (a user without an attribute gets an empty bag).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserSchema {
    /// Attribute names, sorted.
    pub attributes: Vec<String>,
}

/// Version of the `user_schema.json` layout [`UserSchema::save`] writes.
pub const USER_SCHEMA_FORMAT_VERSION: u32 = 1;

/// `user_schema.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct UserSchemaManifest {
    format_version: u32,
    #[serde(flatten)]
    schema: UserSchema,
}

impl UserSchema {
    /// Writes `user_schema.json` into `dir`: a model whose user side reads slots saves the schema
    /// it was trained with, so that a user attribute added later does not shift its slots.
    pub fn save(&self, dir: &std::path::Path) -> Result<(), crate::PersistError> {
        let manifest =
            UserSchemaManifest { format_version: USER_SCHEMA_FORMAT_VERSION, schema: self.clone() };
        crate::write_manifest(&dir.join("user_schema.json"), &manifest)
    }

    /// Reads what [`UserSchema::save`] wrote.
    pub fn load(dir: &std::path::Path) -> Result<UserSchema, crate::PersistError> {
        let manifest: UserSchemaManifest =
            crate::read_manifest(&dir.join("user_schema.json"), USER_SCHEMA_FORMAT_VERSION)?;
        Ok(manifest.schema)
    }

    /// The attribute names present among `users`.
    pub fn from_users<'a>(users: impl IntoIterator<Item = &'a User>) -> UserSchema {
        let mut attributes: Vec<String> =
            users.into_iter().flat_map(|u| u.attributes.keys().cloned()).collect();
        attributes.sort();
        attributes.dedup();
        UserSchema { attributes }
    }

    /// Slots of a user known only by id (events for users with no record).
    pub fn anonymous_bags(&self, user_id: &str) -> Vec<Bag> {
        self.bags(&User::new(user_id))
    }

    /// The user's slots.
    pub fn bags(&self, user: &User) -> Vec<Bag> {
        let mut slots = vec![one("user", &user.user_id)];
        for name in &self.attributes {
            let field = format!("user.{name}");
            slots.push(match user.attributes.get(name) {
                None => Vec::new(),
                Some(AttributeValue::Categorical(v)) => one(&field, v),
                Some(AttributeValue::Numeric(x)) => one(&field, &numeric_bucket(*x).to_string()),
                Some(AttributeValue::Multi(values)) => {
                    values.iter().map(|v| (feature_key(&field, v), 1.0)).collect()
                }
            });
        }
        slots.push(optional("user.region", user.region.as_deref()));
        slots.push(optional("user.language", user.language.as_deref()));
        slots
    }
}

/// The context slot of the user tower: the hour of day, page and device a request or event came
/// from (each key present when known).
pub fn context_bag(context: &EventContext) -> Bag {
    let hour = context.hour.map(|h| h.to_string());
    [
        ("context.hour", hour.as_deref()),
        ("context.page", context.page.as_deref()),
        ("context.device", context.device.as_deref()),
    ]
    .into_iter()
    .flat_map(|(field, value)| optional(field, value))
    .collect()
}

/// Position of the item id among [`item_bags`]'s slots.
pub const ITEM_ID_SLOT: usize = 0;
/// Position of the category among [`item_bags`]'s slots.
pub const ITEM_CATEGORY_SLOT: usize = 1;
/// Position of the tags among [`item_bags`]'s slots.
pub const ITEM_TAGS_SLOT: usize = 2;
/// Position of the creator among [`item_bags`]'s slots.
pub const ITEM_CREATOR_SLOT: usize = 3;

/// An item's slots (id, category, tags, creator, duration, language, age); `now` dates its age
/// since publication.
pub fn item_bags(item: &Item, now: Timestamp) -> Vec<Bag> {
    vec![
        vec![(item_id_key(&item.item_id), 1.0)],
        one("item.category", item.category.as_str()),
        item.tags.iter().map(|t| (feature_key("item.tag", t), 1.0)).collect(),
        optional("item.creator", item.creator_id.as_deref()),
        optional("item.duration", item.duration_s.map(|d| numeric_bucket(d).to_string()).as_deref()),
        optional("item.language", item.language.as_deref()),
        optional("item.age", item_age_bucket(item, now).map(|b| b.to_string()).as_deref()),
    ]
}

/// The bucket of the item's age in days at `now`: the only one of [`item_bags`] that changes
/// with time, so an item's bags stay valid while it stays the same.
pub fn item_age_bucket(item: &Item, now: Timestamp) -> Option<i64> {
    item.published_at.map(|p| numeric_bucket(((now.millis() - p.millis()) / Timestamp::DAY_MS) as f64))
}

#[cfg(test)]
mod tests {
    use reelrank_core::Category;

    use super::*;

    #[test]
    fn the_user_schema_saves_and_loads() {
        let mut user = User::new("u");
        user.attributes.insert("occupation".into(), AttributeValue::Categorical("writer".into()));
        let schema = UserSchema::from_users([&user]);
        let dir = tempfile::tempdir().unwrap();
        schema.save(dir.path()).unwrap();
        assert_eq!(UserSchema::load(dir.path()).unwrap(), schema);
    }

    #[test]
    fn buckets_are_log_scaled() {
        assert_eq!(numeric_bucket(0.0), 0);
        assert_eq!(numeric_bucket(1.0), 4);
        assert_eq!(numeric_bucket(3.0), 8);
        assert_eq!(numeric_bucket(-3.0), -8);
        assert_eq!(numeric_bucket(24.0), numeric_bucket(25.0));
        assert_ne!(numeric_bucket(20.0), numeric_bucket(60.0));
    }

    #[test]
    fn every_user_gets_the_same_slots() {
        let mut a = User::new("a");
        a.attributes.insert("age".into(), AttributeValue::Numeric(23.0));
        a.attributes.insert("likes".into(), AttributeValue::Multi(vec!["x".into(), "y".into()]));
        let b = User::new("b");
        let schema = UserSchema::from_users([&a, &b]);
        assert_eq!(schema.attributes, ["age", "likes"]);
        let (bags_a, bags_b) = (schema.bags(&a), schema.bags(&b));
        assert_eq!(bags_a.len(), bags_b.len());
        assert_eq!(bags_a[2].len(), 2);
        assert!(bags_b[1].is_empty());
        assert_ne!(bags_a[0], bags_b[0]);
    }

    #[test]
    fn context_keys_are_present_when_known() {
        let context = EventContext { device: Some("ios".into()), page: None, hour: Some(21) };
        let bag = context_bag(&context);
        assert_eq!(
            bag,
            vec![(feature_key("context.hour", "21"), 1.0), (feature_key("context.device", "ios"), 1.0)]
        );
        assert!(context_bag(&EventContext::default()).is_empty());
    }

    #[test]
    fn item_slots_hash_their_fields() {
        let mut item = Item::new("i1", Category::MicroDrama);
        item.tags = vec!["romance".into()];
        let bags = item_bags(&item, Timestamp(0));
        assert_eq!(bags.len(), 7);
        assert_eq!(bags[0], vec![(item_id_key("i1"), 1.0)]);
        assert!(bags[3].is_empty(), "no creator");
        assert_ne!(bags[2][0].0, feature_key("item.category", "romance"));
    }
}
