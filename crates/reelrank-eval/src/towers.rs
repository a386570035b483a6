//! Tower inputs for a split's train data from side information (items, users).

use std::collections::HashMap;

use reelrank_core::{Category, Item, Timestamp, User};
use reelrank_features::{item_bags, item_id_key, UserSchema};
use reelrank_models::TowerInputs;

use crate::TrainData;

/// Feature bags of every user and catalog item of `data`; items and users missing from the side
/// information are described by their id alone. `now` dates item ages (the end of the train period).
pub fn tower_inputs(data: &TrainData, items: &[Item], users: &[User], now: Timestamp) -> TowerInputs {
    let items: HashMap<&str, &Item> = items.iter().map(|i| (i.item_id.as_str(), i)).collect();
    let users: HashMap<&str, &User> = users.iter().map(|u| (u.user_id.as_str(), u)).collect();
    let schema = UserSchema::from_users(users.values().copied());
    let unknown = Category::Other("unknown".into());
    TowerInputs {
        user_slots: data
            .user_ids
            .iter()
            .map(|id| users.get(id.as_str()).map_or_else(|| schema.anonymous_bags(id), |u| schema.bags(u)))
            .collect(),
        item_slots: data
            .item_ids
            .iter()
            .map(|id| match items.get(id.as_str()) {
                Some(item) => item_bags(item, now),
                None => item_bags(&Item::new(id.clone(), unknown.clone()), now),
            })
            .collect(),
        item_keys: data.item_ids.iter().map(|id| item_id_key(id)).collect(),
    }
}
