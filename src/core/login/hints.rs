//! Sign-in hints: `prompt`, `login_hint`, `domain_hint` and `acr_values` that a
//! `/oauth2/start` request passes on to the IdP's authorization endpoint, when the service's
//! `start_parameters` allow them. A value not allowed or not valid is ignored, as
//! oauth2-proxy ignores parameters it does not know: the login still starts, without it.
//! `prompt=select_account` alone ("switch account") is always passed.

use url::Url;

use crate::core::config::login::LoginService;
use crate::core::config::start_hints::StartParameter;
use crate::core::login::step::Request;

/// OIDC Core 3.1.2.1's `prompt` values.
const PROMPTS: [&str; 4] = ["none", "login", "consent", "select_account"];
/// Longest `login_hint` or `domain_hint` passed on (bytes, before encoding).
const MAX_HINT_BYTES: usize = 256;
/// Most values in one `acr_values`.
const MAX_ACR_VALUES: usize = 8;

/// The hints of a start request that go to the IdP, each validated, in a fixed order.
pub(crate) fn start_hints(
    service: &LoginService,
    request: &Request,
) -> Vec<(&'static str, String)> {
    let allowed = &service.start_hints;
    let mut hints = Vec::new();
    if let Some(prompt) = request.query_param("prompt") {
        let passed = if allowed.allows(StartParameter::Prompt) {
            valid_prompt(&prompt)
        } else {
            (prompt == "select_account").then_some(prompt)
        };
        hints.extend(passed.map(|p| ("prompt", p)));
    }
    for (parameter, spaces_allowed) in [
        (StartParameter::LoginHint, true),
        (StartParameter::DomainHint, false),
    ] {
        let value = allowed
            .allows(parameter)
            .then(|| request.query_param(parameter.name()))
            .flatten()
            .filter(|v| valid_hint(v, spaces_allowed));
        hints.extend(value.map(|v| (parameter.name(), v)));
    }
    if allowed.allows(StartParameter::AcrValues) {
        let acr = request
            .query_param("acr_values")
            .filter(|v| valid_acr_values(v, &allowed.acr_values));
        hints.extend(acr.map(|v| ("acr_values", v)));
    }
    hints
}

/// `prompt` as OIDC defines it: known values, space-separated, each once, `none` alone.
fn valid_prompt(prompt: &str) -> Option<String> {
    let values: Vec<&str> = prompt.split(' ').collect();
    let known = values.iter().all(|v| PROMPTS.contains(v));
    let once = values
        .iter()
        .enumerate()
        .all(|(i, v)| !values[..i].contains(v));
    let none_alone = values.len() == 1 || !values.contains(&"none");
    (known && once && none_alone).then(|| prompt.to_string())
}

/// A hint: 1 to 256 bytes, no control characters (nor any space where `spaces_allowed` is
/// false); it is form-encoded into the URL, so `&`, `#` or `=` stay inside its value.
fn valid_hint(hint: &str, spaces_allowed: bool) -> bool {
    !hint.is_empty()
        && hint.len() <= MAX_HINT_BYTES
        && hint.trim() == hint
        && !hint
            .chars()
            .any(|c| c.is_control() || (c.is_whitespace() && (c != ' ' || !spaces_allowed)))
}

/// `acr_values`: space-separated, at most 8, each one the service lists.
fn valid_acr_values(value: &str, allowed: &[String]) -> bool {
    let values: Vec<&str> = value.split(' ').collect();
    values.len() <= MAX_ACR_VALUES && values.iter().all(|v| allowed.iter().any(|a| a == v))
}

/// The IdP's authorization URL with `hints` appended, form-encoded.
pub(crate) fn with_hints(authorization_url: String, hints: &[(&'static str, String)]) -> String {
    if hints.is_empty() {
        return authorization_url;
    }
    let Ok(mut url) = Url::parse(&authorization_url) else {
        return authorization_url;
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in hints {
            query.append_pair(name, value);
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_follows_oidc() {
        for good in ["none", "login", "consent select_account", "login consent"] {
            assert_eq!(valid_prompt(good).as_deref(), Some(good), "{good}");
        }
        for bad in [
            "",
            "none login",
            "login login",
            "Login",
            "login  consent",
            " login",
            "create",
            "login\nx",
        ] {
            assert_eq!(valid_prompt(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hints_are_printable_and_bounded() {
        assert!(valid_hint("alice@example.com", true));
        assert!(valid_hint("Ålice Ünicode", true));
        assert!(!valid_hint("Ålice Ünicode", false), "no space in a domain");
        assert!(valid_hint(&"a".repeat(256), true));
        for bad in ["", " a", "a ", "a\tb", "a\r\nb", "a\u{0}", "a\u{85}b"] {
            assert!(!valid_hint(bad, true), "{bad:?}");
        }
        assert!(!valid_hint(&"a".repeat(257), true));
    }

    #[test]
    fn acr_values_must_each_be_listed() {
        let allowed = vec!["urn:mfa".to_string(), "silver".to_string()];
        assert!(valid_acr_values("urn:mfa", &allowed));
        assert!(valid_acr_values("silver urn:mfa", &allowed));
        assert!(!valid_acr_values("urn:mfa gold", &allowed));
        assert!(!valid_acr_values("", &allowed));
        assert!(!valid_acr_values("urn:mfa  silver", &allowed));
    }

    #[test]
    fn hints_are_form_encoded_into_the_url() {
        let url = with_hints(
            "https://idp.example/auth?client_id=a".into(),
            &[("login_hint", "a&client_id=evil#x y".into())],
        );
        assert_eq!(
            url,
            "https://idp.example/auth?client_id=a&login_hint=a%26client_id%3Devil%23x+y"
        );
    }
}
