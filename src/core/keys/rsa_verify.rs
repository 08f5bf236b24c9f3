//! RSASSA-PKCS1-v1_5 signature checks (RS256/384/512) fast enough for Wasm.
//!
//! Wasm has a fast 32x32->64 multiply but no 64x64->128 one, so general big-integer crates
//! (64-bit limbs) spend most of a check emulating it: ~1 ms per RS256 check inside V8. Only
//! the public operation is needed here (s^e mod n with a small public e, on a public
//! signature), so constant time is not: this is Montgomery multiplication on 32-bit limbs,
//! with the key's constants computed once per JWK. The padding is never parsed: the whole
//! expected encoding is built and compared (RFC 8017 §8.2.2), with the DigestInfo prefixes
//! of RFC 8017 §9.2 (checked against the `rsa` crate's in the tests).

use sha2::{Digest, Sha256, Sha384, Sha512};

/// jwt-simple's bounds on RSA keys; ours are no looser.
const MIN_MODULUS_BITS: usize = 2048;
const MAX_MODULUS_BITS: usize = 4096;
const MAX_LIMBS: usize = MAX_MODULUS_BITS / 32;
const MAX_BYTES: usize = MAX_MODULUS_BITS / 8;

/// A number below the modulus, little-endian; only the key's first `limbs` are used.
type Limbs = [u32; MAX_LIMBS];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

/// DER of the DigestInfo before the hash (RFC 8017 §9.2, note 1).
pub const SHA256_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
pub const SHA384_PREFIX: [u8; 19] = [
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
pub const SHA512_PREFIX: [u8; 19] = [
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

impl HashAlg {
    /// The DigestInfo prefix, and the hash of `message` in `out` (its length returned).
    fn digest(self, message: &[u8], out: &mut [u8; 64]) -> (&'static [u8], usize) {
        let (prefix, hash): (&'static [u8], &[u8]) = match self {
            HashAlg::Sha256 => (&SHA256_PREFIX, &Sha256::digest(message)),
            HashAlg::Sha384 => (&SHA384_PREFIX, &Sha384::digest(message)),
            HashAlg::Sha512 => (&SHA512_PREFIX, &Sha512::digest(message)),
        };
        for (o, h) in out.iter_mut().zip(hash) {
            *o = *h;
        }
        (prefix, hash.len())
    }
}

/// An RSA public key ready for checks: the modulus in little-endian 32-bit limbs with its
/// Montgomery constants.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    n: Vec<u32>,
    /// Length of the modulus in bytes (`k` in RFC 8017).
    k: usize,
    /// -n^-1 mod 2^32.
    n0_inv: u32,
    /// R^2 mod n, R = 2^(32 * limbs): turns a number into Montgomery form.
    r2: Vec<u32>,
    e: u32,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey({} bits, e={})", self.k * 8, self.e)
    }
}

/// Big-endian bytes into little-endian limbs; `false` if they do not fit.
fn load_be(bytes: &[u8], out: &mut [u32]) -> bool {
    out.fill(0);
    for (i, &byte) in bytes.iter().rev().enumerate() {
        let Some(limb) = out.get_mut(i / 4) else {
            return false;
        };
        *limb |= u32::from(byte) << (8 * (i % 4));
    }
    true
}

/// Little-endian limbs as big-endian bytes, filling `out`.
fn store_be(limbs: &[u32], out: &mut [u8]) {
    for (i, byte) in out.iter_mut().rev().enumerate() {
        let limb = limbs.get(i / 4).copied().unwrap_or(0);
        *byte = (limb >> (8 * (i % 4))) as u8;
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

/// Whether `a >= b` (same length, little-endian).
fn at_least(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

/// `a -= b` (same length), wrapping.
fn subtract(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let v = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = v as u32;
        borrow = (v >> 63) & 1;
    }
}

/// `a = 2a mod n` for `a < n`.
fn double_mod(a: &mut [u32], n: &[u32]) {
    let mut carry = 0u32;
    for x in a.iter_mut() {
        let next = *x >> 31;
        *x = (*x << 1) | carry;
        carry = next;
    }
    if carry != 0 || at_least(a, n) {
        subtract(a, n);
    }
}

impl RsaPublicKey {
    /// A key from its big-endian modulus and exponent (a JWK's `n` and `e`); `None` for a
    /// modulus outside 2048-4096 bits or even, or an exponent that is even, below 3 or
    /// above 32 bits.
    pub fn from_be_bytes(n: &[u8], e: &[u8]) -> Option<RsaPublicKey> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let top = *n.first()?;
        let bits = (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize);
        let odd = n.last().is_some_and(|b| b & 1 == 1);
        if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits) || !odd || e.len() > 4 {
            return None;
        }
        let e = e.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        if e < 3 || e & 1 == 0 {
            return None;
        }
        let k = n.len();
        let mut limbs = vec![0u32; k.div_ceil(4)];
        if !load_be(n, &mut limbs) {
            return None;
        }
        let n0 = *limbs.first()?;
        // Newton's iteration doubles the correct low bits each step: 1 -> 32 in five.
        let mut inverse = 1u32;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inverse)));
        }
        let mut key = RsaPublicKey {
            r2: vec![0u32; limbs.len()],
            n: limbs,
            k,
            n0_inv: inverse.wrapping_neg(),
            e,
        };
        key.r2 = key.r_squared(bits)?;
        Some(key)
    }

    /// R^2 mod n, which is 2^(32 limbs) in Montgomery form: square-and-double from R mod n
    /// (Montgomery 1) costs a dozen products instead of thousands of doublings.
    fn r_squared(&self, bits: usize) -> Option<Vec<u32>> {
        let limbs = self.n.len();
        let log_r = 32 * limbs;
        // R mod n: 2^(bits-1) is below n (n is odd), doubled up to 2^(32 limbs).
        let mut x = vec![0u32; limbs];
        *x.get_mut((bits - 1) / 32)? = 1 << ((bits - 1) % 32);
        for _ in (bits - 1)..log_r {
            double_mod(&mut x, &self.n);
        }
        let mut square = vec![0u32; limbs];
        for bit in (0..usize::BITS - log_r.leading_zeros()).rev() {
            self.mont_mul(&mut square, &x, &x);
            x.copy_from_slice(&square);
            if (log_r >> bit) & 1 == 1 {
                double_mod(&mut x, &self.n);
            }
        }
        Some(x)
    }

    /// Modulus length in bytes.
    #[cfg(any(test, feature = "testing"))]
    pub fn size(&self) -> usize {
        self.k
    }

    /// `out = a * b / R mod n` for `a < n` (CIOS, the product and reduction rows fused so
    /// each limb of the running sum is loaded and stored once per limb of `b`).
    fn mont_mul(&self, out: &mut [u32], a: &[u32], b: &[u32]) {
        let n = self.n.as_slice();
        let mut buffer: Limbs = [0; MAX_LIMBS];
        let Some(t) = buffer.get_mut(..n.len()) else {
            return;
        };
        let (Some(&a0), Some(&n0)) = (a.first(), n.first()) else {
            return;
        };
        let (a0, n0) = (u64::from(a0), u64::from(n0));
        // t < 2n throughout, so what overflows the limbs is at most 1.
        let mut top = 0u64;
        for &bi in b {
            let bi = u64::from(bi);
            let mut slots = t.iter_mut();
            let Some(mut low) = slots.next() else {
                return;
            };
            let v = u64::from(*low) + a0 * bi;
            let m = u64::from((v as u32).wrapping_mul(self.n0_inv));
            // The low limb cancels by the choice of m; only its carry is kept.
            let mut product_carry = v >> 32;
            let mut reduce_carry = (u64::from(v as u32) + m * n0) >> 32;
            for (tj, (&aj, &nj)) in slots.zip(a.iter().skip(1).zip(n.iter().skip(1))) {
                let v = u64::from(*tj) + u64::from(aj) * bi + product_carry;
                product_carry = v >> 32;
                let w = u64::from(v as u32) + m * u64::from(nj) + reduce_carry;
                reduce_carry = w >> 32;
                *low = w as u32;
                low = tj;
            }
            let v = top + product_carry + reduce_carry;
            *low = v as u32;
            top = v >> 32;
        }
        if top != 0 || at_least(t, n) {
            subtract(t, n);
        }
        out.copy_from_slice(t);
    }

    /// `s^e mod n` into `out` (k big-endian bytes); `false` when `s` is not exactly k bytes
    /// or not below `n` (RSAVP1: "signature representative out of range").
    fn public_op_into(&self, signature: &[u8], out: &mut [u8]) -> bool {
        let limbs = self.n.len();
        let mut buffers: [Limbs; 4] = [[0; MAX_LIMBS]; 4];
        let [s, base, acc, square] = &mut buffers;
        let (Some(s), Some(base), Some(acc), Some(square)) = (
            s.get_mut(..limbs),
            base.get_mut(..limbs),
            acc.get_mut(..limbs),
            square.get_mut(..limbs),
        ) else {
            return false;
        };
        if signature.len() != self.k
            || out.len() != self.k
            || !load_be(signature, s)
            || at_least(s, &self.n)
        {
            return false;
        }
        self.mont_mul(base, s, &self.r2);
        acc.copy_from_slice(base);
        let bits = 32 - self.e.leading_zeros();
        for bit in (0..bits.saturating_sub(1)).rev() {
            self.mont_mul(square, acc, acc);
            if bit == 0 {
                // e is odd, so this is the last step: a factor of s outside Montgomery form
                // takes the result out of it too, sparing a conversion.
                self.mont_mul(acc, square, s);
            } else if (self.e >> bit) & 1 == 1 {
                self.mont_mul(acc, square, base);
            } else {
                acc.copy_from_slice(square);
            }
        }
        store_be(acc, out);
        true
    }

    /// `s^e mod n` as k big-endian bytes; `None` when `s` is not k bytes or not below `n`.
    #[cfg(any(test, feature = "testing"))]
    pub fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; self.k];
        self.public_op_into(signature, &mut out).then_some(out)
    }

    /// Whether `signature` is this key's RSASSA-PKCS1-v1_5 signature of `message`.
    pub fn verify_pkcs1v15(&self, hash: HashAlg, message: &[u8], signature: &[u8]) -> bool {
        let mut em = [0u8; MAX_BYTES];
        let Some(em) = em.get_mut(..self.k) else {
            return false;
        };
        if !self.public_op_into(signature, em) {
            return false;
        }
        let mut digest = [0u8; 64];
        let (prefix, hash_len) = hash.digest(message, &mut digest);
        // EM' = 0x00 0x01 PS 0x00 DigestInfo, PS at least eight 0xff (RFC 8017 §9.2 4-5).
        let Some(padding) = self.k.checked_sub(3 + prefix.len() + hash_len) else {
            return false;
        };
        if padding < 8 {
            return false;
        }
        let expected = [0x00, 0x01]
            .iter()
            .chain(std::iter::repeat_n(&0xff, padding))
            .chain(&[0x00])
            .chain(prefix)
            .chain(digest.iter().take(hash_len));
        em.iter().eq(expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_outside_the_accepted_shapes_are_refused() {
        let mut n = vec![0xffu8; 256];
        assert!(RsaPublicKey::from_be_bytes(&n, &[1, 0, 1]).is_some());
        assert!(
            RsaPublicKey::from_be_bytes(&n, &[1, 0, 0]).is_none(),
            "even e"
        );
        assert!(RsaPublicKey::from_be_bytes(&n, &[1]).is_none(), "e = 1");
        assert!(RsaPublicKey::from_be_bytes(&n, &[]).is_none(), "e = 0");
        assert!(
            RsaPublicKey::from_be_bytes(&n, &[1, 0, 0, 0, 1]).is_none(),
            "e > 32 bits"
        );
        assert!(
            RsaPublicKey::from_be_bytes(&n[1..], &[3]).is_none(),
            "2040 bits"
        );
        assert!(
            RsaPublicKey::from_be_bytes(&vec![0xff; 513], &[3]).is_none(),
            "4104 bits"
        );
        assert!(RsaPublicKey::from_be_bytes(&[], &[3]).is_none(), "n = 0");
        n[255] = 0xfe;
        assert!(RsaPublicKey::from_be_bytes(&n, &[3]).is_none(), "even n");
        let mut padded = vec![0u8; 3];
        padded.extend_from_slice(&[0xffu8; 256]);
        assert!(
            RsaPublicKey::from_be_bytes(&padded, &[0, 1, 0, 1]).is_some(),
            "leading zeros are not length"
        );
        let mut smallest = vec![0u8; 256];
        smallest[0] = 0x80;
        smallest[255] = 1;
        assert!(
            RsaPublicKey::from_be_bytes(&smallest, &[3]).is_some(),
            "2048 bits"
        );
    }

    #[test]
    fn limbs_and_bytes_round_trip() {
        let bytes: Vec<u8> = (1..=13).collect();
        let mut limbs = [0u32; 4];
        assert!(load_be(&bytes, &mut limbs));
        assert_eq!(limbs[0], 0x0a0b0c0d);
        let mut back = [0u8; 13];
        store_be(&limbs, &mut back);
        assert_eq!(back.as_slice(), bytes.as_slice());
        assert!(!load_be(&bytes, &mut [0u32; 3]));
    }

    /// R^2 mod n from square-and-double against doubling 1 all the way (the plain way).
    #[test]
    fn r_squared_equals_repeated_doubling() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for bytes in [256usize, 257, 300, 384, 511, 512] {
            let mut n: Vec<u8> = (0..bytes)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            n[0] |= 0x80;
            n[bytes - 1] |= 1;
            let key = RsaPublicKey::from_be_bytes(&n, &[1, 0, 1]).unwrap();
            let mut plain = vec![0u32; key.n.len()];
            plain[0] = 1;
            for _ in 0..64 * key.n.len() {
                double_mod(&mut plain, &key.n);
            }
            assert_eq!(key.r2, plain, "{bytes} bytes");
        }
    }
}
