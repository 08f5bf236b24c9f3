//! A service's routes: which requests a rule covers (normalised path, method, host) and what
//! it says. The first route matching the path as written decides; no match means the
//! service's own rules. Routes that restrict access before it and match the path as some
//! upstream may read it (`/ADMIN`, `/admin.json`, `/admin.`) hold too, so a spelling never
//! steps around a restriction, and a public route never opens more than it names.

use std::cell::OnceCell;

use regex_lite::Regex;

use crate::core::hostname::host_listed;
use crate::core::policy::access::Access;
use crate::core::policy::path::{loose_forms, same_loosely, under, under_loosely};

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
pub(crate) enum PathMatch {
    Any,
    /// At a segment boundary: `/api` covers `/api` and `/api/x`, not `/apix`.
    Prefix(String),
    Exact(String),
    /// Compiled at configure time, anchored at both ends.
    Regex(Regex),
}

impl PathMatch {
    /// The path as written.
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Prefix(prefix) => under(path, prefix),
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Regex(regex) => regex.is_match(path),
        }
    }

    /// The path as any upstream may read it: without regard to case, a trailing `/`, a
    /// format suffix, trailing dots and spaces (see `path::under_loosely`); `forms`: the
    /// path's `loose_forms`, made once per request when a regex needs them.
    fn matches_loosely(&self, path: &str, forms: &OnceCell<Vec<String>>) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Prefix(prefix) => under_loosely(path, prefix),
            PathMatch::Exact(exact) => same_loosely(path, exact),
            PathMatch::Regex(regex) => forms
                .get_or_init(|| loose_forms(path))
                .iter()
                .any(|p| regex.is_match(p)),
        }
    }
}

#[derive(Debug)]
pub(crate) enum Action {
    /// No credential needed at all (health checks, static assets, CORS preflight).
    Public,
    /// A credential, and these rules; `None` means the service's rules.
    Protected(Option<Access>),
}

#[derive(Debug)]
pub struct Route {
    pub(crate) path: PathMatch,
    /// Empty: every method. A restricting route's are compared without regard to case, so
    /// a rule on `POST` also covers `post` whatever the upstream makes of it; a public
    /// route's exactly (`get` is another method to Go, Rack or Spring). `GET` covers `HEAD`,
    /// which most upstreams answer with their `GET` handler.
    pub(crate) methods: Vec<String>,
    /// Empty: every host of the service.
    pub(crate) hosts: Vec<String>,
    pub(crate) action: Action,
    pub(crate) unauthenticated: Unauthenticated,
}

/// Whether a route's method covers the request's: any spelling (`loosely`), or exactly.
fn covers(route_method: &str, method: &str, loosely: bool) -> bool {
    let same = |a: &str, b: &str| {
        if loosely {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    same(route_method, method) || (route_method == "GET" && same(method, "HEAD"))
}

/// The routes a request answers to (see the top of this file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Matched {
    /// The first route matching the path as written; `None`: the service's rules.
    pub(crate) route: Option<usize>,
    /// Routes before it that restrict access and match the path only loosely.
    pub(crate) loose: Vec<usize>,
}

impl Route {
    /// Public routes take a method only as spelt; restricting ones in any spelling.
    fn applies(&self, method: &str, host: &str) -> bool {
        let loosely = !matches!(self.action, Action::Public);
        (self.methods.is_empty() || self.methods.iter().any(|m| covers(m, method, loosely)))
            && (self.hosts.is_empty() || host_listed(&self.hosts, host))
    }

    /// Whether the route matches the normalised `path` as written; a public route also
    /// the `raw` path (query cut off, nothing decoded), which is what the upstream gets:
    /// `/public;x/admin` and `/publi%63/admin` are `/public/admin` only to some.
    fn matches(&self, path: &str, raw: &str, method: &str, host: &str) -> bool {
        let public = matches!(self.action, Action::Public);
        self.path.matches(path) && (!public || self.path.matches(raw)) && self.applies(method, host)
    }

    fn restricts_loosely(
        &self,
        path: &str,
        forms: &OnceCell<Vec<String>>,
        method: &str,
        host: &str,
    ) -> bool {
        !matches!(self.action, Action::Public)
            && self.applies(method, host)
            && self.path.matches_loosely(path, forms)
    }
}

/// The rules of one service (a set of hosts).
#[derive(Debug, Default)]
pub struct ServicePolicy {
    pub routes: Vec<Route>,
    /// The service-wide rules (`allowed_groups`, `email_domains`, ...; any signed-in user
    /// when none is set), for requests no route covers and routes without their own.
    pub(crate) default: Access,
    /// Forward the normalised path the rules judged instead of the path as sent.
    pub(crate) forward_normalized_path: bool,
    /// A signed identity assertion for the upstream (read with the rules, `config::assertion`).
    pub(crate) assertion: Option<std::rc::Rc<crate::core::config::assertion::ServiceAssertion>>,
}

impl ServicePolicy {
    /// The routes for this normalised path (`raw`: as sent, without the query), method and
    /// host.
    pub(crate) fn route(&self, path: &str, raw: &str, method: &str, host: &str) -> Matched {
        let route = self
            .routes
            .iter()
            .position(|r| r.matches(path, raw, method, host));
        let before = route.unwrap_or(self.routes.len());
        let forms = OnceCell::new();
        let loose = self
            .routes
            .iter()
            .take(before)
            .enumerate()
            .filter(|(_, r)| r.restricts_loosely(path, &forms, method, host))
            .map(|(i, _)| i)
            .collect();
        Matched { route, loose }
    }

    /// The rules for a request that matched `route` (or none).
    pub(crate) fn access(&self, route: Option<usize>) -> &Access {
        match route.and_then(|i| self.routes.get(i)).map(|r| &r.action) {
            Some(Action::Protected(Some(access))) => access,
            _ => &self.default,
        }
    }

    /// Every rule a request that matched this must pass: each loosely matching route's,
    /// then the deciding route's (none for a public one).
    pub(crate) fn accesses<'a>(&'a self, matched: &'a Matched) -> impl Iterator<Item = &'a Access> {
        let deciding = (!self.is_public(matched.route)).then_some(matched.route);
        matched
            .loose
            .iter()
            .map(|i| Some(*i))
            .chain(deciding)
            .map(|route| self.access(route))
    }

    /// As if every restricting route matched loosely: all their rules and the service's.
    pub(crate) fn every_restriction(&self) -> Matched {
        Matched {
            route: None,
            loose: (0..self.routes.len())
                .filter(|i| !self.is_public(Some(*i)))
                .collect(),
        }
    }

    /// Every group a rule of this service names.
    pub(crate) fn group_names(&self) -> Vec<&str> {
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

    fn is_public(&self, route: Option<usize>) -> bool {
        matches!(
            route.and_then(|i| self.routes.get(i)).map(|r| &r.action),
            Some(Action::Public)
        )
    }

    /// No credential needed: the deciding route is public and no route restricts the
    /// path as some upstream may read it.
    pub(crate) fn opens(&self, matched: &Matched) -> bool {
        matched.loose.is_empty() && self.is_public(matched.route)
    }

    /// The answer to a request without a credential: the first route that restricts it
    /// says.
    pub(crate) fn unauthenticated(&self, matched: &Matched) -> Unauthenticated {
        matched
            .loose
            .first()
            .copied()
            .or(matched.route)
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

    fn restricted(path: PathMatch, group: &str) -> Route {
        use crate::core::policy::access::{Criterion, Rule};
        Route {
            path,
            methods: Vec::new(),
            hosts: Vec::new(),
            action: Action::Protected(Some(Access {
                allow: vec![Rule(vec![Criterion::Groups(vec![group.to_string()])])],
                deny: Vec::new(),
            })),
            unauthenticated: Unauthenticated::Auto,
        }
    }

    fn restricted_on(methods: &[&str]) -> Route {
        Route {
            methods: methods.iter().map(|m| m.to_string()).collect(),
            ..restricted(PathMatch::Any, "staff")
        }
    }

    fn public(path: PathMatch) -> Route {
        Route { path, ..route(&[]) }
    }

    fn policy(routes: Vec<Route>) -> ServicePolicy {
        ServicePolicy {
            routes,
            ..ServicePolicy::default()
        }
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.to_string())
    }

    fn exact(p: &str) -> PathMatch {
        PathMatch::Exact(p.to_string())
    }

    fn matched(rules: &ServicePolicy, path: &str) -> Matched {
        rules.route(path, path, "GET", "h")
    }

    #[test]
    fn a_loosely_matched_restriction_is_not_skipped_for_a_later_public_route() {
        let rules = policy(vec![
            restricted(prefix("/admin"), "admins"),
            public(prefix("/")),
        ]);
        for path in ["/admin.json", "/ADMIN.", "/admin%20/x"] {
            let m = matched(&rules, path);
            assert_eq!((m.route, m.loose.as_slice()), (Some(1), &[0][..]), "{path}");
            assert!(!rules.opens(&m), "{path} needs a credential");
            assert_eq!(rules.accesses(&m).count(), 1, "{path}: the admins' rule");
        }
        assert!(rules.opens(&matched(&rules, "/administrator")));
    }

    #[test]
    fn a_public_route_listed_first_still_matches_only_as_written() {
        let rules = policy(vec![
            public(exact("/healthz")),
            public(prefix("/static/")),
            restricted(prefix("/"), "staff"),
        ]);
        assert!(rules.opens(&matched(&rules, "/healthz")));
        assert!(rules.opens(&matched(&rules, "/static/app.js")));
        for path in [
            "/healthz.json",
            "/HEALTHZ",
            "/healthz.",
            "/Static/app.js",
            "/static",
        ] {
            let m = matched(&rules, path);
            assert_eq!(m.route, Some(2), "{path}");
            assert!(!rules.opens(&m), "{path}");
        }
    }

    #[test]
    fn a_public_route_needs_the_raw_path_under_it_too() {
        let rules = policy(vec![public(prefix("/public/")), public(exact("/healthz"))]);
        for (path, raw) in [
            ("/public/admin/users", "/public;x/admin/users"),
            ("/public/admin/users", "/publi%63/admin/users"),
            ("/healthz", "/healthz;.json"),
            ("/healthz", "/healt%68z"),
        ] {
            let m = rules.route(path, raw, "GET", "h");
            assert_eq!(m.route, None, "{raw}: judged by the service's rules");
            assert!(!rules.opens(&m), "{raw}");
        }
        assert!(rules.opens(&rules.route("/public/x", "/public//x", "GET", "h")));
    }

    #[test]
    fn an_earlier_loose_route_cannot_take_a_request_from_a_later_stricter_one() {
        let rules = policy(vec![
            restricted(exact("/Admin"), "staff"),
            restricted(exact("/admin"), "admins"),
        ]);
        let m = matched(&rules, "/admin");
        assert_eq!((m.route, m.loose.as_slice()), (Some(1), &[0][..]));
        assert_eq!(rules.accesses(&m).count(), 2, "staff and admins both");
    }

    #[test]
    fn a_restricting_regex_is_tried_on_every_reading_of_the_path() {
        let regex = |r: &str| PathMatch::Regex(Regex::new(&format!("^(?:{r})$")).unwrap());
        let rules = policy(vec![restricted(regex("/api/users(/.*)?"), "admins")]);
        for path in [
            "/api/users",
            "/api/users.json",
            "/API/users",
            "/api/users./x",
            "/api/users%20",
        ] {
            let m = matched(&rules, path);
            assert!(m.route == Some(0) || m.loose == [0], "{path}: {m:?}");
        }
        assert_eq!(matched(&rules, "/api/usersx"), Matched::default());
        let public_regex = policy(vec![public(regex("/api/users"))]);
        assert!(!public_regex.opens(&matched(&public_regex, "/api/users.json")));
    }

    #[test]
    fn a_get_rule_also_covers_head_and_any_spelling() {
        let get = restricted_on(&["GET"]);
        for method in ["GET", "get", "HEAD", "head"] {
            assert!(get.matches("/x", "/x", method, "h"), "{method}");
        }
        assert!(!get.matches("/x", "/x", "POST", "h"));
        let public_get = route(&["GET"]);
        for method in ["GET", "HEAD"] {
            assert!(public_get.matches("/x", "/x", method, "h"), "{method}");
        }
        for method in ["get", "head", "gEt"] {
            assert!(!public_get.matches("/x", "/x", method, "h"), "{method}");
        }
        let head = route(&["HEAD"]);
        assert!(
            !head.matches("/x", "/x", "GET", "h"),
            "HEAD does not cover GET"
        );
    }
}
