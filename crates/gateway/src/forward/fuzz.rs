//! Fuzz target for the forwarder's wire scan. It runs as an ordinary test (the committed
//! corpus, then random inputs for a second) and under libFuzzer with `cargo bolero test`
//! (docs/fuzzing.md).

use bolero::check;
use prost::Message as _;

use super::*;

/// Whatever frame a client sends to CreateNote, the scan never panics, and when the frame
/// decodes as the backend would decode it, the scan agrees with the decoder on whether it
/// carries a `request_id` (which decides whether the call may be retried).
#[test]
fn request_id_scan() {
    check!().for_each(|frame: &[u8]| {
        let carries = carries_request_id(frame);
        let Some((&0, rest)) = frame.split_first() else {
            assert!(
                !carries,
                "a compressed or empty frame counts as without one"
            );
            return;
        };
        let Some(message) = rest.get(4..) else {
            assert!(!carries);
            return;
        };
        if let Ok(request) = proto::notes::CreateNoteRequest::decode(message) {
            assert_eq!(carries, !request.request_id.is_empty(), "{request:?}");
        }
    });
}
