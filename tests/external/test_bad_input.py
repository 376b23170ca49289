"""Bad input, bad tokens and forbidden calls: each must fail with the documented status code,
google.rpc ErrorInfo reason (domain "notesuite") and, for validation, BadRequest field names.

Expired tokens are not tested here: only the server's own key can mint one, and the Rust
tests cover them with a controlled clock.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from functools import cached_property

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from notesuite.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from notesuite.notes.v1 import notes_pb2, notes_pb2_grpc
from notesuite.users.v1 import users_pb2, users_pb2_grpc

from conftest import PASSWORD, PORTS, Account, ErrorDetails, bearer, error_details, sign_up_on, unique_email

Code = grpc.StatusCode


@dataclass(frozen=True)
class Expected:
    code: grpc.StatusCode
    reason: str
    fields: tuple[str, ...] = ()


def invalid(*fields: str) -> Expected:
    return Expected(Code.INVALID_ARGUMENT, "INVALID_FIELDS", fields)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_subject(token: str, subject: str) -> str:
    """The token with its `sub` claim replaced and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["sub"] = subject
    return f"{header}.{b64url_encode(json.dumps(claims).encode())}.{signature}"


def with_altered_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    signature_bytes = bytearray(b64url_decode(signature))
    signature_bytes[0] ^= 0x01
    return f"{header}.{payload}.{b64url_encode(bytes(signature_bytes))}"


# The default `token` of Env's calls: the account's own.
ACCOUNT = object()


class Env:
    """What a bad call needs, created only when a case asks for it."""

    def __init__(self, suite, request: pytest.FixtureRequest):
        self.suite = suite
        self._request = request
        gateway_channel = suite.channel("gateway")
        self.gateway = gateway_pb2_grpc.GatewayServiceStub(gateway_channel)
        self.notes = notes_pb2_grpc.NotesServiceStub(gateway_channel)
        self.users = users_pb2_grpc.UsersServiceStub(gateway_channel)
        self.notes_port = notes_pb2_grpc.NotesServiceStub(suite.channel("notes"))
        self.users_port = users_pb2_grpc.UsersServiceStub(suite.channel("users"))

    @cached_property
    def account(self) -> Account:
        return sign_up_on(self.suite.channel("gateway"), "Ada")

    @cached_property
    def stranger(self) -> Account:
        return sign_up_on(self.suite.channel("gateway"), "Stranger")

    @property
    def auth(self):
        return self.account.metadata

    @cached_property
    def note(self):
        """A note of the account."""
        return self.create(title="Existing", tags=["work"]).note

    @cached_property
    def used_request_id(self) -> str:
        request_id = str(uuid.uuid4())
        self.create(title="First", request_id=request_id)
        return request_id

    @cached_property
    def unfiltered_page_token(self) -> str:
        """A next_page_token of a listing without a tag filter."""
        self.create(title="One")
        self.create(title="Two")
        return self.list(page_size=1).next_page_token

    @cached_property
    def other_suite_token(self) -> str:
        """A well-formed token signed by another suite's key, for a user that exists there."""
        other_suite = self._request.getfixturevalue("other_suite")
        return sign_up_on(other_suite.channel("gateway"), "Elsewhere").token

    # Calls made with the account's token unless given another `token` (None: no token).

    def _metadata(self, token):
        if token is None:
            return ()
        return bearer(self.account.token if token is ACCOUNT else token)

    def create(self, request_id: str = "", token=ACCOUNT, **note):
        request = notes_pb2.CreateNoteRequest(note=notes_pb2.Note(**note), request_id=request_id)
        return self.notes.CreateNote(request, metadata=self._metadata(token))

    def list(self, token=ACCOUNT, **fields):
        return self.notes.ListNotes(notes_pb2.ListNotesRequest(**fields), metadata=self._metadata(token))

    def get(self, note_id: str, token=ACCOUNT):
        return self.notes.GetNote(notes_pb2.GetNoteRequest(id=note_id), metadata=self._metadata(token))

    def update(self, paths, token=ACCOUNT, **fields):
        """Updates `self.note` with `fields`; `id` and `etag` default to the note's own."""
        note = notes_pb2.Note(**{"id": self.note.id, "etag": self.note.etag, **fields})
        request = notes_pb2.UpdateNoteRequest(note=note, update_mask=field_mask_pb2.FieldMask(paths=paths))
        return self.notes.UpdateNote(request, metadata=self._metadata(token))

    def delete(self, note_id: str, etag: str = "", token=ACCOUNT):
        return self.notes.DeleteNote(notes_pb2.DeleteNoteRequest(id=note_id, etag=etag), metadata=self._metadata(token))

    def profile(self, token=ACCOUNT, **fields):
        return self.gateway.GetProfile(gateway_pb2.GetProfileRequest(**fields), metadata=self._metadata(token))

    def sign_up(self, email: str | None = None, display_name: str = "Ada", password: str = PASSWORD):
        request = gateway_pb2.SignUpRequest(email=email or unique_email(), display_name=display_name, password=password)
        return self.gateway.SignUp(request)

    def login(self, email: str, password: str):
        return self.gateway.Login(gateway_pb2.LoginRequest(email=email, password=password))


LIST = notes_pb2.ListNotesRequest()

BAD_CALLS = [
    # CreateNote validation.
    pytest.param(lambda e: e.create(title=""), invalid("note.title"), id="title-empty"),
    pytest.param(lambda e: e.create(title=" \t "), invalid("note.title"), id="title-blank"),
    pytest.param(lambda e: e.create(title="x" * 201), invalid("note.title"), id="title-201-chars"),
    pytest.param(lambda e: e.create(title="bell\x07"), invalid("note.title"), id="title-control-char"),
    pytest.param(
        lambda e: e.create(title="Big", content="x" * 300 * 1024), invalid("note.content"), id="content-300-KiB"
    ),
    pytest.param(lambda e: e.create(title="t", tags=["ok", "Work"]), invalid("note.tags[1]"), id="tag-uppercase"),
    pytest.param(lambda e: e.create(title="t", tags=["x" * 33]), invalid("note.tags[0]"), id="tag-33-chars"),
    pytest.param(lambda e: e.create(title="t", tags=["ok", "two words"]), invalid("note.tags[1]"), id="tag-with-space"),
    pytest.param(lambda e: e.create(title="t", tags=[""]), invalid("note.tags[0]"), id="tag-empty"),
    pytest.param(lambda e: e.create(title="t", tags=[f"t{i}" for i in range(21)]), invalid("note.tags"), id="tags-21"),
    pytest.param(lambda e: e.create(title="t", tags=["a", "b", "a"]), invalid("note.tags[2]"), id="tags-duplicate"),
    pytest.param(lambda e: e.create(title="t", request_id="retry-1"), invalid("request_id"), id="request-id-not-uuid"),
    pytest.param(
        lambda e: e.create(title="", tags=["A"], request_id="x"),
        invalid("note.title", "note.tags[0]", "request_id"),
        id="every-bad-field-reported-at-once",
    ),
    pytest.param(
        lambda e: e.notes.CreateNote(notes_pb2.CreateNoteRequest(), metadata=e.auth), invalid("note"), id="note-missing"
    ),
    pytest.param(
        lambda e: e.create(title="Different", request_id=e.used_request_id),
        Expected(Code.FAILED_PRECONDITION, "REQUEST_ID_REUSED"),
        id="request-id-reused-for-different-note",
    ),
    pytest.param(
        lambda e: e.create(title="Huge", content="x" * 2 * 1024 * 1024),
        Expected(Code.RESOURCE_EXHAUSTED, "MESSAGE_TOO_LARGE"),
        id="message-over-1-MiB",
    ),
    # SignUp and Login.
    pytest.param(lambda e: e.sign_up(email="not-an-email"), invalid("email"), id="signup-bad-email"),
    pytest.param(lambda e: e.sign_up(password="short"), invalid("password"), id="signup-password-7-chars"),
    pytest.param(lambda e: e.sign_up(password="x" * 129), invalid("password"), id="signup-password-129-chars"),
    pytest.param(lambda e: e.sign_up(display_name=""), invalid("display_name"), id="signup-display-name-empty"),
    pytest.param(
        lambda e: e.gateway.SignUp(gateway_pb2.SignUpRequest()),
        invalid("email", "display_name", "password"),
        id="signup-empty",
    ),
    pytest.param(
        lambda e: e.sign_up(email=e.account.email.upper()),
        Expected(Code.ALREADY_EXISTS, "EMAIL_TAKEN"),
        id="signup-email-taken-in-other-case",
    ),
    pytest.param(
        lambda e: e.login(e.account.email, "wrong password"),
        Expected(Code.UNAUTHENTICATED, "INVALID_CREDENTIALS"),
        id="login-wrong-password",
    ),
    pytest.param(
        lambda e: e.login(unique_email(), PASSWORD),
        Expected(Code.UNAUTHENTICATED, "INVALID_CREDENTIALS"),
        id="login-unknown-email",
    ),
    pytest.param(lambda e: e.login("", ""), invalid("email", "password"), id="login-empty"),
    # ListNotes.
    pytest.param(lambda e: e.list(page_token="not-a-token"), invalid("page_token"), id="list-malformed-page-token"),
    pytest.param(
        lambda e: e.list(page_token=e.unfiltered_page_token, tag="work"),
        invalid("page_token"),
        id="list-page-token-for-another-tag",
    ),
    pytest.param(lambda e: e.list(page_size=-1), invalid("page_size"), id="list-negative-page-size"),
    pytest.param(lambda e: e.list(tag="Work"), invalid("tag"), id="list-bad-tag-filter"),
    # UpdateNote.
    pytest.param(
        lambda e: e.update(["colour"], title="t"), invalid("update_mask.paths[0]"), id="update-unknown-mask-path"
    ),
    pytest.param(
        lambda e: e.update(["title", "create_time"], title="t"),
        invalid("update_mask.paths[1]"),
        id="update-output-only-mask-path",
    ),
    pytest.param(lambda e: e.update(["title"], title="t", etag=""), invalid("note.etag"), id="update-missing-etag"),
    pytest.param(lambda e: e.update(["title"], title="t", etag="v1"), invalid("note.etag"), id="update-malformed-etag"),
    pytest.param(lambda e: e.update(["title"], title="t", id="not-a-uuid"), invalid("note.id"), id="update-bad-id"),
    pytest.param(lambda e: e.update(["title"], title=" "), invalid("note.title"), id="update-blank-title"),
    pytest.param(
        lambda e: e.update(["title"], title="t", etag=e.note.etag + "0"),
        Expected(Code.ABORTED, "ETAG_MISMATCH"),
        id="update-wrong-etag",
    ),
    pytest.param(
        lambda e: e.update(["title"], title="t", id=str(uuid.uuid4())),
        Expected(Code.NOT_FOUND, "NOTE_NOT_FOUND"),
        id="update-unknown-id",
    ),
    # GetNote and DeleteNote.
    pytest.param(lambda e: e.get("not-a-uuid"), invalid("id"), id="get-bad-id"),
    pytest.param(lambda e: e.get(""), invalid("id"), id="get-empty-id"),
    pytest.param(lambda e: e.get(str(uuid.uuid4())), Expected(Code.NOT_FOUND, "NOTE_NOT_FOUND"), id="get-unknown-id"),
    pytest.param(
        lambda e: e.get(e.note.id, token=e.stranger.token),
        Expected(Code.NOT_FOUND, "NOTE_NOT_FOUND"),
        id="get-someone-elses-note",
    ),
    pytest.param(lambda e: e.delete("not-a-uuid"), invalid("id"), id="delete-bad-id"),
    pytest.param(
        lambda e: e.delete(e.note.id, etag=e.note.etag + "0"),
        Expected(Code.ABORTED, "ETAG_MISMATCH"),
        id="delete-wrong-etag",
    ),
    # GetProfile.
    pytest.param(lambda e: e.profile(recent_notes_limit=51), invalid("recent_notes_limit"), id="profile-limit-51"),
    pytest.param(
        lambda e: e.profile(recent_notes_limit=-1), invalid("recent_notes_limit"), id="profile-limit-negative"
    ),
    # UsersService through the gateway: own account only, internal methods refused.
    pytest.param(
        lambda e: e.users.GetUser(users_pb2.GetUserRequest(id=e.stranger.user.id), metadata=e.auth),
        Expected(Code.NOT_FOUND, "USER_NOT_FOUND"),
        id="get-someone-elses-account",
    ),
    pytest.param(
        lambda e: e.users.GetUser(users_pb2.GetUserRequest(id="not-a-uuid"), metadata=e.auth),
        invalid("id"),
        id="get-user-bad-id",
    ),
    pytest.param(
        lambda e: e.users.CreateUser(
            users_pb2.CreateUserRequest(email=unique_email(), display_name="x", password=PASSWORD), metadata=e.auth
        ),
        Expected(Code.PERMISSION_DENIED, "METHOD_NOT_PUBLIC"),
        id="internal-create-user",
    ),
    pytest.param(
        lambda e: e.users.CreateUser(
            users_pb2.CreateUserRequest(email=unique_email(), display_name="x", password=PASSWORD)
        ),
        Expected(Code.PERMISSION_DENIED, "METHOD_NOT_PUBLIC"),
        id="internal-create-user-without-token",
    ),
    pytest.param(
        lambda e: e.users.ListUsers(users_pb2.ListUsersRequest(), metadata=e.auth),
        Expected(Code.PERMISSION_DENIED, "METHOD_NOT_PUBLIC"),
        id="internal-list-users",
    ),
    pytest.param(
        lambda e: e.users.BatchGetUsers(users_pb2.BatchGetUsersRequest(ids=[e.account.user.id]), metadata=e.auth),
        Expected(Code.PERMISSION_DENIED, "METHOD_NOT_PUBLIC"),
        id="internal-batch-get-users",
    ),
    pytest.param(
        lambda e: e.users.VerifyCredentials(
            users_pb2.VerifyCredentialsRequest(email=e.account.email, password=PASSWORD), metadata=e.auth
        ),
        Expected(Code.PERMISSION_DENIED, "METHOD_NOT_PUBLIC"),
        id="internal-verify-credentials",
    ),
    # Tokens.
    pytest.param(lambda e: e.list(token=None), Expected(Code.UNAUTHENTICATED, "TOKEN_MISSING"), id="token-missing"),
    pytest.param(
        lambda e: e.gateway.GetProfile(gateway_pb2.GetProfileRequest()),
        Expected(Code.UNAUTHENTICATED, "TOKEN_MISSING"),
        id="token-missing-on-profile",
    ),
    pytest.param(
        lambda e: e.list(token="garbage"), Expected(Code.UNAUTHENTICATED, "TOKEN_MALFORMED"), id="token-malformed"
    ),
    pytest.param(
        lambda e: e.notes.ListNotes(LIST, metadata=(("authorization", "Basic YWRhOnB3"),)),
        Expected(Code.UNAUTHENTICATED, "TOKEN_MALFORMED"),
        id="token-not-bearer",
    ),
    pytest.param(
        lambda e: e.list(token=with_subject(e.account.token, e.stranger.user.id)),
        Expected(Code.UNAUTHENTICATED, "TOKEN_INVALID"),
        id="token-forged-subject",
    ),
    pytest.param(
        lambda e: e.list(token=with_altered_signature(e.account.token)),
        Expected(Code.UNAUTHENTICATED, "TOKEN_INVALID"),
        id="token-altered-signature",
    ),
    pytest.param(
        lambda e: e.list(token=e.other_suite_token),
        Expected(Code.UNAUTHENTICATED, "TOKEN_INVALID"),
        id="token-from-another-suites-key",
    ),
    # The backends called directly verify tokens themselves.
    pytest.param(
        lambda e: e.notes_port.ListNotes(LIST),
        Expected(Code.UNAUTHENTICATED, "TOKEN_MISSING"),
        id="notes-port-without-token",
    ),
    pytest.param(
        lambda e: e.notes_port.ListNotes(LIST, metadata=bearer(with_altered_signature(e.account.token))),
        Expected(Code.UNAUTHENTICATED, "TOKEN_INVALID"),
        id="notes-port-forged-token",
    ),
    pytest.param(
        lambda e: e.notes_port.ListNotes(LIST, metadata=bearer(e.other_suite_token)),
        Expected(Code.UNAUTHENTICATED, "TOKEN_INVALID"),
        id="notes-port-token-from-another-suites-key",
    ),
    pytest.param(
        lambda e: e.users_port.GetUser(users_pb2.GetUserRequest(id=e.account.user.id)),
        Expected(Code.UNAUTHENTICATED, "TOKEN_MISSING"),
        id="users-port-without-token",
    ),
    pytest.param(
        lambda e: e.users_port.ListUsers(users_pb2.ListUsersRequest(), metadata=e.auth),
        Expected(Code.PERMISSION_DENIED, "SERVICE_CREDENTIAL_REQUIRED"),
        id="users-port-internal-method-with-user-token",
    ),
]


@pytest.fixture
def env(suite, request) -> Env:
    return Env(suite, request)


def failure_of(call) -> ErrorDetails:
    """Runs `call()`, which must fail, and returns its error details."""
    with pytest.raises(grpc.RpcError) as failure:
        call()
    return error_details(failure.value)


@pytest.mark.parametrize("call, expected", BAD_CALLS)
def test_bad_call_fails_with_its_code_reason_and_fields(env, call, expected):
    error = failure_of(lambda: call(env))
    actual = Expected(error.code, error.reason, tuple(error.fields))
    assert (error.domain, actual) == ("notesuite", expected), error.message


def test_login_answers_a_wrong_password_exactly_like_an_unknown_email(env):
    wrong_password = failure_of(lambda: env.login(env.account.email, "wrong password"))
    unknown_email = failure_of(lambda: env.login(unique_email(), "wrong password"))
    assert wrong_password == unknown_email


def test_a_token_without_a_signature_algorithm_is_rejected(env):
    _, payload, _ = env.account.token.split(".")
    unsigned = b64url_encode(b'{"alg":"none","typ":"JWT"}') + "." + payload + "."
    error = failure_of(lambda: env.list(token=unsigned))
    assert error.code == Code.UNAUTHENTICATED
    assert error.reason in {"TOKEN_MALFORMED", "TOKEN_INVALID"}


def test_rejected_updates_leave_the_note_unchanged(env):
    failure_of(lambda: env.update(["colour"], title="Changed"))
    failure_of(lambda: env.update(["title"], title="Changed", etag=env.note.etag + "0"))
    assert env.get(env.note.id).note == env.note


MALFORMED_BODY_TARGETS = [
    ("gateway", "/notesuite.gateway.v1.GatewayService/SignUp", False),
    ("gateway", "/notesuite.notes.v1.NotesService/ListNotes", True),
    ("gateway", "/notesuite.users.v1.UsersService/GetUser", True),
    ("notes", "/notesuite.notes.v1.NotesService/CreateNote", True),
    ("users", "/notesuite.users.v1.UsersService/GetUser", True),
    ("notes", "/grpc.health.v1.Health/Check", False),
]


@pytest.mark.parametrize(
    "port, method, needs_token",
    MALFORMED_BODY_TARGETS,
    ids=[f"{port}-{method.rsplit('/', 1)[1]}" for port, method, _ in MALFORMED_BODY_TARGETS],
)
@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05ab"], ids=["bad-varint", "truncated-field"])
def test_malformed_protobuf_body_is_rejected_and_the_suite_keeps_serving(env, port, method, needs_token, body):
    # No serializer: the bytes go on the wire exactly as given.
    raw_call = env.suite.channel(port).unary_unary(method)
    with pytest.raises(grpc.RpcError) as failure:
        raw_call(body, metadata=env.auth if needs_token else ())
    assert failure.value.code() in {Code.INVALID_ARGUMENT, Code.INTERNAL}

    for serving_port in PORTS:
        health = health_pb2_grpc.HealthStub(env.suite.channel(serving_port))
        status = health.Check(health_pb2.HealthCheckRequest(service="")).status
        assert status == health_pb2.HealthCheckResponse.SERVING
