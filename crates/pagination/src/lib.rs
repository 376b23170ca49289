//! Pagination as AIP-158 describes it: `page_size` (0 means the default, too large is capped,
//! negative is an error) and opaque `page_token`s.
//!
//! A token carries the sort key of the last item returned (keyset pagination: stable under
//! concurrent inserts and deletes, and each page costs the same however deep) plus a
//! fingerprint of the request's filter, so that a token cannot be replayed against a
//! different query. Tokens are not secret: the caller's identity always comes from their
//! credential, so a hand-made token can only move through the caller's own data.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

const TOKEN_VERSION: u8 = 1;
const MAX_KEY_LEN: usize = 64;

/// A validated page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must not be negative")]
pub struct NegativePageSize;

impl PageSize {
    pub fn parse(requested: i32) -> Result<Self, NegativePageSize> {
        match u32::try_from(requested) {
            Err(_) => Err(NegativePageSize),
            Ok(0) => Ok(Self(DEFAULT_PAGE_SIZE)),
            Ok(size) => Ok(Self(size.min(MAX_PAGE_SIZE))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageTokenError {
    #[error("is not a page token this service issued")]
    Malformed,
    #[error("was issued for a different query: keep the other fields of the request unchanged")]
    FilterMismatch,
}

/// Encodes the sort key of the last item of a page, bound to the request's `filter` (a
/// canonical rendering of every request field that selects items).
pub fn encode_token(last_key: &[u8], filter: &str) -> String {
    let key_len = last_key.len().min(MAX_KEY_LEN);
    let mut raw = Vec::with_capacity(2 + key_len + 8);
    raw.push(TOKEN_VERSION);
    raw.push(key_len as u8);
    raw.extend_from_slice(&last_key[..key_len]);
    raw.extend_from_slice(&fingerprint(filter).to_be_bytes());
    URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes a token from [`encode_token`]; an empty token means the first page (`None`).
pub fn decode_token(token: &str, filter: &str) -> Result<Option<Vec<u8>>, PageTokenError> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > 4 * MAX_KEY_LEN {
        return Err(PageTokenError::Malformed);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| PageTokenError::Malformed)?;
    let [version, key_len, rest @ ..] = raw.as_slice() else {
        return Err(PageTokenError::Malformed);
    };
    let key_len = usize::from(*key_len);
    if *version != TOKEN_VERSION || rest.len() != key_len + 8 {
        return Err(PageTokenError::Malformed);
    }
    let (key, filter_fingerprint) = rest.split_at(key_len);
    let filter_fingerprint = u64::from_be_bytes(
        filter_fingerprint
            .try_into()
            .map_err(|_| PageTokenError::Malformed)?,
    );
    if filter_fingerprint != fingerprint(filter) {
        return Err(PageTokenError::FilterMismatch);
    }
    Ok(Some(key.to_vec()))
}

/// FNV-1a: stable across processes, versions and replicas (unlike `DefaultHasher`).
fn fingerprint(filter: &str) -> u64 {
    filter.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_defaults_caps_and_rejects_negative() {
        assert_eq!(PageSize::parse(0).map(PageSize::get), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(PageSize::parse(7).map(PageSize::get), Ok(7));
        assert_eq!(PageSize::parse(5000).map(PageSize::get), Ok(MAX_PAGE_SIZE));
        assert_eq!(PageSize::parse(-1), Err(NegativePageSize));
    }

    #[test]
    fn token_round_trips_with_the_same_filter() {
        let token = encode_token(&[1, 2, 3, 4], "tag=work");
        assert_eq!(decode_token(&token, "tag=work"), Ok(Some(vec![1, 2, 3, 4])));
    }

    #[test]
    fn token_from_another_query_is_refused() {
        let token = encode_token(&[1, 2, 3, 4], "tag=work");
        assert_eq!(
            decode_token(&token, "tag=home"),
            Err(PageTokenError::FilterMismatch)
        );
    }

    #[test]
    fn empty_token_is_the_first_page() {
        assert_eq!(decode_token("", ""), Ok(None));
    }

    #[test]
    fn garbage_is_malformed() {
        for token in ["!!!", "AAAA", "bm90IGEgdG9rZW4", &"A".repeat(1000)] {
            assert_eq!(
                decode_token(token, ""),
                Err(PageTokenError::Malformed),
                "{token}"
            );
        }
    }
}
