//! Fuzz target for backend URL lists. It runs as an ordinary test (the committed corpus, then
//! random inputs for a second) and under libFuzzer with `cargo bolero test` (docs/fuzzing.md).

use bolero::check;

use super::*;

/// Whatever an operator writes as a backend list, parsing never panics, and what it accepts
/// is at least one target, each with a host it was given and a port.
#[test]
fn target_list() {
    check!().for_each(|input: &[u8]| {
        let raw = String::from_utf8_lossy(input);
        let Ok(targets) = Target::parse_list(&raw) else {
            return;
        };
        assert!(!targets.is_empty());
        for target in targets {
            assert!(!target.host.is_empty(), "{raw:?} gave an empty host");
            assert!(raw.contains(&target.host), "{raw:?} gave {:?}", target.host);
            if let Some(address) = target.ip() {
                assert_eq!(address.port(), target.port);
            }
        }
    });
}
