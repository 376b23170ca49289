//! Fuzz targets for token verification. They run as ordinary tests (the committed corpus, then
//! random inputs for a second) and under libFuzzer with `cargo bolero test` (docs/fuzzing.md).

use std::sync::LazyLock;

use base64::Engine as _;
use bolero::check;
use jsonwebtoken::Header;
use sha2::Digest as _;

use super::*;

/// The verifier's clock: fixed, so that expiry is decided by the input alone.
const NOW: u64 = 1_700_000_000;

struct Keys {
    known: SigningKey,
    unknown: SigningKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    known: SigningKey::generate().expect("system randomness"),
    unknown: SigningKey::generate().expect("system randomness"),
});

fn verifier() -> Verifier {
    Verifier::with_clock(&KEYS.known.verifying_key(), || NOW)
}

#[derive(Debug, bolero::TypeGenerator)]
enum Who {
    Ours,
    Other(String),
}

#[derive(Debug, bolero::TypeGenerator)]
enum Audience {
    User,
    Service,
    Other(String),
}

#[derive(Debug, bolero::TypeGenerator)]
enum Signature {
    /// EdDSA with the key the verifier knows.
    Known,
    /// EdDSA with a key it does not know.
    Unknown,
    /// HS256 "keyed" with the known public key: the algorithm-confusion attack. (Only the
    /// header matters: an algorithm other than EdDSA must be refused before any signature.)
    HmacWithPublicKey,
    /// `alg: none`, no signature.
    Unsigned,
}

#[derive(Debug, bolero::TypeGenerator)]
enum KeyId {
    OfTheSigningKey,
    Absent,
    Other(String),
}

/// A token built from chosen parts, then perhaps altered by one byte.
#[derive(Debug, bolero::TypeGenerator)]
struct Forged {
    issuer: Who,
    audience: Audience,
    subject: String,
    issued_ago: u32,
    /// Seconds after [`NOW`] the token expires; negative: before.
    expires_in: i32,
    signature: Signature,
    key_id: KeyId,
    /// Replaces the byte at this position (modulo the length) with this one.
    altered: Option<(u16, u8)>,
}

impl Forged {
    fn token(&self) -> String {
        let claims = Claims {
            iss: match &self.issuer {
                Who::Ours => ISSUER.to_owned(),
                Who::Other(other) => other.clone(),
            },
            aud: match &self.audience {
                Audience::User => USER_AUDIENCE.to_owned(),
                Audience::Service => SERVICE_AUDIENCE.to_owned(),
                Audience::Other(other) => other.clone(),
            },
            sub: self.subject.clone(),
            iat: NOW.saturating_sub(u64::from(self.issued_ago)),
            exp: NOW.saturating_add_signed(i64::from(self.expires_in)),
        };
        let signer = match self.signature {
            Signature::Unknown => &KEYS.unknown,
            _ => &KEYS.known,
        };
        let kid = match &self.key_id {
            KeyId::OfTheSigningKey => Some(keyset::key_id(&signer.verifying_key())),
            KeyId::Absent => None,
            KeyId::Other(other) => Some(other.clone()),
        };
        let public_key = signer.verifying_key();
        let (algorithm, secret) = match self.signature {
            Signature::Known | Signature::Unknown => {
                let mut header = Header::new(Algorithm::EdDSA);
                header.kid = kid;
                return jsonwebtoken::encode(&header, &claims, &signer.encoding_key())
                    .expect("a token of any claims signs");
            }
            Signature::HmacWithPublicKey => ("HS256", &public_key.as_bytes()[..]),
            Signature::Unsigned => ("none", &[][..]),
        };
        // jsonwebtoken here signs EdDSA only: the other algorithms' tokens are put together
        // by hand.
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = serde_json::json!({ "typ": "JWT", "alg": algorithm, "kid": kid });
        let claims = serde_json::to_vec(&claims).expect("claims serialize");
        let input = format!(
            "{}.{}",
            encode(header.to_string().as_bytes()),
            encode(&claims)
        );
        let signature = if secret.is_empty() {
            Vec::new()
        } else {
            sha2::Sha256::digest([secret, input.as_bytes()].concat()).to_vec()
        };
        format!("{input}.{}", encode(&signature))
    }

    /// Whether the verifier must accept it, decided from its parts alone.
    fn acceptable(&self) -> bool {
        matches!(self.issuer, Who::Ours)
            && matches!(self.audience, Audience::User | Audience::Service)
            && !self.subject.is_empty()
            && i64::from(self.expires_in) + LEEWAY_SECONDS as i64 > 0
            && matches!(self.signature, Signature::Known)
            && matches!(self.key_id, KeyId::OfTheSigningKey | KeyId::Absent)
    }
}

/// A token verifies only when it is well formed, signed with EdDSA by a known key (the one it
/// names, if it names one), ours, addressed to a notesuite audience, for someone, and not
/// expired; then it acts for its subject. Any other byte string is refused, and one byte
/// changed in a good token makes it fail.
#[test]
fn jwt_verify() {
    check!().with_type::<Forged>().for_each(|forged| {
        let verifier = verifier();
        let token = forged.token();
        let mut presented = token.clone().into_bytes();
        if let Some((at, byte)) = forged.altered {
            let at = usize::from(at) % presented.len();
            presented[at] = byte;
        }
        let presented = String::from_utf8_lossy(&presented).into_owned();
        let verdict = verifier.verify(&presented);
        if presented != token {
            assert!(verdict.is_err(), "an altered token verified: {presented:?}");
            return;
        }
        match verdict {
            Ok(principal) => {
                assert!(forged.acceptable(), "accepted {forged:?}");
                let subject = match principal {
                    Principal::User { user_id } => {
                        assert!(matches!(forged.audience, Audience::User));
                        user_id
                    }
                    Principal::Service { name } => {
                        assert!(matches!(forged.audience, Audience::Service));
                        name
                    }
                };
                assert_eq!(subject, forged.subject);
                // The cache answers a second time the same.
                assert!(verifier.verify(&presented).is_ok());
            }
            Err(error) => {
                assert!(!forged.acceptable(), "refused ({error:?}) {forged:?}");
                let expired = i64::from(forged.expires_in) + LEEWAY_SECONDS as i64 <= 0;
                if error == AuthError::Expired {
                    assert!(expired, "called expired: {forged:?}");
                }
            }
        }
    });
}

/// Whatever a client puts in `authorization`, checking it never panics, and without a token
/// signed by a known key it is refused.
#[test]
fn authorization_header() {
    check!().for_each(|value: &[u8]| {
        let verifier = verifier();
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            headers.insert(http::header::AUTHORIZATION, value);
        }
        assert!(verifier.authenticate(&headers).is_err());
    });
}
