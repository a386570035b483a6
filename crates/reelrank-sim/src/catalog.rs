//! The catalog: creators and their items (standalone videos and films, series of episodes), the
//! latent truth of every item, and the indexes the logging policy samples from.

use rand::Rng;
use rand_distr::{Beta, Distribution, Normal};
use reelrank_core::{Category, Item, ModerationStatus, Timestamp};

use crate::affinity::TopicMix;
use crate::rng::{pick, rng, Cdf, SimRng, Stream};
use crate::vocab::{
    region_table, CATEGORIES, CLIP_SUFFIXES, LANGUAGES, MATURE_TAGS, REGIONS, SHORT_VIDEO, TITLE_ADJECTIVES,
    TITLE_NOUNS, TOPICS,
};
use crate::SimConfig;

const DAY: i64 = Timestamp::DAY_MS;
/// Marks an item that belongs to no series.
pub(crate) const NO_SERIES: u32 = u32::MAX;
/// Zipf exponent of base popularity over the catalog's units (series or standalone items).
const ZIPF_EXPONENT: f64 = 0.9;
/// Each later episode draws this share of the previous one's audience.
const EPISODE_RETENTION: f64 = 0.92;

/// What the simulator knows about an item, compactly: its latent truth and when and where it may be shown.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub topics: TopicMix,
    /// Latent quality in (0, 1).
    pub quality: f32,
    /// Index into [`CATEGORIES`].
    pub category: u8,
    /// Index into [`LANGUAGES`].
    pub language: u8,
    /// Bit `r` set: may be shown in `REGIONS[r]`; 0: everywhere.
    pub regions: u16,
    /// Minimum viewer age; 0 for all audiences.
    pub age_rating: u8,
    /// Start of showing: publication or licence start, whichever is later (ms).
    pub shown_from: i64,
    /// End of the licence window (ms, exclusive); `i64::MAX` when open-ended.
    pub shown_until: i64,
    pub duration_ms: u32,
    pub creator: u32,
    /// Series index, or [`NO_SERIES`].
    pub series: u32,
    /// Episode number from 1; 0 for standalone items.
    pub episode: u32,
}

impl Entry {
    /// Whether the platform may show the item at `ts` to a viewer in region `region` of age `age`.
    pub(crate) fn servable(&self, ts: i64, region: u8, age: u8) -> bool {
        (self.shown_from..self.shown_until).contains(&ts)
            && (self.regions == 0 || self.regions & (1 << region) != 0)
            && age >= self.age_rating
    }
}

/// The generated catalog and its sampling indexes.
pub(crate) struct Catalog {
    pub items: Vec<Item>,
    pub entries: Vec<Entry>,
    /// All items weighted by base popularity (the "trending" source).
    pub popular: Cdf,
    /// Per topic: the items whose main topic it is, and their weights (flattened popularity).
    pub by_topic: Vec<(Vec<u32>, Cdf)>,
    /// Starters per creator, for the feed of followed creators.
    pub by_creator: Vec<Vec<u32>>,
    /// Starters (standalone items and first episodes) ordered by `shown_from`.
    pub starters: Vec<u32>,
    starters_from: Vec<i64>,
}

impl Catalog {
    /// The next episode of a series episode, if the series has one.
    pub(crate) fn next_episode(&self, item: u32) -> Option<u32> {
        let entry = &self.entries[item as usize];
        let next = self.entries.get(item as usize + 1)?;
        (entry.series != NO_SERIES && next.series == entry.series).then_some(item + 1)
    }

    /// The first episode of the series `item` belongs to; `item` itself when standalone.
    pub(crate) fn series_start(&self, item: u32) -> u32 {
        item - self.entries[item as usize].episode.saturating_sub(1)
    }

    /// Starters that became showable in `[from, until)`.
    pub(crate) fn fresh_between(&self, from: i64, until: i64) -> &[u32] {
        let lo = self.starters_from.partition_point(|&t| t < from);
        let hi = self.starters_from.partition_point(|&t| t < until);
        &self.starters[lo..hi]
    }

    /// Generates the catalog of `config`: about one creator per 20 items, then items unit by unit.
    pub(crate) fn generate(config: &SimConfig) -> Catalog {
        let mut rng = rng(config.seed, Stream::Catalog, 0, 0);
        let topics = config.topic_count();
        // Categories are drawn per unit; weigh series down by their length so item shares come out right.
        let unit_weights: Vec<(u8, f64)> = (0..CATEGORIES.len())
            .map(|c| {
                let spec = &CATEGORIES[c];
                let mean_len = spec.episodes.map_or(1.0, |(lo, hi)| f64::from(lo + hi) / 2.0);
                (c as u8, spec.item_share / mean_len)
            })
            .collect();
        let fitting: Vec<Cdf> = CATEGORIES
            .iter()
            .map(|spec| {
                Cdf::new(TOPICS[..topics].iter().map(|t| if t.story == spec.story { 1.0 } else { 0.15 }))
            })
            .collect();
        let creators: Vec<Creator> = (0..(config.items / 20).max(1))
            .map(|_| Creator::generate(&mut rng, &unit_weights, &fitting))
            .collect();
        let mut by_home = vec![Vec::new(); CATEGORIES.len()];
        for (c, creator) in creators.iter().enumerate() {
            by_home[usize::from(creator.category)].push(c as u32);
        }

        let mut builder = Builder {
            config,
            rng,
            fitting,
            creators,
            items: Vec::with_capacity(config.items),
            entries: Vec::with_capacity(config.items),
            unit_scores: Vec::new(),
            series_count: 0,
        };
        while builder.items.len() < config.items {
            let remaining = config.items - builder.items.len();
            let mut category = pick(&mut builder.rng, &unit_weights);
            let episodes = match CATEGORIES[usize::from(category)].episodes {
                Some((lo, hi)) if lo as usize <= remaining => {
                    builder.rng.random_range(lo..=hi.min(remaining as u32))
                }
                Some(_) => {
                    category = SHORT_VIDEO;
                    1
                }
                None => 1,
            };
            let home = &by_home[usize::from(category)];
            let creator = if !home.is_empty() && builder.rng.random::<f64>() < 0.9 {
                home[builder.rng.random_range(0..home.len())]
            } else {
                builder.rng.random_range(0..builder.creators.len() as u32)
            };
            builder.push_unit(category, creator, episodes);
        }
        builder.finish(topics)
    }
}

/// Someone who uploads or produces content, mostly in one category, language and a topic or two.
struct Creator {
    category: u8,
    region: u8,
    language: u8,
    topics: Vec<u8>,
    quality: f64,
}

impl Creator {
    fn generate(rng: &mut SimRng, unit_weights: &[(u8, f64)], fitting: &[Cdf]) -> Creator {
        let category = pick(rng, unit_weights);
        let region = pick(rng, &region_table());
        let language = pick(rng, REGIONS[usize::from(region)].languages);
        let mut topics = vec![sample_topic(rng, &fitting[usize::from(category)])];
        if rng.random::<f64>() < 0.5 {
            let other = sample_topic(rng, &fitting[usize::from(category)]);
            if other != topics[0] {
                topics.push(other);
            }
        }
        let quality = Beta::new(3.0, 3.0).expect("valid").sample(rng);
        Creator { category, region, language, topics, quality }
    }
}

fn sample_topic(rng: &mut SimRng, cdf: &Cdf) -> u8 {
    cdf.sample(rng).expect("topics have weight") as u8
}

struct Builder<'a> {
    config: &'a SimConfig,
    rng: SimRng,
    fitting: Vec<Cdf>,
    creators: Vec<Creator>,
    items: Vec<Item>,
    entries: Vec<Entry>,
    /// Per unit: its first item, episode count and popularity score.
    unit_scores: Vec<(u32, u32, f64)>,
    series_count: u32,
}

/// What all items of a unit (a standalone item, or a series and all its episodes) share.
struct Unit {
    category: u8,
    creator: u32,
    topics: TopicMix,
    tags: Vec<String>,
    quality: f64,
    language: u8,
    regions: u16,
    age_rating: u8,
    published: i64,
    licence: Option<(i64, i64)>,
    /// Title of a long-form item or a series.
    name: String,
    /// Series index, for units of more than one episode.
    series: Option<u32>,
    duration_s: u32,
}

impl Builder<'_> {
    /// Adds one standalone item or one whole series of `episodes` episodes.
    fn push_unit(&mut self, category: u8, creator: u32, episodes: u32) {
        let unit = self.draw_unit(category, creator, episodes > 1);
        let first = self.items.len() as u32;
        let score = unit.quality + self.rng.random_range(-0.25..0.25);
        self.unit_scores.push((first, episodes, score));
        if unit.series.is_some() {
            for episode in 1..=episodes {
                self.push_item(&unit, episode);
            }
        } else {
            self.push_item(&unit, 0);
        }
    }

    fn draw_unit(&mut self, category: u8, creator_index: u32, is_series: bool) -> Unit {
        let rng = &mut self.rng;
        let spec = &CATEGORIES[usize::from(category)];
        let creator = &self.creators[creator_index as usize];
        let fit = &self.fitting[usize::from(category)];

        let primary = if rng.random::<f64>() < 0.8 {
            creator.topics[rng.random_range(0..creator.topics.len())]
        } else {
            sample_topic(rng, fit)
        };
        let secondary = (rng.random::<f64>() < 0.4).then(|| sample_topic(rng, fit)).filter(|&t| t != primary);
        let topics = match secondary {
            Some(s) => TopicMix::new([(primary, rng.random_range(0.6..0.8)), (s, 0.3)]),
            None => TopicMix::new([(primary, 1.0)]),
        };
        let mut tags = two_of(rng, TOPICS[usize::from(primary)].tags);
        if let Some(s) = secondary {
            let vocab = TOPICS[usize::from(s)].tags;
            tags.push(vocab[rng.random_range(0..vocab.len())].to_owned());
        }

        let quality =
            (creator.quality + Normal::new(0.0, 0.12).expect("valid").sample(rng)).clamp(0.02, 0.98);
        let language = if rng.random::<f64>() < 0.9 {
            creator.language
        } else {
            rng.random_range(0..LANGUAGES.len() as u8)
        };
        let mut regions = 0u16;
        if rng.random::<f64>() < if spec.licensed { 0.3 } else { 0.05 } {
            regions = 1 << creator.region;
            if rng.random::<f64>() < 0.5 {
                regions |= 1 << rng.random_range(0..REGIONS.len());
            }
        }
        let mature = MATURE_TAGS.contains(&TOPICS[usize::from(primary)].tags[0]);
        let age_rating = match rng.random::<f64>() {
            x if mature && x < 0.6 => [16, 18][rng.random_range(0..2)],
            x if x < 0.05 => 12,
            _ => 0,
        };

        let start = self.config.start.millis();
        let run_ms = i64::from(self.config.days) * DAY;
        let published = if rng.random::<f64>() < self.config.catalog_at_start || run_ms == 0 {
            start - rng.random_range(3_600_000..365 * DAY)
        } else {
            start + rng.random_range(0..run_ms)
        };
        let published = published - published.rem_euclid(1000);
        let licence = (spec.licensed && rng.random::<f64>() < 0.25).then(|| {
            let until = start + rng.random_range(DAY / 2..run_ms + 90 * DAY);
            (published, until.max(published + 30 * DAY))
        });

        let adjective = TITLE_ADJECTIVES[rng.random_range(0..TITLE_ADJECTIVES.len())];
        let noun = TITLE_NOUNS[rng.random_range(0..TITLE_NOUNS.len())];
        let series = is_series.then(|| {
            self.series_count += 1;
            self.series_count - 1
        });
        Unit {
            category,
            creator: creator_index,
            topics,
            tags,
            quality,
            language,
            regions,
            age_rating,
            published,
            licence,
            name: if is_series { format!("The {adjective} {noun}") } else { format!("{adjective} {noun}") },
            series,
            duration_s: rng.random_range(spec.duration_s.0..=spec.duration_s.1),
        }
    }

    /// Adds one item of `unit`: episode `episode` of its series, or the unit itself when 0.
    fn push_item(&mut self, unit: &Unit, episode: u32) {
        let rng = &mut self.rng;
        let spec = &CATEGORIES[usize::from(unit.category)];
        let (lo, hi) = spec.duration_s;
        let mut item = Item::new(format!("i{}", self.items.len()), spec.category.clone());
        let (duration_s, quality, published) = match unit.series {
            // Episodes vary a little around the series; dramas air two episodes a day, micro-dramas
            // drop all at once.
            Some(_) => (
                (f64::from(unit.duration_s) * rng.random_range(0.9..1.1))
                    .round()
                    .clamp(f64::from(lo), f64::from(hi)),
                (unit.quality + rng.random_range(-0.02..0.02)).clamp(0.01, 0.99),
                match spec.category {
                    Category::Series => unit.published + i64::from((episode - 1) / 2) * DAY,
                    _ => unit.published,
                },
            ),
            None => (f64::from(unit.duration_s), unit.quality, unit.published),
        };
        item.title = match (unit.series, unit.category) {
            (Some(_), _) => format!("{} ep. {episode}", unit.name),
            (None, SHORT_VIDEO) => format!(
                "{} {} #{}",
                unit.tags[0],
                CLIP_SUFFIXES[rng.random_range(0..CLIP_SUFFIXES.len())],
                rng.random_range(1..1000)
            ),
            (None, _) => unit.name.clone(),
        };
        item.tags = unit.tags.clone();
        item.creator_id = Some(format!("c{}", unit.creator));
        item.duration_s = Some(duration_s);
        item.language = Some(LANGUAGES[usize::from(unit.language)].to_owned());
        item.regions = (0..REGIONS.len())
            .filter(|r| unit.regions & (1 << r) != 0)
            .map(|r| REGIONS[r].code.to_owned())
            .collect();
        item.published_at = Some(Timestamp(published));
        if let Some((from, until)) = unit.licence {
            item.available_from = Some(Timestamp(from));
            item.available_until = Some(Timestamp(until));
        }
        if let Some(series) = unit.series {
            item.series_id = Some(format!("s{series}"));
            item.episode = Some(episode);
        }
        item.age_rating = (unit.age_rating > 0).then_some(unit.age_rating);
        item.status = Some(ModerationStatus::Approved);
        self.items.push(item);
        self.entries.push(Entry {
            topics: unit.topics,
            quality: quality as f32,
            category: unit.category,
            language: unit.language,
            regions: unit.regions,
            age_rating: unit.age_rating,
            shown_from: unit.licence.map_or(published, |(from, _)| from.max(published)),
            shown_until: unit.licence.map_or(i64::MAX, |(_, until)| until),
            duration_ms: (duration_s * 1000.0) as u32,
            creator: unit.creator,
            series: unit.series.unwrap_or(NO_SERIES),
            episode,
        });
    }

    /// Ranks units into Zipf popularity and builds the sampling indexes.
    fn finish(mut self, topics: usize) -> Catalog {
        self.unit_scores.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        let mut popularity = vec![0.0; self.entries.len()];
        for (rank, &(first, episodes, _)) in self.unit_scores.iter().enumerate() {
            let weight = (rank as f64 + 1.0).powf(-ZIPF_EXPONENT);
            for e in 0..episodes {
                popularity[(first + e) as usize] = weight * EPISODE_RETENTION.powi(e as i32);
            }
        }
        let mut by_topic = vec![(Vec::new(), Cdf::default()); topics];
        let mut by_creator = vec![Vec::new(); self.creators.len()];
        let mut starters = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            by_topic[usize::from(entry.topics.primary())].0.push(i as u32);
            if entry.episode <= 1 {
                by_creator[entry.creator as usize].push(i as u32);
                starters.push(i as u32);
            }
        }
        for (members, cdf) in &mut by_topic {
            *cdf = Cdf::new(members.iter().map(|&i| popularity[i as usize].sqrt()));
        }
        starters.sort_by_key(|&i| (self.entries[i as usize].shown_from, i));
        let starters_from = starters.iter().map(|&i| self.entries[i as usize].shown_from).collect();
        Catalog {
            items: self.items,
            entries: self.entries,
            popular: Cdf::new(popularity),
            by_topic,
            by_creator,
            starters,
            starters_from,
        }
    }
}

/// Two distinct tags of a topic's vocabulary (or its only one).
fn two_of(rng: &mut SimRng, vocab: &[&str]) -> Vec<String> {
    let a = rng.random_range(0..vocab.len());
    let b = (a + rng.random_range(1..vocab.len().max(2))) % vocab.len();
    let mut tags = vec![vocab[a].to_owned()];
    if b != a {
        tags.push(vocab[b].to_owned());
    }
    tags
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::tests::fixture;

    #[test]
    fn durations_fit_their_category() {
        let (sim, _) = fixture();
        assert_eq!(sim.items().len(), sim.config.items);
        let mut counts = BTreeMap::new();
        for item in sim.items() {
            let spec = CATEGORIES.iter().find(|s| s.category == item.category).unwrap();
            let d = item.duration_s.unwrap();
            assert!((f64::from(spec.duration_s.0)..=f64::from(spec.duration_s.1)).contains(&d), "{item:?}");
            *counts.entry(item.category.as_str()).or_insert(0) += 1;
        }
        let largest = counts.iter().max_by_key(|(_, &n)| n).unwrap();
        assert_eq!(*largest.0, "short_video", "{counts:?}");
        assert_eq!(counts.len(), CATEGORIES.len(), "{counts:?}");
    }

    #[test]
    fn series_are_whole_and_numbered() {
        let (sim, _) = fixture();
        let mut series: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
        for item in sim.items() {
            if let Some(id) = &item.series_id {
                series.entry(id).or_default().push(item);
            }
        }
        let micro = series.values().filter(|eps| eps[0].category == Category::MicroDrama).count();
        assert!(micro >= 3, "{micro} micro-dramas");
        for episodes in series.values() {
            let first = episodes[0];
            let (lo, hi) = match first.category {
                Category::MicroDrama => (50, 100),
                Category::Series => (10, 40),
                ref other => panic!("{other} in a series"),
            };
            assert!((lo..=hi).contains(&episodes.len()), "{} episodes", episodes.len());
            let name = first.title.strip_suffix(" ep. 1").expect("titled `NAME ep. N`");
            for (n, ep) in episodes.iter().enumerate() {
                assert_eq!(ep.episode, Some(n as u32 + 1));
                assert_eq!(ep.title, format!("{name} ep. {}", n + 1));
                assert_eq!((&ep.creator_id, &ep.tags), (&first.creator_id, &first.tags));
                assert_eq!(ep.category, first.category);
            }
        }
    }

    #[test]
    fn catalog_grows_and_has_rules() {
        let (sim, _) = fixture();
        let start = sim.config.start;
        let items = sim.items();
        let share =
            |f: &dyn Fn(&Item) -> bool| items.iter().filter(|i| f(i)).count() as f64 / items.len() as f64;
        let later = share(&|i| i.published_at.unwrap() >= start);
        assert!((0.1..0.45).contains(&later), "{later} published during the run");
        for (name, s) in [
            ("region-restricted", share(&|i| !i.regions.is_empty())),
            ("licence windows", share(&|i| i.available_until.is_some())),
            ("age-rated", share(&|i| i.age_rating.is_some())),
        ] {
            assert!((0.005..0.5).contains(&s), "{s} {name}");
        }
        let creators: std::collections::HashSet<_> = items.iter().map(|i| &i.creator_id).collect();
        assert_eq!(creators.len(), items.len() / 20);
    }

    #[test]
    fn tags_tell_topics() {
        let (sim, _) = fixture();
        for (item, entry) in sim.items().iter().zip(&sim.catalog.entries) {
            let vocab = TOPICS[usize::from(entry.topics.primary())].tags;
            assert!(item.tags.iter().any(|t| vocab.contains(&t.as_str())), "{item:?}");
        }
    }
}
