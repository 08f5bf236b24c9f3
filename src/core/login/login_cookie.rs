//! The short-lived login cookie: it carries a login in flight (state, PKCE verifier, nonce,
//! where to return) from its start to the IdP's callback.

use crate::core::config::login::LoginService;
use crate::core::cookies::{self, CookieAttributes, SameSite};
use crate::core::login::oidc::PendingLogin;

pub(super) const LOGIN_PURPOSE: &str = "login";

/// Attributes of the short-lived login cookie: the IdP sends the browser back cross-site,
/// so `SameSite=Strict` would hide the cookie from the callback; `__Host-` names need `/`.
pub(super) fn login_cookie_attributes(service: &LoginService) -> CookieAttributes {
    let mut attributes = service.cookie.clone();
    if attributes.same_site == SameSite::Strict {
        attributes.same_site = SameSite::Lax;
    }
    attributes
}

/// Deletes the login cookie of a login that cannot go on.
pub(crate) fn forget_login(service: &LoginService, pending: &PendingLogin) -> String {
    delete_login_cookie(service, &pending.state)
}

/// Deletes the login cookie of `state`, which must be well formed (it names the cookie).
pub(super) fn delete_login_cookie(service: &LoginService, state: &str) -> String {
    cookies::delete_cookie(
        &service.login_cookie_name(state),
        &login_cookie_attributes(service),
        Some(service.login_cookie_path()),
    )
}
