//! Positive user–item interactions as compressed sparse rows, both ways.

/// Who interacted positively with what, with users and items as dense indices.
#[derive(Debug, Clone)]
pub struct Interactions {
    num_items: usize,
    user_offsets: Vec<usize>,
    user_items: Vec<u32>,
    item_offsets: Vec<usize>,
    item_users: Vec<u32>,
}

impl Interactions {
    /// Builds from `(user, item)` pairs; repeated pairs count once. A user's items keep the order of
    /// their first appearance (callers pass pairs in time order so histories are chronological).
    pub fn from_pairs(num_users: usize, num_items: usize, pairs: &[(u32, u32)]) -> Interactions {
        let mut per_user: Vec<Vec<u32>> = vec![Vec::new(); num_users];
        let mut seen = std::collections::HashSet::with_capacity(pairs.len());
        for &(user, item) in pairs {
            if seen.insert((user, item)) {
                per_user[user as usize].push(item);
            }
        }
        let (user_offsets, user_items) = compress(&per_user);
        let mut per_item: Vec<Vec<u32>> = vec![Vec::new(); num_items];
        for (user, items) in per_user.iter().enumerate() {
            for &item in items {
                per_item[item as usize].push(user as u32);
            }
        }
        let (item_offsets, item_users) = compress(&per_item);
        Interactions { num_items, user_offsets, user_items, item_offsets, item_users }
    }

    /// Number of users.
    pub fn num_users(&self) -> usize {
        self.user_offsets.len() - 1
    }

    /// Number of items.
    pub fn num_items(&self) -> usize {
        self.num_items
    }

    /// A user's items, in time order.
    pub fn items_of(&self, user: u32) -> &[u32] {
        let u = user as usize;
        &self.user_items[self.user_offsets[u]..self.user_offsets[u + 1]]
    }

    /// An item's users.
    pub fn users_of(&self, item: u32) -> &[u32] {
        let i = item as usize;
        &self.item_users[self.item_offsets[i]..self.item_offsets[i + 1]]
    }
}

fn compress(rows: &[Vec<u32>]) -> (Vec<usize>, Vec<u32>) {
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0);
    let mut values = Vec::with_capacity(rows.iter().map(Vec::len).sum());
    for row in rows {
        values.extend_from_slice(row);
        offsets.push(values.len());
    }
    (offsets, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_agree() {
        let m = Interactions::from_pairs(3, 4, &[(0, 2), (0, 1), (2, 1), (0, 2), (2, 3)]);
        assert_eq!(m.items_of(0), [2, 1]);
        assert!(m.items_of(1).is_empty());
        assert_eq!(m.users_of(1), [0, 2]);
        assert_eq!(m.users_of(3), [2]);
        assert_eq!((m.num_users(), m.num_items()), (3, 4));
    }
}
