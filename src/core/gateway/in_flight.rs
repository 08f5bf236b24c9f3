//! What each request under way keeps in its worker, in one table by context: what it waits
//! for (keys or endpoints, a refresh to send, a token call's answer, its body) and the
//! cookies for its response. A request waits for one thing at a time.

use std::collections::BTreeMap;

use super::parked::Parked;
use super::Pending;
use crate::core::config::ServiceId;
use crate::core::host::Callout;

/// What a request waits for.
pub(super) enum Waiting {
    /// Parked until keys or endpoints come, or its wait runs out.
    Parked(Box<Parked>),
    /// A refresh it leased, for the root to send on its next tick.
    Queued(Callout, Box<Pending>),
    /// A token call answered to the root: a refresh (which finishes even when the request
    /// is gone, so its result is published), or a call made while settling.
    RootCall(Box<Pending>),
    /// A token call answered in the request's own context.
    Calling(Box<Pending>),
    /// Its body, for a login service's back-channel logout.
    Body(ServiceId),
}

#[derive(Default)]
struct Entry {
    waiting: Option<Waiting>,
    response_cookies: Vec<String>,
}

/// The table, by context id: in the order requests arrived (Envoy counts contexts up).
#[derive(Default)]
pub(super) struct InFlight {
    requests: BTreeMap<u32, Entry>,
    parked: usize,
}

impl InFlight {
    fn entry(&mut self, context_id: u32) -> &mut Entry {
        self.requests.entry(context_id).or_default()
    }

    /// Sets what the request waits for.
    pub(crate) fn wait(&mut self, context_id: u32, waiting: Waiting) {
        if matches!(waiting, Waiting::Parked(_)) {
            self.parked += 1;
        }
        let old = self.entry(context_id).waiting.replace(waiting);
        if matches!(old, Some(Waiting::Parked(_))) {
            self.parked = self.parked.saturating_sub(1);
        }
    }

    /// How many requests are parked.
    pub(crate) fn parked(&self) -> usize {
        self.parked
    }

    /// Takes the waits `wanted` picks, in arrival order; the rest stay.
    fn take_where(&mut self, wanted: impl Fn(&Waiting) -> bool) -> Vec<(u32, Waiting)> {
        let mut taken = Vec::new();
        for (context_id, entry) in &mut self.requests {
            if entry.waiting.as_ref().is_some_and(&wanted) {
                if let Some(waiting) = entry.waiting.take() {
                    taken.push((*context_id, waiting));
                }
            }
        }
        self.parked -= taken
            .iter()
            .filter(|(_, w)| matches!(w, Waiting::Parked(_)))
            .count();
        self.drop_empty();
        taken
    }

    /// Every parked request, taken out to be decided again (the undecided are put back).
    pub(crate) fn take_parked(&mut self) -> Vec<Parked> {
        self.take_where(|w| matches!(w, Waiting::Parked(_)))
            .into_iter()
            .filter_map(|(_, w)| match w {
                Waiting::Parked(parked) => Some(*parked),
                _ => None,
            })
            .collect()
    }

    /// Every refresh queued for the root to send.
    pub(crate) fn take_queued(&mut self) -> Vec<(u32, Callout, Box<Pending>)> {
        self.take_where(|w| matches!(w, Waiting::Queued(..)))
            .into_iter()
            .filter_map(|(context_id, w)| match w {
                Waiting::Queued(call, pending) => Some((context_id, call, pending)),
                _ => None,
            })
            .collect()
    }

    /// The root call `token` answers, and whose it is.
    pub(crate) fn take_root_call(&mut self, token: u32) -> Option<(u32, Box<Pending>)> {
        let context_id = self
            .requests
            .iter()
            .find_map(|(id, entry)| match &entry.waiting {
                Some(Waiting::RootCall(pending)) if pending.token() == Some(token) => Some(*id),
                _ => None,
            })?;
        let entry = self.requests.get_mut(&context_id)?;
        let Some(Waiting::RootCall(pending)) = entry.waiting.take() else {
            return None;
        };
        self.drop_empty();
        Some((context_id, pending))
    }

    /// The call the request waits on in its own context.
    pub(crate) fn take_calling(&mut self, context_id: u32) -> Option<Box<Pending>> {
        let entry = self.requests.get_mut(&context_id)?;
        match entry.waiting.take() {
            Some(Waiting::Calling(pending)) => Some(pending),
            other => {
                entry.waiting = other;
                None
            }
        }
    }

    /// The login service whose back-channel logout the request's body is for.
    pub(crate) fn take_body(&mut self, context_id: u32) -> Option<ServiceId> {
        let entry = self.requests.get_mut(&context_id)?;
        match entry.waiting.take() {
            Some(Waiting::Body(service)) => {
                self.drop_empty();
                Some(service)
            }
            other => {
                entry.waiting = other;
                None
            }
        }
    }

    pub(crate) fn hold_cookies(&mut self, context_id: u32, cookies: Vec<String>) {
        if !cookies.is_empty() {
            self.entry(context_id).response_cookies = cookies;
        }
    }

    pub(crate) fn take_cookies(&mut self, context_id: u32) -> Vec<String> {
        self.requests
            .get_mut(&context_id)
            .map(|entry| std::mem::take(&mut entry.response_cookies))
            .unwrap_or_default()
    }

    /// The request is gone: nothing of it stays, but a refresh the root sent still
    /// finishes.
    pub(crate) fn forget(&mut self, context_id: u32) {
        let Some(entry) = self.requests.remove(&context_id) else {
            return;
        };
        match entry.waiting {
            Some(Waiting::RootCall(pending)) if matches!(*pending, Pending::Refresh { .. }) => {
                self.wait(context_id, Waiting::RootCall(pending));
            }
            Some(Waiting::Parked(_)) => self.parked = self.parked.saturating_sub(1),
            _ => {}
        }
    }

    fn drop_empty(&mut self) {
        self.requests
            .retain(|_, entry| entry.waiting.is_some() || !entry.response_cookies.is_empty());
    }
}
