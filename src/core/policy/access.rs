//! Who may pass a protected route: `allow` and `deny` rules over what is known of the caller
//! (Pomerium's policy language and oauth2-proxy's options are the models). A rule holds when
//! all its criteria hold; `deny` wins over `allow`; nothing allowed means denied.

use serde_json::{Map, Value};

/// What rules know of an authenticated caller.
pub(crate) struct Subject<'a> {
    /// Only a verified email (see `EmailVerification`).
    pub(crate) email: Option<&'a str>,
    pub(crate) groups: &'a [String],
    /// From `scope` (space-separated) or `scp` (a list).
    pub(crate) scopes: &'a [String],
    pub(crate) issuer: &'a str,
    /// The token's claims, or the ones a session kept for rules.
    pub(crate) claims: &'a Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Criterion {
    /// Any valid identity.
    Authenticated,
    /// One of these addresses (case-insensitive).
    Emails(Vec<String>),
    /// An address at one of these domains; `.example.com` means its subdomains.
    EmailDomains(Vec<String>),
    /// A member of any of these groups (Dex's `org:team` form included).
    Groups(Vec<String>),
    /// Claim `name` (dotted for nested objects) is, or contains, one of `values`.
    Claim { name: String, values: Vec<String> },
    /// Every one of these scopes.
    Scopes(Vec<String>),
    /// A token from one of these issuers.
    Issuers(Vec<String>),
}

/// A rule: all its criteria must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rule(pub(crate) Vec<Criterion>);

/// A protected route's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Access {
    pub(crate) allow: Vec<Rule>,
    pub(crate) deny: Vec<Rule>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// `403`; `missing_scopes` when scopes were all an allow rule lacked (RFC 6750 §3.1
    /// `insufficient_scope`).
    Forbidden {
        missing_scopes: Vec<String>,
    },
}

/// The domain of an address with exactly one `@` and something on both sides; quoted or
/// otherwise odd local parts (`"x@y"@example.com`) have no domain here.
fn email_domain(email: &str) -> Option<&str> {
    let (local, domain) = email.split_once('@')?;
    let plain =
        !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !local.contains('"');
    plain.then_some(domain)
}

fn domain_allowed(domain: &str, allowed: &str) -> bool {
    match allowed.strip_prefix('.') {
        Some(parent) => domain
            .len()
            .checked_sub(parent.len() + 1)
            .and_then(|at| domain.get(at..))
            .and_then(|tail| tail.strip_prefix('.'))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(parent)),
        None => domain.eq_ignore_ascii_case(allowed),
    }
}

/// The two readings of a claim name: the claim of that very name (namespaced claims such as
/// `https://corp.example/role` hold dots), and, for a dotted name, the path into objects
/// (`realm_access.roles` is `claims["realm_access"]["roles"]`). A token may carry both.
pub(crate) fn claim_readings<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> [Option<&'a Value>; 2] {
    let nested = || {
        if !name.contains('.') {
            return None;
        }
        let mut parts = name.split('.');
        let mut value = claims.get(parts.next()?)?;
        for part in parts {
            value = value.as_object()?.get(part)?;
        }
        Some(value)
    };
    [claims.get(name), nested()]
}

/// A claim by name, for identity and headers: the nested reading when there is one, so a
/// literal `"realm_access.roles"` key never stands in for the IdP's nested claim.
pub(crate) fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let [literal, nested] = claim_readings(claims, name);
    nested.or(literal)
}

/// Whether a `claims` criterion holds. Where a name has two readings, a deny holds when
/// any reading matches, an allow only when every reading present does: a literal dotted
/// key can neither hide the nested claim from a deny nor stand in for it in an allow.
fn claim_holds(claims: &Map<String, Value>, name: &str, accepted: &[String], deny: bool) -> bool {
    let mut present = claim_readings(claims, name)
        .into_iter()
        .flatten()
        .peekable();
    if deny {
        present.any(|v| claim_has(v, accepted))
    } else {
        present.peek().is_some() && present.all(|v| claim_has(v, accepted))
    }
}

fn claim_has(value: &Value, accepted: &[String]) -> bool {
    let is = |v: &Value| {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Bool(_) | Value::Number(_) => v.to_string(),
            _ => return false,
        };
        accepted.contains(&text)
    };
    match value {
        Value::Array(items) => items.iter().any(is),
        other => is(other),
    }
}

impl Criterion {
    /// `deny`: whether the criterion is part of a deny rule (see `claim_holds`).
    fn holds(&self, subject: &Subject, deny: bool) -> bool {
        match self {
            Criterion::Authenticated => true,
            Criterion::Emails(emails) => subject
                .email
                .is_some_and(|e| emails.iter().any(|a| a.eq_ignore_ascii_case(e))),
            Criterion::EmailDomains(domains) => subject
                .email
                .and_then(email_domain)
                .is_some_and(|d| domains.iter().any(|a| domain_allowed(d, a))),
            Criterion::Groups(groups) => subject.groups.iter().any(|g| groups.contains(g)),
            Criterion::Claim { name, values } => claim_holds(subject.claims, name, values, deny),
            Criterion::Scopes(scopes) => scopes.iter().all(|s| subject.scopes.contains(s)),
            Criterion::Issuers(issuers) => issuers.iter().any(|i| i == subject.issuer),
        }
    }
}

impl Rule {
    fn holds(&self, subject: &Subject, deny: bool) -> bool {
        self.0.iter().all(|c| c.holds(subject, deny))
    }

    /// The scopes this rule would still need if scopes were all it lacked.
    fn only_missing_scopes(&self, subject: &Subject) -> Option<Vec<String>> {
        let mut missing = Vec::new();
        for criterion in &self.0 {
            match criterion {
                Criterion::Scopes(scopes) => missing.extend(
                    scopes
                        .iter()
                        .filter(|s| !subject.scopes.contains(s))
                        .cloned(),
                ),
                other if !other.holds(subject, false) => return None,
                _ => {}
            }
        }
        (!missing.is_empty()).then_some(missing)
    }
}

impl Access {
    /// The claims these rules name (a dotted name may be a claim of that name, or a path
    /// into its first part's object: the caller keeps both).
    pub(crate) fn claim_names(&self) -> impl Iterator<Item = &str> {
        self.allow
            .iter()
            .chain(&self.deny)
            .flat_map(|rule| &rule.0)
            .filter_map(|criterion| match criterion {
                Criterion::Claim { name, .. } => Some(name.as_str()),
                _ => None,
            })
    }

    /// The groups these rules name: all a session must keep of its groups for them.
    pub(crate) fn group_names(&self) -> impl Iterator<Item = &str> {
        self.allow
            .iter()
            .chain(&self.deny)
            .flat_map(|rule| &rule.0)
            .flat_map(|criterion| match criterion {
                Criterion::Groups(groups) => groups.as_slice(),
                _ => &[],
            })
            .map(String::as_str)
    }

    pub(crate) fn decide(&self, subject: &Subject) -> Verdict {
        if self.deny.iter().any(|rule| rule.holds(subject, true)) {
            return Verdict::Forbidden {
                missing_scopes: Vec::new(),
            };
        }
        if self.allow.iter().any(|rule| rule.holds(subject, false)) {
            return Verdict::Allow;
        }
        let missing_scopes = self
            .allow
            .iter()
            .find_map(|rule| rule.only_missing_scopes(subject))
            .unwrap_or_default();
        Verdict::Forbidden { missing_scopes }
    }
}

/// The scopes of a token: `scope` as a space-separated string, or `scp` as a list (or a
/// string), as IdPs variously send them.
pub(crate) fn scopes_of(claims: &Map<String, Value>) -> Vec<String> {
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => words(s),
        (_, Some(Value::Array(items))) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        (_, Some(Value::String(s))) => words(s),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subject_with<'a>(
        email: Option<&'a str>,
        groups: &'a [String],
        scopes: &'a [String],
        claims: &'a Map<String, Value>,
    ) -> Subject<'a> {
        Subject {
            email,
            groups,
            scopes,
            issuer: "https://dex.example.com",
            claims,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn rule(criteria: Vec<Criterion>) -> Rule {
        Rule(criteria)
    }

    #[test]
    fn email_domain_rules_like_oauth2_proxy() {
        let claims = Map::new();
        let access = Access {
            allow: vec![rule(vec![Criterion::EmailDomains(strings(&[
                "mydomain.com",
                ".corp.example",
            ]))])],
            deny: vec![],
        };
        for (email, allowed) in [
            ("alice@mydomain.com", true),
            ("Alice@MyDomain.COM", true),
            ("bob@other.com", false),
            ("bob@evilmydomain.com", false),
            ("bob@mydomain.com.evil", false),
            ("\"x@y\"@mydomain.com", false),
            ("x@y@mydomain.com", false),
            ("@mydomain.com", false),
            ("eve@team.corp.example", true),
            ("eve@a.b.corp.example", true),
            ("eve@corp.example", false),
            ("eve@xcorp.example", false),
        ] {
            let subject = subject_with(Some(email), &[], &[], &claims);
            assert_eq!(
                access.decide(&subject) == Verdict::Allow,
                allowed,
                "{email}"
            );
        }
        let no_email = subject_with(None, &[], &[], &claims);
        assert_ne!(
            access.decide(&no_email),
            Verdict::Allow,
            "no verified email"
        );
    }

    #[test]
    fn groups_claims_issuers_and_deny_over_allow() {
        let claims =
            json!({"realm_access": {"roles": ["viewer", "admin"]}, "tenant": "a", "level": 3});
        let claims = claims.as_object().cloned().unwrap_or_default();
        let sre = strings(&["myorg:sre"]);
        let dev = strings(&["myorg:dev"]);
        let access = Access {
            allow: vec![
                rule(vec![Criterion::Groups(strings(&["myorg:sre"]))]),
                rule(vec![Criterion::Claim {
                    name: "realm_access.roles".into(),
                    values: strings(&["admin"]),
                }]),
            ],
            deny: vec![rule(vec![Criterion::Claim {
                name: "tenant".into(),
                values: strings(&["blocked"]),
            }])],
        };
        assert_eq!(
            access.decide(&subject_with(None, &sre, &[], &Map::new())),
            Verdict::Allow
        );
        assert_ne!(
            access.decide(&subject_with(None, &dev, &[], &Map::new())),
            Verdict::Allow
        );
        assert_eq!(
            access.decide(&subject_with(None, &dev, &[], &claims)),
            Verdict::Allow,
            "nested array claim"
        );
        let mut blocked = claims.clone();
        blocked.insert("tenant".into(), json!("blocked"));
        assert_ne!(
            access.decide(&subject_with(None, &sre, &[], &blocked)),
            Verdict::Allow,
            "deny wins over allow"
        );
        let numbers = Access {
            allow: vec![rule(vec![
                Criterion::Claim {
                    name: "level".into(),
                    values: strings(&["3"]),
                },
                Criterion::Issuers(strings(&["https://dex.example.com"])),
            ])],
            deny: vec![],
        };
        assert_eq!(
            numbers.decide(&subject_with(None, &[], &[], &claims)),
            Verdict::Allow
        );
        assert_ne!(
            Access::default().decide(&subject_with(None, &sre, &[], &claims)),
            Verdict::Allow,
            "nothing allowed is denied"
        );
    }

    #[test]
    fn a_literal_dotted_claim_name_never_shadows_the_nested_claim() {
        let admin = || Criterion::Claim {
            name: "realm_access.roles".into(),
            values: strings(&["admin"]),
        };
        let deny_admins = Access {
            allow: vec![rule(vec![Criterion::Authenticated])],
            deny: vec![rule(vec![admin()])],
        };
        let allow_admins = Access {
            allow: vec![rule(vec![admin()])],
            deny: vec![],
        };
        // (claims, denied by the deny on the nested claim, allowed by the allow on it)
        let cases = [
            (json!({"realm_access": {"roles": ["admin"]}}), true, true),
            (json!({"realm_access": {"roles": ["user"]}}), false, false),
            (
                json!({"realm_access.roles": ["user"], "realm_access": {"roles": ["admin"]}}),
                true,
                false,
            ),
            (
                json!({"realm_access.roles": ["admin"], "realm_access": {"roles": ["user"]}}),
                true,
                false,
            ),
            (
                json!({"realm_access.roles": "admin", "realm_access": {"roles": "admin"}}),
                true,
                true,
            ),
            (json!({"realm_access.roles": ["user"]}), false, false),
            (json!({"realm_access.roles": ["admin"]}), true, true),
            (json!({}), false, false),
        ];
        for (claims, denied, allowed) in cases {
            let map = claims.as_object().cloned().unwrap_or_default();
            let subject = subject_with(None, &[], &[], &map);
            assert_eq!(
                deny_admins.decide(&subject) != Verdict::Allow,
                denied,
                "deny: {claims}"
            );
            assert_eq!(
                allow_admins.decide(&subject) == Verdict::Allow,
                allowed,
                "allow: {claims}"
            );
        }
    }

    #[test]
    fn namespaced_claim_names_without_a_nested_reading_keep_working() {
        let name = "https://corp.example/roles";
        let claims = json!({ name: ["admin"], "https://other": {"example/roles": ["user"]} });
        let map = claims.as_object().cloned().unwrap_or_default();
        let access = |deny: bool| {
            let rules = vec![rule(vec![Criterion::Claim {
                name: name.into(),
                values: strings(&["admin"]),
            }])];
            if deny {
                Access {
                    allow: vec![rule(vec![Criterion::Authenticated])],
                    deny: rules,
                }
            } else {
                Access {
                    allow: rules,
                    deny: vec![],
                }
            }
        };
        let subject = subject_with(None, &[], &[], &map);
        assert_eq!(access(false).decide(&subject), Verdict::Allow);
        assert_ne!(access(true).decide(&subject), Verdict::Allow);
        assert_eq!(claim(&map, name), Some(&json!(["admin"])));
    }

    #[test]
    fn identity_reads_the_nested_claim_when_both_exist() {
        let claims = json!({"realm_access.roles": ["admin"], "realm_access": {"roles": ["user"]}});
        let map = claims.as_object().cloned().unwrap_or_default();
        assert_eq!(claim(&map, "realm_access.roles"), Some(&json!(["user"])));
        let literal_only = json!({"realm_access.roles": ["admin"]});
        let map = literal_only.as_object().cloned().unwrap_or_default();
        assert_eq!(claim(&map, "realm_access.roles"), Some(&json!(["admin"])));
    }

    #[test]
    fn missing_scopes_are_named_when_they_are_all_that_is_missing() {
        let read = strings(&["read"]);
        let claims = Map::new();
        let access = Access {
            allow: vec![rule(vec![
                Criterion::Authenticated,
                Criterion::Scopes(strings(&["read", "write"])),
            ])],
            deny: vec![],
        };
        assert_eq!(
            access.decide(&subject_with(None, &[], &read, &claims)),
            Verdict::Forbidden {
                missing_scopes: strings(&["write"])
            }
        );
        let with_group = Access {
            allow: vec![rule(vec![
                Criterion::Groups(strings(&["ops"])),
                Criterion::Scopes(strings(&["write"])),
            ])],
            deny: vec![],
        };
        assert_eq!(
            with_group.decide(&subject_with(None, &[], &read, &claims)),
            Verdict::Forbidden {
                missing_scopes: vec![]
            },
            "a group is missing too: the policy is not revealed"
        );
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let claims = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            scopes_of(&claims(json!({"scope": "read  write"}))),
            strings(&["read", "write"])
        );
        assert_eq!(
            scopes_of(&claims(json!({"scp": ["read"]}))),
            strings(&["read"])
        );
        assert_eq!(
            scopes_of(&claims(json!({"scp": "a b"}))),
            strings(&["a", "b"])
        );
        assert!(scopes_of(&claims(json!({"scope": 7}))).is_empty());
    }
}
