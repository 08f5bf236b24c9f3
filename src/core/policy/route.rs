//! A service's routes: which requests a rule covers (normalised path, method, host) and what
//! it says. The first matching route decides; no match means the service's own rules.

use regex_lite::Regex;

use crate::core::config::login::host_listed;
use crate::core::impersonation::Impersonation;
use crate::core::policy::access::Access;
use crate::core::policy::path::{same_loosely, under, under_loosely};

/// What to do with a request that has no valid credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unauthenticated {
    /// Browser navigations go to the IdP; everything else gets 401.
    Auto,
    Login,
    /// `401`, never a login (APIs on a login host).
    Deny,
}

#[derive(Debug)]
pub enum PathMatch {
    Any,
    /// At a segment boundary: `/api` covers `/api` and `/api/x`, not `/apix`.
    Prefix(String),
    Exact(String),
    /// Compiled at configure time, anchored at both ends.
    Regex(Regex),
}

impl PathMatch {
    /// `loosely`: without regard to case and a trailing `/` (see `Route::matches`).
    fn matches(&self, path: &str, loosely: bool) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Prefix(prefix) if loosely => under_loosely(path, prefix),
            PathMatch::Prefix(prefix) => under(path, prefix),
            PathMatch::Exact(exact) if loosely => same_loosely(path, exact),
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Regex(regex) => regex.is_match(path),
        }
    }
}

#[derive(Debug)]
pub enum Action {
    /// No credential needed at all (health checks, static assets, CORS preflight).
    Public,
    /// A credential, and these rules; `None` means the service's rules.
    Protected(Option<Access>),
}

#[derive(Debug)]
pub struct Route {
    pub path: PathMatch,
    /// Empty: every method. Compared without regard to case, so a rule on `POST` also
    /// covers `post` whatever the upstream makes of it; `GET` covers `HEAD`, which most
    /// upstreams answer with their `GET` handler.
    pub methods: Vec<String>,
    /// Empty: every host of the service.
    pub hosts: Vec<String>,
    pub action: Action,
    pub unauthenticated: Unauthenticated,
}

/// Whether a route's method covers the request's.
fn covers(route_method: &str, method: &str) -> bool {
    route_method.eq_ignore_ascii_case(method)
        || (route_method == "GET" && method.eq_ignore_ascii_case("HEAD"))
}

impl Route {
    /// A public route matches its paths exactly; a protected one also matches them in
    /// another case or with(out) a trailing `/`, as many upstreams serve them: whichever
    /// way the upstream reads a path, a restriction is never stepped around, and a public
    /// path never opens more than it names.
    fn matches(&self, path: &str, method: &str, host: &str) -> bool {
        let loosely = !matches!(self.action, Action::Public);
        self.path.matches(path, loosely)
            && (self.methods.is_empty() || self.methods.iter().any(|m| covers(m, method)))
            && (self.hosts.is_empty() || host_listed(&self.hosts, host))
    }
}

/// The rules of one service (a set of hosts).
#[derive(Debug, Default)]
pub struct ServicePolicy {
    pub routes: Vec<Route>,
    /// The service-wide rules (`allowed_groups`, `email_domains`, ...; any signed-in user
    /// when none is set), for requests no route covers and routes without their own.
    pub default: Access,
    /// Kubernetes API mode: ask the upstream to act as the caller (`Impersonate-*`).
    pub impersonation: Option<Impersonation>,
}

impl ServicePolicy {
    /// The first route covering this normalised path, method and host.
    pub fn route(&self, path: &str, method: &str, host: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.matches(path, method, host))
    }

    /// The rules for a request that matched `route` (or none).
    pub fn access(&self, route: Option<usize>) -> &Access {
        match route.and_then(|i| self.routes.get(i)).map(|r| &r.action) {
            Some(Action::Protected(Some(access))) => access,
            _ => &self.default,
        }
    }

    /// Every group a rule of this service names.
    pub fn group_names(&self) -> Vec<&str> {
        self.routes
            .iter()
            .filter_map(|r| match &r.action {
                Action::Protected(Some(access)) => Some(access),
                _ => None,
            })
            .chain(std::iter::once(&self.default))
            .flat_map(Access::group_names)
            .collect()
    }

    pub fn is_public(&self, route: Option<usize>) -> bool {
        matches!(
            route.and_then(|i| self.routes.get(i)).map(|r| &r.action),
            Some(Action::Public)
        )
    }

    pub fn unauthenticated(&self, route: Option<usize>) -> Unauthenticated {
        route
            .and_then(|i| self.routes.get(i))
            .map_or(Unauthenticated::Auto, |r| r.unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(methods: &[&str]) -> Route {
        Route {
            path: PathMatch::Any,
            methods: methods.iter().map(|m| m.to_string()).collect(),
            hosts: Vec::new(),
            action: Action::Public,
            unauthenticated: Unauthenticated::Auto,
        }
    }

    #[test]
    fn a_get_rule_also_covers_head_and_any_spelling() {
        let get = route(&["GET"]);
        for method in ["GET", "get", "HEAD", "head"] {
            assert!(get.matches("/x", method, "h"), "{method}");
        }
        assert!(!get.matches("/x", "POST", "h"));
        let head = route(&["HEAD"]);
        assert!(!head.matches("/x", "GET", "h"), "HEAD does not cover GET");
    }
}
