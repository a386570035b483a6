//! Tower inputs for a split's train data from side information (items, users).

use std::collections::HashMap;

use reelrank_core::{Category, Item, Timestamp, User};
use reelrank_features::{item_bags, item_id_key, UserSchema};
use reelrank_models::{TowerInputs, TwoTower, TwoTowerConfig, TwoTowerRetriever};

use crate::{RetrievalReport, RetrievalTask, TrainData};

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
        contexts: data.contexts.clone(),
    }
}

/// Trains a two-tower model on `task`'s train data, evaluating on its test positives after every
/// epoch (`on_epoch(epoch, loss, report)`), and stops `patience` epochs after the best NDCG@20.
/// Returns the best number of epochs, for a refit on all the data, and the model of that epoch.
pub fn epochs_by_early_stopping(
    task: &RetrievalTask,
    inputs: &TowerInputs,
    config: &TwoTowerConfig,
    patience: usize,
    mut on_epoch: impl FnMut(usize, f32, &RetrievalReport),
) -> (usize, TwoTower) {
    let (mut best, mut best_epoch, mut best_model) = (f64::NEG_INFINITY, 0, None);
    let last = TwoTower::fit(inputs, &task.data.positives, config, |epoch, loss, model| {
        let report = task.evaluate(&TwoTowerRetriever::new(model, inputs));
        on_epoch(epoch, loss, &report);
        if report.ndcg_20 > best {
            (best, best_epoch, best_model) = (report.ndcg_20, epoch, Some(model.clone()));
        }
        epoch < best_epoch + patience
    });
    (best_epoch + 1, best_model.unwrap_or(last))
}
