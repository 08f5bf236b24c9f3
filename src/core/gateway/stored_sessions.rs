//! Server-side sessions (`session_store: "cluster"`): the first request of a session on a
//! worker reads it from the store (its own callout) and is decided again with it; a sign-in
//! answers once its session is written; a refresh writes the renewed session under the same
//! handle (the cookie stays as it is); a sign-out deletes it and revokes it fleet-wide.

use std::ops::ControlFlow;
use std::rc::Rc;

use super::session::{logged, At};
use super::{Decision, Ended, Gateway, Judged, Pending, StoredWait, Wait};
use crate::core::cluster::client::LeaseKind;
use crate::core::cluster::etcd::{self, Keys, Range};
use crate::core::cluster::etcd_answer;
use crate::core::cluster::namespace::hash_id;
use crate::core::cluster::stored_session::{self, key};
use crate::core::config::idp::IdpId;
use crate::core::config::login::{LoginService, SessionStore};
use crate::core::config::ServiceId;
use crate::core::cookies;
use crate::core::host::{Host, Metric};
use crate::core::keys::fetch::CalloutResponse;
use crate::core::login::error::LoginError;
use crate::core::login::flow;
use crate::core::login::handles::Stored;
use crate::core::login::opened::Opened;
use crate::core::login::session::{self, Session};
use crate::core::login::sign_in;
use crate::core::reply::{self, Reply};
use crate::core::request_headers::RequestHeaders;
use crate::core::revocation::{Entry, RevokedId};

/// A sign-in that ended in a session: where the browser goes, the cookies the redirect
/// clears, and the request's cookies.
pub(super) struct SignedIn {
    pub(super) session: Session,
    pub(super) target: String,
    pub(super) other_cookies: Vec<String>,
    pub(super) cookie_header: Option<String>,
}

impl Gateway {
    /// Step 7, a server-side session this worker has not read lately: read it, then decide
    /// the request again. A read that cannot be sent leaves the store unreachable for now,
    /// and the flow answers as the service says for an outage.
    pub(super) fn load_session(
        &mut self,
        host: &mut dyn Host,
        headers: &RequestHeaders,
        at: &At,
        handle: String,
    ) -> ControlFlow<Ended> {
        let call = self.store.as_ref().map(|store| {
            let key = key(&store.namespace, &handle);
            let one = Range {
                keys: Keys::One(key.as_bytes()),
                min_mod_revision: 0,
                limit: 0,
            };
            etcd::range(&store.store.etcd, &one)
        });
        let sent = match (call, self.store.as_mut()) {
            (Some(call), Some(store)) => store.send(host, &call).map(|token| (token, call)),
            _ => None,
        };
        let Some((token, call)) = sent else {
            self.learn(at.id, &handle, Stored::Unreachable, host.now_ms());
            return self.login_host(host, at.context_id, headers, at.judged, Wait::Allowed);
        };
        ControlFlow::Break(Ended::Calling(Box::new(Pending::Stored {
            token,
            service: at.id,
            judged: Box::new(at.judged.clone()),
            wait: StoredWait::Load {
                handle,
                // All of them: it is decided again whole (a check reads `X-Original-URL`
                // and names the client's spoofed headers for Envoy to remove).
                headers: headers.clone(),
            },
            retry: Some(Box::new(call)),
        })))
    }

    /// The store answered a server-side session's read or write.
    pub(super) fn on_stored_answer(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        service: ServiceId,
        judged: Box<Judged>,
        wait: StoredWait,
        response: &CalloutResponse,
    ) -> Decision {
        let settings = Rc::clone(&self.settings);
        let Some(svc) = settings.login.get(service.0) else {
            return Decision::Respond(LoginError::SessionStoreUnavailable.reply(Vec::new()));
        };
        match wait {
            StoredWait::Load { handle, headers } => {
                let idp = Self::idp_of(svc, headers.text("cookie"));
                let stored = self.read_stored(host, (svc, idp), &handle, response);
                self.learn(service, &handle, stored, host.now_ms());
                self.decide_stripped(host, context_id, &headers, Wait::Allowed, None)
            }
            StoredWait::Save {
                handle,
                session,
                reply,
                cookie_header,
            } => {
                let saved = etcd_answer::read_put(response);
                self.note_store(host, saved.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                let ended = match saved {
                    Ok(_) => {
                        host.count(Metric::SignedIn);
                        let issuer = &svc.idp(session.idp).issuer;
                        let opened = Rc::new(Opened::new(*session, issuer));
                        self.learn(service, &handle, Stored::Session(opened), host.now_ms());
                        Ended::Answer(reply)
                    }
                    Err(_) => self.save_in_cookie(host, svc, session, reply, cookie_header),
                };
                let way = super::Way::of(&judged, None);
                self.exit(host, &way, ended)
            }
        }
    }

    /// A sign-in whose session the store could not take: in the cookie, when the service
    /// signs in during outages; else the sign-in fails with `503` (its handle cookie unset).
    fn save_in_cookie(
        &mut self,
        host: &mut dyn Host,
        service: &LoginService,
        mut session: Box<Session>,
        reply: Reply,
        cookie_header: Option<String>,
    ) -> Ended {
        let SessionStore::Cluster {
            sign_in_on_outage: true,
        } = service.session_store
        else {
            let error = LoginError::SessionStoreUnavailable;
            return logged(host, service, "sign-in", error.reply(Vec::new()));
        };
        let request_cookies = cookie_header
            .as_deref()
            .map(cookies::parse)
            .unwrap_or_default();
        let now_secs = host.now_ms() / 1000;
        let stored =
            sign_in::store_session(service, &mut session, &request_cookies, now_secs, host);
        let Some(mut set_cookies) = stored else {
            let error = LoginError::SessionNotStored;
            return logged(host, service, "sign-in", error.reply(Vec::new()));
        };
        // The login cookies the reply clears still go.
        let ours = format!("{}=", service.cookie_name);
        set_cookies.extend(
            reply
                .headers
                .iter()
                .filter(|(name, value)| name == "set-cookie" && !value.starts_with(&ours))
                .map(|(_, value)| value.clone()),
        );
        let target = reply.header("location").unwrap_or("/").to_string();
        host.count(Metric::SignedIn);
        Ended::Answer(reply::redirect(&target, set_cookies))
    }

    /// What a read of `handle` found.
    fn read_stored(
        &mut self,
        host: &mut dyn Host,
        (service, idp): (&LoginService, IdpId),
        handle: &str,
        response: &CalloutResponse,
    ) -> Stored {
        let (idp_id, idp) = (idp, service.idp(idp));
        let answer = etcd_answer::read_range(response);
        self.note_store(host, answer.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        let Some(store) = self.store.as_ref() else {
            return Stored::Unreachable;
        };
        let key = key(&store.namespace, handle);
        match answer {
            Err(_) => Stored::Unreachable,
            Ok(range) => range
                .kvs
                .first()
                .and_then(|kv| stored_session::open_session(&idp.sealer, &key, &kv.value))
                .filter(|session| session.sid == hash_id(handle.as_bytes()))
                .map_or(Stored::Absent, |mut session| {
                    session.idp = idp_id;
                    Stored::Session(Rc::new(Opened::new(session, &idp.issuer)))
                }),
        }
    }

    fn note_store(&mut self, host: &mut dyn Host, outcome: Result<(), String>) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        match outcome {
            Ok(()) => store.answered(host, Ok(())),
            Err(e) => store.note_failure(host, &e, "a server-side session"),
        }
    }

    fn learn(&mut self, service: ServiceId, handle: &str, stored: Stored, now_ms: u64) {
        if let Some(handles) = self.handles.get_mut(service.0) {
            handles.learn(handle, stored, now_ms);
        }
    }

    /// A new session of a cluster-store service: stored under a new handle, and the
    /// sign-in's redirect (with the handle's cookie instead of `reply`'s session cookies)
    /// sent once the store took it. `None`: the service keeps sessions in cookies.
    pub(super) fn save_session(
        &mut self,
        host: &mut dyn Host,
        (service_id, service): (ServiceId, &LoginService),
        signed_in: SignedIn,
        judged: &Judged,
    ) -> Option<Ended> {
        if service.session_store == SessionStore::Cookie {
            return None;
        }
        let SignedIn {
            mut session,
            target,
            other_cookies,
            cookie_header,
        } = signed_in;
        let now_ms = host.now_ms();
        let Some(handle) = stored_session::new_handle(host) else {
            return Some(Ended::Answer(LoginError::NoRandomness.reply(Vec::new())));
        };
        // The session's id names its handle: a sign-out revokes it from the handle alone.
        session.sid = hash_id(handle.as_bytes());
        let put = self.put_call(host, service, &handle, &session);
        let sealer = &service.idp(session.idp).sealer;
        let cookie = stored_session::seal_handle(sealer, &handle, host).map(|value| {
            let max_age = session.expires_at.saturating_sub(now_ms / 1000);
            cookies::set_cookie(&service.cookie_name, &value, &service.cookie, None, max_age)
        });
        let mut set_cookies: Vec<String> = cookie.into_iter().collect();
        let request_cookies = cookie_header
            .as_deref()
            .map(cookies::parse)
            .unwrap_or_default();
        let keep = [service.cookie_name.clone()];
        set_cookies.extend(session::clear_except(
            &request_cookies,
            &service.cookie_name,
            &service.cookie,
            &keep,
        ));
        set_cookies.extend(other_cookies);
        let reply = reply::redirect(&target, set_cookies);
        let sent = match (put, self.store.as_mut()) {
            (Some(put), Some(store)) => store.send(host, &put).map(|token| (token, put)),
            _ => None,
        };
        let Some((token, put)) = sent else {
            let session = Box::new(session);
            return Some(self.save_in_cookie(host, service, session, reply, cookie_header));
        };
        Some(Ended::Calling(Box::new(Pending::Stored {
            token,
            service: service_id,
            judged: Box::new(judged.clone()),
            wait: StoredWait::Save {
                handle,
                session: Box::new(session),
                reply,
                cookie_header,
            },
            retry: Some(Box::new(put)),
        })))
    }

    /// The put that stores `session` under `handle`, on the long lease.
    fn put_call(
        &self,
        host: &mut dyn Host,
        service: &LoginService,
        handle: &str,
        session: &Session,
    ) -> Option<crate::core::host::Callout> {
        let store = self.store.as_ref()?;
        let lease = store.lease(LeaseKind::Record, host.now_ms())?;
        let key = key(&store.namespace, handle);
        let sealer = &service.idp(session.idp).sealer;
        let sealed = stored_session::seal_session(sealer, &key, session, host)?;
        Some(etcd::put(
            &store.store.etcd,
            key.as_bytes(),
            &sealed,
            Some(lease),
        ))
    }

    /// The handle a request's cookie carries, for a cluster-store service.
    pub(super) fn handle_of(service: &LoginService, cookie_header: Option<&str>) -> Option<String> {
        if service.session_store == SessionStore::Cookie {
            return None;
        }
        let request_cookies = cookie_header.map(cookies::parse).unwrap_or_default();
        let sealed = session::sealed_value(&request_cookies, &service.cookie_name)?;
        flow::open_handle(service, &sealed)
    }

    /// The IdP whose sealer sealed the request's session cookie (by its tag).
    fn idp_of(service: &LoginService, cookie_header: Option<&str>) -> IdpId {
        let request_cookies = cookie_header.map(cookies::parse).unwrap_or_default();
        let sealed = session::sealed_value(&request_cookies, &service.cookie_name);
        sealed.map_or(IdpId(0), |sealed| service.idps.of_sealed(&sealed))
    }

    /// A renewed server-side session: written under its handle (no request waits), and
    /// used by this worker at once. `false`: the session is not a server-side one.
    pub(super) fn store_renewed(
        &mut self,
        host: &mut dyn Host,
        service_id: ServiceId,
        service: &LoginService,
        renewed: &Session,
        cookie_header: Option<&str>,
        write: bool,
    ) -> bool {
        let Some(handle) = Self::handle_of(service, cookie_header) else {
            return false;
        };
        let issuer = &service.idp(renewed.idp).issuer;
        let opened = Rc::new(Opened::new(renewed.clone(), issuer));
        self.learn(service_id, &handle, Stored::Session(opened), host.now_ms());
        if write {
            if let Some(put) = self.put_call(host, service, &handle, renewed) {
                if let Some(store) = self.store.as_mut() {
                    store.write(host, put, "storing a renewed session");
                }
            }
        }
        true
    }

    /// Sign-out of a server-side session: deleted from the store and revoked everywhere
    /// (from its handle alone: the session need not have been read here).
    pub(super) fn forget_stored(
        &mut self,
        host: &mut dyn Host,
        service_id: ServiceId,
        service: &LoginService,
        cookie_header: Option<&str>,
    ) -> Option<Entry> {
        let handle = Self::handle_of(service, cookie_header)?;
        if let Some(handles) = self.handles.get_mut(service_id.0) {
            handles.forget(&handle);
        }
        if let Some(store) = self.store.as_mut() {
            let delete = etcd::delete(&store.store.etcd, key(&store.namespace, &handle).as_bytes());
            store.write(host, delete, "deleting a signed-out session");
        }
        let now_secs = host.now_ms() / 1000;
        Some(Entry {
            id: RevokedId::session(&hash_id(handle.as_bytes())),
            revoked_at: now_secs,
            until: now_secs.saturating_add(service.session_lifetime_secs),
        })
    }
}
