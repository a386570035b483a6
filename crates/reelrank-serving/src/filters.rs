//! The filters every candidate passes before it is ranked, in one place: each is one variant of
//! [`Filter`], checked by [`Filter::rejects`] and testable alone, and a response counts what each
//! removed so that an operator can see why a feed is thin.

use rustc_hash::FxHashSet;

use reelrank_core::{Item, ModerationStatus, Timestamp, User, CREATOR_BLOCKED};
use serde::{Deserialize, Serialize};

use crate::activity::UserActivity;
use crate::catalog::ItemIndex;

/// What the filters allow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Moderation flags that keep an item out of every feed.
    pub blocked_flags: Vec<String>,
    /// The age assumed for a user without a birth year, against items' age ratings.
    pub age_when_unknown: u8,
    /// `not_interested` marks on a creator's items after which none of that creator's items is
    /// shown (below it, the creator is only ranked lower).
    pub creator_block_after: u32,
    /// The age assumed for a user marked a minor without a birth year.
    pub minor_age_when_unknown: u8,
}

impl Default for FilterConfig {
    fn default() -> FilterConfig {
        FilterConfig {
            blocked_flags: vec!["rumor".into(), "abuse".into()],
            age_when_unknown: 18,
            creator_block_after: 2,
            minor_age_when_unknown: 12,
        }
    }
}

impl FilterConfig {
    /// Whether moderation keeps `item` out of every response: not approved, flagged with a
    /// blocked flag, or by a blocked creator. An item without a status predates moderation; the
    /// store gives every item one.
    pub fn withholds(&self, item: &Item) -> bool {
        item.status.is_some_and(|s| s != ModerationStatus::Approved)
            || item.flags.iter().any(|f| f == CREATOR_BLOCKED || self.blocked_flags.contains(f))
    }

    /// Whether `item` may stand in a chart at `now`: neither gone (taken down, refused, past its
    /// licence) nor withheld by moderation. The server's charts and `reelrank charts` agree on it.
    pub fn charts(&self, item: &Item, now: Timestamp) -> bool {
        !item.is_gone(now) && !self.withholds(item)
    }
}

/// One filter; [`Filter::ALL`] is the order they are checked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Not approved, or carrying a blocked moderation flag.
    Moderation,
    /// Outside its licence window, or scheduled to be published later.
    Licence,
    /// Not licensed in the user's region (a user of unknown region sees only unrestricted items).
    Region,
    /// Rated above the user's age (minors: at most 17, or `minor_age_when_unknown`).
    AgeRating,
    /// Already served to or watched by the user.
    Seen,
    /// Marked `not_interested`, by a creator the user marked so often, or hidden by the user's
    /// controls (a deleted interest tag, a creator they are not interested in).
    NotInterested,
    /// In the request's `exclude` list.
    Excluded,
    /// The user's own item.
    OwnItem,
}

/// What the filters know of the request.
#[derive(Debug, Clone, Copy)]
pub struct FilterInput<'a> {
    /// Who asks.
    pub user_id: &'a str,
    /// Their record, when there is one.
    pub user: Option<&'a User>,
    /// Their behaviour.
    pub activity: &'a UserActivity,
    /// Items the request excludes.
    pub exclude: &'a FxHashSet<ItemIndex>,
    /// The request's time.
    pub now: Timestamp,
}

impl Filter {
    /// Every filter, in the order they are checked.
    pub const ALL: [Filter; 8] = [
        Filter::Moderation,
        Filter::Licence,
        Filter::Region,
        Filter::AgeRating,
        Filter::Seen,
        Filter::NotInterested,
        Filter::Excluded,
        Filter::OwnItem,
    ];

    /// The wire name (`not_interested`).
    pub fn as_str(self) -> &'static str {
        match self {
            Filter::Moderation => "moderation",
            Filter::Licence => "licence",
            Filter::Region => "region",
            Filter::AgeRating => "age_rating",
            Filter::Seen => "seen",
            Filter::NotInterested => "not_interested",
            Filter::Excluded => "excluded",
            Filter::OwnItem => "own_item",
        }
    }

    /// Whether this filter keeps `item` (at `index`) out of the response.
    pub fn rejects(
        self,
        item: &Item,
        index: ItemIndex,
        input: &FilterInput<'_>,
        config: &FilterConfig,
    ) -> bool {
        match self {
            Filter::Moderation => config.withholds(item),
            Filter::Licence => {
                item.available_from.is_some_and(|t| input.now < t)
                    || item.available_until.is_some_and(|t| input.now >= t)
                    || item.published_at.is_some_and(|t| input.now < t)
            }
            Filter::Region => {
                !item.regions.is_empty()
                    && !input.user.and_then(|u| u.region.as_ref()).is_some_and(|r| item.regions.contains(r))
            }
            Filter::AgeRating => {
                let minor = input.user.is_some_and(|u| u.is_minor(input.now));
                let age = match (input.user.and_then(|u| u.age(input.now)), minor) {
                    (Some(age), true) => age.min(17),
                    (Some(age), false) => age,
                    (None, true) => i32::from(config.minor_age_when_unknown),
                    (None, false) => i32::from(config.age_when_unknown),
                };
                item.age_rating.is_some_and(|rating| i32::from(rating) > age)
            }
            Filter::Seen => input.activity.seen.contains(&index),
            Filter::NotInterested => {
                input.activity.not_interested.contains(&index)
                    || input.user.is_some_and(|u| u.controls.hides(item))
                    || item.creator_id.as_ref().is_some_and(|c| {
                        input
                            .activity
                            .disliked_creators
                            .get(c)
                            .is_some_and(|&n| n >= config.creator_block_after)
                    })
            }
            Filter::Excluded => input.exclude.contains(&index),
            Filter::OwnItem => item.creator_id.as_deref() == Some(input.user_id),
        }
    }

    /// The first filter that rejects `item`, if any.
    pub fn first_rejecting(
        item: &Item,
        index: ItemIndex,
        input: &FilterInput<'_>,
        config: &FilterConfig,
    ) -> Option<Filter> {
        Filter::ALL.into_iter().find(|f| f.rejects(item, index, input, config))
    }
}

#[cfg(test)]
mod tests {
    use crate::activity::SeenItems;
    use reelrank_core::Category;
    use rustc_hash::FxHashMap;

    use super::*;

    /// Whether `filter` rejects `item` for `user` (no activity unless given).
    fn rejects(
        filter: Filter,
        item: &Item,
        user: &User,
        activity: &UserActivity,
        exclude: &[ItemIndex],
    ) -> bool {
        let exclude: FxHashSet<ItemIndex> = exclude.iter().copied().collect();
        let input = FilterInput {
            user_id: &user.user_id,
            user: Some(user),
            activity,
            exclude: &exclude,
            now: Timestamp::from_ymd(2026, 6, 1).unwrap(),
        };
        filter.rejects(item, 0, &input, &FilterConfig::default())
    }

    fn item() -> Item {
        Item { status: Some(ModerationStatus::Approved), ..Item::new("i", Category::MicroDrama) }
    }

    #[test]
    fn each_filter_rejects_what_it_names_and_nothing_else() {
        let user = User { region: Some("DE".into()), birth_year: Some(2012), ..User::new("u") };
        let none = UserActivity::default();
        let plain = item();
        for filter in Filter::ALL {
            assert!(!rejects(filter, &plain, &user, &none, &[]), "{filter:?} rejected a plain item");
        }
        let day = |m, d| Timestamp::from_ymd(2026, m, d);
        let cases: Vec<(Filter, Item)> = vec![
            (Filter::Moderation, Item { status: Some(ModerationStatus::Pending), ..item() }),
            (Filter::Moderation, Item { status: Some(ModerationStatus::Removed), ..item() }),
            (Filter::Moderation, Item { flags: vec!["rumor".into()], ..item() }),
            (Filter::Moderation, Item { flags: vec![CREATOR_BLOCKED.into()], ..item() }),
            (Filter::Licence, Item { available_from: day(7, 1), ..item() }),
            (Filter::Licence, Item { available_until: day(6, 1), ..item() }),
            (Filter::Licence, Item { published_at: day(7, 1), ..item() }),
            (Filter::Region, Item { regions: vec!["FR".into()], ..item() }),
            (Filter::AgeRating, Item { age_rating: Some(16), ..item() }),
            (Filter::OwnItem, Item { creator_id: Some("u".into()), ..item() }),
        ];
        for (filter, rejected) in &cases {
            assert!(rejects(*filter, rejected, &user, &none, &[]), "{filter:?} kept {rejected:?}");
        }
        assert!(!rejects(Filter::Region, &Item { regions: vec!["DE".into()], ..item() }, &user, &none, &[]));
        assert!(!rejects(Filter::Licence, &Item { available_from: day(5, 1), ..item() }, &user, &none, &[]));
        assert!(!rejects(
            Filter::Moderation,
            &Item { flags: vec!["satire".into()], ..item() },
            &user,
            &none,
            &[]
        ));
        assert!(rejects(Filter::Excluded, &plain, &user, &none, &[0]));
        let seen = UserActivity { seen: SeenItems::from_iter([0]), ..UserActivity::default() };
        assert!(rejects(Filter::Seen, &plain, &user, &seen, &[]));
        let marked = UserActivity { not_interested: FxHashSet::from_iter([0]), ..UserActivity::default() };
        assert!(rejects(Filter::NotInterested, &plain, &user, &marked, &[]));
        let by = Item { creator_id: Some("c".into()), ..item() };
        let once = UserActivity {
            disliked_creators: FxHashMap::from_iter([("c".into(), 1)]),
            ..UserActivity::default()
        };
        let twice = UserActivity {
            disliked_creators: FxHashMap::from_iter([("c".into(), 2)]),
            ..UserActivity::default()
        };
        assert!(!rejects(Filter::NotInterested, &by, &user, &once, &[]));
        assert!(rejects(Filter::NotInterested, &by, &user, &twice, &[]));
    }

    #[test]
    fn charts_show_only_what_every_feed_may_serve() {
        let config = FilterConfig::default();
        let now = Timestamp::from_ymd(2026, 6, 1).unwrap();
        assert!(config.charts(&item(), now));
        let pending = Item { status: Some(ModerationStatus::Pending), ..item() };
        let flagged = Item { flags: vec!["abuse".into()], ..item() };
        let expired = Item { available_until: Timestamp::from_ymd(2026, 5, 1), ..item() };
        for hidden in [pending, flagged, expired] {
            assert!(!config.charts(&hidden, now), "{hidden:?} charted");
        }
    }

    #[test]
    fn users_controls_and_minor_mode_filter() {
        let none = UserActivity::default();
        let mut user = User::new("u");
        user.controls.hidden_tags = vec!["horror".into()];
        user.controls.blocked_creators = vec!["c9".into()];
        let tagged = Item { tags: vec!["horror".into()], ..item() };
        let by = Item { creator_id: Some("c9".into()), ..item() };
        assert!(rejects(Filter::NotInterested, &tagged, &user, &none, &[]));
        assert!(rejects(Filter::NotInterested, &by, &user, &none, &[]));
        assert!(!rejects(Filter::NotInterested, &item(), &user, &none, &[]));
        // Marked a minor: 12 without a birth year, at most 17 with one.
        let rated = |age| Item { age_rating: Some(age), ..item() };
        let minor = User { minor: Some(true), ..User::new("m") };
        assert!(rejects(Filter::AgeRating, &rated(13), &minor, &none, &[]));
        assert!(!rejects(Filter::AgeRating, &rated(12), &minor, &none, &[]));
        let grown = User { birth_year: Some(1990), ..minor };
        assert!(rejects(Filter::AgeRating, &rated(18), &grown, &none, &[]));
        assert!(!rejects(Filter::AgeRating, &rated(17), &grown, &none, &[]));
    }

    #[test]
    fn unknown_regions_and_ages_are_treated_cautiously() {
        let anonymous = User::new("u");
        let none = UserActivity::default();
        assert!(rejects(
            Filter::Region,
            &Item { regions: vec!["DE".into()], ..item() },
            &anonymous,
            &none,
            &[]
        ));
        assert!(!rejects(
            Filter::AgeRating,
            &Item { age_rating: Some(18), ..item() },
            &anonymous,
            &none,
            &[]
        ));
        assert!(rejects(Filter::AgeRating, &Item { age_rating: Some(21), ..item() }, &anonymous, &none, &[]));
    }
}
