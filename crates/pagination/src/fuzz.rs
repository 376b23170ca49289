//! Fuzz targets and properties for page tokens. Each runs as an ordinary test (its committed
//! corpus, then random inputs for a second) and under libFuzzer with `cargo bolero test`
//! (docs/fuzzing.md).

use bolero::check;

use super::*;

/// Whatever a client sends as `page_token`, decoding never panics, and a token it accepts is
/// one this crate could have issued: re-encoding its key gives a token that decodes the same.
#[test]
fn page_token_decode() {
    check!().for_each(|input: &[u8]| {
        // The filter is the prefix up to the first NUL (a request's canonical fields), the
        // token the rest: both halves come from the client in a real request.
        let (filter, token) = match input.iter().position(|&byte| byte == 0) {
            Some(at) => (&input[..at], &input[at + 1..]),
            None => (&[][..], input),
        };
        let filter = String::from_utf8_lossy(filter);
        let token = String::from_utf8_lossy(token);
        match decode_token(&token, &filter) {
            Ok(None) => assert!(token.is_empty(), "only the empty token is the first page"),
            Ok(Some(key)) => {
                assert!(key.len() <= MAX_KEY_LEN);
                let again = encode_token(&key, &filter);
                assert_eq!(decode_token(&again, &filter), Ok(Some(key)));
            }
            Err(PageTokenError::Malformed | PageTokenError::FilterMismatch) => {}
        }
    });
}

/// A token round-trips under the filter it was issued for, and is refused under any other:
/// the services put the caller in the filter, so a token issued to one caller is refused for
/// another.
#[test]
fn page_token_round_trip_is_bound_to_the_query() {
    check!()
        .with_type::<(Vec<u8>, String, String)>()
        .for_each(|(key, caller, other_caller)| {
            let key = &key[..key.len().min(MAX_KEY_LEN)];
            let filter = format!("owner={caller};tag=");
            let token = encode_token(key, &filter);
            assert_eq!(decode_token(&token, &filter), Ok(Some(key.to_vec())));
            if caller != other_caller {
                assert_eq!(
                    decode_token(&token, &format!("owner={other_caller};tag=")),
                    Err(PageTokenError::FilterMismatch)
                );
            }
        });
}

/// Every page size a client can send is either refused (negative) or within the bounds.
#[test]
fn page_size_is_within_bounds() {
    check!()
        .with_type::<i32>()
        .for_each(|&requested| match PageSize::parse(requested) {
            Ok(size) => {
                assert!(requested >= 0);
                assert!((1..=MAX_PAGE_SIZE).contains(&size.get()));
            }
            Err(NegativePageSize) => assert!(requested < 0),
        });
}
