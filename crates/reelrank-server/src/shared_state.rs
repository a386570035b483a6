//! Users' activity shared by serving replicas through Redis, so that a replica holds nothing per
//! user: what a user saw, marked, followed and liked is read per request from Redis, whichever
//! replica took their events or served their last feed.
//!
//! The event log in the store stays the source of truth; Redis holds what is derived from it.
//! Every replica may apply the log to Redis: a checkpoint (the last event applied) is written in
//! the same transaction as the users it changes, and a transaction whose checkpoint or users
//! moved meanwhile is dropped and redone, so each event is applied once however many replicas
//! try. A Redis that lost its data (restarted without persistence) has no checkpoint, and the
//! log is applied again from the start, resets first.
//!
//! Per user there are two keys, both expiring after `forget_idle_days` without a write:
//! - `{prefix}u:{user}`, the activity (a version byte, then postcard): latest positives,
//!   not-interested items, disliked and followed creators, series progress, watch time and the
//!   profile reset it reflects. Items are named by their id's 64-bit key, which every replica's
//!   catalog resolves alike, not by catalog position.
//! - `{prefix}s:{user}`, the items seen, eight bytes each (little-endian keys) appended in the
//!   order seen by a script that trims to the newest [`SEEN_KEPT`] distinct items once a quarter
//!   over it.
//!
//! Item counters are counted by the same transactions, so once for all replicas
//! ([`SharedState::item_counts`]): `{prefix}heat` and `{prefix}shown`, hashes of item key
//! (decimal) to heat and to impressions, `{prefix}heat_origin`, the time heats are kept as of
//! ([`heat_growth`]), and `{prefix}counted`, a stream with an entry per page applied: the event
//! it starts after (`from`) and the keys of the items it counted (eight bytes each), under the
//! ID `{last event}-1`, trimmed to about [`COUNTED_PAGES`] entries. A replica reads the counters
//! whole once, then only those of the items counted since it last read, as long as the stream
//! still reaches back to then: a tick reads what its events changed, not a million items. Items
//! dropped from the catalog are deleted from the hashes ([`SharedState::forget_items`]), so they
//! follow the live catalog.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use reelrank_core::{Breaker, Event, EventKind, Timestamp, User};
use reelrank_features::{item_id_key, PositiveRule};
use reelrank_serving::activity::{heat_growth, ItemCounts, SEEN_KEPT};
use reelrank_serving::{Catalog, SeenItems, UserActivity};
use reelrank_store::{Store, StoreError, StoredEvent};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// About how many pages `{prefix}counted` keeps (at most 16 KB each: [`PAGE`] events' items): a
/// replica behind by more than the last two million events or so (minutes at a busy platform's
/// rate) reads every item's counts instead.
const COUNTED_PAGES: usize = 1_000;

/// Events read from the store per transaction.
const PAGE: u32 = 2_000;

/// How long a request waits for Redis in all: past it, it is refused (503) rather than held
/// while the connection is re-established.
const REQUEST_WAIT: Duration = Duration::from_secs(2);

/// How long requests are refused at once after Redis failed to answer one (see [`Breaker`]).
const BACK_OFF: Duration = Duration::from_secs(1);

/// The format of the activity value; a value of another format is refused, not misread.
const FORMAT: u8 = 1;

/// Appends to a seen list: `KEYS[1]` the list, `ARGV[1]` the bytes, `ARGV[2]` the bytes kept,
/// `ARGV[3]` the expiry in ms (0: none). A list a quarter over is trimmed to its newest distinct
/// items: an item is appended twice when served (at once) and when its logged impression is
/// applied, and the bound is on items, not on showings.
const APPEND_SEEN: &str = r"
local len = redis.call('APPEND', KEYS[1], ARGV[1])
local kept = tonumber(ARGV[2])
if len > kept + kept / 4 then
  local all = redis.call('GET', KEYS[1])
  local newest, taken = {}, {}
  for at = len - 7, 1, -8 do
    local key = string.sub(all, at, at + 7)
    if not taken[key] then
      taken[key] = true
      newest[#newest + 1] = key
      if #newest * 8 >= kept then break end
    end
  end
  local oldest_first = {}
  for i = #newest, 1, -1 do oldest_first[#oldest_first + 1] = newest[i] end
  redis.call('SET', KEYS[1], table.concat(oldest_first))
end
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return len
";

/// The `[serving.shared_state]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharedStateConfig {
    /// The Redis server replicas share users' activity and item counters in
    /// (`redis://host:6379/0`); empty: each process holds them in memory (one replica).
    pub redis_url: String,
    /// Prefix of every key written, so that deployments can share a server.
    pub key_prefix: String,
}

impl Default for SharedStateConfig {
    fn default() -> SharedStateConfig {
        SharedStateConfig { redis_url: String::new(), key_prefix: "reelrank:".to_owned() }
    }
}

/// Why the shared state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SharedStateError {
    /// Redis did not answer or refused.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Reading the event log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis did not answer a request in time (it is down, or being reconnected to).
    #[error("redis: no answer within {} s", REQUEST_WAIT.as_secs())]
    NoAnswer,
    /// Redis failed to answer a request just now; requests are refused at once until it is
    /// tried again.
    #[error("redis: not answering (tried again every {} s)", BACK_OFF.as_secs())]
    Down,
    /// A stored value does not decode.
    #[error("the shared state of user `{user_id}` is unreadable: {reason}")]
    Corrupt {
        /// Whose.
        user_id: String,
        /// What is wrong.
        reason: String,
    },
}

/// What Redis holds, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct SharedStateStats {
    /// Keys in the database (two per user, the checkpoint and the item counters).
    pub keys: u64,
    /// Memory the item counters take (`MEMORY USAGE` of their hashes).
    pub item_counter_bytes: u64,
    /// Memory the pages' counted items take (`MEMORY USAGE` of the stream), at most about
    /// [`COUNTED_PAGES`] pages of 16 KB whatever the catalog.
    pub counted_pages_bytes: u64,
    /// Memory Redis uses (`used_memory`).
    pub used_memory_bytes: u64,
    /// The last event applied to it.
    pub applied_seq: i64,
}

/// One user's activity as stored, items by key.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredUser {
    /// The profile reset it reflects (Unix ms; 0: none): events until then are not applied.
    reset_at: i64,
    active_ms: i64,
    positive_ms: i64,
    watch_day: i64,
    watch_ms_that_day: f64,
    positives: Vec<(u64, EventKind)>,
    not_interested: Vec<u64>,
    disliked_creators: Vec<(String, u32)>,
    followed: Vec<String>,
    series: Vec<(String, u32)>,
}

impl StoredUser {
    fn of(activity: &UserActivity, reset_at: i64, catalog: &Catalog) -> StoredUser {
        StoredUser {
            reset_at,
            active_ms: activity.active_ms,
            positive_ms: activity.positive_ms,
            watch_day: activity.watch_day,
            watch_ms_that_day: activity.watch_ms_that_day,
            positives: activity.positives.iter().map(|&(index, kind)| (catalog.key(index), kind)).collect(),
            not_interested: activity.not_interested.iter().map(|&index| catalog.key(index)).collect(),
            disliked_creators: activity.disliked_creators.iter().map(|(c, n)| (c.clone(), *n)).collect(),
            followed: activity.followed.iter().cloned().collect(),
            series: activity.series.iter().map(|(s, e)| (s.clone(), *e)).collect(),
        }
    }

    /// The activity over `catalog` (items it does not hold are left out), having seen `seen`.
    fn activity(self, seen: SeenItems, catalog: &Catalog) -> UserActivity {
        let index = |key: u64| catalog.index_of_key(key);
        UserActivity {
            seen,
            not_interested: self.not_interested.into_iter().filter_map(index).collect(),
            disliked_creators: self.disliked_creators.into_iter().collect(),
            followed: self.followed.into_iter().collect(),
            series: self.series.into_iter().collect(),
            positives: self
                .positives
                .into_iter()
                .filter_map(|(key, kind)| Some((index(key)?, kind)))
                .collect(),
            active_ms: self.active_ms,
            positive_ms: self.positive_ms,
            watch_day: self.watch_day,
            watch_ms_that_day: self.watch_ms_that_day,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![FORMAT];
        bytes.extend(postcard::to_stdvec(self).expect("plain data always serialises"));
        bytes
    }

    fn decode(user_id: &str, bytes: Option<Vec<u8>>) -> Result<StoredUser, SharedStateError> {
        let corrupt = |reason: String| SharedStateError::Corrupt { user_id: user_id.to_owned(), reason };
        match bytes.as_deref() {
            None | Some([]) => Ok(StoredUser::default()),
            Some([FORMAT, rest @ ..]) => postcard::from_bytes(rest).map_err(|err| corrupt(err.to_string())),
            Some([format, ..]) => Err(corrupt(format!("format {format}, this build reads {FORMAT}"))),
        }
    }
}

/// A user's activity as read from Redis, items by key.
#[derive(Debug, Default)]
pub struct SharedUser {
    stored: StoredUser,
    /// Eight-byte keys, oldest first.
    seen: Vec<u8>,
}

impl SharedUser {
    /// The activity over `catalog`: the items it does not hold are left out.
    pub fn over(self, catalog: &Catalog) -> UserActivity {
        self.stored.activity(decode_seen(&self.seen, catalog), catalog)
    }
}

/// The seen items among `bytes` (eight-byte keys, oldest first) that `catalog` holds.
fn decode_seen(bytes: &[u8], catalog: &Catalog) -> SeenItems {
    bytes
        .chunks_exact(8)
        .filter_map(|chunk| catalog.index_of_key(u64::from_le_bytes(chunk.try_into().expect("eight bytes"))))
        .collect()
}

/// Item keys as eight bytes each (little-endian), as seen lists and counted pages keep them.
fn encode_keys(keys: impl IntoIterator<Item = u64>) -> Vec<u8> {
    keys.into_iter().flat_map(u64::to_le_bytes).collect()
}

/// What [`SharedState::item_counts`] reads at once: the checkpoint, the heats' origin, heat and
/// impressions by item key.
type CountsRead = (Option<i64>, Option<i64>, HashMap<u64, f64>, HashMap<u64, u32>);

/// An entry of `{prefix}counted` as `XRANGE` gives it: its ID, then its fields' names and values.
type CountedPage = (String, Vec<Vec<u8>>);

/// The keys of the items counted in `pages` (entries of `{prefix}counted`, oldest first), when
/// the first starts right after event `after`, so that together they cover every page since.
fn counted_since(after: i64, pages: &[CountedPage]) -> Option<Vec<u64>> {
    fn field<'a>(fields: &'a [Vec<u8>], name: &[u8]) -> Option<&'a [u8]> {
        fields.chunks_exact(2).find(|pair| pair[0] == name).map(|pair| pair[1].as_slice())
    }
    let (_, first) = pages.first()?;
    let from = std::str::from_utf8(field(first, b"from")?).ok()?.parse::<i64>().ok()?;
    if from != after {
        return None;
    }
    let mut keys = Vec::new();
    for (_, fields) in pages {
        let bytes = field(fields, b"keys")?;
        keys.extend(
            bytes.chunks_exact(8).map(|chunk| u64::from_le_bytes(chunk.try_into().expect("eight bytes"))),
        );
    }
    Some(keys)
}

/// The keys' values that were there (an item forgotten meanwhile has none).
fn counted<T>(keys: &[u64], values: Vec<Option<T>>) -> Vec<(u64, T)> {
    keys.iter().zip(values).filter_map(|(&key, value)| Some((key, value?))).collect()
}

/// Whether a call's answer says Redis was reached (even to refuse the call), for the breaker;
/// `None` for an error that says neither.
fn reached<T>(answer: &Result<T, SharedStateError>) -> Option<bool> {
    match answer {
        Ok(_) => Some(true),
        Err(SharedStateError::NoAnswer) => Some(false),
        Err(SharedStateError::Redis(err)) => Some(
            !(err.is_io_error()
                || err.is_connection_dropped()
                || err.is_connection_refusal()
                || err.is_timeout()),
        ),
        Err(_) => None,
    }
}

/// Users' activity and item counters in Redis.
pub struct SharedState {
    /// Requests' connection (multiplexed: requests share it).
    requests: ConnectionManager,
    /// The applier's own connection: a transaction watches keys on its connection, which no
    /// other command may use meanwhile.
    applier: tokio::sync::Mutex<ConnectionManager>,
    prefix: String,
    /// Expiry of a user's keys after their last write (ms; 0: never).
    idle_ms: i64,
    /// Heat halves every so many ms.
    heat_half_life_ms: f64,
    /// Requests' calls are refused at once while Redis does not answer: during an outage a
    /// client gets a quick 503 rather than one after [`REQUEST_WAIT`].
    breaker: Breaker,
    rule: PositiveRule,
}

impl SharedState {
    /// Connects to `config.redis_url`; users' keys expire `idle_ms` after their last write
    /// (0: never); item heat halves every `heat_half_life_hours`.
    pub async fn connect(
        config: &SharedStateConfig,
        idle_ms: i64,
        heat_half_life_hours: f64,
    ) -> Result<SharedState, SharedStateError> {
        let client = redis::Client::open(config.redis_url.as_str())?;
        // Bounded waits: a Redis that is down or stalled fails requests within seconds (503)
        // rather than holding them, and reconnection is retried in the background.
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(1));
        let requests = ConnectionManager::new_with_config(client.clone(), manager.clone()).await?;
        let applier = ConnectionManager::new_with_config(client, manager).await?;
        Ok(SharedState {
            requests,
            applier: tokio::sync::Mutex::new(applier),
            prefix: config.key_prefix.clone(),
            idle_ms: idle_ms.max(0),
            heat_half_life_ms: heat_half_life_hours * 3_600_000.0,
            breaker: Breaker::new(BACK_OFF),
            rule: PositiveRule::default(),
        })
    }

    fn activity_key(&self, user_id: &str) -> String {
        format!("{}u:{user_id}", self.prefix)
    }

    fn seen_key(&self, user_id: &str) -> String {
        format!("{}s:{user_id}", self.prefix)
    }

    fn checkpoint_key(&self) -> String {
        format!("{}applied", self.prefix)
    }

    fn heat_key(&self) -> String {
        format!("{}heat", self.prefix)
    }

    fn shown_key(&self) -> String {
        format!("{}shown", self.prefix)
    }

    fn origin_key(&self) -> String {
        format!("{}heat_origin", self.prefix)
    }

    fn counted_key(&self) -> String {
        format!("{}counted", self.prefix)
    }

    /// `user_id`'s activity as Redis holds it, to be placed over the catalog a request reads
    /// ([`SharedUser::over`]); empty when `user`'s profile was reset after what Redis holds, and
    /// the reset is then written there (the replica that took it could not).
    pub async fn user(&self, user_id: &str, user: Option<&User>) -> Result<SharedUser, SharedStateError> {
        let (activity, seen): (Option<Vec<u8>>, Option<Vec<u8>>) =
            self.read(redis::pipe().get(self.activity_key(user_id)).get(self.seen_key(user_id))).await?;
        let stored = StoredUser::decode(user_id, activity)?;
        let reset = user.and_then(|u| u.controls.reset_at).map_or(0, Timestamp::millis);
        if reset > stored.reset_at {
            self.reset(user_id, reset).await?;
            return Ok(SharedUser::default());
        }
        Ok(SharedUser { stored, seen: seen.unwrap_or_default() })
    }

    /// Records that the items of `keys` were served to `user_id`.
    pub async fn served(
        &self,
        user_id: &str,
        keys: impl IntoIterator<Item = u64>,
    ) -> Result<(), SharedStateError> {
        let mut conn = self.requests.clone();
        let mut pipe = redis::pipe();
        self.on_request(self.append_seen(&mut pipe, user_id, keys).query_async::<()>(&mut conn)).await
    }

    /// Adds to `pipe` the appending of `keys` to `user_id`'s seen items.
    fn append_seen<'p>(
        &self,
        pipe: &'p mut redis::Pipeline,
        user_id: &str,
        keys: impl IntoIterator<Item = u64>,
    ) -> &'p mut redis::Pipeline {
        pipe.cmd("EVAL")
            .arg(APPEND_SEEN)
            .arg(1)
            .arg(self.seen_key(user_id))
            .arg(encode_keys(keys))
            .arg(SEEN_KEPT * 8)
            .arg(self.idle_ms)
            .ignore()
    }

    /// Forgets what `user_id` did until `at` (Unix ms), unless a later reset is already there.
    pub async fn reset(&self, user_id: &str, at: i64) -> Result<(), SharedStateError> {
        let mut conn = self.applier.lock().await;
        let key = self.activity_key(user_id);
        loop {
            redis::cmd("WATCH").arg(&key).query_async::<()>(&mut *conn).await?;
            let bytes: Option<Vec<u8>> = conn.get(&key).await?;
            if StoredUser::decode(user_id, bytes)?.reset_at >= at {
                redis::cmd("UNWATCH").query_async::<()>(&mut *conn).await?;
                return Ok(());
            }
            let mut pipe = redis::pipe();
            pipe.atomic().del(self.seen_key(user_id)).ignore();
            self.set_user(&mut pipe, &key, &StoredUser { reset_at: at, ..StoredUser::default() });
            let done: Option<()> = pipe.query_async(&mut *conn).await?;
            if done.is_some() {
                return Ok(());
            }
        }
    }

    fn set_user(&self, pipe: &mut redis::Pipeline, key: &str, user: &StoredUser) {
        match self.idle_ms {
            0 => pipe.set(key, user.encode()).ignore(),
            ms => pipe.pset_ex(key, user.encode(), ms as u64).ignore(),
        };
    }

    /// Applies the events `store` logged after the checkpoint to the users and items they
    /// concern, a page per transaction, until the log is read through; events on items `catalog`
    /// does not hold, and those of the accounts `excluded` (as fake traffic) are skipped, as in
    /// the in-process state. Returns how many events this call applied (others may have been
    /// applied by another replica meanwhile).
    pub async fn catch_up(
        &self,
        store: &Store,
        catalog: &Catalog,
        excluded: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<usize, SharedStateError> {
        // Behind the breaker too: requests that wrote wait for this.
        let applying = self.apply_log(store, catalog, excluded);
        self.breaker.guard(applying, reached, || SharedStateError::Down).await
    }

    async fn apply_log(
        &self,
        store: &Store,
        catalog: &Catalog,
        excluded: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<usize, SharedStateError> {
        let mut conn = self.applier.lock().await;
        let checkpoint_key = self.checkpoint_key();
        let mut applied = 0;
        loop {
            let checkpoint: Option<i64> = conn.get(&checkpoint_key).await?;
            if checkpoint.is_none() {
                // A fresh (or emptied) Redis: resets first, so that the log leaves out what
                // users reset. Pages counted before the checkpoint went (were it lost alone) do
                // not follow on from the new ones, and their IDs would refuse the new ones'.
                conn.del::<_, ()>(self.counted_key()).await?;
                drop(conn);
                for (user_id, at) in store.profile_resets().await? {
                    self.reset(&user_id, at.millis()).await?;
                }
                conn = self.applier.lock().await;
            }
            let after = checkpoint.unwrap_or(0);
            let page = store.events_after(after, PAGE).await?;
            let Some(last) = page.last().map(|stored| stored.seq) else { return Ok(applied) };
            let mut users: Vec<&str> = page.iter().map(|stored| stored.event.user_id.as_str()).collect();
            users.sort_unstable();
            users.dedup();
            let keys: Vec<String> = users.iter().map(|user_id| self.activity_key(user_id)).collect();
            redis::cmd("WATCH").arg(&checkpoint_key).arg(&keys).query_async::<()>(&mut *conn).await?;
            let now: Option<i64> = conn.get(&checkpoint_key).await?;
            if now != checkpoint {
                redis::cmd("UNWATCH").query_async::<()>(&mut *conn).await?;
                continue;
            }
            let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(&mut *conn).await?;
            // Written only with the checkpoint, so the watch covers it.
            let origin: Option<i64> = conn.get(self.origin_key()).await?;
            let mut pipe = self.applied_page(&users, values, (after, origin), &page, catalog, excluded)?;
            pipe.set(&checkpoint_key, last).ignore();
            let done: Option<()> = pipe.query_async(&mut *conn).await?;
            if done.is_some() {
                applied += page.len();
            }
        }
    }

    /// The transaction writing what `page` (the events after event `after`) changes of `users`
    /// (whose stored values are `values`) and of the items' counters (heats kept as of `origin`,
    /// if any yet), counted as [`reelrank_serving::Activity::record`] counts them.
    fn applied_page(
        &self,
        users: &[&str],
        values: Vec<Option<Vec<u8>>>,
        (after, mut origin): (i64, Option<i64>),
        page: &[StoredEvent],
        catalog: &Catalog,
        excluded: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<redis::Pipeline, SharedStateError> {
        let had_origin = origin.is_some();
        let (mut heat, mut shown): (FxHashMap<u64, f64>, FxHashMap<u64, i64>) = Default::default();
        let mut changed: FxHashMap<&str, (i64, UserActivity, bool)> = FxHashMap::default();
        for (&user_id, value) in users.iter().zip(values) {
            let stored = StoredUser::decode(user_id, value)?;
            let reset_at = stored.reset_at;
            changed.insert(user_id, (reset_at, stored.activity(SeenItems::default(), catalog), false));
        }
        for stored in page {
            let Event { user_id, item_id, ts, .. } = &stored.event;
            let Some(index) = catalog.index(item_id) else { continue };
            if excluded(user_id) {
                continue;
            }
            let key = item_id_key(item_id);
            if stored.event.kind == EventKind::Impression {
                *shown.entry(key).or_default() += 1;
            }
            let (reset_at, activity, touched) =
                changed.get_mut(user_id.as_str()).expect("every user of the page was read");
            if ts.millis() <= *reset_at {
                continue;
            }
            if activity.record(&self.rule, catalog.item(index), index, &stored.event) {
                let origin = *origin.get_or_insert(ts.millis());
                *heat.entry(key).or_default() += heat_growth(origin, *ts, self.heat_half_life_ms);
            }
            *touched = true;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let (false, Some(origin)) = (had_origin, origin) {
            pipe.set(self.origin_key(), origin).ignore();
        }
        let mut counted: Vec<u64> = heat.keys().chain(shown.keys()).copied().collect();
        counted.sort_unstable();
        counted.dedup();
        if let Some(last) = page.last().map(|stored| stored.seq) {
            // An entry for every page, counted items or not, so that the entries follow on.
            pipe.cmd("XADD")
                .arg(self.counted_key())
                .arg("MAXLEN")
                .arg("~")
                .arg(COUNTED_PAGES)
                .arg(format!("{last}-1"))
                .arg("from")
                .arg(after)
                .arg("keys")
                .arg(encode_keys(counted))
                .ignore();
        }
        for (key, growth) in heat {
            pipe.cmd("HINCRBYFLOAT").arg(self.heat_key()).arg(key).arg(growth).ignore();
        }
        for (key, count) in shown {
            pipe.hincr(self.shown_key(), key, count).ignore();
        }
        for (user_id, (reset_at, activity, touched)) in &changed {
            if !touched {
                continue;
            }
            self.set_user(
                &mut pipe,
                &self.activity_key(user_id),
                &StoredUser::of(activity, *reset_at, catalog),
            );
            if !activity.seen.is_empty() {
                let keys = activity.seen.oldest_first().map(|index| catalog.key(index));
                self.append_seen(&mut pipe, user_id, keys);
            }
        }
        Ok(pipe)
    }

    /// The heat and impressions of the items counted after event `after`, every item's for 0;
    /// `None` when nothing was counted since.
    pub async fn item_counts(&self, after: i64) -> Result<Option<ItemCounts>, SharedStateError> {
        if after > 0 {
            self.item_counts_since(after).await
        } else {
            self.all_item_counts().await
        }
    }

    /// Every item's heat and impressions (`None` before anything was counted).
    async fn all_item_counts(&self) -> Result<Option<ItemCounts>, SharedStateError> {
        let mut conn = self.requests.clone();
        let applied: Option<i64> = conn.get(self.checkpoint_key()).await?;
        if applied.is_none() {
            return Ok(None);
        }
        let (as_of, origin_ms, heat, shown): CountsRead = redis::pipe()
            .atomic()
            .get(self.checkpoint_key())
            .get(self.origin_key())
            .hgetall(self.heat_key())
            .hgetall(self.shown_key())
            .query_async(&mut conn)
            .await?;
        Ok(Some(ItemCounts {
            as_of: as_of.unwrap_or(0),
            since: 0,
            origin_ms,
            heat: heat.into_iter().collect(),
            impressions: shown.into_iter().collect(),
        }))
    }

    /// [`SharedState::item_counts`] after a first read: the keys of the items counted in the
    /// pages after `after` (read with the checkpoint they reach), then their counters. Those may
    /// have been counted further meanwhile; they are read again next time. Every item's counts
    /// when the pages do not reach back to `after` (trimmed, or Redis rebuilt in other pages).
    async fn item_counts_since(&self, after: i64) -> Result<Option<ItemCounts>, SharedStateError> {
        let mut conn = self.requests.clone();
        let (applied, origin_ms, pages): (Option<i64>, Option<i64>, Vec<CountedPage>) = redis::pipe()
            .atomic()
            .get(self.checkpoint_key())
            .get(self.origin_key())
            .cmd("XRANGE")
            .arg(self.counted_key())
            .arg(format!("{}-0", after + 1))
            .arg("+")
            .query_async(&mut conn)
            .await?;
        let Some(as_of) = applied.filter(|&applied| applied > after) else { return Ok(None) };
        let Some(mut keys) = counted_since(after, &pages) else {
            return self.all_item_counts().await;
        };
        keys.sort_unstable();
        keys.dedup();
        let (heat, shown): (Vec<Option<f64>>, Vec<Option<u32>>) = if keys.is_empty() {
            Default::default()
        } else {
            redis::pipe()
                .atomic()
                .cmd("HMGET")
                .arg(self.heat_key())
                .arg(&keys)
                .cmd("HMGET")
                .arg(self.shown_key())
                .arg(&keys)
                .query_async(&mut conn)
                .await?
        };
        Ok(Some(ItemCounts {
            as_of,
            since: after,
            origin_ms,
            heat: counted(&keys, heat),
            impressions: counted(&keys, shown),
        }))
    }

    /// Deletes the counters of the items of `keys` (dropped from the catalog).
    pub async fn forget_items(&self, keys: &[u64]) -> Result<(), SharedStateError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.requests.clone();
        redis::pipe()
            .hdel(self.heat_key(), keys)
            .ignore()
            .hdel(self.shown_key(), keys)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Deletes every key under the prefix (the next [`SharedState::catch_up`] rebuilds them from
    /// the log); returns how many.
    pub async fn clear(&self) -> Result<u64, SharedStateError> {
        let mut conn = self.requests.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut iter = conn.scan_match::<_, String>(format!("{}*", self.prefix)).await?;
        while let Some(key) = iter.next_item().await {
            keys.push(key?);
        }
        drop(iter);
        let mut deleted = 0;
        for chunk in keys.chunks(1_000) {
            deleted += conn.del::<_, u64>(chunk).await?;
        }
        Ok(deleted)
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), SharedStateError> {
        self.read::<()>(redis::pipe().cmd("PING").ignore()).await?;
        Ok(())
    }

    /// Runs the reads of `query`, and once more when they found the connection dropped (a
    /// connection learns it broke only when used: Redis restarted while this process sent it
    /// nothing), as a request's call ([`SharedState::on_request`]).
    async fn read<T: redis::FromRedisValue>(&self, query: &redis::Pipeline) -> Result<T, SharedStateError> {
        let mut conn = self.requests.clone();
        self.on_request(async {
            match query.query_async(&mut conn).await {
                Err(err) if err.is_connection_dropped() || err.is_io_error() => {
                    query.query_async(&mut conn).await
                }
                answer => answer,
            }
        })
        .await
    }

    /// Runs a request's `call` within [`REQUEST_WAIT`] in all, through the [`Breaker`].
    async fn on_request<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, SharedStateError> {
        let answer = async {
            match tokio::time::timeout(REQUEST_WAIT, call).await {
                Ok(answer) => answer.map_err(SharedStateError::Redis),
                Err(_) => Err(SharedStateError::NoAnswer),
            }
        };
        self.breaker.guard(answer, reached, || SharedStateError::Down).await
    }

    /// What Redis holds now.
    pub async fn stats(&self) -> Result<SharedStateStats, SharedStateError> {
        let mut conn = self.requests.clone();
        let (keys, info, applied, heat_bytes, shown_bytes, counted_bytes): (
            u64,
            String,
            Option<i64>,
            Option<u64>,
            Option<u64>,
            Option<u64>,
        ) = redis::pipe()
            .cmd("DBSIZE")
            .cmd("INFO")
            .arg("memory")
            .get(self.checkpoint_key())
            .cmd("MEMORY")
            .arg("USAGE")
            .arg(self.heat_key())
            .cmd("MEMORY")
            .arg("USAGE")
            .arg(self.shown_key())
            .cmd("MEMORY")
            .arg("USAGE")
            .arg(self.counted_key())
            .query_async(&mut conn)
            .await?;
        let used_memory_bytes = info
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|bytes| bytes.trim().parse().ok())
            .unwrap_or(0);
        Ok(SharedStateStats {
            keys,
            used_memory_bytes,
            item_counter_bytes: heat_bytes.unwrap_or(0) + shown_bytes.unwrap_or(0),
            counted_pages_bytes: counted_bytes.unwrap_or(0),
            applied_seq: applied.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use reelrank_core::{Category, Item};

    use super::*;

    fn catalog(ids: &[&str]) -> Catalog {
        Catalog::new(
            ids.iter()
                .map(|id| Item {
                    creator_id: Some(format!("c-{id}")),
                    ..Item::new(*id, Category::MicroDrama)
                })
                .collect(),
        )
    }

    #[test]
    fn activity_round_trips_by_item_key_whatever_the_positions() {
        let before = catalog(&["a", "b", "c"]);
        let mut activity = UserActivity::default();
        let rule = PositiveRule::default();
        for (item, kind) in
            [("a", EventKind::Like), ("b", EventKind::NotInterested), ("c", EventKind::Follow)]
        {
            let index = before.index(item).unwrap();
            let event = Event::new("u", item, kind, Timestamp(1_000));
            activity.record(&rule, before.item(index), index, &event);
        }
        let bytes = StoredUser::of(&activity, 7, &before).encode();
        // Another replica's catalog holds the items at other positions, and one more.
        let after = catalog(&["z", "c", "b", "a"]);
        let stored = StoredUser::decode("u", Some(bytes)).unwrap();
        assert_eq!(stored.reset_at, 7);
        let seen = decode_seen(&encode_keys([item_id_key("a"), item_id_key("gone")]), &after);
        let read = stored.activity(seen, &after);
        assert_eq!(read.positives, vec![(after.index("a").unwrap(), EventKind::Like)]);
        assert!(read.not_interested.contains(&after.index("b").unwrap()));
        assert_eq!(read.disliked_creators.get("c-b"), Some(&1));
        assert!(read.followed.contains("c-c"));
        assert!(
            read.seen.contains(&after.index("a").unwrap()) && read.seen.len() == 1,
            "unknown items dropped"
        );
        assert_eq!(read.active_ms, 1_000);
    }

    #[test]
    fn only_an_unreachable_redis_opens_the_breaker() {
        assert_eq!(reached::<()>(&Err(SharedStateError::NoAnswer)), Some(false));
        let refused = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(reached::<()>(&Err(SharedStateError::Redis(refused))), Some(false));
        // An error Redis answered with says it is up.
        let answered = redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "wrong type"));
        assert_eq!(reached::<()>(&Err(SharedStateError::Redis(answered))), Some(true));
        assert_eq!(reached(&Ok(())), Some(true));
    }

    #[test]
    fn a_value_of_another_format_is_refused() {
        assert!(StoredUser::decode("u", None).unwrap().positives.is_empty());
        let err = StoredUser::decode("u", Some(vec![9, 1, 2])).unwrap_err().to_string();
        assert!(err.contains("user `u`") && err.contains("format 9"), "{err}");
        let err = StoredUser::decode("u", Some(vec![FORMAT, 200])).unwrap_err().to_string();
        assert!(err.contains("unreadable"), "{err}");
    }
}
