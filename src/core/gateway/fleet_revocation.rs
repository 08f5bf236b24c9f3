//! Revocations across the fleet: what this Envoy revokes is published to the cluster store,
//! and what other replicas revoked is read back on the tick and merged into this Envoy's
//! set. Values are sealed with the first login service's keys and read with any service's
//! (a replica whose configuration adds a service in front still reads what the others put,
//! and what was put before); without a login service there are no sessions to revoke.

use super::Gateway;
use crate::core::cluster::client::{LeaseKind, Taken};
use crate::core::cluster::revocation_sync;
use crate::core::host::Host;
use crate::core::keys::fetch::CalloutResponse;
use crate::core::revocation::set::Entry;
use crate::core::seal::Sealer;

impl Gateway {
    /// On the tick: reads the revocations other replicas made, when a sync is due.
    pub(super) fn sync_fleet_revocations(&mut self, host: &mut dyn Host) {
        if self.settings.login.is_empty() {
            return;
        }
        let Some(store) = self.store.as_mut() else {
            return;
        };
        store.sync(host);
        let unpublished = store.take_unpublished();
        if !unpublished.is_empty() {
            self.publish_revocations(host, &unpublished);
        }
    }

    /// Takes an answer to a call the store client made; `false` when it is not one.
    pub(super) fn store_answered(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        response: &CalloutResponse,
    ) -> bool {
        let Some(store) = self.store.as_mut() else {
            return false;
        };
        match store.on_response(host, token, response) {
            Taken::NotOurs => false,
            Taken::Done => true,
            Taken::Sync => {
                let services = self.settings.login.iter();
                let idps = services.flat_map(|s| s.idps.iter().map(|(_, idp)| idp));
                let sealers: Vec<&Sealer> = idps.map(|idp| &idp.sealer).collect();
                let entries = store.take_sync(host, response, &sealers);
                if !entries.is_empty() {
                    // Merged only: what other replicas revoked is theirs to publish.
                    let _ = self.revocations.add(host, &entries);
                }
                true
            }
        }
    }

    /// Publishes revocations made here to the other replicas (no request waits for it); what
    /// cannot be put now is tried again on the tick.
    pub(super) fn publish_revocations(&mut self, host: &mut dyn Host, entries: &[Entry]) {
        let (Some(store), Some(service)) = (self.store.as_mut(), self.settings.login.first())
        else {
            return;
        };
        let lease = store.lease(LeaseKind::Record, host.now_ms());
        for entry in entries {
            // Without a lease yet, or without randomness: kept for the next tick.
            let call = lease.and_then(|lease| {
                let (store_settings, namespace) = (&store.store, &store.namespace);
                revocation_sync::publish(
                    store_settings,
                    namespace,
                    &service.idps.first().sealer,
                    entry,
                    lease,
                    host,
                )
            });
            match call {
                Some(call) => store.publish(call, *entry),
                None => store.keep_unpublished(*entry),
            }
        }
    }
}
