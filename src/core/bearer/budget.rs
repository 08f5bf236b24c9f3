//! How many failed signature checks one client address may cause. A token nobody has seen
//! is the only thing that makes us spend real CPU (an RSA or ECDSA check) before knowing
//! who is asking; once an address has spent its budget on tokens that failed, further
//! unknown tokens from it get `429` without a check until the budget refills. Valid tokens
//! never spend it, and tokens already verified (cached) are never refused by it.

use std::collections::HashMap;

use crate::core::bearer::authenticator::Verdict;
use crate::core::bearer::error::AuthError;

/// Distinct clients tracked per VM; beyond that the one with the most budget left is
/// forgotten, so an attacker with many addresses cannot wipe an exhausted one's account.
const MAX_SOURCES: usize = 4096;
const MILLI: u64 = 1000;

/// `per_second` failed checks refill per second, up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BudgetLimits {
    pub(crate) per_second: u64,
    pub(crate) burst: u64,
}

struct Account {
    /// Thousandths of a check, so refills need no floating point.
    milli_left: u64,
    at_ms: u64,
}

pub(crate) struct SourceBudget {
    limits: BudgetLimits,
    accounts: HashMap<String, Account>,
}

/// The address without its port: `10.0.0.1:5000` and `[::1]:5000` name one client.
pub(crate) fn address_of(source: &str) -> &str {
    if let Some(rest) = source.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(ip, _)| ip);
    }
    match source.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => ip,
        _ => source,
    }
}

/// Who an account belongs to: the IPv4 address, or the IPv6 /64 (one host holds a whole /64
/// and can send from any address in it).
pub(crate) fn client_of(source: &str) -> String {
    let address = address_of(source);
    match address.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
        Err(_) => address.to_string(),
    }
}

impl SourceBudget {
    pub(crate) fn new(limits: BudgetLimits) -> Self {
        SourceBudget {
            limits,
            accounts: HashMap::new(),
        }
    }

    fn full(&self) -> u64 {
        self.limits.burst.saturating_mul(MILLI)
    }

    fn refilled(&self, account: &Account, now_ms: u64) -> u64 {
        let elapsed = now_ms.saturating_sub(account.at_ms);
        account
            .milli_left
            .saturating_add(elapsed.saturating_mul(self.limits.per_second))
            .min(self.full())
    }

    /// Whether `source` may have one more unknown token checked now.
    pub(crate) fn allows(&self, source: &str, now_ms: u64) -> bool {
        match self.accounts.get(&client_of(source)) {
            Some(account) => self.refilled(account, now_ms) >= MILLI,
            None => self.limits.burst > 0,
        }
    }

    /// A check for `source` failed: it spends one.
    pub(crate) fn spend(&mut self, source: &str, now_ms: u64) {
        let client = client_of(source);
        if !self.accounts.contains_key(&client) && self.accounts.len() >= MAX_SOURCES {
            let full = self.full();
            let limits = self.limits;
            self.accounts.retain(|_, a| {
                let elapsed = now_ms.saturating_sub(a.at_ms);
                a.milli_left
                    .saturating_add(elapsed.saturating_mul(limits.per_second))
                    < full
            });
            if self.accounts.len() >= MAX_SOURCES {
                let richest = self
                    .accounts
                    .iter()
                    .max_by_key(|(_, a)| self.refilled(a, now_ms))
                    .map(|(k, _)| k.clone());
                if let Some(richest) = richest {
                    self.accounts.remove(&richest);
                }
            }
        }
        let left = match self.accounts.get(&client) {
            Some(account) => self.refilled(account, now_ms),
            None => self.full(),
        };
        self.accounts.insert(
            client,
            Account {
                milli_left: left.saturating_sub(MILLI),
                at_ms: now_ms,
            },
        );
    }

    /// After a bearer check: a token whose signature was checked for `checked_for` (the
    /// address `may_verify` read) and that was refused spends one; a `429` checked nothing.
    pub(crate) fn charge(&mut self, verdict: &Verdict, checked_for: Option<String>, now_ms: u64) {
        match (verdict, checked_for) {
            (Verdict::Deny(AuthError::Throttled), _) => {}
            (Verdict::Deny(_), Some(source)) => self.spend(&source, now_ms),
            _ => {}
        }
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn tracked(&self) -> usize {
        self.accounts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BudgetLimits = BudgetLimits {
        per_second: 2,
        burst: 5,
    };

    #[test]
    fn an_address_may_fail_a_burst_then_waits_for_the_refill() {
        let mut budget = SourceBudget::new(LIMITS);
        for _ in 0..5 {
            assert!(budget.allows("10.0.0.1:4000", 0));
            budget.spend("10.0.0.1:4000", 0);
        }
        assert!(
            !budget.allows("10.0.0.1:4001", 0),
            "another port, same client"
        );
        assert!(
            budget.allows("10.0.0.2:4000", 0),
            "other clients are not affected"
        );
        assert!(!budget.allows("10.0.0.1:4000", 499));
        assert!(
            budget.allows("10.0.0.1:4000", 500),
            "2 per second: one after 500 ms"
        );
        budget.spend("10.0.0.1:4000", 500);
        assert!(!budget.allows("10.0.0.1:4000", 500));
        assert!(budget.allows("10.0.0.1:4000", 60_000));
    }

    #[test]
    fn only_refused_tokens_whose_signature_was_checked_are_charged() {
        let mut budget = SourceBudget::new(BudgetLimits {
            per_second: 1,
            burst: 1,
        });
        let source = || Some("10.0.0.1:1".to_string());
        budget.charge(&Verdict::Deny(AuthError::Throttled), source(), 0);
        budget.charge(&Verdict::Deny(AuthError::Expired), None, 0);
        assert!(budget.allows("10.0.0.1:1", 0), "nothing was checked");
        budget.charge(&Verdict::Deny(AuthError::BadSignature), source(), 0);
        assert!(!budget.allows("10.0.0.1:1", 0));
    }

    #[test]
    fn the_refill_never_exceeds_the_burst() {
        let mut budget = SourceBudget::new(LIMITS);
        budget.spend("10.0.0.1:1", 0);
        for _ in 0..5 {
            budget.spend("10.0.0.1:1", 1_000_000);
        }
        assert!(!budget.allows("10.0.0.1:1", 1_000_000));
    }

    #[test]
    fn addresses_are_read_without_their_port() {
        assert_eq!(address_of("10.0.0.1:5000"), "10.0.0.1");
        assert_eq!(address_of("[2001:db8::1]:5000"), "2001:db8::1");
        assert_eq!(address_of("2001:db8::1"), "2001:db8::1");
        assert_eq!(address_of("10.0.0.1"), "10.0.0.1");
        assert_eq!(address_of(""), "");
        assert_eq!(
            client_of("[2001:db8:1:2:aaaa::1]:5000"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_of("[2001:db8:1:2:ffff::9]:6000"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(client_of("10.0.0.1:5000"), "10.0.0.1");
    }

    #[test]
    fn many_fresh_addresses_never_give_an_exhausted_one_its_budget_back() {
        let mut budget = SourceBudget::new(LIMITS);
        for _ in 0..5 {
            budget.spend("10.9.9.9:1", 0);
        }
        assert!(!budget.allows("10.9.9.9:1", 0));
        for i in 0..MAX_SOURCES + 200 {
            let other = format!("10.{}.{}.{}:1", i / 65536, (i / 256) % 256, i % 256);
            budget.spend(&other, 0);
        }
        assert!(budget.tracked() <= MAX_SOURCES);
        assert!(!budget.allows("10.9.9.9:1", 0), "still exhausted");
    }

    #[test]
    fn one_ipv6_host_is_one_client_whatever_address_of_its_64_it_uses() {
        let mut budget = SourceBudget::new(LIMITS);
        for i in 0..5 {
            budget.spend(&format!("[2001:db8:0:1::{i:x}]:443"), 0);
        }
        assert!(!budget.allows("[2001:db8:0:1::ffff]:443", 0));
        assert!(budget.allows("[2001:db8:0:2::1]:443", 0), "another /64");
    }

    #[test]
    fn many_addresses_stay_bounded() {
        let mut budget = SourceBudget::new(LIMITS);
        for i in 0..20_000u32 {
            budget.spend(
                &format!("10.{}.{}.{}:1", i >> 16, (i >> 8) & 255, i & 255),
                0,
            );
            assert!(budget.tracked() <= MAX_SOURCES);
        }
    }
}
