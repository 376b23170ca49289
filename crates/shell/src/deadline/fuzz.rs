//! Fuzz target for `grpc-timeout`. It runs as an ordinary test (the committed corpus, then
//! random inputs for a second) and under libFuzzer with `cargo bolero test` (docs/fuzzing.md).

use bolero::check;

use super::*;

/// Whatever a client sends as `grpc-timeout`, parsing never panics, and it yields a deadline
/// exactly when the value is 1 to 8 ASCII digits and a unit, worth what the protocol says.
#[test]
fn grpc_timeout_header() {
    check!().for_each(|input: &[u8]| {
        let raw = String::from_utf8_lossy(input);
        let expected = raw
            .as_bytes()
            .split_last()
            .filter(|(_, digits)| {
                (1..=8).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
            })
            .and_then(|(unit, digits)| {
                let amount: u128 = std::str::from_utf8(digits).ok()?.parse().ok()?;
                let nanos_per_unit: u128 = match unit {
                    b'H' => 3_600_000_000_000,
                    b'M' => 60_000_000_000,
                    b'S' => 1_000_000_000,
                    b'm' => 1_000_000,
                    b'u' => 1_000,
                    b'n' => 1,
                    _ => return None,
                };
                Some(amount * nanos_per_unit)
            });
        assert_eq!(
            parse_grpc_timeout(&raw).map(|timeout| timeout.as_nanos()),
            expected,
            "{raw:?}"
        );
    });
}
