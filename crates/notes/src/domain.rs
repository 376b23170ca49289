//! Notes' domain types. Each is parsed once, at the edge, and cannot hold an invalid value.

use std::fmt;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_CONTENT_BYTES: usize = 256 * 1024;
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_CHARS: usize = 32;

/// A note's identifier: a UUIDv7, so that sorting by id sorts by creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NoteId(Uuid);

impl NoteId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() {
            return Err("is required");
        }
        Uuid::try_parse(raw)
            .map(Self)
            .map_err(|_| "must be a note id (a UUID)")
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Uuid::from_slice(bytes).ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Above every id ever issued: a UUIDv7's version nibble makes its seventh byte 0x7X.
    /// Listing "ids below MAX" is listing from the newest, with one query shape for every page.
    pub(crate) const MAX: Self = Self(Uuid::max());

    pub(crate) fn as_uuid(&self) -> Uuid {
        self.0
    }

    pub(crate) fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl Default for NoteId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for NoteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The owner of notes: always the authenticated caller's user id, never a request field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnerId(String);

impl OwnerId {
    /// Trusted: the id comes from a verified token.
    pub fn from_verified_token(user_id: String) -> Self {
        Self(user_id)
    }

    /// Trusted: the id was stored by this service.
    pub(crate) fn from_stored(user_id: String) -> Self {
        Self(user_id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A title: 1 to 200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let title = raw.trim();
        if title.is_empty() {
            return Err("is required and must not be blank".into());
        }
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(format!("must be at most {MAX_TITLE_CHARS} characters"));
        }
        if title.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(title.to_owned()))
    }

    pub(crate) fn from_stored(title: String) -> Self {
        Self(title)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Note content: any UTF-8 text up to 256 KiB.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Content(String);

impl Content {
    pub fn parse(raw: String) -> Result<Self, String> {
        if raw.len() > MAX_CONTENT_BYTES {
            return Err(format!(
                "must be at most {MAX_CONTENT_BYTES} bytes (256 KiB); got {} bytes",
                raw.len()
            ));
        }
        // PostgreSQL cannot store U+0000 in text; refusing it here keeps both backends giving
        // the same answer, and the answer the caller's mistake deserves.
        if raw.contains('\0') {
            return Err("must not contain NUL (U+0000) characters".into());
        }
        Ok(Self(raw))
    }

    pub(crate) fn from_stored(content: String) -> Self {
        Self(content)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A tag: 1 to 32 characters of `[a-z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag(String);

impl Tag {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.len() > MAX_TAG_CHARS {
            return Err(format!("must be at most {MAX_TAG_CHARS} characters"));
        }
        if !raw
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        {
            return Err("may contain only a-z, 0-9 and '-'".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// At most 20 distinct tags, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags(Vec<Tag>);

impl Tags {
    /// Parses every tag; the error lists `(index, reason)` for each bad one, with `None` for
    /// problems of the list as a whole.
    pub fn parse(raw: &[String]) -> Result<Self, Vec<(Option<usize>, String)>> {
        let mut problems = Vec::new();
        if raw.len() > MAX_TAGS {
            problems.push((
                None,
                format!("must hold at most {MAX_TAGS} tags; got {}", raw.len()),
            ));
        }
        let mut tags: Vec<Tag> = Vec::with_capacity(raw.len());
        for (index, raw_tag) in raw.iter().enumerate() {
            match Tag::parse(raw_tag) {
                Ok(tag) if tags.contains(&tag) => {
                    problems.push((Some(index), format!("{raw_tag:?} appears more than once")));
                }
                Ok(tag) => tags.push(tag),
                Err(reason) => problems.push((Some(index), reason)),
            }
        }
        if problems.is_empty() {
            Ok(Self(tags))
        } else {
            Err(problems)
        }
    }

    /// Rebuilds tags read back from our own database.
    pub(crate) fn from_stored(joined: &str) -> Self {
        Self(
            joined
                .split(',')
                .filter(|tag| !tag.is_empty())
                .map(|tag| Tag(tag.to_owned()))
                .collect(),
        )
    }

    /// Rebuilds tags read back from our own database as a list.
    pub(crate) fn from_stored_list(tags: Vec<String>) -> Self {
        Self(tags.into_iter().map(Tag).collect())
    }

    pub(crate) fn as_strs(&self) -> Vec<&str> {
        self.0.iter().map(Tag::as_str).collect()
    }

    /// The storage form: comma-separated (a comma can never occur inside a tag).
    pub(crate) fn joined(&self) -> String {
        self.0.iter().map(Tag::as_str).collect::<Vec<_>>().join(",")
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }

    pub fn into_strings(self) -> Vec<String> {
        self.0.into_iter().map(|tag| tag.0).collect()
    }
}

/// The owner's revision at a note's last change; sent to clients as its etag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Revision(i64);

impl Revision {
    /// An owner's revision before their first change.
    pub const ZERO: Self = Self(0);

    pub(crate) fn from_stored(revision: i64) -> Self {
        Self(revision)
    }

    /// A revision a client sent as a position (WatchNotes' `after_revision`).
    pub fn from_position(revision: i64) -> Result<Self, &'static str> {
        if revision < 0 {
            return Err("must not be negative");
        }
        Ok(Self(revision))
    }

    /// The revision `count` changes after this one.
    pub fn plus(self, count: i64) -> Self {
        Self(self.0.saturating_add(count))
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn etag(self) -> String {
        format!("r{}", self.0)
    }

    pub fn parse_etag(etag: &str) -> Result<Self, &'static str> {
        etag.strip_prefix('r')
            .and_then(|digits| digits.parse::<i64>().ok())
            .filter(|revision| *revision > 0)
            .map(Self)
            .ok_or("is not an etag this service issued")
    }
}

/// A client-chosen idempotency key for CreateNote (a UUID, AIP-155).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(Uuid);

impl RequestId {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        Uuid::try_parse(raw)
            .map(Self)
            .map_err(|_| "must be a UUID, e.g. 0f8c2a4e-3b1d-4e5f-9a6b-7c8d9e0f1a2b")
    }
}

impl RequestId {
    pub(crate) fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub(crate) fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The fields of a note a client writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteDraft {
    pub title: Title,
    pub content: Content,
    pub tags: Tags,
}

impl NoteDraft {
    /// A digest of the draft: a retried create must carry the same one.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in [
            self.title.as_str(),
            self.content.as_str(),
            &self.tags.joined(),
        ] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.finalize().into()
    }
}

/// The changes an update applies; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotePatch {
    pub title: Option<Title>,
    pub content: Option<Content>,
    pub tags: Option<Tags>,
}

impl Note {
    /// About what the note takes on the wire: the bound a listing page is built against.
    pub fn encoded_len_estimate(&self) -> usize {
        // Id, owner, times, revision and etag, plus the protobuf framing of every field.
        const FIXED_OVERHEAD: usize = 160;
        FIXED_OVERHEAD
            + self.owner.as_str().len()
            + self.title.as_str().len()
            + self.content.as_str().len()
            + self
                .tags
                .iter()
                .map(|tag| tag.as_str().len() + 2)
                .sum::<usize>()
    }
}

/// A stored note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub id: NoteId,
    pub owner: OwnerId,
    pub title: Title,
    pub content: Content,
    pub tags: Tags,
    pub revision: Revision,
    pub create_time: SystemTime,
    pub update_time: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_rules() {
        assert_eq!(
            Title::parse("  Groceries ").expect("valid").as_str(),
            "Groceries"
        );
        assert!(Title::parse("").is_err());
        assert!(Title::parse(" \t ").is_err());
        assert!(Title::parse("a\u{7}b").is_err());
        assert!(Title::parse(&"ñ".repeat(200)).is_ok());
        assert!(Title::parse(&"x".repeat(201)).is_err());
    }

    #[test]
    fn content_cannot_hold_nul() {
        assert!(Content::parse("a\0b".into()).is_err());
        assert!(Content::parse("tab\tand\nnewline are fine".into()).is_ok());
    }

    #[test]
    fn content_is_limited_in_bytes() {
        assert!(Content::parse("x".repeat(MAX_CONTENT_BYTES)).is_ok());
        assert!(Content::parse("x".repeat(MAX_CONTENT_BYTES + 1)).is_err());
    }

    #[test]
    fn tags_report_every_bad_one_by_index() {
        let raw: Vec<String> = ["ok", "Bad", "ok", "", "with space"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let problems = Tags::parse(&raw).expect_err("invalid");
        let indexes: Vec<Option<usize>> = problems.iter().map(|(index, _)| *index).collect();
        assert_eq!(indexes, vec![Some(1), Some(2), Some(3), Some(4)]);
    }

    #[test]
    fn too_many_tags_is_a_problem_of_the_list() {
        let raw: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        let problems = Tags::parse(&raw).expect_err("invalid");
        assert_eq!(problems[0].0, None);
    }

    #[test]
    fn tags_round_trip_through_storage() {
        let raw: Vec<String> = ["a", "b-2", "c"].iter().map(|s| s.to_string()).collect();
        let tags = Tags::parse(&raw).expect("valid");
        assert_eq!(Tags::from_stored(&tags.joined()), tags);
        assert_eq!(Tags::from_stored(""), Tags::default());
    }

    #[test]
    fn fingerprint_separates_fields() {
        let draft = |title: &str, content: &str| NoteDraft {
            title: Title::parse(title).expect("valid"),
            content: Content::parse(content.into()).expect("valid"),
            tags: Tags::default(),
        };
        assert_ne!(
            draft("ab", "c").fingerprint(),
            draft("a", "bc").fingerprint()
        );
        assert_eq!(draft("a", "b").fingerprint(), draft("a", "b").fingerprint());
    }

    #[test]
    fn etags_round_trip_and_reject_garbage() {
        let revision = Revision::from_stored(7);
        assert_eq!(Revision::parse_etag(&revision.etag()), Ok(revision));
        for raw in ["", "7", "r", "r0", "r-3", "u7"] {
            assert!(Revision::parse_etag(raw).is_err(), "{raw:?}");
        }
    }
}

/// One entry of an owner's change log: what WatchNotes delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: Revision,
    pub event: ChangeEvent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// The note as created.
    Created(Note),
    /// The note as the update left it.
    Updated(Note),
    Deleted(NoteId),
}

impl ChangeEvent {
    /// How the log stores a creation.
    pub(crate) const CREATED_KIND: i16 = 1;

    /// How the log stores the kind of change.
    pub(crate) fn kind(&self) -> i16 {
        match self {
            Self::Created(_) => Self::CREATED_KIND,
            Self::Updated(_) => 2,
            Self::Deleted(_) => 3,
        }
    }

    pub fn note_id(&self) -> NoteId {
        match self {
            Self::Created(note) | Self::Updated(note) => note.id,
            Self::Deleted(id) => *id,
        }
    }

    /// About what the change takes on the wire.
    pub fn encoded_len_estimate(&self) -> usize {
        match self {
            Self::Created(note) | Self::Updated(note) => note.encoded_len_estimate() + 48,
            Self::Deleted(_) => 64,
        }
    }
}
