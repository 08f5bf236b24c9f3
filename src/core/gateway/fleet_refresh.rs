//! One refresh per session generation across the fleet, with a cluster store. The worker
//! that won this Envoy's lease asks the store's lock (`create if absent`, on a short lease)
//! before the token call: the winner refreshes and publishes the outcome under the lock's
//! key; the others adopt the renewed session, learn the session ended, or keep the old one
//! while the winner is at work. A store that does not answer leaves each Envoy on its own.

use std::rc::Rc;

use super::{Decision, Ended, Fleet, Gateway, Pending, Way};
use crate::core::cluster::client::LeaseKind;
use crate::core::cluster::etcd;
use crate::core::cluster::etcd_answer::{self, CreateAnswer};
use crate::core::cluster::namespace::Kind;
use crate::core::cluster::sealed_value::{open_value, seal_value};
use crate::core::config::idp::Idp;
use crate::core::config::login::LoginService;
use crate::core::host::{Callout, Host};
use crate::core::keys::fetch::CalloutResponse;
use crate::core::login::refresh;
use crate::core::login::refresh_slots::RESULT_KEPT_MS;
use crate::core::login::refreshed;

/// How soon this Envoy asks the store again while another replica refreshes.
const ASK_AGAIN_MS: u64 = 1_000;

/// What a refresh lock's key holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LockValue {
    /// A replica is refreshing, until then (unix ms): a lock past it (its holder died, or a
    /// value put back by someone who can write the store) holds nothing.
    Held(u64),
    /// The renewed session, sealed as a cookie is.
    Done(String),
    /// The IdP refused: the session is over.
    Ended,
}

impl LockValue {
    fn plain(&self) -> Vec<u8> {
        match self {
            LockValue::Held(until_ms) => format!("held {until_ms}").into_bytes(),
            LockValue::Done(sealed) => format!("done {sealed}").into_bytes(),
            LockValue::Ended => b"ended".to_vec(),
        }
    }

    fn read(plain: &[u8]) -> Option<LockValue> {
        match plain {
            b"ended" => Some(LockValue::Ended),
            _ if plain.starts_with(b"held ") => {
                let text = std::str::from_utf8(plain.strip_prefix(b"held ")?).ok()?;
                text.parse().ok().map(LockValue::Held)
            }
            _ => {
                let text = std::str::from_utf8(plain.strip_prefix(b"done ")?).ok()?;
                Some(LockValue::Done(text.to_string()))
            }
        }
    }
}

impl Gateway {
    /// The call to send first for a queued refresh: the fleet's lock when there is a store
    /// and a lease to hold the lock with (the token call then waits in `pending`), else the
    /// token call itself.
    pub(super) fn lock_first(
        &mut self,
        host: &mut dyn Host,
        pending: &mut Pending,
        token_call: Callout,
    ) -> Callout {
        let Pending::Refresh {
            service,
            lease,
            fleet,
            session,
            ..
        } = pending
        else {
            return token_call;
        };
        let settings = Rc::clone(&self.settings);
        let (Some(store), Some(service)) = (self.store.as_mut(), settings.login.get(service.0))
        else {
            return token_call;
        };
        let key = store
            .namespace
            .key(Kind::Refresh, lease.generation.tag().as_bytes());
        let Some(lock) = self.lock_call(host, service.idp(session.idp), &key) else {
            // No lease yet (just started, or the store is away): this Envoy on its own.
            return token_call;
        };
        *fleet = Fleet::Locking {
            key,
            token_call: Box::new(token_call),
            retried: false,
        };
        lock
    }

    /// The call that takes the fleet's lock under `key`; `None` without a lease to hold it.
    fn lock_call(&self, host: &mut dyn Host, idp: &Idp, key: &str) -> Option<Callout> {
        let store = self.store.as_ref()?;
        let lock_lease = store.lease(LeaseKind::Lock, host.now_ms())?;
        let until_ms = host.now_ms() + 2 * idp.timeout_ms + 1000;
        let held = LockValue::Held(until_ms).plain();
        let held = seal_value(&idp.sealer, key, &held, host)?;
        let etcd = &store.store.etcd;
        Some(etcd::create_if_absent(
            etcd,
            key.as_bytes(),
            &held,
            Some(lock_lease),
        ))
    }

    /// The store answered a refresh's lock.
    pub(super) fn lock_answered(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        mut pending: Box<Pending>,
        response: &CalloutResponse,
    ) -> Option<Decision> {
        let Pending::Refresh {
            service,
            fleet,
            session,
            ..
        } = &mut *pending
        else {
            return None;
        };
        let idp_id = session.idp;
        let Fleet::Locking {
            key,
            token_call,
            retried,
        } = std::mem::replace(fleet, Fleet::Alone)
        else {
            return None;
        };
        let settings = Rc::clone(&self.settings);
        let service = settings.login.get(service.0)?;
        let idp = service.idp(idp_id);
        if etcd_answer::unanswered(response) && !retried {
            // A member that is down or between leaders: Envoy's balancer sends the second
            // try to another.
            if let Some(lock) = self.lock_call(host, idp, &key) {
                if let Pending::Refresh { fleet, .. } = &mut *pending {
                    *fleet = Fleet::Locking {
                        key,
                        token_call,
                        retried: true,
                    };
                }
                return self.send_from_root(host, context_id, pending, &lock);
            }
        }
        let answer = etcd_answer::read_create(response);
        if let Some(store) = self.store.as_mut() {
            let outcome = answer
                .as_ref()
                .map(|_| ())
                .map_err(|e| (e, "a refresh lock"));
            store.answered(host, outcome);
        }
        let now_ms = host.now_ms();
        let found = match answer {
            // Won, or no answer (then on this Envoy's lease alone, but still published:
            // a store back by then spares the others a refused refresh).
            Ok(CreateAnswer {
                succeeded: true, ..
            })
            | Err(_) => None,
            Ok(CreateAnswer { existing, .. }) => existing
                .and_then(|kv| open_value(&idp.sealer, &key, &kv.value))
                .and_then(|plain| LockValue::read(&plain))
                .filter(|value| !matches!(value, LockValue::Held(until) if *until <= now_ms)),
        };
        let Some(found) = found else {
            if let Pending::Refresh { fleet, .. } = &mut *pending {
                *fleet = Fleet::Publishing { key };
            }
            return self.send_from_root(host, context_id, pending, &token_call);
        };
        let way = Way::of(pending.judged(), Some(context_id));
        let ended = self.another_replica_refreshes(host, service, &pending, found);
        Some(self.exit(host, &way, ended))
    }

    /// Another replica holds the lock, or published its outcome: this one's request goes on
    /// with it, and this Envoy's other requests learn it from the local slot.
    fn another_replica_refreshes(
        &mut self,
        host: &mut dyn Host,
        service: &LoginService,
        pending: &Pending,
        found: LockValue,
    ) -> Ended {
        let Pending::Refresh {
            session,
            lease,
            cookie_header,
            path,
            judged,
            ..
        } = pending
        else {
            return Ended::Parked;
        };
        let cookie_header = cookie_header.as_deref();
        let now_ms = host.now_ms();
        match found {
            LockValue::Held(_) => {
                refresh::extend(host, lease, now_ms + ASK_AGAIN_MS);
                self.keep_old(host, service, session, cookie_header, judged)
            }
            LockValue::Done(sealed) => {
                let Some(renewed) = refresh::open(service, &sealed) else {
                    refresh::release(host, lease);
                    return self.keep_old(host, service, session, cookie_header, judged);
                };
                if refresh::publish_renewed(host, lease, Some(&sealed), now_ms) {
                    self.published
                        .push((lease.clone(), now_ms + RESULT_KEPT_MS));
                }
                self.adopt(host, service, &renewed, cookie_header, judged)
            }
            LockValue::Ended => {
                refresh::publish_ended(host, lease, now_ms);
                match refreshed::session_ended(service, cookie_header, path, judged.gate.browser) {
                    Ok(reply) => Ended::Answer(reply),
                    Err(refused) => Ended::Refuse(refused),
                }
            }
        }
    }

    /// Publishes a fleet refresh's outcome under its lock: the renewed session, the end of
    /// the session, or (`None`: the IdP did not answer) the lock released for another try.
    pub(super) fn publish_to_fleet(
        &mut self,
        host: &mut dyn Host,
        idp: &Idp,
        fleet: &Fleet,
        outcome: Option<LockValue>,
    ) {
        let (Fleet::Publishing { key }, Some(store)) = (fleet, self.store.as_mut()) else {
            return;
        };
        let now_ms = host.now_ms();
        let call = match outcome {
            None => etcd::delete(&store.store.etcd, key.as_bytes()),
            Some(value) => {
                let Some(lease) = store.lease(LeaseKind::Result, now_ms) else {
                    return;
                };
                let Some(sealed) = seal_value(&idp.sealer, key, &value.plain(), host) else {
                    return;
                };
                etcd::put(&store.store.etcd, key.as_bytes(), &sealed, Some(lease))
            }
        };
        store.write(host, call, "publishing a refresh");
    }
}

#[cfg(test)]
mod tests {
    use super::LockValue;

    #[test]
    fn lock_values_read_back_and_nothing_else_reads() {
        for value in [
            LockValue::Held(1_800_000_000_000),
            LockValue::Ended,
            LockValue::Done("sealed.session".into()),
        ] {
            assert_eq!(LockValue::read(&value.plain()), Some(value));
        }
        for junk in [
            &b""[..],
            b"done",
            b"held",
            b"held ",
            b"held soon",
            b"lease",
            b"\xff",
        ] {
            assert_eq!(LockValue::read(junk), None, "{junk:?}");
        }
    }
}
