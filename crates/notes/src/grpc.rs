//! The gRPC adapter: parse the request at the edge, call the service, convert the answer.
//! No rules live here.

use pagination::{PageSize, PageTokenError, decode_token, encode_token};
use proto::notes::notes_service_server::NotesService;
use proto::notes::watch_notes_response::EventType;
use proto::notes::{
    CreateNoteRequest, CreateNoteResponse, DeleteNoteRequest, DeleteNoteResponse, GetNoteRequest,
    GetNoteResponse, ImportNotesRequest, ImportNotesResponse, ListNotesRequest, ListNotesResponse,
    PurgeUserNotesRequest, PurgeUserNotesResponse, UpdateNoteRequest, UpdateNoteResponse,
    WatchNotesRequest, WatchNotesResponse, import_notes_response,
};
use shell::Violations;
use token::Principal;
use tonic::{Request, Response, Status};

use crate::domain::{
    ChangeEvent, Content, Note, NoteDraft, NoteId, NotePatch, RequestId, Revision, Tag, Tags, Title,
};
use crate::error::Error;
use crate::service::{ImportItem, ImportOutcome, Notes};
use crate::store::NoteStore;
use crate::watch::{Start, WatchEvent, Watches, watch};

#[cfg(test)]
mod fuzz;

/// Most items of an import written in one transaction, and about how many bytes of notes.
const IMPORT_BATCH: usize = 256;
const IMPORT_BATCH_BYTES: usize = 1024 * 1024;
/// Most item errors an import's summary lists (`error_count` counts them all).
const MAX_LISTED_ERRORS: usize = 100;

#[derive(Debug)]
pub struct NotesGrpc<S> {
    notes: Notes<S>,
    watches: Watches,
}

impl<S> NotesGrpc<S> {
    pub(crate) fn new(notes: Notes<S>, watches: Watches) -> Self {
        Self { notes, watches }
    }
}

fn event_to_proto(event: WatchEvent) -> WatchNotesResponse {
    match event {
        WatchEvent::Heartbeat(revision) => WatchNotesResponse {
            r#type: EventType::Heartbeat.into(),
            revision: revision.get(),
            note: None,
            note_id: String::new(),
        },
        WatchEvent::Change(change) => {
            let (kind, note) = match &change.event {
                ChangeEvent::Created(note) => (EventType::Created, Some(note.clone())),
                ChangeEvent::Updated(note) => (EventType::Updated, Some(note.clone())),
                ChangeEvent::Deleted(_) => (EventType::Deleted, None),
            };
            WatchNotesResponse {
                r#type: kind.into(),
                revision: change.revision.get(),
                note: note.map(note_to_proto),
                note_id: change.event.note_id().to_string(),
            }
        }
    }
}

/// The running summary of an import.
#[derive(Debug, Default)]
struct ImportSummary {
    created: usize,
    already_present: usize,
    errors: Vec<import_notes_response::ItemError>,
    error_count: usize,
    revision: Revision,
}

impl ImportSummary {
    fn refuse(&mut self, index: usize, error: Error) {
        self.error_count += 1;
        if self.errors.len() >= MAX_LISTED_ERRORS {
            return;
        }
        let status = Status::from(error);
        let details = tonic_types::StatusExt::get_error_details(&status);
        self.errors.push(import_notes_response::ItemError {
            index: i32::try_from(index).unwrap_or(i32::MAX),
            code: status.code() as i32,
            reason: details
                .error_info()
                .map(|info| info.reason.clone())
                .unwrap_or_default(),
            message: status.message().to_owned(),
            field_violations: details
                .bad_request()
                .map(|bad| {
                    bad.field_violations
                        .iter()
                        .map(|violation| import_notes_response::FieldViolation {
                            field: violation.field.clone(),
                            description: violation.description.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
    }

    fn add(&mut self, outcome: ImportOutcome) {
        self.created += outcome.created;
        self.already_present += outcome.already_present;
        if let Some(revision) = outcome.revision {
            self.revision = revision;
        }
        let mut errors = outcome.errors;
        errors.sort_by_key(|(index, _)| *index);
        for (index, error) in errors {
            self.refuse(index, error);
        }
    }

    fn into_proto(mut self) -> ImportNotesResponse {
        self.errors.sort_by_key(|error| error.index);
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        ImportNotesResponse {
            created_count: count(self.created),
            already_present_count: count(self.already_present),
            errors: self.errors,
            error_count: count(self.error_count),
            revision: self.revision.get(),
        }
    }
}

/// Validates what a CreateNote (or an import item) carries.
fn parse_create(
    note: Option<proto::notes::Note>,
    request_id: &str,
) -> Result<(NoteDraft, Option<RequestId>), Error> {
    let mut violations = Violations::default();
    let Some(note) = note else {
        violations.add("note", "is required");
        return Err(invalid(violations));
    };
    let title = violations.check("note.title", Title::parse(&note.title));
    let content = violations.check("note.content", Content::parse(note.content));
    let tags = check_tags(&mut violations, "note.tags", &note.tags);
    let request_id = violations.check(
        "request_id",
        match request_id {
            "" => Ok(None),
            raw => RequestId::parse(raw).map(Some),
        },
    );
    let (Some(title), Some(content), Some(tags), Some(request_id)) =
        (title, content, tags, request_id)
    else {
        return Err(invalid(violations));
    };
    Ok((
        NoteDraft {
            title,
            content,
            tags,
        },
        request_id,
    ))
}

fn caller<T>(request: &Request<T>) -> Result<Principal, Error> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or(Error::Unauthenticated)
}

fn invalid(violations: Violations) -> Error {
    Error::InvalidFields(violations.into_vec())
}

fn note_to_proto(note: Note) -> proto::notes::Note {
    proto::notes::Note {
        id: note.id.to_string(),
        owner_id: note.owner.as_str().to_owned(),
        title: note.title.into_string(),
        content: note.content.into_string(),
        tags: note.tags.into_strings(),
        create_time: Some(note.create_time.into()),
        update_time: Some(note.update_time.into()),
        revision: note.revision.get(),
        etag: note.revision.etag(),
    }
}

fn check_tags(violations: &mut Violations, field: &str, raw: &[String]) -> Option<Tags> {
    match Tags::parse(raw) {
        Ok(tags) => Some(tags),
        Err(problems) => {
            for (index, reason) in problems {
                match index {
                    Some(index) => violations.add(format!("{field}[{index}]"), reason),
                    None => violations.add(field, reason),
                }
            }
            None
        }
    }
}

#[tonic::async_trait]
impl<S: NoteStore> NotesService for NotesGrpc<S> {
    async fn purge_user_notes(
        &self,
        request: Request<PurgeUserNotesRequest>,
    ) -> Result<Response<PurgeUserNotesResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let user_id = match request.get_ref().user_id.as_str() {
            "" => Err("is required"),
            raw => uuid::Uuid::try_parse(raw).map_err(|_| "must be a user id (a UUID)"),
        };
        let Some(user_id) = violations.check("user_id", user_id) else {
            return Err(invalid(violations).into());
        };
        // Ids are stored as users writes them: lowercase, hyphenated.
        let owner = crate::domain::OwnerId::from_stored(user_id.to_string());
        let purged = self.notes.purge(&caller, owner).await?;
        Ok(Response::new(PurgeUserNotesResponse {
            purged_note_count: i64::try_from(purged).unwrap_or(i64::MAX),
        }))
    }

    async fn create_note(
        &self,
        request: Request<CreateNoteRequest>,
    ) -> Result<Response<CreateNoteResponse>, Status> {
        let caller = caller(&request)?;
        let CreateNoteRequest { note, request_id } = request.into_inner();
        let (draft, request_id) = parse_create(note, &request_id)?;
        let note = self.notes.create(&caller, draft, request_id).await?;
        Ok(Response::new(CreateNoteResponse {
            note: Some(note_to_proto(note)),
        }))
    }

    async fn get_note(
        &self,
        request: Request<GetNoteRequest>,
    ) -> Result<Response<GetNoteResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let Some(id) = violations.check("id", NoteId::parse(&request.get_ref().id)) else {
            return Err(invalid(violations).into());
        };
        let note = self.notes.get(&caller, id).await?;
        Ok(Response::new(GetNoteResponse {
            note: Some(note_to_proto(note)),
        }))
    }

    async fn list_notes(
        &self,
        request: Request<ListNotesRequest>,
    ) -> Result<Response<ListNotesResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.get_ref();
        let mut violations = Violations::default();
        let page_size = violations.check("page_size", PageSize::parse(request.page_size));
        let tag = violations.check(
            "tag",
            match request.tag.as_str() {
                "" => Ok(None),
                raw => Tag::parse(raw).map(Some),
            },
        );
        // The token is bound to the caller and the filter, so that it cannot continue a
        // different listing: another user's token would otherwise page through this caller's
        // own notes from a position that means nothing to them.
        let owner = match &caller {
            Principal::User { user_id } => user_id.as_str(),
            Principal::Service { .. } => "",
        };
        let filter = format!("owner={owner};tag={}", request.tag);
        let before = violations.check(
            "page_token",
            decode_token(&request.page_token, &filter).and_then(|key| match key {
                None => Ok(None),
                Some(key) => NoteId::from_bytes(&key)
                    .map(Some)
                    .ok_or(PageTokenError::Malformed),
            }),
        );
        let (Some(page_size), Some(tag), Some(before)) = (page_size, tag, before) else {
            return Err(invalid(violations).into());
        };
        let page = self
            .notes
            .list(&caller, tag, before, page_size.get())
            .await?;
        let next_page_token = match (page.more, page.notes.last()) {
            (true, Some(last)) => encode_token(last.id.as_bytes(), &filter),
            _ => String::new(),
        };
        Ok(Response::new(ListNotesResponse {
            notes: page.notes.into_iter().map(note_to_proto).collect(),
            next_page_token,
            total_size: i32::try_from(page.total).unwrap_or(i32::MAX),
            revision: page.revision.get(),
        }))
    }

    async fn update_note(
        &self,
        request: Request<UpdateNoteRequest>,
    ) -> Result<Response<UpdateNoteResponse>, Status> {
        let caller = caller(&request)?;
        let UpdateNoteRequest { note, update_mask } = request.into_inner();
        let mut violations = Violations::default();
        let Some(note) = note else {
            violations.add("note", "is required");
            return Err(invalid(violations).into());
        };
        let id = violations.check("note.id", NoteId::parse(&note.id));
        let expected = violations.check(
            "note.etag",
            match note.etag.as_str() {
                "" => Err("is required: send the etag of the note you read"),
                etag => Revision::parse_etag(etag),
            },
        );
        let mut patch = NotePatch::default();
        let proto::notes::Note {
            title,
            content,
            tags,
            ..
        } = note;
        for path in update_paths(update_mask, &title, &content, &tags, &mut violations) {
            match path {
                UpdatePath::Title => {
                    patch.title = violations.check("note.title", Title::parse(&title))
                }
                UpdatePath::Content => {
                    patch.content =
                        violations.check("note.content", Content::parse(content.clone()));
                }
                UpdatePath::Tags => patch.tags = check_tags(&mut violations, "note.tags", &tags),
            }
        }
        let (Some(id), Some(expected), true) = (id, expected, violations.is_empty()) else {
            return Err(invalid(violations).into());
        };
        let note = self.notes.update(&caller, id, expected, patch).await?;
        Ok(Response::new(UpdateNoteResponse {
            note: Some(note_to_proto(note)),
        }))
    }

    type WatchNotesStream =
        futures_util::stream::BoxStream<'static, Result<proto::notes::WatchNotesResponse, Status>>;

    async fn watch_notes(
        &self,
        request: Request<WatchNotesRequest>,
    ) -> Result<Response<Self::WatchNotesStream>, Status> {
        use futures_util::StreamExt as _;
        let caller = caller(&request)?;
        let owner = crate::service::owner(&caller)?;
        let WatchNotesRequest {
            after_revision,
            start_from_now,
        } = request.into_inner();
        let mut violations = Violations::default();
        let after = violations.check("after_revision", Revision::from_position(after_revision));
        if start_from_now && after_revision != 0 {
            violations.add(
                "after_revision",
                "must be 0 with start_from_now: the stream starts at the current revision",
            );
        }
        let (Some(after), true) = (after, violations.is_empty()) else {
            return Err(invalid(violations).into());
        };
        let start = if start_from_now {
            Start::Now
        } else {
            Start::After(after)
        };
        let events = watch(&self.watches, self.notes.store().clone(), owner, start).await?;
        Ok(Response::new(
            events
                .map(|event| event.map(event_to_proto).map_err(Status::from))
                .boxed(),
        ))
    }

    async fn import_notes(
        &self,
        request: Request<tonic::Streaming<ImportNotesRequest>>,
    ) -> Result<Response<ImportNotesResponse>, Status> {
        let caller = caller(&request)?;
        let mut items = request.into_inner();
        let mut summary = ImportSummary::default();
        let mut index = 0usize;
        loop {
            // A batch: up to IMPORT_BATCH items or about IMPORT_BATCH_BYTES of notes, read
            // only once the previous batch is written, so the client is paced by the writes.
            let mut batch = Vec::new();
            let mut bytes = 0;
            let mut ended = false;
            while batch.len() < IMPORT_BATCH && bytes < IMPORT_BATCH_BYTES {
                let Some(item) = items.message().await? else {
                    ended = true;
                    break;
                };
                let ImportNotesRequest { note, request_id } = item;
                match parse_create(note, &request_id) {
                    Ok((draft, request_id)) => {
                        bytes += draft.title.as_str().len() + draft.content.as_str().len();
                        batch.push(ImportItem {
                            index,
                            draft,
                            request_id,
                        });
                    }
                    Err(error) => summary.refuse(index, error),
                }
                index += 1;
            }
            let outcome = self.notes.import_batch(&caller, batch).await?;
            summary.add(outcome);
            if ended {
                break;
            }
        }
        if summary.created == 0 {
            // Nothing written (a retried import): the revision is still the caller's, so
            // that watching from it replays nothing already seen.
            summary.revision = self.notes.revision(&caller).await?;
        }
        Ok(Response::new(summary.into_proto()))
    }

    async fn delete_note(
        &self,
        request: Request<DeleteNoteRequest>,
    ) -> Result<Response<DeleteNoteResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.get_ref();
        let mut violations = Violations::default();
        let id = violations.check("id", NoteId::parse(&request.id));
        let expected = violations.check(
            "etag",
            match request.etag.as_str() {
                "" => Ok(None),
                etag => Revision::parse_etag(etag).map(Some),
            },
        );
        let (Some(id), Some(expected)) = (id, expected) else {
            return Err(invalid(violations).into());
        };
        self.notes.delete(&caller, id, expected).await?;
        Ok(Response::new(DeleteNoteResponse {}))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpdatePath {
    Title,
    Content,
    Tags,
}

const OUTPUT_ONLY: &[&str] = &[
    "id",
    "owner_id",
    "create_time",
    "update_time",
    "revision",
    "etag",
];

/// The fields an update changes: the mask's paths, or (AIP-134) every non-empty updatable
/// field when the mask is empty.
fn update_paths(
    mask: Option<prost_types::FieldMask>,
    title: &str,
    content: &str,
    tags: &[String],
    violations: &mut Violations,
) -> Vec<UpdatePath> {
    let paths = mask.map(|mask| mask.paths).unwrap_or_default();
    if paths.is_empty() {
        let implied: Vec<UpdatePath> = [
            (UpdatePath::Title, !title.is_empty()),
            (UpdatePath::Content, !content.is_empty()),
            (UpdatePath::Tags, !tags.is_empty()),
        ]
        .into_iter()
        .filter_map(|(path, present)| present.then_some(path))
        .collect();
        if implied.is_empty() {
            violations.add("update_mask", "names no field to change");
        }
        return implied;
    }
    let mut chosen = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let field = format!("update_mask.paths[{index}]");
        match path.as_str() {
            "title" => chosen.push(UpdatePath::Title),
            "content" => chosen.push(UpdatePath::Content),
            "tags" => chosen.push(UpdatePath::Tags),
            output_only if OUTPUT_ONLY.contains(&output_only) => {
                violations.add(field, format!("{path:?} cannot be changed"));
            }
            _ => violations.add(
                field,
                format!("{path:?} is not a field of Note; updatable fields: title, content, tags"),
            ),
        }
    }
    chosen.dedup();
    chosen
}
