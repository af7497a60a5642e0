//! Frequency caps, ad-server style: several caps, each "at most N per window", at the
//! scopes offer, partner, category and whole slate, counted per subject.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::Bid;

/// What a cap counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CapScope {
    /// Impressions of one offer (partner + offer id).
    Offer,
    /// Impressions of any offer of one partner.
    Partner,
    /// Impressions of any offer in one category.
    Category,
    /// Impressions of any partner offer at all.
    Slate,
}

/// A cap window. Written `30m`, `12h`, `7d`, `2w` or `lifetime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The last N minutes.
    Minutes(u32),
    /// The last N hours.
    Hours(u32),
    /// The last N days.
    Days(u32),
    /// The last N weeks.
    Weeks(u32),
    /// Ever.
    Lifetime,
}

impl Window {
    /// Length in seconds; `None` for lifetime.
    pub fn seconds(self) -> Option<u64> {
        match self {
            Window::Minutes(n) => Some(n as u64 * 60),
            Window::Hours(n) => Some(n as u64 * 3600),
            Window::Days(n) => Some(n as u64 * 86_400),
            Window::Weeks(n) => Some(n as u64 * 604_800),
            Window::Lifetime => None,
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Minutes(n) => write!(f, "{n}m"),
            Window::Hours(n) => write!(f, "{n}h"),
            Window::Days(n) => write!(f, "{n}d"),
            Window::Weeks(n) => write!(f, "{n}w"),
            Window::Lifetime => f.write_str("lifetime"),
        }
    }
}

impl std::str::FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "lifetime" {
            return Ok(Window::Lifetime);
        }
        let bad = || {
            format!(
                "window {s:?} must be N followed by m, h, d or w (30m, 12h, 7d, 2w), or `lifetime`"
            )
        };
        let Some(unit_at) = s.char_indices().last().map(|(i, _)| i) else {
            return Err(bad());
        };
        let (digits, unit) = s.split_at(unit_at);
        let n: u32 = digits.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        match unit {
            "m" => Ok(Window::Minutes(n)),
            "h" => Ok(Window::Hours(n)),
            "d" => Ok(Window::Days(n)),
            "w" => Ok(Window::Weeks(n)),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One cap: at most `max` impressions per `window` at `scope`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    /// What is counted.
    pub scope: CapScope,
    /// Most impressions in the window, at least 1.
    pub max: u32,
    /// The window.
    pub window: Window,
}

impl fmt::Display for FrequencyCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.scope {
            CapScope::Offer => "offer",
            CapScope::Partner => "partner",
            CapScope::Category => "category",
            CapScope::Slate => "slate",
        };
        write!(f, "{scope} at most {} per {}", self.max, self.window)
    }
}

/// The impression history of one counter: a lifetime total and the recent timestamps
/// (seconds), trimmed to what the configured caps can still need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapHistory {
    /// Impressions ever.
    pub lifetime: u64,
    /// Recent impression times, ascending.
    pub recent: Vec<u64>,
}

/// How much history the caps need: older or surplus timestamps are dropped on write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Longest finite window, seconds.
    pub seconds: u64,
    /// Largest `max` of any finite-window cap.
    pub count: usize,
}

impl Retention {
    /// What `caps` need.
    pub fn for_caps(caps: &[FrequencyCap]) -> Retention {
        let finite = caps
            .iter()
            .filter_map(|c| c.window.seconds().map(|s| (s, c.max as usize)));
        let (seconds, count) = finite.fold((0, 0), |(s, n), (cs, cn)| (s.max(cs), n.max(cn)));
        Retention { seconds, count }
    }

    /// Impressions at or before this time are no longer kept at `now`.
    fn cutoff(self, now: u64) -> u64 {
        now.saturating_sub(self.seconds)
    }
}

impl CapHistory {
    /// Adds one impression at `now` and trims.
    pub fn record(&mut self, now: u64, retention: Retention) {
        self.lifetime += 1;
        let at = self.recent.partition_point(|&t| t <= now);
        self.recent.insert(at, now);
        let cutoff = retention.cutoff(now);
        self.recent.retain(|&t| t > cutoff);
        if self.recent.len() > retention.count {
            let surplus = self.recent.len() - retention.count;
            self.recent.drain(..surplus);
        }
    }

    /// Whether an impression is still kept at `now`: one inside the longest window.
    pub fn has_recent(&self, now: u64, retention: Retention) -> bool {
        let cutoff = retention.cutoff(now);
        self.recent.iter().any(|&t| t > cutoff)
    }

    /// Impressions within `window` ending at `now`.
    pub fn count(&self, window: Window, now: u64) -> u64 {
        self.count_within(window.seconds(), now)
    }

    /// Impressions within the last `seconds` before `now` (`None`: ever).
    pub fn count_within(&self, seconds: Option<u64>, now: u64) -> u64 {
        match seconds {
            None => self.lifetime,
            Some(s) => {
                let cutoff = now.saturating_sub(s);
                self.recent
                    .iter()
                    .filter(|&&t| t > cutoff && t <= now)
                    .count() as u64
            }
        }
    }
}

/// The pieces whose concatenation is the store key of `scope` for an offer.
fn key_pieces<'s>(
    scope: CapScope,
    partner: &'s str,
    offer_id: &'s str,
    category: &'s str,
) -> impl Iterator<Item = &'s str> {
    let pieces: [&str; 4] = match scope {
        CapScope::Offer => ["offer:", partner, "/", offer_id],
        CapScope::Partner => ["partner:", partner, "", ""],
        CapScope::Category => ["category:", category, "", ""],
        CapScope::Slate => ["slate", "", "", ""],
    };
    pieces.into_iter()
}

/// How `key` orders against the concatenation of `pieces`, without building it.
fn cmp_key<'s>(key: &str, pieces: impl Iterator<Item = &'s str>) -> Ordering {
    let mut rest = key.as_bytes();
    for piece in pieces.map(str::as_bytes) {
        let n = piece.len().min(rest.len());
        match rest[..n].cmp(&piece[..n]) {
            Ordering::Equal if rest.len() < piece.len() => return Ordering::Less,
            Ordering::Equal => rest = &rest[n..],
            unequal => return unequal,
        }
    }
    if rest.is_empty() {
        Ordering::Equal
    } else {
        Ordering::Greater
    }
}

/// One offer as the caps see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CappedOffer<'b> {
    /// Partner id.
    pub partner: &'b str,
    /// Offer id.
    pub offer_id: &'b str,
    /// Category id.
    pub category: &'b str,
}

impl<'b> CappedOffer<'b> {
    /// The offer of `bid`, made by `partner`'s plugin.
    pub fn of(partner: &'b str, bid: &'b Bid) -> Self {
        CappedOffer {
            partner,
            offer_id: &bid.offer.id,
            category: &bid.offer.category,
        }
    }

    /// The pieces whose concatenation is this offer's store key at `scope`.
    fn key_pieces(&self, scope: CapScope) -> impl Iterator<Item = &'b str> + use<'b> {
        key_pieces(scope, self.partner, self.offer_id, self.category)
    }

    /// The store key of `scope` for this offer.
    pub fn key(&self, scope: CapScope) -> String {
        self.key_pieces(scope).collect()
    }

    /// Every key, one per scope.
    pub fn all_keys(&self) -> Vec<String> {
        [
            CapScope::Offer,
            CapScope::Partner,
            CapScope::Category,
            CapScope::Slate,
        ]
        .into_iter()
        .map(|s| self.key(s))
        .collect()
    }

    /// Whether `other` counts toward the same counter as this offer at `scope`.
    fn shares(&self, other: &CappedOffer<'_>, scope: CapScope) -> bool {
        match scope {
            CapScope::Offer => self.partner == other.partner && self.offer_id == other.offer_id,
            CapScope::Partner => self.partner == other.partner,
            CapScope::Category => self.category == other.category,
            CapScope::Slate => true,
        }
    }
}

/// A subject's counters with impressions, sorted by key: what a slate checks its offers
/// against. A counter not in it has none (within the windows that were read).
pub type CapRecord = Vec<(String, CapHistory)>;

/// The counter keys a slate's offers touch under `caps`, each once, sorted: what to read
/// from a store that reads by key ([`crate::store::Store::cap_histories`]).
pub fn keys_to_read<'b>(
    caps: &[FrequencyCap],
    offers: impl IntoIterator<Item = CappedOffer<'b>>,
) -> Vec<String> {
    let mut scopes: Vec<CapScope> = caps.iter().map(|c| c.scope).collect();
    scopes.sort_unstable_by_key(|s| *s as usize);
    scopes.dedup();
    let mut keys = Vec::new();
    for offer in offers {
        keys.extend(scopes.iter().map(|&scope| offer.key(scope)));
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Decides cap by cap while a slate is filled, counting the offers already picked for
/// this slate as if they were shown.
///
/// It holds the subject's counters with impressions ([`CapRecord`]) and looks each
/// offer's counters up there by comparing keys piece by piece, so no key string is built
/// to check an offer. A store that keeps a subject's counters in one record hands it
/// over whole ([`crate::store::Store::cap_record`]), and a slate then lists no keys at
/// all; for one that reads by key, the slate lists them first ([`keys_to_read`]). (Built
/// per check, the keys of eight offers under the example's five caps were about a
/// hundred strings a slate: in the 8-plugin slate bench with those caps, 88-92 us a slate
/// against 79-82 us listed once, and listing them once still took about 2 us.)
pub struct CapCheck<'a> {
    caps: &'a [FrequencyCap],
    record: CapRecord,
    now: u64,
}

impl<'a> CapCheck<'a> {
    /// A check of `caps` at `now` (unix seconds) against `record`, sorted by key (a
    /// record out of order is sorted here rather than misread).
    pub fn new(caps: &'a [FrequencyCap], now: u64, mut record: CapRecord) -> Self {
        if !record.is_sorted_by(|a, b| a.0 <= b.0) {
            record.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        CapCheck { caps, record, now }
    }

    /// A check against the histories a store read for `keys` (sorted, as
    /// [`keys_to_read`] gives them), one each in that order.
    pub fn from_histories(
        caps: &'a [FrequencyCap],
        now: u64,
        keys: Vec<String>,
        histories: Vec<CapHistory>,
    ) -> Self {
        let record = keys
            .into_iter()
            .zip(histories)
            .filter(|(_, h)| h.lifetime > 0 || !h.recent.is_empty())
            .collect();
        CapCheck::new(caps, now, record)
    }

    /// The history of `offer`'s counter at `scope`, if it has impressions.
    fn history(&self, scope: CapScope, offer: CappedOffer<'_>) -> Option<&CapHistory> {
        let at = (self.record)
            .binary_search_by(|(key, _)| cmp_key(key, offer.key_pieces(scope)))
            .ok()?;
        Some(&self.record[at].1)
    }

    /// The first cap `offer` would break, if any, with the offers this slate has
    /// already `taken` counted as shown.
    pub fn blocking_cap<'b, T>(&self, offer: CappedOffer<'_>, taken: T) -> Option<&'a FrequencyCap>
    where
        T: IntoIterator<Item = CappedOffer<'b>>,
        T::IntoIter: Clone,
    {
        let taken = taken.into_iter();
        self.caps.iter().find(|cap| {
            let seen =
                (self.history(cap.scope, offer)).map_or(0, |h| h.count(cap.window, self.now));
            let here = taken.clone().filter(|t| offer.shares(t, cap.scope));
            seen + here.count() as u64 >= cap.max as u64
        })
    }
}

/// Whether some cap counts impressions ever, so a check needs lifetime totals.
pub fn has_lifetime_cap(caps: &[FrequencyCap]) -> bool {
    caps.iter().any(|c| c.window == Window::Lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_print() {
        for s in ["30m", "12h", "7d", "2w", "lifetime"] {
            assert_eq!(s.parse::<Window>().unwrap().to_string(), s);
        }
        for bad in ["", "0d", "7", "d", "7y", "-1h", "forever", "7日"] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
    }

    #[test]
    fn history_counts_within_windows_and_trims() {
        let retention = Retention {
            seconds: 3600,
            count: 3,
        };
        let mut h = CapHistory::default();
        for t in [100, 200, 300, 400, 5000] {
            h.record(t, retention);
        }
        assert_eq!(h.lifetime, 5);
        assert_eq!(
            h.recent,
            vec![5000],
            "older than an hour before 5000 are gone"
        );
        assert_eq!(h.count(Window::Lifetime, 5000), 5);
        assert_eq!(h.count(Window::Minutes(1), 5000), 1);
        assert_eq!(h.count(Window::Minutes(1), 5061), 0);
    }

    fn offer<'b>(partner: &'b str, offer_id: &'b str, category: &'b str) -> CappedOffer<'b> {
        CappedOffer {
            partner,
            offer_id,
            category,
        }
    }

    #[test]
    fn keys_compare_piece_by_piece_as_their_strings_do() {
        let offers = [
            offer("acme", "a", "travel"),
            offer("acme", "", "travel"),
            offer("acm", "e/a", "x"),
            offer("b", "a", ""),
            offer("acme", "a/b", "travel"),
        ];
        let stored = [
            "",
            "offer:",
            "offer:acme",
            "offer:acme/",
            "offer:acme/a",
            "offer:acme/a/",
            "offer:acme/b",
            "offer:b",
            "partner:",
            "partner:acme",
            "partner:acmf",
            "category:travel",
            "category:",
            "slate",
            "slatf",
            "sla",
            "z",
        ];
        for o in offers {
            for scope in [
                CapScope::Offer,
                CapScope::Partner,
                CapScope::Category,
                CapScope::Slate,
            ] {
                let key = o.key(scope);
                for s in stored.iter().copied().chain([key.as_str()]) {
                    let pieces = o.key_pieces(scope);
                    assert_eq!(cmp_key(s, pieces), s.cmp(&key), "{s:?} against {key:?}");
                }
            }
        }
    }

    #[test]
    fn a_slate_checks_its_offers_and_counts_what_it_takes() {
        let cap = |scope, max| FrequencyCap {
            scope,
            max,
            window: Window::Days(1),
        };
        let caps = [
            cap(CapScope::Offer, 1),
            cap(CapScope::Partner, 2),
            cap(CapScope::Offer, 5),
        ];
        let now = 1_000_000;
        let (a, b, c) = (
            offer("acme", "a", "travel"),
            offer("acme", "b", "travel"),
            offer("zeta", "c", "dining"),
        );
        let keys = keys_to_read(&caps, [a, b, c, a]);
        assert_eq!(
            keys,
            [
                "offer:acme/a",
                "offer:acme/b",
                "offer:zeta/c",
                "partner:acme",
                "partner:zeta"
            ],
            "each once, sorted; categories are not capped"
        );
        // zeta was shown twice today: its partner cap is reached; acme/b once, long ago.
        let mut seen = vec![CapHistory::default(); keys.len()];
        seen[4] = CapHistory {
            lifetime: 2,
            recent: vec![now - 10, now - 5],
        };
        seen[1] = CapHistory {
            lifetime: 1,
            recent: vec![now - 3 * 86_400],
        };
        let check = CapCheck::from_histories(&caps, now, keys, seen);
        assert_eq!(
            check.record.len(),
            2,
            "counters with no impressions are left out"
        );
        assert_eq!(check.blocking_cap(c, []), Some(&caps[1]));
        assert_eq!(check.blocking_cap(a, []), None);
        assert_eq!(
            check.blocking_cap(a, [a]),
            Some(&caps[0]),
            "taken in this slate"
        );
        assert_eq!(check.blocking_cap(b, [a]), None, "one of acme's two so far");
        let other_partner = offer("kilo", "a", "travel");
        assert_eq!(
            check.blocking_cap(other_partner, [a]),
            None,
            "the same offer id of another partner is another offer"
        );
        assert_eq!(
            check.blocking_cap(offer("acme", "z", "travel"), [a, b]),
            Some(&caps[1]),
            "acme's two taken"
        );
        let d = offer("acme", "d", "x");
        assert_eq!(d.key(CapScope::Offer), "offer:acme/d");
        assert_eq!(d.key(CapScope::Slate), "slate");
    }

    #[test]
    fn a_record_is_checked_by_key() {
        let caps = [
            FrequencyCap {
                scope: CapScope::Offer,
                max: 2,
                window: Window::Hours(1),
            },
            FrequencyCap {
                scope: CapScope::Category,
                max: 3,
                window: Window::Days(1),
            },
        ];
        let now = 1_000_000;
        let history = |recent: Vec<u64>| CapHistory {
            lifetime: recent.len() as u64,
            recent,
        };
        let record = vec![
            ("category:dining".to_string(), history(vec![now - 7200; 3])),
            ("category:travel".to_string(), history(vec![now - 60])),
            (
                "offer:acme/a".to_string(),
                history(vec![now - 60, now - 30]),
            ),
            (
                "offer:acme/b".to_string(),
                history(vec![now - 7200, now - 60]),
            ),
        ];
        // Handed over out of order, it is sorted before it is searched.
        let check = CapCheck::new(&caps, now, record.into_iter().rev().collect());
        // Alone: acme/a twice in the hour, acme/b once (once before it), dining three
        // times today, nothing of grocery.
        let alone = [
            (offer("acme", "a", "travel"), Some(&caps[0])),
            (offer("acme", "b", "travel"), None),
            (offer("zeta", "b", "dining"), Some(&caps[1])),
            (offer("zeta", "b", "grocery"), None),
        ];
        for (o, want) in alone {
            assert_eq!(check.blocking_cap(o, []), want, "{o:?}");
        }
        let taken = [offer("acme", "b", "travel"), offer("zeta", "c", "travel")];
        assert_eq!(
            check.blocking_cap(offer("acme", "b", "x"), [taken[0]]),
            Some(&caps[0])
        );
        assert_eq!(
            check.blocking_cap(offer("kilo", "d", "travel"), taken),
            Some(&caps[1]),
            "one read and two taken"
        );
    }

    #[test]
    fn category_and_slate_counters_are_shared_across_partners() {
        let caps = [
            FrequencyCap {
                scope: CapScope::Category,
                max: 1,
                window: Window::Lifetime,
            },
            FrequencyCap {
                scope: CapScope::Slate,
                max: 2,
                window: Window::Days(7),
            },
        ];
        assert!(has_lifetime_cap(&caps));
        assert!(!has_lifetime_cap(&caps[1..]));
        let (a, b, c, d) = (
            offer("acme", "a", "travel"),
            offer("zeta", "b", "travel"),
            offer("zeta", "c", "dining"),
            offer("kilo", "d", "grocery"),
        );
        assert_eq!(
            keys_to_read(&caps, [a, b, c, d]),
            [
                "category:dining",
                "category:grocery",
                "category:travel",
                "slate"
            ]
        );
        let check = CapCheck::new(&caps, 1_000, Vec::new());
        assert_eq!(
            check.blocking_cap(b, [a]),
            Some(&caps[0]),
            "travel taken by acme"
        );
        assert_eq!(check.blocking_cap(c, [a]), None);
        assert_eq!(
            check.blocking_cap(d, [a, c]),
            Some(&caps[1]),
            "two offers in this slate"
        );
    }
}
