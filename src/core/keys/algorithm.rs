//! The signature algorithms we accept, and which key types each may be used with.

use std::fmt;

/// Asymmetric JWS algorithms only: `none` and HMAC can never be configured or accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether a JWK of this `kty` (and `crv`, for EC and OKP keys) can verify this algorithm.
    pub(crate) fn fits_key(self, kty: &str, crv: Option<&str>) -> bool {
        match self {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => kty == "RSA",
            Algorithm::ES256 => kty == "EC" && crv == Some("P-256"),
            Algorithm::ES384 => kty == "EC" && crv == Some("P-384"),
            Algorithm::EdDSA => kty == "OKP" && crv == Some("Ed25519"),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unsafe_algorithms_do_not_exist() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
        }
        for unsafe_alg in ["none", "HS256", "HS384", "HS512", "rs256", ""] {
            assert_eq!(Algorithm::from_name(unsafe_alg), None);
        }
    }

    #[test]
    fn algorithms_only_fit_their_key_type() {
        assert!(Algorithm::PS384.fits_key("RSA", None));
        assert!(!Algorithm::RS256.fits_key("EC", Some("P-256")));
        assert!(Algorithm::ES256.fits_key("EC", Some("P-256")));
        assert!(!Algorithm::ES256.fits_key("EC", Some("P-384")));
        assert!(!Algorithm::ES384.fits_key("RSA", None));
        assert!(Algorithm::EdDSA.fits_key("OKP", Some("Ed25519")));
        assert!(!Algorithm::EdDSA.fits_key("OKP", Some("X25519")));
    }
}
