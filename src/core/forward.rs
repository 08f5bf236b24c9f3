//! What happens to a request that goes upstream: header edits, and cookies for its response.

/// Header edits for a request that goes upstream, and cookies for its response.
#[derive(Default, PartialEq, Eq)]
pub struct Forward {
    pub set_headers: Vec<(String, String)>,
    /// Added beside any of the same name (one `Impersonate-Group` per group).
    pub add_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
    pub response_cookies: Vec<String>,
    /// Which of `set_headers` is the signed identity assertion (a check answers with it).
    pub(crate) assertion_header: Option<String>,
}

impl Forward {
    /// Whether a request to the apiserver asks it to act as someone: `Impersonate-User` set
    /// and the client's `Authorization` removed, not set. Anything else would run as the
    /// proxy's own certificate identity.
    pub(crate) fn impersonates(&self) -> bool {
        let user = self
            .set_headers
            .iter()
            .any(|(n, v)| n == "impersonate-user" && !v.trim().is_empty() && v.trim() == v);
        let authorization_removed = self.remove_headers.iter().any(|n| n == "authorization")
            && !self
                .set_headers
                .iter()
                .chain(&self.add_headers)
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        user && authorization_removed
    }
}

/// Values hold cookies and sessions: printed as names only.
impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: Vec<&str> = self.set_headers.iter().map(|(n, _)| n.as_str()).collect();
        let added: Vec<&str> = self.add_headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Forward")
            .field("set_headers", &set)
            .field("add_headers", &added)
            .field("remove_headers", &self.remove_headers)
            .field("response_cookies", &self.response_cookies.len())
            .finish()
    }
}
