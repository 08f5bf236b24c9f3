//! Our RSA public operation and PKCS#1 v1.5 check against independent implementations: the
//! same numbers as num-bigint-dig (through the `rsa` crate) on random inputs, and the same
//! verdict as the `rsa` crate and jwt-simple on valid signatures and on every malformed
//! encoding and out-of-range signature we could think of.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::{
    NoCustomClaims, RS256PublicKey, RS384PublicKey, RS512PublicKey, RSAPublicKeyLike,
};
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey};
use sha2::{Digest, Sha256, Sha384, Sha512};
use wasm_iap::core::keys::rsa_verify::{
    HashAlg, RsaPublicKey, SHA256_PREFIX, SHA384_PREFIX, SHA512_PREFIX,
};

const HASHES: [HashAlg; 3] = [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512];

/// A deterministic generator, so a failing case can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn odd_u32(&mut self) -> u32 {
        (self.next() as u32) | 1
    }
}

/// Keys with e = 65537, generated once per test binary (slow even optimised).
fn keys() -> &'static [RsaPrivateKey] {
    static KEYS: OnceLock<Vec<RsaPrivateKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rsa::rand_core::OsRng;
        [2048, 3072, 4096]
            .iter()
            .map(|&bits| RsaPrivateKey::new(&mut rng, bits).unwrap())
            .collect()
    })
}

fn ours(key: &RsaPrivateKey) -> RsaPublicKey {
    RsaPublicKey::from_be_bytes(&key.n().to_bytes_be(), &key.e().to_bytes_be()).unwrap()
}

fn padded(value: &BigUint, k: usize) -> Vec<u8> {
    let bytes = value.to_bytes_be();
    let mut out = vec![0u8; k - bytes.len()];
    out.extend_from_slice(&bytes);
    out
}

/// Signs `em` with the raw private operation: any encoding, well-formed or not.
fn raw_sign(key: &RsaPrivateKey, em: &[u8]) -> Vec<u8> {
    let m = BigUint::from_bytes_be(em);
    padded(&m.modpow(key.d(), key.n()), key.size())
}

#[test]
fn the_digest_info_prefixes_are_the_rsa_crates() {
    for hash in HASHES {
        assert_eq!(&*scheme(hash).prefix, prefix(hash), "{hash:?}");
    }
}

/// Our s^e mod n against num-bigint-dig's modpow on one modulus, for bases including the
/// edges 0, 1, 2, n-1, n-2 and random ones, for each exponent.
fn modexp_agrees(n_bytes: &[u8], exponents: &[u32], random_bases: usize, rng: &mut Lcg) {
    let n = BigUint::from_bytes_be(n_bytes);
    let k = n_bytes.len();
    let one = BigUint::from(1u32);
    let mut bases = vec![
        BigUint::from(0u32),
        one.clone(),
        BigUint::from(2u32),
        &n - &one,
        &n - BigUint::from(2u32),
    ];
    bases.extend((0..random_bases).map(|_| BigUint::from_bytes_be(&rng.bytes(k)) % &n));
    for &e in exponents {
        let key = RsaPublicKey::from_be_bytes(n_bytes, &e.to_be_bytes())
            .unwrap_or_else(|| panic!("{k}-byte modulus refused"));
        for s in &bases {
            let expected = padded(&s.modpow(&BigUint::from(e), &n), k);
            assert_eq!(
                key.public_op(&padded(s, k)),
                Some(expected),
                "n = {n:x}, e = {e}, s = {s:x}"
            );
        }
        assert_eq!(key.public_op(&padded(&n, k)), None, "s = n is out of range");
        assert_eq!(key.public_op(&vec![0xff; k]), None, "s > n is out of range");
        assert_eq!(key.public_op(&padded(&one, k + 1)), None, "k+1 bytes");
        assert_eq!(key.public_op(&padded(&one, k)[1..]), None, "k-1 bytes");
    }
}

#[test]
fn the_public_operation_equals_an_independent_modpow_on_real_moduli() {
    let mut rng = Lcg(0x5eed);
    for key in keys() {
        let e = rng.odd_u32();
        modexp_agrees(&key.n().to_bytes_be(), &[65537, 3, e], 25, &mut rng);
    }
}

#[test]
fn the_public_operation_equals_an_independent_modpow_on_odd_moduli_of_every_shape() {
    let mut rng = Lcg(7);
    // 257..259 bytes leave the top 32-bit limb nearly empty; 256, 384, 512 fill it.
    for bytes in [256usize, 257, 258, 259, 300, 384, 511, 512] {
        for round in 0..6 {
            let mut n = rng.bytes(bytes);
            match round {
                // The smallest and largest moduli of this length.
                0 => {
                    n.fill(0);
                    n[0] = 0x80;
                }
                1 => n.fill(0xff),
                2 => n[0] = 0x01,
                _ => n[0] |= 0x80,
            }
            if bytes == 256 {
                n[0] |= 0x80;
            }
            *n.last_mut().unwrap() |= 1;
            let exponents = [3, 65537, rng.odd_u32(), u32::MAX];
            modexp_agrees(&n, &exponents, 4, &mut rng);
        }
    }
}

fn digest(hash: HashAlg, message: &[u8]) -> Vec<u8> {
    match hash {
        HashAlg::Sha256 => Sha256::digest(message).to_vec(),
        HashAlg::Sha384 => Sha384::digest(message).to_vec(),
        HashAlg::Sha512 => Sha512::digest(message).to_vec(),
    }
}

fn prefix(hash: HashAlg) -> &'static [u8] {
    match hash {
        HashAlg::Sha256 => &SHA256_PREFIX,
        HashAlg::Sha384 => &SHA384_PREFIX,
        HashAlg::Sha512 => &SHA512_PREFIX,
    }
}

fn scheme(hash: HashAlg) -> Pkcs1v15Sign {
    use rsa::sha2 as sha2_010;
    match hash {
        HashAlg::Sha256 => Pkcs1v15Sign::new::<sha2_010::Sha256>(),
        HashAlg::Sha384 => Pkcs1v15Sign::new::<sha2_010::Sha384>(),
        HashAlg::Sha512 => Pkcs1v15Sign::new::<sha2_010::Sha512>(),
    }
}

fn jwt_alg(hash: HashAlg) -> &'static str {
    match hash {
        HashAlg::Sha256 => "RS256",
        HashAlg::Sha384 => "RS384",
        HashAlg::Sha512 => "RS512",
    }
}

/// A JWS signing input for `hash`'s algorithm, so jwt-simple can judge it too.
fn signing_input(hash: HashAlg) -> String {
    let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, jwt_alg(hash));
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(r#"{"sub":"alice"}"#)
    )
}

/// The verdicts of ours, the `rsa` crate and jwt-simple on one signature of `message`.
struct Judges {
    ours: RsaPublicKey,
    rsa: rsa::RsaPublicKey,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl Judges {
    fn new(key: &RsaPrivateKey) -> Judges {
        Judges {
            ours: ours(key),
            rsa: key.to_public_key(),
            n: key.n().to_bytes_be(),
            e: key.e().to_bytes_be(),
        }
    }

    fn rsa(&self, hash: HashAlg, message: &[u8], signature: &[u8]) -> bool {
        let hashed = digest(hash, message);
        self.rsa.verify(scheme(hash), &hashed, signature).is_ok()
    }

    fn jwt_simple(&self, hash: HashAlg, message: &str, signature: &[u8]) -> bool {
        let token = format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature));
        let (n, e) = (&self.n, &self.e);
        match hash {
            HashAlg::Sha256 => RS256PublicKey::from_components(n, e)
                .unwrap()
                .verify_token::<NoCustomClaims>(&token, None)
                .is_ok(),
            HashAlg::Sha384 => RS384PublicKey::from_components(n, e)
                .unwrap()
                .verify_token::<NoCustomClaims>(&token, None)
                .is_ok(),
            HashAlg::Sha512 => RS512PublicKey::from_components(n, e)
                .unwrap()
                .verify_token::<NoCustomClaims>(&token, None)
                .is_ok(),
        }
    }

    /// Asserts the three agree, and returns the verdict.
    fn agree(&self, hash: HashAlg, message: &str, signature: &[u8], what: &str) -> bool {
        let ours = self
            .ours
            .verify_pkcs1v15(hash, message.as_bytes(), signature);
        let rsa = self.rsa(hash, message.as_bytes(), signature);
        let jwt = self.jwt_simple(hash, message, signature);
        let k = self.ours.size();
        assert_eq!(ours, rsa, "ours vs rsa: {what}, {k} bytes, {hash:?}");
        assert_eq!(ours, jwt, "ours vs jwt-simple: {what}, {k} bytes, {hash:?}");
        ours
    }
}

/// A well-formed encoding (RFC 8017 §9.2) of `message` in `k` bytes.
fn encoding(k: usize, hash: HashAlg, message: &[u8]) -> Vec<u8> {
    let mut t = prefix(hash).to_vec();
    t.extend_from_slice(&digest(hash, message));
    with_padding(k, &t)
}

/// 0x00 0x01 0xff.. 0x00 `t`, as long as `k`.
fn with_padding(k: usize, t: &[u8]) -> Vec<u8> {
    let mut em = vec![0x00, 0x01];
    em.resize(k - t.len() - 1, 0xff);
    em.push(0x00);
    em.extend_from_slice(t);
    em
}

/// The malformed encodings, each named: what a forger or a broken signer would produce.
fn malformed(k: usize, hash: HashAlg, message: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let good = encoding(k, hash, message);
    let hashed = digest(hash, message);
    let t = [prefix(hash), &hashed].concat();
    let separator = k - t.len() - 1;
    let mut cases = Vec::new();
    let mut em = good.clone();
    em[1] = 0x02;
    cases.push(("block type 2", em));
    let mut em = good.clone();
    em[1] = 0x00;
    cases.push(("block type 0", em));
    let mut em = good.clone();
    em[0] = 0x01;
    cases.push(("no leading zero", em));
    let mut em = good.clone();
    em[5] = 0xfe;
    cases.push(("a padding byte not ff", em));
    let mut em = good.clone();
    em[separator - 1] = 0x00;
    cases.push(("a padding byte zero, right before the separator", em));
    let mut em = good.clone();
    em[separator] = 0xff;
    cases.push(("no zero separator", em));
    // Seven bytes of padding, then the DigestInfo, then zeros up to k.
    let mut em = vec![0x00, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
    em.extend_from_slice(&t);
    em.resize(k, 0x00);
    cases.push(("short padding, zeros after the hash", em));
    // Bleichenbacher 2006 (e = 3): minimal padding, hash, then attacker-chosen garbage.
    let mut em = vec![0x00, 0x01, 0xff, 0x00];
    em.extend_from_slice(&t);
    let mut rng = Lcg(2006);
    em.extend(rng.bytes(k - em.len()));
    cases.push(("garbage after the hash", em));
    cases.push((
        "DigestInfo then one garbage byte",
        with_padding(k, &[&t[..], &[0x42]].concat()),
    ));
    cases.push((
        "hash truncated by one byte",
        with_padding(k, &t[..t.len() - 1]),
    ));
    cases.push(("no hash at all", with_padding(k, prefix(hash))));
    cases.push(("a bare hash, no DigestInfo", with_padding(k, &hashed)));
    let wrong_prefix: &[u8] = match hash {
        HashAlg::Sha256 => &SHA384_PREFIX,
        _ => &SHA256_PREFIX,
    };
    cases.push((
        "another hash's DigestInfo",
        with_padding(k, &[wrong_prefix, &hashed].concat()),
    ));
    // SHA-1's DigestInfo with the hash cut to its length.
    let sha1_prefix = [
        0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
    ];
    cases.push((
        "SHA-1 DigestInfo",
        with_padding(k, &[&sha1_prefix[..], &hashed[..20]].concat()),
    ));
    cases.push((
        "the hash of another message",
        encoding(k, hash, b"another message"),
    ));
    let mut em = good.clone();
    em[k - 1] ^= 1;
    cases.push(("one bit of the hash flipped", em));
    // DigestInfo without the NULL parameters (a DER variant some signers emit).
    let mut no_null = prefix(hash).to_vec();
    no_null.drain(15..17);
    no_null[1] -= 2;
    no_null[3] -= 2;
    cases.push((
        "DigestInfo without NULL parameters",
        with_padding(k, &[&no_null[..], &hashed].concat()),
    ));
    // The DigestInfo's outer length off by one, hash unchanged.
    let mut em = good.clone();
    em[separator + 2] += 1;
    cases.push(("DigestInfo length off by one", em));
    cases.push(("all zero", vec![0u8; k]));
    cases
}

#[test]
fn verdicts_match_the_rsa_crate_and_jwt_simple_on_valid_and_malformed_signatures() {
    for key in keys() {
        let judges = Judges::new(key);
        let k = key.size();
        for hash in HASHES {
            let message = signing_input(hash);
            let by_rsa = key.sign(scheme(hash), &digest(hash, message.as_bytes()));
            assert!(judges.agree(hash, &message, &by_rsa.unwrap(), "signed by rsa"));
            let valid = raw_sign(key, &encoding(k, hash, message.as_bytes()));
            assert!(judges.agree(hash, &message, &valid, "our encoding, raw-signed"));
            let other = signing_input(if hash == HashAlg::Sha256 {
                HashAlg::Sha384
            } else {
                HashAlg::Sha256
            });
            assert!(!judges.ours.verify_pkcs1v15(hash, other.as_bytes(), &valid));
            for (what, em) in malformed(k, hash, message.as_bytes()) {
                assert_eq!(em.len(), k, "{what}");
                let signature = raw_sign(key, &em);
                assert!(!judges.agree(hash, &message, &signature, what), "{what}");
            }
            let mut flipped = valid.clone();
            flipped[k / 2] ^= 0x10;
            let mut longer = vec![0u8];
            longer.extend_from_slice(&valid);
            let n = BigUint::from_bytes_be(&judges.n);
            let plus_n = BigUint::from_bytes_be(&valid) + &n;
            let mut one = vec![0u8; k];
            one[k - 1] = 1;
            let mut out_of_range = vec![
                ("one signature bit flipped", flipped),
                ("k-1 bytes", valid[1..].to_vec()),
                ("k+1 bytes, leading zero", longer),
                ("s = n", padded(&n, k)),
                ("s = n + 1", padded(&(&n + 1u32), k)),
                ("s = 2^8k - 1", vec![0xff; k]),
                ("s = 0", vec![0u8; k]),
                ("s = 1", one),
                ("empty", Vec::new()),
            ];
            // s + n has the same s^e mod n: only the range check refuses it.
            if plus_n.bits() <= 8 * k {
                out_of_range.push(("valid s + n", padded(&plus_n, k)));
            }
            for (what, signature) in out_of_range {
                assert!(!judges.agree(hash, &message, &signature, what), "{what}");
            }
        }
    }
}

/// Bleichenbacher's 2006 forgery for e = 3, computed without the private key: the cube
/// root of 00 01 ff 00 DigestInfo followed by garbage. A verifier that parses the padding and
/// ignores what follows the hash accepts it.
#[test]
fn a_bleichenbacher_e3_forgery_is_refused() {
    let mut rng = rsa::rand_core::OsRng;
    let key = RsaPrivateKey::new_with_exp(&mut rng, 2048, &BigUint::from(3u32)).unwrap();
    let ours = ours(&key);
    let public = key.to_public_key();
    let k = key.size();
    let message = signing_input(HashAlg::Sha256);
    let hashed = digest(HashAlg::Sha256, message.as_bytes());
    let mut em = vec![0x00, 0x01, 0xff, 0x00];
    em.extend_from_slice(&SHA256_PREFIX);
    em.extend_from_slice(&hashed);
    let fixed = em.len();
    em.resize(k, 0x00);
    let forged = BigUint::from_bytes_be(&em).cbrt() + 1u32;
    let cube = padded(&(&forged * &forged * &forged), k);
    assert_eq!(
        cube[..fixed],
        em[..fixed],
        "the forgery has the right prefix"
    );
    let signature = padded(&forged, k);
    assert!(!ours.verify_pkcs1v15(HashAlg::Sha256, message.as_bytes(), &signature));
    let theirs = public.verify(scheme(HashAlg::Sha256), &hashed, &signature);
    assert!(theirs.is_err());
    // The same key does accept a real signature.
    let real = raw_sign(&key, &encoding(k, HashAlg::Sha256, message.as_bytes()));
    assert!(ours.verify_pkcs1v15(HashAlg::Sha256, message.as_bytes(), &real));
}
