//! Fixed vocabularies: latent topics with their tags, regions with their languages and time zones,
//! and the shape of each content category.

use reelrank_core::Category;

/// A latent topic. Its tags are what makes tags informative: an item's tags are drawn from the
/// vocabulary of its topics.
pub(crate) struct Topic {
    /// Tags of the topic, the topic's own name first.
    pub tags: &'static [&'static str],
    /// Whether it is a storytelling topic (drama, film) rather than a lifestyle one (clips, shows);
    /// categories prefer topics of their own kind.
    pub story: bool,
    /// How much more (positive) or less likely women are than men to hold this interest.
    pub female: f32,
    /// How much more (positive) or less likely young viewers are than older ones to hold it.
    pub youth: f32,
}

const fn topic(tags: &'static [&'static str], story: bool, female: f32, youth: f32) -> Topic {
    Topic { tags, story, female, youth }
}

/// The topic pool, story and lifestyle topics interleaved so that any prefix has both kinds.
pub(crate) const TOPICS: [Topic; 32] = [
    topic(&["romance", "love", "sweet", "first-love"], true, 0.8, 0.4),
    topic(&["cooking", "food", "recipe", "street-food"], false, 0.3, 0.0),
    topic(&["revenge", "betrayal", "comeback"], true, 0.4, 0.1),
    topic(&["football", "soccer", "goals", "premier-league"], false, -0.8, 0.2),
    topic(&["ceo", "billionaire", "contract-marriage"], true, 0.8, 0.2),
    topic(&["pets", "cats", "dogs", "cute"], false, 0.3, 0.3),
    topic(&["palace", "costume", "dynasty", "empress"], true, 0.5, -0.1),
    topic(&["gaming", "esports", "speedrun"], false, -0.6, 0.8),
    topic(&["fantasy", "xianxia", "magic", "cultivation"], true, -0.1, 0.6),
    topic(&["music", "dance", "cover", "kpop"], false, 0.3, 0.8),
    topic(&["crime", "detective", "mystery"], true, 0.0, -0.3),
    topic(&["travel", "vlog", "city-walk"], false, 0.2, 0.1),
    topic(&["family", "marriage", "in-laws", "mother"], true, 0.6, -0.6),
    topic(&["fitness", "workout", "yoga"], false, 0.2, 0.3),
    topic(&["comedy", "sitcom", "funny"], true, 0.0, 0.3),
    topic(&["beauty", "makeup", "fashion", "skincare"], false, 0.9, 0.5),
    topic(&["action", "martial-arts", "kung-fu"], true, -0.6, 0.0),
    topic(&["tech", "gadgets", "smartphone", "ai"], false, -0.6, 0.3),
    topic(&["horror", "ghost", "thriller"], true, 0.0, 0.5),
    topic(&["nature", "wildlife", "ocean"], false, 0.0, -0.5),
    topic(&["sci-fi", "space", "time-travel"], true, -0.4, 0.3),
    topic(&["history", "ancient", "empires"], false, -0.4, -0.7),
    topic(&["campus", "youth", "school"], true, 0.3, 0.9),
    topic(&["finance", "investing", "stocks"], false, -0.4, -0.6),
    topic(&["war", "military", "hero"], true, -0.7, -0.5),
    topic(&["cars", "racing", "motors"], false, -0.8, 0.0),
    topic(&["rural", "village", "farming"], true, 0.0, -0.8),
    topic(&["basketball", "nba", "dunk"], false, -0.7, 0.6),
    topic(&["medical", "doctor", "hospital"], true, 0.4, -0.2),
    topic(&["diy", "crafts", "home"], false, 0.4, -0.3),
    topic(&["rebirth", "transmigration", "second-chance"], true, 0.6, 0.4),
    topic(&["education", "language-learning", "study"], false, 0.0, 0.6),
];

/// Topics whose content often carries a minimum viewer age.
pub(crate) const MATURE_TAGS: [&str; 3] = ["horror", "crime", "war"];

/// A region viewers and creators live in.
pub(crate) struct Region {
    pub code: &'static str,
    /// Share of users and creators.
    pub share: f64,
    /// UTC offset in hours, for the local hour of sessions.
    pub utc_offset_h: i64,
    /// Languages spoken, as indices into [`LANGUAGES`], with their shares.
    pub languages: &'static [(u8, f64)],
}

/// BCP 47 tags of the languages content is made in.
pub(crate) const LANGUAGES: [&str; 8] = ["zh-CN", "en", "es", "id", "pt", "ja", "ko", "th"];

/// Index of English in [`LANGUAGES`]: the language many viewers follow besides their own.
pub(crate) const ENGLISH: u8 = 1;

const fn region(
    code: &'static str,
    share: f64,
    utc_offset_h: i64,
    languages: &'static [(u8, f64)],
) -> Region {
    Region { code, share, utc_offset_h, languages }
}

/// At most 16 regions, so that a set of them fits a `u16` bit mask.
pub(crate) const REGIONS: [Region; 11] = [
    region("CN", 0.30, 8, &[(0, 1.0)]),
    region("US", 0.14, -5, &[(1, 0.85), (2, 0.15)]),
    region("ID", 0.12, 7, &[(3, 0.9), (1, 0.1)]),
    region("BR", 0.10, -3, &[(4, 1.0)]),
    region("MX", 0.06, -6, &[(2, 1.0)]),
    region("GB", 0.05, 0, &[(1, 1.0)]),
    region("JP", 0.06, 9, &[(5, 1.0)]),
    region("KR", 0.05, 9, &[(6, 1.0)]),
    region("TH", 0.05, 7, &[(7, 0.9), (1, 0.1)]),
    region("ES", 0.04, 1, &[(2, 1.0)]),
    region("PH", 0.03, 8, &[(1, 1.0)]),
];

/// Regions by index, weighted by their share, for [`crate::rng::pick`].
pub(crate) fn region_table() -> Vec<(u8, f64)> {
    REGIONS.iter().enumerate().map(|(i, r)| (i as u8, r.share)).collect()
}

/// How items of one category look.
pub(crate) struct CategorySpec {
    pub category: Category,
    /// Share of the catalog's items (episodes counted one by one).
    pub item_share: f64,
    /// Range of durations in seconds.
    pub duration_s: (u32, u32),
    /// Range of episode counts for categories released as series.
    pub episodes: Option<(u32, u32)>,
    /// Whether the category tells stories (see [`Topic::story`]).
    pub story: bool,
    /// Whether items are licensed (and so may have licence windows and region restrictions).
    pub licensed: bool,
}

const fn spec(
    category: Category,
    item_share: f64,
    duration_s: (u32, u32),
    episodes: Option<(u32, u32)>,
    story: bool,
    licensed: bool,
) -> CategorySpec {
    CategorySpec { category, item_share, duration_s, episodes, story, licensed }
}

/// Number of known categories.
pub(crate) const CATEGORY_COUNT: usize = 7;

/// Every known category; the index into this table is the category's compact code.
pub(crate) static CATEGORIES: [CategorySpec; CATEGORY_COUNT] = [
    spec(Category::Series, 0.08, (1200, 3000), Some((10, 40)), true, true),
    spec(Category::Variety, 0.04, (2400, 5400), None, false, true),
    spec(Category::Movie, 0.04, (4800, 7800), None, true, true),
    spec(Category::Documentary, 0.04, (1800, 6000), None, false, true),
    spec(Category::Animation, 0.05, (300, 1500), None, true, true),
    spec(Category::MicroDrama, 0.25, (60, 180), Some((50, 100)), true, false),
    spec(Category::ShortVideo, 0.50, (10, 90), None, false, false),
];

/// Code of short videos in [`CATEGORIES`], the fallback when a series no longer fits the catalog.
pub(crate) const SHORT_VIDEO: u8 = 6;

/// Words for titles of long-form content and series.
pub(crate) const TITLE_ADJECTIVES: [&str; 16] = [
    "Hidden",
    "Secret",
    "Lost",
    "Golden",
    "Midnight",
    "Eternal",
    "Forbidden",
    "Wild",
    "Silent",
    "Crimson",
    "Last",
    "Broken",
    "Endless",
    "Royal",
    "Brave",
    "Second",
];
/// Nouns for titles.
pub(crate) const TITLE_NOUNS: [&str; 16] = [
    "Heiress", "Empire", "Promise", "Heart", "Kingdom", "Contract", "Dynasty", "Summer", "River", "Legacy",
    "Storm", "Mirror", "Garden", "Crown", "Star", "Bride",
];
/// Endings for short-video titles (`cooking tips #12`).
pub(crate) const CLIP_SUFFIXES: [&str; 8] =
    ["moments", "tips", "challenge", "highlights", "vlog", "tutorial", "reaction", "daily"];

/// Relative frequency of session starts by local hour: a lunch peak and a larger evening peak.
pub(crate) const HOURLY_SESSIONS: [f64; 24] = [
    2.0, 1.0, 0.5, 0.5, 0.5, 1.0, 2.0, 3.5, 4.0, 3.5, 3.5, 4.0, 6.0, 5.5, 4.0, 4.0, 4.0, 4.5, 5.5, 7.0, 8.5,
    9.0, 8.0, 5.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_consistent() {
        assert_eq!(CATEGORIES.len(), Category::KNOWN.len());
        for (spec, known) in CATEGORIES.iter().zip(Category::KNOWN) {
            assert_eq!(spec.category, known);
        }
        assert_eq!(CATEGORIES[SHORT_VIDEO as usize].category, Category::ShortVideo);
        assert_eq!(LANGUAGES[ENGLISH as usize], "en");
        assert!(REGIONS.len() <= 16);
        assert!(REGIONS.iter().all(|r| r.languages.iter().all(|&(l, _)| (l as usize) < LANGUAGES.len())));
        let mut tags: Vec<_> = TOPICS.iter().flat_map(|t| t.tags).collect();
        let n = tags.len();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), n, "a tag belongs to one topic");
        assert!(MATURE_TAGS.iter().all(|m| tags.contains(&m)));
    }
}
