//! The wide part's features: every key of the user's and the item's slots (memorisation of single
//! values) and their declared crosses (memorisation of pairs: this user × this category, this
//! occupation × this tag, this item × this hour, this watched item × this candidate). Crosses are
//! hashed like every other key, so new pairs need no vocabulary.

use serde::{Deserialize, Serialize};

use crate::hashing::splitmix64;
use crate::schema::{ITEM_CATEGORY_SLOT, ITEM_CREATOR_SLOT, ITEM_ID_SLOT, ITEM_TAGS_SLOT};

/// The key of the pair (`a`, `b`); order matters.
pub fn cross_key(a: u64, b: u64) -> u64 {
    mixed_cross(splitmix64(a), b)
}

/// [`cross_key`] of (`a`, `b`) given `splitmix64(a)`, which a request works out once for all its
/// candidates.
fn mixed_cross(mixed_a: u64, b: u64) -> u64 {
    splitmix64(mixed_a ^ b)
}

/// Which pairs the wide part crosses, fixed when a model is built and saved with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WideSchema {
    /// (user slot, item slot) pairs whose keys are crossed.
    pub user_item: Vec<(usize, usize)>,
    /// How many of the user's latest positives are crossed with the candidate's id.
    pub history: usize,
}

impl WideSchema {
    /// Every user slot (id, attributes, region, language) crossed with the item's category, tags
    /// and creator; the candidate's id crossed with the request's context (hour, page, device) and
    /// with the user's 10 latest positives.
    pub fn standard(user_slots: usize) -> WideSchema {
        let item_slots = [ITEM_CATEGORY_SLOT, ITEM_TAGS_SLOT, ITEM_CREATOR_SLOT];
        let mut user_item: Vec<(usize, usize)> =
            (0..user_slots).flat_map(|u| item_slots.map(|i| (u, i))).collect();
        // Attributes (not the id: a user rates an item once) with the item itself.
        user_item.extend((1..user_slots).map(|u| (u, ITEM_ID_SLOT)));
        WideSchema { user_item, history: 10 }
    }

    /// The wide keys of one (user, item) example: `user` and `item` are their slots (see
    /// [`crate::UserSchema::bags`] and [`crate::item_bags`]), `context` the request's context bag and
    /// `history` the item-id keys of the user's positives, most recent last.
    pub fn keys(
        &self,
        user: &[crate::Bag],
        item: &[crate::Bag],
        context: &[(u64, f32)],
        history: &[u64],
    ) -> Vec<u64> {
        self.request(user, context, history).keys(item)
    }

    /// The request's side of [`WideSchema::keys`], for the candidates of one request.
    pub fn request<'a>(
        &'a self,
        user: &'a [crate::Bag],
        context: &'a [(u64, f32)],
        history: &[u64],
    ) -> WideRequest<'a> {
        let recent = &history[history.len().saturating_sub(self.history)..];
        WideRequest {
            schema: self,
            user,
            context,
            mixed_user: user.iter().map(|bag| bag.iter().map(|&(k, _)| splitmix64(k)).collect()).collect(),
            recent: recent.iter().map(|&h| (h, splitmix64(h))).collect(),
        }
    }
}

/// One request's side of the wide keys, worked out once for all its candidates: half of the
/// hashing of every user-side cross is the same for each of them (serving ranks 500).
pub struct WideRequest<'a> {
    schema: &'a WideSchema,
    user: &'a [crate::Bag],
    context: &'a [(u64, f32)],
    /// Each user slot's keys through `splitmix64`, as [`mixed_cross`] takes them.
    mixed_user: Vec<Vec<u64>>,
    /// The crossed positives' keys, each with its `splitmix64`.
    recent: Vec<(u64, u64)>,
}

impl WideRequest<'_> {
    /// The wide keys of the request with an item whose slots are `item`.
    pub fn keys(&self, item: &[crate::Bag]) -> Vec<u64> {
        let mut keys = Vec::new();
        self.keys_into(item, &mut keys);
        keys
    }

    /// Appends the wide keys of the request with an item whose slots are `item` to `keys` (see
    /// [`WideSchema::keys`]).
    pub fn keys_into(&self, item: &[crate::Bag], keys: &mut Vec<u64>) {
        let pairs = |&(u, i): &(usize, usize)| (self.mixed_user.get(u), item.get(i));
        // Sized up front and filled bag by bag: collecting the flattened bags grew the vector
        // step by step, a third of this function's time when serving ranks 500 candidates.
        let crosses: usize = self
            .schema
            .user_item
            .iter()
            .map(pairs)
            .map(|(u, i)| u.map_or(0, Vec::len) * i.map_or(0, Vec::len))
            .sum();
        let singles: usize = self.user.iter().chain(item).map(Vec::len).sum();
        keys.reserve(singles + crosses + self.context.len() + self.recent.len());
        for bag in self.user.iter().chain(item) {
            keys.extend(bag.iter().map(|&(k, _)| k));
        }
        for (user_bag, item_bag) in self.schema.user_item.iter().map(pairs) {
            let (Some(user_bag), Some(item_bag)) = (user_bag, item_bag) else { continue };
            for &a in user_bag {
                keys.extend(item_bag.iter().map(|&(b, _)| mixed_cross(a, b)));
            }
        }
        if let Some(id) = item.first().and_then(|bag| bag.first()).map(|&(k, _)| k) {
            let mixed_id = splitmix64(id);
            keys.extend(self.context.iter().map(|&(c, _)| mixed_cross(mixed_id, c)));
            keys.extend(
                self.recent.iter().filter(|&&(h, _)| h != id).map(|&(_, mixed)| mixed_cross(mixed, id)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use reelrank_core::{AttributeValue, Category, Item, Timestamp, User};

    use super::*;
    use crate::{context_bag, feature_key, item_bags, item_id_key, UserSchema};

    #[test]
    fn keys_hold_single_values_and_declared_crosses() {
        let mut user = User::new("u1");
        user.attributes.insert("occupation".into(), AttributeValue::Categorical("writer".into()));
        let schema = UserSchema::from_users([&user]);
        let user_bags = schema.bags(&user);
        let mut item = Item::new("i1", Category::Movie);
        item.tags = vec!["drama".into(), "war".into()];
        let item_bags = item_bags(&item, Timestamp(0));
        let context = context_bag(&reelrank_core::EventContext { hour: Some(21), ..Default::default() });
        let wide = WideSchema::standard(user_bags.len());
        let keys = wide.keys(&user_bags, &item_bags, &context, &[item_id_key("i0"), item_id_key("i1")]);

        let occupation = feature_key("user.occupation", "writer");
        let war = feature_key("item.tag", "war");
        let hour = feature_key("context.hour", "21");
        for expected in [
            occupation,
            war,
            cross_key(occupation, war),
            cross_key(feature_key("user", "u1"), feature_key("item.category", "movie")),
            cross_key(item_id_key("i1"), hour),
            cross_key(item_id_key("i0"), item_id_key("i1")),
        ] {
            assert!(keys.contains(&expected), "{expected} missing");
        }
        assert!(!keys.contains(&cross_key(item_id_key("i1"), item_id_key("i1"))), "no self-cross");
        assert_ne!(cross_key(occupation, war), cross_key(war, occupation));
    }
}
