//! The Redis backend, for several host replicas sharing caps and deployments.
//!
//! Every operation that must be atomic is one Lua script, so it is atomic on the server
//! whatever the number of replicas: an event id is recorded with `SET NX` and its cap
//! increments happen in the same script; a registry commit checks the revision, writes
//! the document, bumps the revision and appends the audit entry in one script.
//!
//! Layout (all keys under the configured prefix, default `oh:`): `profile:<subject>` JSON,
//! `slate:<id>` JSON with a TTL, `event:{<subject>}|<id>` marker with a TTL,
//! `cap:{<subject>}|<key>:t` sorted set of impression times and `...:n` lifetime count,
//! `{registry}:rev`, `{registry}:doc`, `{registry}:audit` list, `{registry}:blob:<key>`;
//! counters: `ctr:{<bucket>}` set of row keys, `ctr:{<bucket>}:<row>` hash of counters
//! and `ctr:{<bucket>}:<row>:m` set of distinct members, all three expiring with their
//! bucket when it has an expiry (`EXPIREAT`).
//! The braces are Redis Cluster hash tags: every key one script touches lives in the
//! same slot (one subject's counters and events; the whole registry), so the scripts
//! run unchanged on a cluster.
//!
//! `redis://host:port/db` connects to one server; `redis-cluster://host:port,host:port`
//! to a Redis Cluster through any of the listed nodes (the client learns the rest and
//! follows slot moves). On a cluster, pipelines that span slots are split per node, so
//! a bulk profile load is not atomic there (it is on one server).

use redis::cluster::{ClusterClient, ClusterConnection};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redis::{Commands, ConnectionLike, FromRedisValue, Pipeline, RedisResult, Script, Value};

use super::{
    CounterAdd, CounterRow, Reservation, SlateReads, SlateRecord, Store, StoreError, SubjectKey,
    backend, decode,
};
use crate::slate::caps::{CapHistory, CapRecord, Retention};
use crate::slate::profile::Profile;

use super::EVENT_MEMORY_SECS as EVENT_TTL_SECS;

mod upgrade;

/// A Redis-backed store.
pub struct RedisStore {
    pool: Pool,
    /// The seed nodes of a cluster (empty for one server).
    seeds: Vec<String>,
    prefix: String,
    try_reserve: Script,
    commit_registry: Script,
    /// Whether every subject's counters are listed (see [`RedisStore::upgrade`]), so a
    /// subject's record can be read from its list; learnt once, never unlearnt.
    listed: AtomicBool,
    /// Until then, when a slate next looks for the marker: milliseconds since `opened`.
    /// Slates look at most once per [`MARKER_CHECK_MS`], so a replica learns of the
    /// upgrade within that time without every slate reading the `{registry}` slot.
    marker_due: AtomicU64,
    opened: std::time::Instant,
}

/// How often, at most, a replica's slates look for the upgrade's marker.
const MARKER_CHECK_MS: u64 = 500;

const TRY_RESERVE: &str = r#"
-- KEYS[1] event key; KEYS[2] the subject's list of counters; KEYS[3..3+2L) limit
--   time-set/lifetime pairs; then cap pairs
-- ARGV: now, event ttl, retention seconds, retention count, member, L, what the event
--       is, then per limit window seconds (-1 = lifetime) and max, then the caps' names
-- Returns 1 when recorded, 0 when a limit is reached, or what the event id was first
-- recorded as (a string) when it was.
local now = tonumber(ARGV[1])
local l = tonumber(ARGV[6])
for i = 0, l - 1 do
  local times, total = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local window = tonumber(ARGV[8 + 2 * i])
  local max = tonumber(ARGV[9 + 2 * i])
  local seen
  if window < 0 then
    seen = tonumber(redis.call('GET', total) or '0')
  else
    seen = redis.call('ZCOUNT', times, '(' .. (now - window), now)
  end
  if seen >= max then return 0 end
end
local fresh = redis.call('SET', KEYS[1], 'v1|' .. ARGV[7], 'NX', 'EX', ARGV[2])
if not fresh then return redis.call('GET', KEYS[1]) or '' end
local keep_secs = tonumber(ARGV[3])
local keep_count = tonumber(ARGV[4])
local first = 3 + 2 * l
for i = first, #KEYS, 2 do
  local times, total = KEYS[i], KEYS[i + 1]
  redis.call('INCR', total)
  if keep_count > 0 then
    redis.call('ZADD', times, now, ARGV[5])
    redis.call('ZREMRANGEBYSCORE', times, '-inf', now - keep_secs)
    redis.call('ZREMRANGEBYRANK', times, 0, -(keep_count + 1))
    redis.call('EXPIRE', times, keep_secs + 60)
    -- Scored by the counter's newest impression: a replica whose clock is behind
    -- never lowers it, or the list would drop a counter its time set still holds.
    local name = ARGV[8 + 2 * l + (i - first) / 2]
    local listed = redis.call('ZSCORE', KEYS[2], name)
    if not listed or tonumber(listed) < now then redis.call('ZADD', KEYS[2], now, name) end
  end
end
if keep_count > 0 and #KEYS >= first then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - keep_secs)
  redis.call('EXPIRE', KEYS[2], keep_secs + 60)
end
return 1
"#;

const CAP_RECORD: &str = r#"
-- KEYS[1] the subject's list of counters; ARGV[1] the prefix of its counters' keys
-- Returns name, times, name, times... for each listed counter with recent impressions.
-- The counters' keys share the list's hash tag, so they live in its slot.
local out = {}
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local times = redis.call('ZRANGE', ARGV[1] .. name .. ':t', 0, -1, 'WITHSCORES')
  if #times > 0 then
    local at = {}
    for i = 2, #times, 2 do at[#at + 1] = tonumber(times[i]) end
    out[#out + 1] = name
    out[#out + 1] = at
  end
end
return out
"#;

const LEARN_LAYOUT: &str = r#"
-- KEYS[1] the registry revision, KEYS[2] the marker saying counters are listed
-- Returns 1 when they are: marked, or a store nothing has been committed to yet (which
-- it then marks).
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], '1')
return 1
"#;

const COMMIT_REGISTRY: &str = r#"
-- KEYS: rev, doc, audit, then blob keys; ARGV: expected rev, doc, audit entry, then
-- the blob values in KEYS order
local rev = tonumber(redis.call('GET', KEYS[1]) or '0')
if rev ~= tonumber(ARGV[1]) then return 0 end
for i = 4, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i])
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('SET', KEYS[1], rev + 1)
return 1
"#;

/// A subject's record from `CAP_RECORD`'s reply (counters and their impression times),
/// sorted by key.
fn decode_record(reply: Value) -> Result<CapRecord, StoreError> {
    let counters: Vec<(String, Vec<u64>)> = redis::from_redis_value(reply).map_err(backend)?;
    let mut record: CapRecord = counters
        .into_iter()
        .map(|(key, mut recent)| {
            recent.sort_unstable();
            // The record serves windowed caps only: its total is what it holds.
            let history = CapHistory {
                lifetime: recent.len() as u64,
                recent,
            };
            (key, history)
        })
        .collect();
    record.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(record)
}

/// Connections to one server or to a cluster.
enum Pool {
    Single(r2d2::Pool<redis::Client>),
    Cluster(r2d2::Pool<ClusterClient>),
}

/// One pooled connection of either kind.
enum Conn {
    Single(r2d2::PooledConnection<redis::Client>),
    Cluster(Box<r2d2::PooledConnection<ClusterClient>>),
}

impl Conn {
    fn inner(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => &mut **c,
            Conn::Cluster(c) => &mut ***c,
        }
    }

    fn inner_ref(&self) -> &dyn ConnectionLike {
        match self {
            Conn::Single(c) => &**c,
            Conn::Cluster(c) => &***c,
        }
    }

    /// Runs `pipe`; on a cluster its commands go to the nodes owning their keys. An empty
    /// pipeline answers an empty list on either.
    fn pipe<T: FromRedisValue>(&mut self, pipe: &Pipeline) -> RedisResult<T> {
        if pipe.cmd_iter().next().is_none() {
            return Ok(redis::from_redis_value(Value::Array(Vec::new()))?);
        }
        match self {
            Conn::Single(c) => pipe.query(&mut **c),
            Conn::Cluster(c) => {
                let mut cluster = redis::cluster::cluster_pipe();
                for cmd in pipe.cmd_iter() {
                    cluster.add_command(cmd.clone());
                }
                let conn: &mut ClusterConnection = c;
                cluster.query(conn)
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.inner().req_packed_command(cmd)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.inner().req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner_ref().get_db()
    }

    fn check_connection(&mut self) -> bool {
        self.inner().check_connection()
    }

    fn is_open(&self) -> bool {
        self.inner_ref().is_open()
    }
}

/// The seed nodes of a `redis-cluster://host:port,host:port` URL, as `redis://` URLs.
fn cluster_nodes(url: &str) -> Option<Result<Vec<String>, StoreError>> {
    let rest = url.strip_prefix("redis-cluster://")?;
    let nodes: Vec<String> = rest
        .trim_end_matches('/')
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| format!("redis://{n}"))
        .collect();
    Some(if nodes.is_empty() {
        Err(StoreError::Backend(format!(
            "bad Redis Cluster URL {url:?}: list at least one node, \
             as in redis-cluster://10.0.0.1:6379,10.0.0.2:6379"
        )))
    } else {
        Ok(nodes)
    })
}

fn pool_builder<M: r2d2::ManageConnection>() -> r2d2::Builder<M> {
    r2d2::Pool::builder()
        .max_size(16)
        .connection_timeout(std::time::Duration::from_secs(1))
        // No PING before every use: it doubled the round trips of each store call (and
        // on a cluster pinged every primary). A connection that broke is dropped when
        // it is returned, after the call that found it broken failed.
        .test_on_check_out(false)
        // The pool's own log line per failed connection attempt (16 at once, again every
        // half second) would bury the one error the store reports for the call that
        // failed, with the URL.
        .error_handler(Box::new(r2d2::NopErrorHandler))
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`, or `redis-cluster://host:port,...` for a
    /// Redis Cluster); keys are prefixed with `prefix`.
    pub fn open(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let unreachable =
            |e: r2d2::Error| StoreError::Backend(format!("cannot connect to Redis at {url}: {e}"));
        let mut seeds = Vec::new();
        let pool = match cluster_nodes(url) {
            Some(_) if prefix.contains(['{', '}']) => {
                return Err(StoreError::Backend(format!(
                    "store_prefix {prefix:?} contains a brace: on a Redis Cluster braces in \
                     keys are hash tags, which the store sets itself"
                )));
            }
            Some(nodes) => {
                seeds = nodes?;
                let client = ClusterClient::new(seeds.clone()).map_err(|e| {
                    StoreError::Backend(format!("bad Redis Cluster URL {url:?}: {e}"))
                })?;
                Pool::Cluster(pool_builder().build(client).map_err(unreachable)?)
            }
            None => {
                let client = redis::Client::open(url)
                    .map_err(|e| StoreError::Backend(format!("bad Redis URL {url:?}: {e}")))?;
                Pool::Single(pool_builder().build(client).map_err(unreachable)?)
            }
        };
        let store = RedisStore {
            pool,
            seeds,
            prefix: prefix.to_string(),
            try_reserve: Script::new(TRY_RESERVE),
            commit_registry: Script::new(COMMIT_REGISTRY),
            listed: AtomicBool::new(false),
            marker_due: AtomicU64::new(MARKER_CHECK_MS),
            opened: std::time::Instant::now(),
        };
        store.learn_layout()?;
        Ok(store)
    }

    /// Learns whether counters are listed. A store that has never had a registry
    /// commit has served nothing, so it is marked listed from the start; a store
    /// written by an earlier version is listed by [`RedisStore::upgrade`].
    fn learn_layout(&self) -> Result<(), StoreError> {
        // One script, so a replica of an earlier version cannot commit in between.
        let listed: bool = redis::cmd("EVAL")
            .arg(LEARN_LAYOUT)
            .arg(2)
            .arg(self.key(format_args!("{{registry}}:rev")))
            .arg(self.listed_key())
            .query(&mut self.conn()?)
            .map_err(backend)?;
        self.listed.store(listed, Ordering::Relaxed);
        Ok(())
    }

    /// Whether a slate on a store not known to be listed should look for the marker
    /// now; at most one slate per [`MARKER_CHECK_MS`] does.
    fn marker_check_due(&self) -> bool {
        let now = self.opened.elapsed().as_millis() as u64;
        let due = self.marker_due.load(Ordering::Relaxed);
        now >= due
            && (self.marker_due)
                .compare_exchange(
                    due,
                    now + MARKER_CHECK_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// The marker saying every subject's counters are listed.
    fn listed_key(&self) -> String {
        self.key(format_args!("{{registry}}:caps-listed"))
    }

    /// Whether slates may read a subject's counters from its list.
    pub fn counters_listed(&self) -> bool {
        self.listed.load(Ordering::Relaxed)
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        match &self.pool {
            Pool::Single(p) => p.get().map(Conn::Single),
            Pool::Cluster(p) => p.get().map(|c| Conn::Cluster(Box::new(c))),
        }
        .map_err(backend)
    }

    fn key(&self, parts: std::fmt::Arguments<'_>) -> String {
        format!("{}{}", self.prefix, parts)
    }

    /// A blob's key; blobs hash with the registry.
    fn blob_key(&self, key: &str) -> String {
        self.key(format_args!("{{registry}}:blob:{key}"))
    }

    fn counter_keys(&self, bucket: &str, row: &str) -> (String, String) {
        (
            self.key(format_args!("ctr:{{{bucket}}}:{row}")),
            self.key(format_args!("ctr:{{{bucket}}}:{row}:m")),
        )
    }

    /// The sorted set listing `subject`'s counters with recent impressions, scored by
    /// the last one.
    fn cap_list_key(&self, subject: &SubjectKey) -> String {
        self.key(format_args!("cap:{{{}}}:keys", subject.0))
    }

    /// `cap_record`'s script call for `subject`.
    fn cap_record_cmd(&self, subject: &SubjectKey) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CAP_RECORD)
            .arg(1)
            .arg(self.cap_list_key(subject))
            .arg(self.key(format_args!("cap:{{{}}}|", subject.0)));
        cmd
    }

    fn cap_keys(&self, subject: &SubjectKey, key: &str) -> (String, String) {
        (
            self.key(format_args!("cap:{{{}}}|{key}:t", subject.0)),
            self.key(format_args!("cap:{{{}}}|{key}:n", subject.0)),
        )
    }
}

impl Store for RedisStore {
    fn profile(&self, subject: &SubjectKey) -> Result<Option<Profile>, StoreError> {
        let key = self.key(format_args!("profile:{}", subject.0));
        let bytes: Option<Vec<u8>> = self.conn()?.get(&key).map_err(backend)?;
        bytes.map(|b| decode(&key, &b)).transpose()
    }

    fn put_profiles(&self, profiles: &[(SubjectKey, Profile)]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (subject, profile) in profiles {
            let bytes = serde_json::to_vec(profile).expect("profiles serialize");
            pipe.set(self.key(format_args!("profile:{}", subject.0)), bytes)
                .ignore();
        }
        self.conn()?.pipe::<()>(&pipe).map_err(backend)
    }

    fn save_slate(&self, slate: &SlateRecord) -> Result<(), StoreError> {
        let ttl = slate.expires_at.saturating_sub(slate.served_at).max(1);
        let bytes = serde_json::to_vec(slate).expect("slates serialize");
        self.conn()?
            .set_ex::<_, _, ()>(
                self.key(format_args!("slate:{}", slate.slate_id)),
                bytes,
                ttl,
            )
            .map_err(backend)
    }

    fn slate(&self, slate_id: &str, now: u64) -> Result<Option<SlateRecord>, StoreError> {
        let key = self.key(format_args!("slate:{slate_id}"));
        let bytes: Option<Vec<u8>> = self.conn()?.get(&key).map_err(backend)?;
        let record: Option<SlateRecord> = bytes.map(|b| decode(&key, &b)).transpose()?;
        // The TTL follows Redis's clock; the host's clock decides.
        Ok(record.filter(|r| r.expires_at > now))
    }

    fn cap_histories(
        &self,
        subject: &SubjectKey,
        keys: &[String],
        lifetime: bool,
    ) -> Result<Vec<CapHistory>, StoreError> {
        let mut pipe = redis::pipe();
        for k in keys {
            let (times, total) = self.cap_keys(subject, k);
            pipe.zrange_withscores(times, 0, -1);
            if lifetime {
                pipe.get(total);
            }
        }
        let replies: Vec<redis::Value> = self.conn()?.pipe(&pipe).map_err(backend)?;
        let mut out = Vec::with_capacity(keys.len());
        for reply in replies.chunks(if lifetime { 2 } else { 1 }) {
            let times: Vec<(String, f64)> =
                redis::from_redis_value(reply[0].clone()).map_err(backend)?;
            let total: Option<u64> = match reply.get(1) {
                Some(total) => redis::from_redis_value(total.clone()).map_err(backend)?,
                None => None,
            };
            let mut recent: Vec<u64> = times.into_iter().map(|(_, t)| t as u64).collect();
            recent.sort_unstable();
            out.push(CapHistory {
                lifetime: total.unwrap_or(0),
                recent,
            });
        }
        Ok(out)
    }

    fn cap_record(&self, subject: &SubjectKey) -> Option<Result<CapRecord, StoreError>> {
        if !self.counters_listed() {
            return None;
        }
        let read = self.conn().and_then(|mut conn| {
            let reply: Value = self
                .cap_record_cmd(subject)
                .query(&mut conn)
                .map_err(backend)?;
            decode_record(reply)
        });
        Some(read)
    }

    fn slate_reads(&self, subject: &SubjectKey, profile: bool, caps: bool) -> SlateReads {
        // One pipeline: the profile, then the record; or, until every subject's counters
        // are known to be listed, now and then whether they are now (meanwhile the slate
        // reads by key).
        let listed = self.counters_listed();
        let check_marker = caps && !listed && self.marker_check_due();
        let read_record = caps && listed;
        if !(profile || read_record || check_marker) {
            return SlateReads::default();
        }
        let profile_key = self.key(format_args!("profile:{}", subject.0));
        let mut pipe = redis::pipe();
        if profile {
            pipe.get(&profile_key);
        }
        if read_record {
            pipe.add_command(self.cap_record_cmd(subject));
        } else if check_marker {
            pipe.get(self.listed_key());
        }
        let replies: Result<Vec<Value>, StoreError> =
            (self.conn()).and_then(|mut conn| conn.pipe(&pipe).map_err(backend));
        let mut replies = match replies {
            Ok(replies) => replies.into_iter(),
            Err(e) => {
                // A pipeline fails whole when one command does: a record the server
                // refuses must hide capped offers, not the slate, so the profile is read
                // again on its own.
                if !(read_record || check_marker) {
                    // The profile alone was asked for.
                    return SlateReads {
                        profile: Some(Err(e)),
                        caps: None,
                    };
                }
                return SlateReads {
                    profile: profile.then(|| self.profile(subject)),
                    caps: read_record.then_some(Err(e)),
                };
            }
        };
        let missing = || {
            StoreError::Backend("the pipeline answered fewer replies than it had commands".into())
        };
        let profile = profile.then(|| {
            let reply = replies.next().ok_or_else(missing)?;
            let bytes: Option<Vec<u8>> = redis::from_redis_value(reply).map_err(backend)?;
            bytes.map(|b| decode(&profile_key, &b)).transpose()
        });
        let caps = if read_record {
            Some(replies.next().ok_or_else(missing).and_then(decode_record))
        } else {
            // The marker, when looked for: learnt for the next slate, which then reads
            // the record; this one reads by key.
            if check_marker && !matches!(replies.next(), None | Some(Value::Nil)) {
                self.listed.store(true, Ordering::Relaxed);
            }
            None
        };
        SlateReads { profile, caps }
    }

    fn try_reserve(
        &self,
        event_id: &str,
        what: &str,
        subject: &SubjectKey,
        limits: &[(String, Option<u64>, u32)],
        cap_keys: &[String],
        now: u64,
        retention: Retention,
    ) -> Result<Reservation, StoreError> {
        let mut inv = self
            .try_reserve
            .key(self.key(format_args!("event:{{{}}}|{event_id}", subject.0)));
        inv.key(self.cap_list_key(subject));
        for (k, _, _) in limits {
            let (times, total) = self.cap_keys(subject, k);
            inv.key(times).key(total);
        }
        for k in cap_keys {
            let (times, total) = self.cap_keys(subject, k);
            inv.key(times).key(total);
        }
        inv.arg(now)
            .arg(EVENT_TTL_SECS)
            .arg(retention.seconds)
            .arg(retention.count)
            .arg(event_id)
            .arg(limits.len())
            .arg(what);
        for (_, window, max) in limits {
            inv.arg(window.map_or(-1, |w| w as i64)).arg(*max);
        }
        for k in cap_keys {
            inv.arg(k);
        }
        let done: redis::Value = inv.invoke(&mut self.conn()?).map_err(backend)?;
        Ok(match done {
            redis::Value::Int(1) => Reservation::Made,
            redis::Value::Int(_) => Reservation::Capped,
            // `v1|` and what it was; a marker from before is the time it was recorded.
            other => {
                let earlier: String = redis::from_redis_value(other).map_err(backend)?;
                Reservation::Seen {
                    what: earlier.strip_prefix("v1|").unwrap_or_default().to_string(),
                }
            }
        })
    }

    fn add_counters(&self, adds: &[CounterAdd]) -> Result<(), StoreError> {
        if adds.is_empty() {
            return Ok(());
        }
        // HINCRBY and SADD are atomic each; one pipeline is one round trip.
        let mut pipe = redis::pipe();
        for add in adds {
            let (fields, members) = self.counter_keys(&add.bucket, &add.row);
            let index = self.key(format_args!("ctr:{{{}}}", add.bucket));
            pipe.sadd(&index, &add.row).ignore();
            for (name, n) in &add.fields {
                pipe.hincr(&fields, name, *n).ignore();
            }
            if !add.members.is_empty() {
                pipe.sadd(&members, &add.members).ignore();
            }
            if let Some(at) = add.expires_at {
                // A time already past deletes the keys at once, as a sweep would.
                let at = i64::try_from(at).unwrap_or(i64::MAX);
                for key in [&index, &fields, &members] {
                    pipe.expire_at(key, at).ignore();
                }
            }
        }
        self.conn()?.pipe::<()>(&pipe).map_err(backend)
    }

    fn counters(&self, bucket: &str, members: bool) -> Result<Vec<CounterRow>, StoreError> {
        let mut conn = self.conn()?;
        let rows: Vec<String> = conn
            .smembers(self.key(format_args!("ctr:{{{bucket}}}")))
            .map_err(backend)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for row in &rows {
            let (fields, member_key) = self.counter_keys(bucket, row);
            pipe.hgetall(fields);
            if members {
                pipe.smembers(member_key);
            }
        }
        let replies: Vec<redis::Value> = conn.pipe(&pipe).map_err(backend)?;
        let per_row = if members { 2 } else { 1 };
        rows.into_iter()
            .zip(replies.chunks(per_row))
            .map(|(row, reply)| {
                let fields: std::collections::BTreeMap<String, u64> =
                    redis::from_redis_value(reply[0].clone()).map_err(backend)?;
                let members: Vec<String> = match reply.get(1) {
                    Some(v) => redis::from_redis_value(v.clone()).map_err(backend)?,
                    None => Vec::new(),
                };
                Ok(CounterRow {
                    row,
                    fields,
                    members,
                })
            })
            .collect()
    }

    fn registry(&self) -> Result<(u64, Option<Vec<u8>>), StoreError> {
        let mut conn = self.conn()?;
        let mut pipe = redis::pipe();
        pipe.get(self.key(format_args!("{{registry}}:rev")))
            .get(self.key(format_args!("{{registry}}:doc")));
        let (rev, doc): (Option<u64>, Option<Vec<u8>>) = conn.pipe(&pipe).map_err(backend)?;
        Ok((rev.unwrap_or(0), doc))
    }

    fn commit_registry(
        &self,
        expected_rev: u64,
        doc: &[u8],
        audit: &[u8],
        blobs: &[(String, Vec<u8>)],
    ) -> Result<bool, StoreError> {
        let mut inv = self
            .commit_registry
            .key(self.key(format_args!("{{registry}}:rev")));
        inv.key(self.key(format_args!("{{registry}}:doc")))
            .key(self.key(format_args!("{{registry}}:audit")))
            .arg(expected_rev)
            .arg(doc)
            .arg(audit);
        for (k, v) in blobs {
            inv.key(self.blob_key(k)).arg(v.as_slice());
        }
        let done: i64 = inv.invoke(&mut self.conn()?).map_err(backend)?;
        Ok(done == 1)
    }

    fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn()?.get(self.blob_key(key)).map_err(backend)
    }

    fn put_blob(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.conn()?.set(self.blob_key(key), bytes).map_err(backend)
    }

    fn put_blob_if_absent(&self, key: &str, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
        let key = self.blob_key(key);
        let mut conn = self.conn()?;
        // SET NX, then read what is there: blobs are never replaced once set this way.
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(bytes)
            .arg("NX")
            .query(&mut conn)
            .map_err(backend)?;
        let stored: Option<Vec<u8>> = conn.get(&key).map_err(backend)?;
        Ok(stored.unwrap_or_else(|| bytes.to_vec()))
    }

    fn audit(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let Ok(start) = isize::try_from(after) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let stop = start.saturating_add(limit as isize - 1);
        let entries: Vec<Vec<u8>> = self
            .conn()?
            .lrange(self.key(format_args!("{{registry}}:audit")), start, stop)
            .map_err(backend)?;
        Ok(entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| (after + 1 + i as u64, e))
            .collect())
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Durability is the Redis server's (AOF/RDB) configuration.
        Ok(())
    }

    fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING")
            .query::<String>(&mut self.conn()?)
            .map(|_| ())
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str, prefix: &str) -> String {
        match RedisStore::open(url, prefix) {
            Ok(_) => panic!("{url} with prefix {prefix:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn cluster_urls_list_their_seed_nodes() {
        assert_eq!(
            cluster_nodes("redis://127.0.0.1:6379/0").map(|r| r.is_ok()),
            None
        );
        let nodes = cluster_nodes("redis-cluster://10.0.0.1:6379, 10.0.0.2:6380/")
            .unwrap()
            .unwrap();
        assert_eq!(nodes, ["redis://10.0.0.1:6379", "redis://10.0.0.2:6380"]);
    }

    #[test]
    fn bad_urls_and_prefixes_are_refused_with_the_reason() {
        let e = refused("redis-cluster://", "oh:");
        assert!(e.contains("list at least one node"), "{e}");
        let e = refused("redis-cluster://127.0.0.1:6379", "oh{x}:");
        assert!(e.contains("brace"), "{e}");
        let e = refused("http://127.0.0.1:6379", "oh:");
        assert!(e.contains("bad Redis URL"), "{e}");
    }
}
