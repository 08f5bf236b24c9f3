//! The `login` section of the configuration: one entry per protected service (host),
//! each with its own OIDC client, cookie secrets and cookie settings.

use std::rc::Rc;

use serde_json::Value;
use url::Url;

use crate::core::config::idle_timeout::read_idle_timeout;
use crate::core::config::idp::{self, Idp, IdpId, Idps, SealerInputs};
use crate::core::config::kubernetes::Impersonation;
use crate::core::config::oidc_client::read_url;
pub(crate) use crate::core::config::oidc_client::{read_secret, ClientAuth, EnvLookup};
use crate::core::config::pages::{read_pages, Branding};
use crate::core::config::policy::read_policy;
use crate::core::config::provider::read_provider_list;
use crate::core::config::provider::Provider;
use crate::core::config::reader::{ObjectReader, Problems};
use crate::core::config::start_hints::{read_start_hints, StartHints};
use crate::core::cookies::{CookieAttributes, SameSite};

use crate::core::policy::route::ServicePolicy;
pub use crate::core::policy::route::Unauthenticated;
use crate::core::secret::Secret;

#[derive(Debug)]
pub struct LoginService {
    pub hosts: Vec<String>,
    /// Whom users sign in with: one IdP (the single form), or several (`idps`).
    pub idps: Idps,
    /// Issuers whose bearer tokens this service accepts: its IdPs', and any `providers` adds.
    pub(crate) accepted_issuers: Vec<String>,
    pub(crate) callback_path: String,
    pub(crate) redirect_url: Option<Url>,
    pub cookie_name: String,
    pub cookie: CookieAttributes,
    pub(crate) session_lifetime_secs: u64,
    pub(crate) login_timeout_secs: u64,
    pub(crate) sign_out_path: String,
    /// OIDC Back-Channel Logout: where the IdP POSTs its logout tokens.
    pub(crate) backchannel_logout_path: String,
    /// oauth2-proxy's `/oauth2/start?rd=...`: starts a login that ends at `rd`.
    pub(crate) start_path: String,
    pub(crate) end_idp_session: bool,
    pub(crate) post_logout_redirect_url: Option<String>,
    pub(crate) allowed_redirect_hosts: Vec<String>,
    pub(crate) refresh: bool,
    /// How long after the tokens expired a refused refresh keeps the old session (another
    /// replica may have spent the refresh token first); 0: a refused refresh ends it at once.
    pub(crate) refresh_race_grace_secs: u64,
    /// Where sessions live: the cookie itself, or the cluster store (a handle in the cookie).
    pub(crate) session_store: SessionStore,
    /// Who may pass, per route.
    pub policy: ServicePolicy,
    /// Kubernetes API mode: ask the upstream to act as the caller (`Impersonate-*`).
    pub(crate) impersonation: Option<Rc<Impersonation>>,
    /// Groups any service's rules name: what a session too large for its cookies keeps.
    pub(crate) kept_groups: Vec<String>,
    /// The session's access token to the upstream (`X-Auth-Request-Access-Token`).
    pub pass_access_token: bool,
    /// `Authorization: Bearer <ID token>` to the upstream (Grafana's JWT auth reads it).
    pub set_authorization_header: bool,
    /// How its pages are branded: its own `pages` over the top-level block.
    pub(crate) pages: Rc<Branding>,
    /// Sign-in hints `/oauth2/start` may pass on to the IdP (`start_parameters`).
    pub(crate) start_hints: StartHints,
    /// A session unused this long ends (`idle_timeout`); `None`: never.
    pub(crate) idle_timeout_secs: Option<u64>,
}

impl LoginService {
    /// The IdP `id` names (ids come from this service's list).
    pub fn idp(&self, id: IdpId) -> &Idp {
        self.idps.get(id)
    }

    /// The longest token call of its IdPs: what a refresh lease must outlast.
    pub(crate) fn longest_token_timeout_ms(&self) -> u64 {
        let timeouts = self.idps.iter().map(|(_, idp)| idp.timeout_ms);
        timeouts.max().unwrap_or_default()
    }

    /// Whether this service protects `host` (port ignored, case-insensitive; `*` any).
    #[cfg(any(test, feature = "testing"))]
    pub fn serves(&self, host: &str) -> bool {
        crate::core::hostname::host_listed(&self.hosts, host)
    }

    /// The login cookie for one login in flight, named after its state so parallel logins
    /// (several tabs) do not overwrite each other. Only well-formed states (base64url) get
    /// here, so the name is always a valid cookie name.
    pub(crate) fn login_cookie_name(&self, state: &str) -> String {
        let tag: String = state.chars().take(16).collect();
        format!("{}_login_{tag}", self.cookie_name)
    }

    /// A login cookie of the shape `login_cookie_name` makes (16 base64url characters after
    /// the prefix): only such names are ever written back, to delete them.
    pub(crate) fn is_login_cookie(&self, name: &str) -> bool {
        name.strip_prefix(&self.cookie_name)
            .and_then(|rest| rest.strip_prefix("_login_"))
            .is_some_and(|tag| {
                tag.len() == 16
                    && tag
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    }

    /// Login cookies live on the callback path only, except for `__Host-` names, which
    /// browsers accept only with `Path=/`.
    pub(crate) fn login_cookie_path(&self) -> &str {
        if self.cookie_name.starts_with("__Host-") {
            "/"
        } else {
            &self.callback_path
        }
    }

    /// Every cookie of ours: session chunks and logins in flight.
    pub(crate) fn is_our_cookie(&self, name: &str) -> bool {
        name.strip_prefix(&self.cookie_name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
    }
}

fn read_secret_list(
    reader: &mut ObjectReader,
    name: &'static str,
    env: EnvLookup,
    problems: &mut Problems,
) -> Vec<Secret> {
    let path = reader.field_path(name);
    let items = match reader.value(name).and_then(Value::as_array) {
        Some(items) if !items.is_empty() => items,
        _ => {
            problems.add(&path, "must list at least one secret of 32 or more bytes");
            return Vec::new();
        }
    };
    let mut secrets = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let wrapper = serde_json::json!({ "s": item });
        let mut inner = ObjectReader::new(&format!("{path}[{i}]"), &wrapper, problems);
        if let Some(secret) = read_secret(&mut inner, "s", env, problems) {
            secrets.push(secret);
        }
    }
    secrets
}

fn read_path(
    reader: &mut ObjectReader,
    name: &'static str,
    default: &str,
    problems: &mut Problems,
) -> String {
    let path = reader.field_path(name);
    let value = reader
        .string(name, problems)
        .unwrap_or_else(|| default.into());
    if !value.starts_with('/') {
        problems.add(&path, "must start with /");
    }
    value
}

/// The session cookie's name when none is configured: `__Host-` where the cookie can carry
/// it (Secure, `Path=/`, no `Domain`), so no sibling host or plain-HTTP page can plant or
/// shadow it; else `__Secure-` where it is Secure.
pub(crate) fn default_cookie_name(secure: bool, has_domain: bool, path: &str) -> &'static str {
    match (secure, has_domain, path) {
        (true, false, "/") => "__Host-wasm_iap",
        (true, _, _) => "__Secure-wasm_iap",
        (false, _, _) => "_wasm_iap",
    }
}

/// Two login services whose session cookies share a name and reach a common host: the
/// browser keeps one of them, and which service's session a request carries would be
/// luck (each would sign the user in again and overwrite the other's).
pub(crate) fn check_cookie_scopes(login: &[LoginService], problems: &mut Problems) {
    for (i, later) in login.iter().enumerate() {
        let Some(earlier) = login[..i].iter().position(|e| cookies_collide(e, later)) else {
            continue;
        };
        problems.add(
            &format!("login[{i}].cookie_name"),
            format!(
                "\"{}\" is also the session cookie of login[{earlier}], and their cookies reach the same hosts: give each service a cookie_name of its own, or list the hosts in one login service",
                later.cookie_name
            ),
        );
    }
}

fn cookies_collide(a: &LoginService, b: &LoginService) -> bool {
    a.cookie_name == b.cookie_name
        && (a.cookie.path.starts_with(&b.cookie.path) || b.cookie.path.starts_with(&a.cookie.path))
        && (reaches(a, b) || reaches(b, a))
}

/// Whether `from`'s session cookie is sent to a host `to` serves.
fn reaches(from: &LoginService, to: &LoginService) -> bool {
    let Some(domain) = from.cookie.domain.as_deref() else {
        // Host-only cookies stay on the hosts `from` serves, which no other service lists.
        return false;
    };
    let domain = domain.trim_start_matches('.').to_ascii_lowercase();
    let covered = |host: &str| host == domain || host.ends_with(&format!(".{domain}"));
    let to_domain = to
        .cookie
        .domain
        .as_deref()
        .map(|d| d.trim_start_matches('.').to_ascii_lowercase());
    to.hosts.iter().any(|h| h == "*" || covered(h))
        || to_domain
            .is_some_and(|d| covered(&d) || domain.ends_with(&format!(".{d}")) || domain == d)
}

/// `cookie_secrets`, the cookie's name and its attributes; a `__Host-`/`__Secure-` name
/// only with the attributes browsers require of it.
fn read_cookie(
    r: &mut ObjectReader,
    env: EnvLookup,
    problems: &mut Problems,
) -> (Vec<Secret>, String, CookieAttributes) {
    let secrets = read_secret_list(r, "cookie_secrets", env, problems);
    let cookie_domain = r.string("cookie_domain", problems);
    let cookie_path = read_path(r, "cookie_path", "/", problems);
    let secure = r.bool("cookie_secure", true, problems);
    let cookie_name = r.string("cookie_name", problems).unwrap_or_else(|| {
        default_cookie_name(secure, cookie_domain.is_some(), &cookie_path).into()
    });
    if cookie_name.is_empty()
        || !cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        problems.add(
            &r.field_path("cookie_name"),
            "may only hold letters, digits, _ and -",
        );
    }
    // Browsers drop cookies with these prefixes unless their rules hold (RFC 6265bis §4.1.3).
    let prefix_path = r.field_path("cookie_name");
    if cookie_name.starts_with("__Host-")
        && (!secure || cookie_domain.is_some() || cookie_path != "/")
    {
        problems.add(
            &prefix_path,
            "a __Host- cookie needs cookie_secure true, no cookie_domain and cookie_path /",
        );
    }
    if cookie_name.starts_with("__Secure-") && !secure {
        problems.add(&prefix_path, "a __Secure- cookie needs cookie_secure true");
    }
    let samesite_path = r.field_path("cookie_samesite");
    let same_site = match r.string("cookie_samesite", problems) {
        None => SameSite::Lax,
        Some(text) => SameSite::parse(&text).unwrap_or_else(|| {
            problems.add(
                &samesite_path,
                format!("\"{text}\" is not one of Strict, Lax, None"),
            );
            SameSite::Lax
        }),
    };
    let attributes = CookieAttributes {
        domain: cookie_domain,
        path: cookie_path,
        secure,
        same_site,
    };
    (secrets, cookie_name, attributes)
}

/// `hosts`, lower-cased; at least one is required.
fn read_hosts(r: &mut ObjectReader, problems: &mut Problems) -> Vec<String> {
    let hosts: Vec<String> = r
        .string_list("hosts", problems)
        .unwrap_or_default()
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if hosts.is_empty() {
        problems.add(
            &r.field_path("hosts"),
            "must list the hosts this login protects (\"*\" for any)",
        );
    }
    hosts
}

/// `redirect_url`, and the callback path: the redirect URL's path when one is given.
fn read_callback(r: &mut ObjectReader, problems: &mut Problems) -> (Option<Url>, String) {
    let redirect_url = read_url(r, "redirect_url", problems);
    let mut callback_path = read_path(r, "callback_path", "/oauth2/callback", problems);
    if let Some(url) = &redirect_url {
        callback_path = url.path().to_string();
    }
    (redirect_url, callback_path)
}

/// `session_lifetime` and `login_timeout`, in seconds.
fn read_lifetimes(r: &mut ObjectReader, problems: &mut Problems) -> (u64, u64) {
    let session_lifetime_secs =
        r.duration_millis("session_lifetime", 8 * 3_600_000, problems) / 1000;
    let login_timeout_secs = r.duration_millis("login_timeout", 600_000, problems) / 1000;
    (session_lifetime_secs, login_timeout_secs)
}

/// Where a login service keeps its sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionStore {
    /// Sealed into the browser's cookies (the default: nothing else is needed).
    Cookie,
    /// In the cluster store; the cookie holds a sealed handle. `sign_in_on_outage`: while
    /// the store does not answer, a session it cannot read counts as none (the browser signs
    /// in again, and that session goes into the cookie); otherwise such requests get `503`.
    Cluster { sign_in_on_outage: bool },
}

/// `session_store: "cookie" | "cluster"` and `session_store_outage: "unavailable" |
/// "sign_in"`.
fn read_session_store(r: &mut ObjectReader, problems: &mut Problems) -> SessionStore {
    let store_path = r.field_path("session_store");
    let outage_path = r.field_path("session_store_outage");
    let store = r.string("session_store", problems);
    let outage = r.string("session_store_outage", problems);
    let sign_in_on_outage = match outage.as_deref() {
        None | Some("unavailable") => false,
        Some("sign_in") => true,
        Some(other) => {
            problems.add(
                &outage_path,
                format!("\"{other}\" is not one of \"unavailable\", \"sign_in\""),
            );
            false
        }
    };
    match store.as_deref() {
        None | Some("cookie") => {
            if outage.is_some() {
                problems.add(&outage_path, "only applies with session_store \"cluster\"");
            }
            SessionStore::Cookie
        }
        Some("cluster") => SessionStore::Cluster { sign_in_on_outage },
        Some(other) => {
            problems.add(
                &store_path,
                format!("\"{other}\" is not one of \"cookie\", \"cluster\""),
            );
            SessionStore::Cookie
        }
    }
}

/// Longest `refresh_race_grace`: a user the IdP has disabled keeps access that long.
const MAX_REFRESH_RACE_GRACE_MS: u64 = 5 * 60_000;

fn read_refresh(r: &mut ObjectReader, problems: &mut Problems) -> (bool, u64) {
    let refresh = r.bool("refresh", true, problems);
    let path = r.field_path("refresh_race_grace");
    let grace_ms = r.duration_millis("refresh_race_grace", 60_000, problems);
    if grace_ms > MAX_REFRESH_RACE_GRACE_MS {
        problems.add(
            &path,
            "must be at most 5m: a disabled user keeps access that long",
        );
    }
    (refresh, grace_ms / 1000)
}

/// The service's IdPs' issuers, then any other `providers` names.
fn accepted_issuers(idps: &Idps, extra: Vec<String>) -> Vec<String> {
    let mut accepted_issuers: Vec<String> = Vec::new();
    let issuers = idps.iter().map(|(_, idp)| idp.issuer.clone());
    for issuer in issuers.chain(extra) {
        if !accepted_issuers.contains(&issuer) {
            accepted_issuers.push(issuer);
        }
    }
    accepted_issuers
}

/// Reads one `login` entry; `None` when it has problems (they are recorded). Fields are
/// read in this order, so problems are reported in it.
pub(crate) fn read_service(
    path: &str,
    value: &Value,
    providers: &[Provider],
    env: EnvLookup,
    problems: &mut Problems,
) -> Option<LoginService> {
    let before = problems.0.len();
    let mut r = ObjectReader::new(path, value, problems);
    let hosts = read_hosts(&mut r, problems);
    let idp_form = read_idp_form(&mut r, providers, env, problems);
    let (redirect_url, callback_path) = read_callback(&mut r, problems);
    let (secrets, cookie_name, cookie) = read_cookie(&mut r, env, problems);
    let (session_lifetime_secs, login_timeout_secs) = read_lifetimes(&mut r, problems);
    let (sign_out_path, start_path, backchannel_logout_path) = read_own_paths(&mut r, problems);
    let end_idp_session = r.bool("end_idp_session", false, problems);
    let post_logout_redirect_url = r.string("post_logout_redirect_url", problems);
    let allowed_redirect_hosts = r
        .string_list("allowed_redirect_hosts", problems)
        .unwrap_or_default();
    let (refresh, refresh_race_grace_secs) = read_refresh(&mut r, problems);
    let session_store = read_session_store(&mut r, problems);
    let provider_list = read_provider_list(&mut r, providers, problems).unwrap_or_default();
    let (policy, impersonation) = read_policy(&mut r, problems);
    let pass_access_token = r.bool("pass_access_token", false, problems);
    let set_authorization_header = r.bool("set_authorization_header", false, problems);
    let pages = Rc::new(read_pages(
        &r.field_path("pages"),
        r.value("pages"),
        problems,
    ));
    let start_hints = read_start_hints(&mut r, problems);
    let idle_timeout_secs = read_idle_timeout(&mut r, session_lifetime_secs, problems);
    r.finish(problems);
    let inputs = SealerInputs {
        path,
        secrets: &secrets,
        cookie_name: &cookie_name,
        hosts: &hosts,
    };
    let idps = build_idps(idp_form, providers, env, &inputs, problems);
    if problems.0.len() > before {
        return None;
    }
    // A service dropped without a word would leave its hosts to bearer rules alone.
    let Some(idps) = idps else {
        problems.add(path, "has no IdP its users can sign in with");
        return None;
    };
    let accepted_issuers = accepted_issuers(&idps, provider_list);
    Some(LoginService {
        hosts,
        idps,
        accepted_issuers,
        callback_path,
        redirect_url,
        cookie_name,
        cookie,
        session_lifetime_secs,
        login_timeout_secs,
        sign_out_path,
        backchannel_logout_path,
        start_path,
        end_idp_session,
        post_logout_redirect_url,
        allowed_redirect_hosts,
        refresh,
        refresh_race_grace_secs,
        session_store,
        policy,
        impersonation,
        kept_groups: Vec::new(),
        pass_access_token,
        set_authorization_header,
        pages,
        start_hints,
        idle_timeout_secs,
    })
}

/// How a service names its IdPs: an `idps` list, or the single form's fields on itself.
enum IdpForm<'a> {
    Listed(&'a Value),
    Single(Box<idp::IdpFields>),
}

/// Reads `idps`, or the single form's fields when there is no list (a service with both is
/// a problem: which one would users get?).
fn read_idp_form<'a>(
    r: &mut ObjectReader<'a>,
    providers: &[Provider],
    env: EnvLookup,
    problems: &mut Problems,
) -> IdpForm<'a> {
    let Some(list) = r.value("idps") else {
        return IdpForm::Single(Box::new(idp::read_entry_fields(
            r, providers, env, problems,
        )));
    };
    for name in idp::SINGLE_FORM_FIELDS {
        if r.value(name).is_some() {
            problems.add(
                &r.field_path(name),
                "belongs in each of idps: a service has the single form or idps, not both",
            );
        }
    }
    IdpForm::Listed(list)
}

fn build_idps(
    form: IdpForm,
    providers: &[Provider],
    env: EnvLookup,
    inputs: &SealerInputs,
    problems: &mut Problems,
) -> Option<Idps> {
    match form {
        IdpForm::Listed(list) => {
            let path = format!("{}.idps", inputs.path);
            idp::read_idps(list, &path, providers, env, inputs, problems)
        }
        IdpForm::Single(fields) => {
            let id = idp::SINGLE_IDP_ID.to_string();
            idp::build_idp(id.clone(), id, false, *fields, inputs, problems)
                .map(|idp| Idps::new(idp, Vec::new()))
        }
    }
}

/// The paths the service answers itself: sign-out, start, back-channel logout.
fn read_own_paths(r: &mut ObjectReader, problems: &mut Problems) -> (String, String, String) {
    let sign_out_path = read_path(r, "sign_out_path", "/oauth2/sign_out", problems);
    let start_path = read_path(r, "start_path", "/oauth2/start", problems);
    let backchannel_logout_path = read_path(
        r,
        "backchannel_logout_path",
        "/oauth2/backchannel_logout",
        problems,
    );
    (sign_out_path, start_path, backchannel_logout_path)
}
