//! A login service's `start_parameters` and `acr_values`: which sign-in hints
//! `/oauth2/start` may pass on to the IdP's authorization endpoint.

use crate::core::config::reader::{ObjectReader, Problems};

/// The query parameters `/oauth2/start` may pass on, as OIDC Core 3.1.2.1 and Azure AD name
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartParameter {
    Prompt,
    LoginHint,
    DomainHint,
    AcrValues,
}

impl StartParameter {
    const ALL: [StartParameter; 4] = [
        StartParameter::Prompt,
        StartParameter::LoginHint,
        StartParameter::DomainHint,
        StartParameter::AcrValues,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            StartParameter::Prompt => "prompt",
            StartParameter::LoginHint => "login_hint",
            StartParameter::DomainHint => "domain_hint",
            StartParameter::AcrValues => "acr_values",
        }
    }
}

/// What `/oauth2/start` may pass on; by default nothing (but `prompt=select_account`, which
/// is "switch account" and always passed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StartHints {
    pub(crate) allowed: Vec<StartParameter>,
    /// The `acr_values` a start may ask for.
    pub(crate) acr_values: Vec<String>,
}

impl StartHints {
    pub(crate) fn allows(&self, parameter: StartParameter) -> bool {
        self.allowed.contains(&parameter)
    }
}

/// Longest ACR value accepted in the configuration.
const MAX_ACR_BYTES: usize = 256;

/// `start_parameters` and `acr_values`; `acr_values` goes with `"acr_values"` in
/// `start_parameters`, and each value is one token of visible ASCII.
pub(crate) fn read_start_hints(r: &mut ObjectReader, problems: &mut Problems) -> StartHints {
    let params_path = r.field_path("start_parameters");
    let acr_path = r.field_path("acr_values");
    let mut allowed = Vec::new();
    for (i, name) in r
        .string_list("start_parameters", problems)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match StartParameter::ALL.into_iter().find(|p| p.name() == name) {
            Some(p) if !allowed.contains(&p) => allowed.push(p),
            Some(_) => problems.add(&format!("{params_path}[{i}]"), "is listed twice"),
            None => problems.add(
                &format!("{params_path}[{i}]"),
                format!(
                    "\"{name}\" is not one of \"prompt\", \"login_hint\", \"domain_hint\", \"acr_values\""
                ),
            ),
        }
    }
    let acr_values = r.string_list("acr_values", problems).unwrap_or_default();
    for (i, value) in acr_values.iter().enumerate() {
        let token = !value.is_empty()
            && value.len() <= MAX_ACR_BYTES
            && value.bytes().all(|b| b.is_ascii_graphic());
        if !token {
            problems.add(
                &format!("{acr_path}[{i}]"),
                "must be 1 to 256 visible ASCII characters, no spaces",
            );
        }
    }
    let acr_allowed = allowed.contains(&StartParameter::AcrValues);
    if acr_allowed && acr_values.is_empty() {
        problems.add(
            &acr_path,
            "must list the values a start may ask for, since start_parameters has \"acr_values\"",
        );
    }
    if !acr_allowed && !acr_values.is_empty() {
        problems.add(
            &acr_path,
            "needs \"acr_values\" in start_parameters: without it none is passed",
        );
    }
    StartHints {
        allowed,
        acr_values,
    }
}
