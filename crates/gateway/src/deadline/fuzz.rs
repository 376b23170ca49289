//! Fuzz target and property for the gateway's deadline headers. They run as ordinary tests
//! (the committed corpus, then random inputs for a second) and under libFuzzer with
//! `cargo bolero test` (docs/fuzzing.md).

use bolero::check;

use super::*;

/// The default deadline of the target: the budget without a (valid) client deadline.
const DEFAULT: Duration = Duration::from_secs(5);

/// Whatever headers a client sends, the gateway's deadline handling never panics: the
/// deadline is the client's valid `grpc-timeout` or the default, and the budget it writes
/// for the backend parses and is no more than what the client allowed.
#[test]
fn deadline_headers() {
    check!().for_each(|input: &[u8]| {
        // Headers as `name\0value\0name\0value…`; those HTTP refuses are left out, as a
        // server would never see them.
        let mut headers = HeaderMap::new();
        let mut parts = input.split(|&byte| byte == 0);
        while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
            let name = match name {
                [b'!', ..] => GRPC_TIMEOUT.clone(),
                name => match http::HeaderName::from_bytes(name) {
                    Ok(name) => name,
                    Err(_) => continue,
                },
            };
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(name, value);
            }
        }
        let client = headers
            .get(&GRPC_TIMEOUT)
            .and_then(|value| value.to_str().ok())
            .and_then(shell::parse_grpc_timeout);
        let before = Instant::now();
        let deadline = Deadline::from_headers(&headers, DEFAULT);
        assert!(deadline.instant() <= Instant::now() + client.unwrap_or(DEFAULT));
        assert!(deadline.instant() >= before + client.unwrap_or(DEFAULT));
        assert_eq!(Deadline::from_client(&headers).is_some(), client.is_some());

        let allowed = deadline.remaining();
        deadline.apply_to(&mut headers);
        let written = headers
            .get(&GRPC_TIMEOUT)
            .and_then(|value| value.to_str().ok())
            .and_then(shell::parse_grpc_timeout)
            .expect("the gateway writes a grpc-timeout the backend can read");
        assert!(written <= allowed, "{written:?} > {allowed:?}");
    });
}

/// Any budget written as `grpc-timeout` reads back as no more than it, and less by under a
/// second (the unit chosen is the most precise that fits in 8 digits) until the 8 digits of
/// seconds run out.
#[test]
fn grpc_timeout_encoding_round_trips() {
    check!()
        .with_type::<(u64, u32)>()
        .for_each(|&(seconds, nanos)| {
            let timeout = Duration::new(seconds, nanos % 1_000_000_000);
            let written = encode_grpc_timeout(timeout);
            let read = shell::parse_grpc_timeout(&written).expect("an encoded timeout parses");
            assert!(read <= timeout, "{timeout:?} → {written} → {read:?}");
            if timeout < Duration::from_secs(99_999_999) {
                assert!(
                    timeout - read < Duration::from_secs(1),
                    "{timeout:?} → {written}"
                );
            }
        });
}
