//! `offerhost store upgrade` on Redis: lists the cap counters an earlier version wrote
//! without listing them, so slates can read each subject's counters with its profile,
//! and marks the store once every one is listed. On a cluster it scans every primary and
//! refuses a cluster that is not steady, since a key moving between primaries during
//! the scan could be missed by both.

use std::sync::atomic::Ordering;

use redis::{Commands, ConnectionLike};

use super::{RedisStore, backend};
use crate::store::{StoreError, SubjectKey};

const LIST_COUNTER: &str = r#"
-- KEYS[1] a counter's time set, KEYS[2] its subject's list of counters; ARGV[1] its name
-- Lists a counter written before counters were listed, as a reservation would have.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last == 0 then return 0 end
local at = tonumber(last[2])
local listed = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not listed or tonumber(listed) < at then redis.call('ZADD', KEYS[2], at, ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
local kept = redis.call('PTTL', KEYS[2])
if ttl > 0 and (kept < 0 or ttl > kept) then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"#;

/// Counters looked at per `SCAN` step of [`RedisStore::upgrade`].
const UPGRADE_BATCH: usize = 1000;

/// `text` with the characters `SCAN MATCH` treats as a pattern escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One line of `CLUSTER NODES`: the node's address (`host:port`), its flags and the
/// slots it serves (`[slot->-id]` / `[slot-<-id]` while it moves one out or in).
struct NodeLine<'a> {
    addr: &'a str,
    flags: Vec<&'a str>,
    slots: Vec<&'a str>,
}

impl<'a> NodeLine<'a> {
    /// Each node in `CLUSTER NODES` output: id, address, flags, primary, ping, pong,
    /// epoch, link state, then its slots.
    fn parse_all(nodes: &'a str) -> impl Iterator<Item = NodeLine<'a>> {
        nodes.lines().filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = fields.nth(1)?.split(['@', ',']).next().unwrap_or_default();
            let flags = fields.next()?.split(',').collect();
            let slots = fields.skip(5).collect();
            Some(NodeLine { addr, flags, slots })
        })
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    fn moving_slots(&self) -> bool {
        self.slots.iter().any(|s| s.starts_with('['))
    }
}

/// The primaries in `CLUSTER NODES` output (host, port and the slots each serves,
/// sorted), or why the cluster is not steady: `CLUSTER INFO` not `ok`, a primary failing
/// or without an address, or slots being moved.
fn steady_primaries(info: &str, nodes: &str) -> Result<Vec<(String, u16, String)>, String> {
    if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
        return Err("cluster_state is not ok".into());
    }
    let mut out = Vec::new();
    for node in NodeLine::parse_all(nodes).filter(|n| n.has_flag("master")) {
        let addr = node.addr;
        if let Some(flag) = ["fail", "fail?", "noaddr"]
            .iter()
            .find(|f| node.has_flag(f))
        {
            return Err(format!("primary {addr} is flagged {flag}"));
        }
        if node.moving_slots() {
            return Err(format!("slots are moving to or from {addr}"));
        }
        let port = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse().ok()?)));
        let Some((host, port)) = port else {
            return Err(format!("CLUSTER NODES lists a primary at {addr:?}"));
        };
        out.push((host.to_string(), port, node.slots.join(" ")));
    }
    out.sort();
    Ok(out)
}

/// The upgrade's refusal of a cluster that is not steady, and why.
fn unsteady(why: String) -> StoreError {
    StoreError::Backend(format!(
        "the Redis Cluster is not steady ({why}); run the upgrade once it is"
    ))
}

/// Refuses when some primary is moving slots. Each primary lists only its own moves
/// (on its `myself` line), so each is asked.
fn no_slots_moving(primaries: &mut [Box<dyn ConnectionLike>]) -> Result<(), StoreError> {
    for node in primaries {
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut **node)
            .map_err(backend)?;
        if let Some(addr) = moving_slots(&nodes) {
            return Err(unsteady(format!("slots are moving to or from {addr}")));
        }
    }
    Ok(())
}

/// The address of the node that answered `CLUSTER NODES` (its `myself` line) when it
/// is moving slots in or out.
fn moving_slots(nodes: &str) -> Option<&str> {
    NodeLine::parse_all(nodes)
        .find(|n| n.has_flag("myself"))
        .filter(NodeLine::moving_slots)
        .map(|n| n.addr)
}

impl RedisStore {
    /// Brings a store written by an earlier version up to this one: lists every
    /// subject's cap counters that a reservation has not listed yet, then marks the
    /// store as listed, so that slates read a subject's counters together with its
    /// profile in one round trip (until then they read by key). Run it once every
    /// replica runs this version: an earlier version does not list what it counts.
    /// Running it again changes nothing. Calls `progress` with the counters looked at
    /// so far after each batch; returns how many it looked at.
    pub fn upgrade(&self, progress: &mut dyn FnMut(u64)) -> Result<u64, StoreError> {
        let pattern = format!("{}cap:*:t", glob_escape(&self.prefix));
        let start = self.key(format_args!("cap:{{"));
        let mut seen = 0u64;
        let layout = match self.seeds.is_empty() {
            true => Vec::new(),
            false => self.cluster_layout()?,
        };
        let mut nodes = self.primaries(&layout)?;
        if !layout.is_empty() {
            no_slots_moving(&mut nodes)?;
        }
        for node in &mut nodes {
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(UPGRADE_BATCH)
                    .query(&mut **node)
                    .map_err(backend)?;
                let mut pipe = redis::pipe();
                for key in &keys {
                    let Some((subject, name)) = (key.strip_prefix(&start))
                        .and_then(|rest| rest.strip_suffix(":t"))
                        .and_then(|rest| rest.split_once("}|"))
                    else {
                        continue;
                    };
                    let list = self.cap_list_key(&SubjectKey(subject.to_string()));
                    pipe.cmd("EVAL")
                        .arg(LIST_COUNTER)
                        .arg(2)
                        .arg(key)
                        .arg(list)
                        .arg(name)
                        .ignore();
                    seen += 1;
                }
                self.conn()?.pipe::<()>(&pipe).map_err(backend)?;
                progress(seen);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        if !layout.is_empty() {
            no_slots_moving(&mut nodes)?;
            if self.cluster_layout()? != layout {
                return Err(StoreError::Backend(
                    "the Redis Cluster's primaries or slots changed during the upgrade, so \
                     a moved counter may have been missed; nothing was marked: run it again"
                        .into(),
                ));
            }
        }
        self.conn()?
            .set::<_, _, ()>(self.listed_key(), "1")
            .map_err(backend)?;
        self.listed.store(true, Ordering::Relaxed);
        Ok(seen)
    }

    /// A plain connection to every primary: the server, or each primary of a cluster in
    /// `layout` ([`RedisStore::cluster_layout`]), reached with the seed nodes' credentials.
    fn primaries(
        &self,
        layout: &[(String, u16, String)],
    ) -> Result<Vec<Box<dyn ConnectionLike>>, StoreError> {
        let Some(seed) = self.seeds.first() else {
            return Ok(vec![Box::new(self.conn()?)]);
        };
        let seed =
            redis::IntoConnectionInfo::into_connection_info(seed.as_str()).map_err(backend)?;
        let mut out: Vec<Box<dyn ConnectionLike>> = Vec::new();
        for (host, port, _) in layout {
            let tcp = redis::ConnectionAddr::Tcp(host.clone(), *port);
            let info = seed.clone().set_addr(tcp);
            let client = redis::Client::open(info).map_err(backend)?;
            out.push(Box::new(client.get_connection().map_err(backend)?));
        }
        Ok(out)
    }

    /// A cluster's primaries (host, port and the slots each serves, sorted), refusing a
    /// cluster that is not steady: not `ok`, a primary failing or without an address,
    /// or slots being moved. The upgrade reads it before and after its scan, since a
    /// key moved between primaries meanwhile could be missed by both scans.
    fn cluster_layout(&self) -> Result<Vec<(String, u16, String)>, StoreError> {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut self.conn()?)
            .map_err(backend)?;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut self.conn()?)
            .map_err(backend)?;
        steady_primaries(&info, &nodes).map_err(unsteady)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb2352e0b 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb 0 1426238317239 4 connected
67ed2db8d677e59e 127.0.0.1:30002@31002,node-2 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
e7d1eecce10fd6bb 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
";

    #[test]
    fn the_upgrade_reads_a_steady_clusters_primaries_and_refuses_an_unsteady_one() {
        let ok = "cluster_enabled:1\r\ncluster_state:ok\r\n";
        let primaries = steady_primaries(ok, NODES).unwrap();
        let addrs: Vec<(&str, u16, &str)> = (primaries.iter())
            .map(|(h, p, s)| (h.as_str(), *p, s.as_str()))
            .collect();
        assert_eq!(
            addrs,
            [
                ("127.0.0.1", 30001, "0-5460"),
                ("127.0.0.1", 30002, "5461-10922"),
                ("127.0.0.1", 30003, "10923-16383"),
            ]
        );

        let e = steady_primaries("cluster_state:fail\r\n", NODES).unwrap_err();
        assert!(e.contains("cluster_state"), "{e}");
        let failing = NODES.replace("myself,master", "master,fail?");
        let e = steady_primaries(ok, &failing).unwrap_err();
        assert!(e.contains("127.0.0.1:30001 is flagged fail?"), "{e}");
        let moving = NODES.replace("0-5460", "0-5460 [93->-67ed2db8d677e59e]");
        let e = steady_primaries(ok, &moving).unwrap_err();
        assert!(e.contains("moving to or from 127.0.0.1:30001"), "{e}");
        let importing = NODES.replace("5461-10922", "5461-10922 [93-<-292f8b365bb7edb5]");
        let e = steady_primaries(ok, &importing).unwrap_err();
        assert!(e.contains("127.0.0.1:30002"), "{e}");

        // A node lists only its own moves: each primary is asked about itself.
        assert_eq!(moving_slots(NODES), None);
        assert_eq!(moving_slots(&moving), Some("127.0.0.1:30001"));
        let elsewhere = importing.replace("myself,master", "master");
        assert_eq!(
            moving_slots(&elsewhere),
            None,
            "not the answering node's line"
        );
        let here = importing.replace("myself,master", "master").replace(
            "master - 0 1426238316232",
            "myself,master - 0 1426238316232",
        );
        assert_eq!(moving_slots(&here), Some("127.0.0.1:30002"));
    }
}
