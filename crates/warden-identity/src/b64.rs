//! Strict base64url (RFC 4648 §5, no padding) as JWS requires (RFC 7515 §2).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::IdentityError;

/// Encodes without padding.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes, rejecting padding, the standard alphabet (`+`, `/`), whitespace
/// and non-canonical encodings (non-zero trailing bits), so each byte string
/// has exactly one accepted text form.
pub(crate) fn decode(text: &str, what: &str) -> Result<Vec<u8>, IdentityError> {
    URL_SAFE_NO_PAD.decode(text).map_err(|e| {
        IdentityError::Malformed(format!("{what}: not canonical unpadded base64url: {e}"))
    })
}

/// Decodes exactly `N` bytes, without allocating (session credentials are
/// decoded on every call).
pub(crate) fn decode_array<const N: usize>(
    text: &str,
    what: &str,
) -> Result<[u8; N], IdentityError> {
    // Unpadded base64 of N bytes is exactly ceil(4N/3) characters.
    if text.len() != (4 * N).div_ceil(3) {
        return Err(IdentityError::Malformed(format!(
            "{what}: expected {N} bytes"
        )));
    }
    let mut out = [0u8; N];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
        Ok(n) if n == N => Ok(out),
        Ok(_) => Err(IdentityError::Malformed(format!(
            "{what}: expected {N} bytes"
        ))),
        Err(e) => Err(IdentityError::Malformed(format!(
            "{what}: not canonical unpadded base64url: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn strict_forms() {
        assert_eq!(decode("AQID", "t").unwrap(), vec![1, 2, 3]);
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert!(decode("AQ==", "t").is_err(), "padding");
        assert!(decode("+/8", "t").is_err(), "standard alphabet");
        assert!(decode("AQ", "t").is_ok());
        assert!(decode("AR", "t").is_err(), "non-zero trailing bits");
        assert!(decode("AQ I", "t").is_err(), "whitespace");
        assert!(decode("A", "t").is_err(), "impossible length");
        assert!(decode_array::<2>("AQID", "t").is_err());
        assert_eq!(decode_array::<3>("AQID", "t").unwrap(), [1, 2, 3]);
        assert_eq!(decode_array::<2>("AQI", "t").unwrap(), [1, 2]);
        assert!(
            decode_array::<2>("AQJ", "t").is_err(),
            "non-zero trailing bits"
        );
        assert!(decode_array::<1>("AQ=", "t").is_err());
    }
}
