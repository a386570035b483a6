//! Why an item is in a feed, in words a user understands: each reason comes from what put the
//! item there (its source, the positive it is like, the category it is hot in, an exploration
//! slot), never from a template that could apply to any item.

use reelrank_core::{EventKind, Item};

use crate::activity::UserActivity;
use crate::catalog::{Catalog, ItemIndex};
use crate::sources::{Candidate, Source};

/// The reasons for showing `candidate`, most telling first.
pub fn reasons(
    catalog: &Catalog,
    activity: &UserActivity,
    candidate: &Candidate,
    explored: bool,
) -> Vec<String> {
    let item = catalog.item(candidate.index);
    let mut reasons = Vec::new();
    match candidate.source {
        Source::NextEpisode => reasons.push(format!(
            "episode {} of a series you are watching",
            item.episode.map_or_else(|| "next".to_owned(), |e| e.to_string())
        )),
        Source::FollowedCreator => reasons.push("new from a creator you follow".to_owned()),
        Source::SimilarToRecent => {
            if let Some(positive) = candidate.because {
                let kind = activity.positives.iter().find(|(i, _)| *i == positive).map(|&(_, k)| k);
                reasons.push(format!("because you {} {}", verb(kind), title_or_id(catalog.item(positive))));
            }
        }
        Source::Fresh => reasons.push(format!("new in {}", item.category.as_str())),
        Source::Trending => reasons.push(format!(
            "popular in {} this week",
            candidate.trending_in.as_ref().unwrap_or(&item.category).as_str()
        )),
        Source::TwoTower => {
            let liked = |i: &(ItemIndex, EventKind)| catalog.item(i.0).category == item.category;
            if activity.positives.iter().any(liked) {
                reasons.push(format!("you often enjoy {}", item.category.as_str()));
            } else {
                reasons.push("viewers with interests like yours enjoyed it".to_owned());
            }
        }
    }
    if explored {
        reasons.push("something new to try".to_owned());
    }
    reasons
}

/// What the user did to make an item a positive, as a verb in the past tense.
fn verb(kind: Option<EventKind>) -> &'static str {
    match kind {
        Some(EventKind::Finish) => "finished",
        Some(EventKind::Like) => "liked",
        Some(EventKind::Share) => "shared",
        Some(EventKind::Comment) => "commented on",
        Some(EventKind::Follow) => "followed the creator of",
        Some(EventKind::Rate) => "rated",
        _ => "watched",
    }
}

/// An item's title, or its id when it has none.
fn title_or_id(item: &Item) -> &str {
    if item.title.is_empty() {
        &item.item_id
    } else {
        &item.title
    }
}

#[cfg(test)]
mod tests {
    use reelrank_core::Category;

    use crate::sources::Sources;

    use super::*;

    #[test]
    fn reasons_name_what_put_the_item_there() {
        let catalog = Catalog::new(vec![
            Item { title: "The Heir".into(), ..Item::new("a", Category::MicroDrama) },
            Item { episode: Some(4), ..Item::new("b", Category::MicroDrama) },
        ]);
        let activity = UserActivity { positives: vec![(0, EventKind::Finish)], ..UserActivity::default() };
        let candidate = |source, because| Candidate {
            index: 1,
            source,
            because,
            trending_in: None,
            proposed_by: Sources::of(source),
        };
        let said =
            |source, because, explored| reasons(&catalog, &activity, &candidate(source, because), explored);
        assert_eq!(said(Source::SimilarToRecent, Some(0), false), ["because you finished The Heir"]);
        assert_eq!(said(Source::NextEpisode, None, false), ["episode 4 of a series you are watching"]);
        assert_eq!(said(Source::Trending, None, false), ["popular in micro_drama this week"]);
        assert_eq!(
            said(Source::TwoTower, None, true),
            ["you often enjoy micro_drama", "something new to try"]
        );
    }
}
