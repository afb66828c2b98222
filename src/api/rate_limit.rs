//! Request rate limiting: a token bucket per caller, in memory, per replica.
//!
//! The key is the caller's static token (or JWT principal) when it authenticated, else the
//! client's address: unauthenticated traffic and failed credential guesses are limited
//! per address. IPv6 clients are keyed by their /64, since one host usually holds a whole
//! /64. The client's address is the TCP peer, unless the peer is a trusted proxy
//! (`SCHEDULER_TRUSTED_PROXIES`): then `X-Forwarded-For` is read from the right, skipping
//! trusted hops, and the first untrusted address is the client.
//!
//! Each bucket holds up to `SCHEDULER_RATE_LIMIT_BURST` requests and refills at
//! `SCHEDULER_RATE_LIMIT_PER_SEC`. The limit is per replica: behind a load balancer
//! spreading over N replicas a caller gets up to N times the rate.
//!
//! Memory is bounded: at most [`MAX_TRACKED_KEYS`] buckets are kept. A full bucket is the
//! same as no bucket, so full ones are dropped (every minute, and when the map is full).
//! If the map is still full of active buckets, as under a flood from many addresses, new
//! keys share one overflow bucket until room frees up: a flood can then slow other new
//! clients, but never grows the map.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::http::HeaderMap;

pub use crate::net::IpNet;
use crate::net::canonical;

/// Most buckets kept (each about 100 bytes).
pub const MAX_TRACKED_KEYS: usize = 100_000;
/// How often full buckets are dropped even when the map is not full.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Whose bucket a request draws from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// A static token, by its position in the configured set.
    Token(usize),
    /// A JWT principal (`user:<id>`, `admin`, `executor`).
    Principal(String),
    /// An unauthenticated client address (IPv6: its /64).
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
    }

    fn is_full(&self, now: Instant, rate: f64, burst: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * rate >= burst
    }

    /// Takes one request's token, or says how long until one is there.
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

struct Buckets {
    map: HashMap<RateKey, Bucket>,
    overflow: Bucket,
    last_sweep: Instant,
}

/// Token buckets by [`RateKey`].
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_keys: usize,
    state: Mutex<Buckets>,
}

impl RateLimiter {
    /// `None` when `per_sec` is 0 (rate limiting off).
    pub fn new(per_sec: u32, burst: u32) -> Option<Self> {
        Self::with_capacity(per_sec, burst, MAX_TRACKED_KEYS)
    }

    fn with_capacity(per_sec: u32, burst: u32, max_keys: usize) -> Option<Self> {
        if per_sec == 0 {
            return None;
        }
        let burst = f64::from(burst.max(1));
        let now = Instant::now();
        Some(Self {
            rate: f64::from(per_sec),
            burst,
            max_keys,
            state: Mutex::new(Buckets {
                map: HashMap::new(),
                overflow: Bucket::full(burst, now),
                last_sweep: now,
            }),
        })
    }

    /// Takes a request from `key`'s bucket; `Err(retry_after)` when it is empty.
    pub fn check(&self, key: RateKey) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: RateKey, now: Instant) -> Result<(), Duration> {
        let (rate, burst) = (self.rate, self.burst);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *state;
        if now.saturating_duration_since(state.last_sweep) >= SWEEP_EVERY {
            Self::sweep(state, now, rate, burst);
        }
        if let Some(bucket) = state.map.get_mut(&key) {
            return bucket.take(now, rate, burst);
        }
        if state.map.len() >= self.max_keys
            && now.saturating_duration_since(state.last_sweep) >= Duration::from_secs(1)
        {
            Self::sweep(state, now, rate, burst);
        }
        if state.map.len() >= self.max_keys {
            return state.overflow.take(now, rate, burst);
        }
        let mut bucket = Bucket::full(burst, now);
        let result = bucket.take(now, rate, burst);
        state.map.insert(key, bucket);
        result
    }

    fn sweep(state: &mut Buckets, now: Instant, rate: f64, burst: f64) {
        state.map.retain(|_, b| !b.is_full(now, rate, burst));
        state.last_sweep = now;
    }

    /// Buckets currently kept (for tests and diagnostics).
    pub fn tracked(&self) -> usize {
        self.state.lock().map_or(0, |s| s.map.len())
    }
}

/// The rate-limit identity of an address: IPv4 as is, IPv6 by its /64.
fn bucket_address(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// The client's address for rate limiting: the peer, or, when the peer is a trusted
/// proxy, the right-most untrusted `X-Forwarded-For` entry. No peer (a router served
/// without connection info): the unspecified address, one shared bucket.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), canonical);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return bucket_address(peer);
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // Garbage from an untrusted hop: stop at the last address we trust.
            break;
        };
        client = canonical(ip);
        if !is_trusted(client) {
            break;
        }
    }
    bucket_address(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_the_rate() {
        let limiter = RateLimiter::with_capacity(10, 5, 100).unwrap();
        let t0 = Instant::now();
        let key = || RateKey::Token(0);
        for _ in 0..5 {
            limiter.check_at(key(), t0).unwrap();
        }
        let wait = limiter.check_at(key(), t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another key is not affected.
        limiter.check_at(RateKey::Token(1), t0).unwrap();
        // 100 ms later one more request is allowed, and only one.
        let t1 = t0 + Duration::from_millis(100);
        limiter.check_at(key(), t1).unwrap();
        assert!(limiter.check_at(key(), t1).is_err());
        assert!(RateLimiter::new(0, 10).is_none());
    }

    #[test]
    fn memory_is_bounded_and_idle_buckets_are_dropped() {
        let limiter = RateLimiter::with_capacity(10, 2, 50).unwrap();
        let t0 = Instant::now();
        for i in 0..1000 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limiter.check_at(RateKey::Ip(ip), t0);
        }
        assert_eq!(limiter.tracked(), 50);
        // New keys beyond the bound share the overflow bucket (burst 2).
        let newcomer = |n: u32| RateKey::Ip(IpAddr::V4(std::net::Ipv4Addr::from(n)));
        assert!(limiter.check_at(newcomer(1), t0).is_err());
        // Once the buckets have refilled they are dropped and new keys get their own.
        let later = t0 + Duration::from_secs(2);
        limiter.check_at(newcomer(2), later).unwrap();
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "1.1.1.1, 203.0.113.9, 10.1.1.1".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "198.51.100.4".parse().unwrap();
        assert_eq!(
            client_ip(Some(proxy), &headers, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(Some(stranger), &headers, &trusted), stranger);
        assert_eq!(client_ip(Some(proxy), &headers, &[]), proxy);
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(Some(mapped), &HeaderMap::new(), &trusted),
            proxy,
            "no header: the proxy itself"
        );
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert_eq!(
            client_ip(Some(v6a), &headers, &[]),
            client_ip(Some(v6b), &headers, &[])
        );
    }

    #[test]
    fn cidr_blocks_parse_and_match() {
        let net: IpNet = "192.168.0.0/16".parse().unwrap();
        assert!(net.contains("192.168.4.5".parse().unwrap()));
        assert!(!net.contains("192.169.0.1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let one: IpNet = "fd00::1".parse().unwrap();
        assert!(one.contains("fd00::1".parse().unwrap()));
        assert!(!one.contains("fd00::2".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "fd00::/129", "nope", "10.0.0.0/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }
}
