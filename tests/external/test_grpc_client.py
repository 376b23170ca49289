"""A Python grpcio client with stubs generated from proto/, through the gateway as an
application would use it."""

from __future__ import annotations

import dataclasses
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from notesuite.gateway.v1 import gateway_pb2
from notesuite.notes.v1 import notes_pb2
from notesuite.users.v1 import users_pb2

from conftest import EXPECTED_SERVICES, PORTS, SERVICE_NAMES, bearer, error_details, expect_error


def create_note(notes, account, title: str, tags=(), content: str = "", request_id: str = ""):
    request = notes_pb2.CreateNoteRequest(
        note=notes_pb2.Note(title=title, content=content, tags=list(tags)), request_id=request_id
    )
    return notes.CreateNote(request, metadata=account.metadata).note


def list_all_notes(notes, account, page_size: int, tag: str = "") -> list:
    """Follows next_page_token until the last page and returns every note listed."""
    listed, page_token = [], ""
    while True:
        page = notes.ListNotes(
            notes_pb2.ListNotesRequest(page_size=page_size, page_token=page_token, tag=tag),
            metadata=account.metadata,
        )
        assert len(page.notes) <= page_size
        listed.extend(page.notes)
        if not page.next_page_token:
            return listed
        page_token = page.next_page_token


def update_title(notes, account, note, title: str):
    request = notes_pb2.UpdateNoteRequest(
        note=notes_pb2.Note(id=note.id, etag=note.etag, title=title),
        update_mask=field_mask_pb2.FieldMask(paths=["title"]),
    )
    return notes.UpdateNote(request, metadata=account.metadata).note


def test_note_lifecycle_through_the_gateway(gateway, notes, sign_up):
    signed_up = sign_up("Ada")
    login = gateway.Login(gateway_pb2.LoginRequest(email=signed_up.email, password=signed_up.password))
    assert login.user == signed_up.user
    assert login.expire_time.seconds > 0
    account = dataclasses.replace(signed_up, token=login.access_token)

    tags = [["work"], ["home", "work"], ["home"], ["work", "urgent"], []]
    created = [create_note(notes, account, f"Note {i}", tags[i], content=f"body {i}") for i in range(5)]
    assert len({note.id for note in created}) == 5
    assert all(note.owner_id == account.user.id for note in created)
    assert all(note.etag for note in created)

    listed = list_all_notes(notes, account, page_size=2)
    assert [note.id for note in listed] == [note.id for note in reversed(created)]

    first_page = notes.ListNotes(notes_pb2.ListNotesRequest(page_size=2), metadata=account.metadata)
    assert first_page.total_size == 5

    work = list_all_notes(notes, account, page_size=2, tag="work")
    assert [note.title for note in work] == ["Note 3", "Note 1", "Note 0"]

    note = created[1]
    fetched = notes.GetNote(notes_pb2.GetNoteRequest(id=note.id), metadata=account.metadata).note
    assert fetched == note

    updated = update_title(notes, account, fetched, "Renamed")
    assert updated.title == "Renamed"
    assert (updated.content, list(updated.tags)) == (note.content, list(note.tags))
    assert updated.etag != note.etag
    assert updated.revision > note.revision

    stale = expect_error(
        notes.UpdateNote,
        notes_pb2.UpdateNoteRequest(
            note=notes_pb2.Note(id=note.id, etag=note.etag, title="Lost update"),
            update_mask=field_mask_pb2.FieldMask(paths=["title"]),
        ),
        metadata=account.metadata,
    )
    assert (stale.code, stale.reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")

    notes.DeleteNote(notes_pb2.DeleteNoteRequest(id=note.id, etag=updated.etag), metadata=account.metadata)
    gone = expect_error(notes.GetNote, notes_pb2.GetNoteRequest(id=note.id), metadata=account.metadata)
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "NOTE_NOT_FOUND")
    assert len(list_all_notes(notes, account, page_size=50)) == 4


def test_pages_neither_repeat_nor_skip_notes_created_between_pages(notes, account):
    older = [create_note(notes, account, f"Older {i}") for i in range(3)]
    first_page = notes.ListNotes(notes_pb2.ListNotesRequest(page_size=2), metadata=account.metadata)
    create_note(notes, account, "Newer")

    rest = notes.ListNotes(
        notes_pb2.ListNotesRequest(page_size=2, page_token=first_page.next_page_token), metadata=account.metadata
    )
    listed = [note.id for note in [*first_page.notes, *rest.notes]]
    assert listed == [note.id for note in reversed(older)]
    assert rest.next_page_token == ""


def test_page_size_zero_means_fifty(notes, account):
    for i in range(51):
        create_note(notes, account, f"Note {i}")
    page = notes.ListNotes(notes_pb2.ListNotesRequest(page_size=0), metadata=account.metadata)
    assert len(page.notes) == 50
    assert page.next_page_token
    assert page.total_size == 51


def test_title_length_counts_characters_not_bytes(notes, account):
    title = "\N{GRINNING FACE}" * 200
    assert create_note(notes, account, title).title == title


def test_login_email_is_case_insensitive(gateway, account):
    login = gateway.Login(gateway_pb2.LoginRequest(email=account.email.upper(), password=account.password))
    assert login.user.id == account.user.id


def test_concurrent_updates_with_the_same_etag_let_exactly_one_win(notes, account):
    note = create_note(notes, account, "Contended")

    def attempt(title: str) -> str:
        try:
            update_title(notes, account, note, title)
            return "updated"
        except grpc.RpcError as error:
            return error_details(error).reason

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attempt, [f"Writer {i}" for i in range(8)]))
    assert sorted(outcomes) == ["ETAG_MISMATCH"] * 7 + ["updated"]


def test_concurrent_creates_with_the_same_request_id_make_one_note(notes, account):
    request_id = str(uuid.uuid4())
    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda _: create_note(notes, account, "Once", request_id=request_id), range(8)))
    assert {note.id for note in created} == {created[0].id}
    assert notes.ListNotes(notes_pb2.ListNotesRequest(), metadata=account.metadata).total_size == 1


def test_update_with_an_empty_mask_changes_every_non_empty_field(notes, account):
    note = create_note(notes, account, "Before", ["old"], content="old body")
    updated = notes.UpdateNote(
        notes_pb2.UpdateNoteRequest(note=notes_pb2.Note(id=note.id, etag=note.etag, content="new body")),
        metadata=account.metadata,
    ).note
    assert (updated.title, updated.content, list(updated.tags)) == ("Before", "new body", ["old"])


def test_another_user_cannot_see_change_or_delete_a_note(notes, sign_up):
    owner, stranger = sign_up("Owner"), sign_up("Stranger")
    note = create_note(notes, owner, "Private", ["secret"])

    attempts = {
        "get": (notes.GetNote, notes_pb2.GetNoteRequest(id=note.id)),
        "update": (
            notes.UpdateNote,
            notes_pb2.UpdateNoteRequest(note=notes_pb2.Note(id=note.id, etag=note.etag, title="Mine now")),
        ),
        "delete": (notes.DeleteNote, notes_pb2.DeleteNoteRequest(id=note.id)),
    }
    for name, (call, request) in attempts.items():
        error = expect_error(call, request, metadata=stranger.metadata)
        assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "NOTE_NOT_FOUND"), name

    listed = notes.ListNotes(notes_pb2.ListNotesRequest(), metadata=stranger.metadata)
    assert (list(listed.notes), listed.total_size) == ([], 0)
    tagged = notes.ListNotes(notes_pb2.ListNotesRequest(tag="secret"), metadata=stranger.metadata)
    assert list(tagged.notes) == []

    untouched = notes.GetNote(notes_pb2.GetNoteRequest(id=note.id), metadata=owner.metadata).note
    assert untouched == note


def test_get_profile_returns_the_account_note_count_and_recent_notes(gateway, notes, account):
    created = [create_note(notes, account, f"Note {i}") for i in range(4)]

    profile = gateway.GetProfile(gateway_pb2.GetProfileRequest(recent_notes_limit=3), metadata=account.metadata)
    assert profile.user == account.user
    assert profile.note_count == 4
    assert [note.id for note in profile.recent_notes] == [note.id for note in reversed(created)][:3]

    default_limit = gateway.GetProfile(gateway_pb2.GetProfileRequest(), metadata=account.metadata)
    assert len(default_limit.recent_notes) == 4


def test_get_profile_of_a_new_account_has_no_notes(gateway, account):
    profile = gateway.GetProfile(gateway_pb2.GetProfileRequest(), metadata=account.metadata)
    assert profile.user.id == account.user.id
    assert (profile.note_count, list(profile.recent_notes)) == (0, [])


def test_create_note_with_the_same_request_id_returns_the_same_note(notes, account):
    request_id = str(uuid.uuid4())
    first = create_note(notes, account, "Once", ["retry"], request_id=request_id)
    retry = create_note(notes, account, "Once", ["retry"], request_id=request_id)
    assert retry == first
    assert notes.ListNotes(notes_pb2.ListNotesRequest(), metadata=account.metadata).total_size == 1


def test_request_ids_are_scoped_to_their_user(notes, sign_up):
    alice, bob = sign_up("Alice"), sign_up("Bob")
    request_id = str(uuid.uuid4())
    alices = create_note(notes, alice, "Same request id", request_id=request_id)
    bobs = create_note(notes, bob, "Same request id", request_id=request_id)
    assert bobs.id != alices.id
    assert bobs.owner_id == bob.user.id


def test_users_service_through_the_gateway_reads_and_updates_the_callers_own_account(users, account):
    user = users.GetUser(users_pb2.GetUserRequest(id=account.user.id), metadata=account.metadata).user
    assert user == account.user

    renamed = users.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(id=user.id, etag=user.etag, display_name="Ada L."),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
        metadata=account.metadata,
    ).user
    assert (renamed.display_name, renamed.email) == ("Ada L.", user.email)
    assert renamed.etag != user.etag


def test_deleted_account_cannot_log_in(gateway, users, account):
    users.DeleteUser(users_pb2.DeleteUserRequest(id=account.user.id), metadata=account.metadata)
    error = expect_error(gateway.Login, gateway_pb2.LoginRequest(email=account.email, password=account.password))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")


@pytest.mark.parametrize("port", PORTS)
@pytest.mark.parametrize("service", ["", "liveness", "own"])
def test_health_checking_client_sees_serving_on_each_port(suite, port, service):
    health = health_pb2_grpc.HealthStub(suite.channel(port))
    service = SERVICE_NAMES[port] if service == "own" else service
    response = health.Check(health_pb2.HealthCheckRequest(service=service))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("port", PORTS)
def test_health_check_of_an_unknown_service_is_not_found(suite, port):
    health = health_pb2_grpc.HealthStub(suite.channel(port))
    with pytest.raises(grpc.RpcError) as failure:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_watch_streams_serving(suite):
    health = health_pb2_grpc.HealthStub(suite.channel("gateway"))
    updates = health.Watch(health_pb2.HealthCheckRequest(service=""))
    assert next(updates).status == health_pb2.HealthCheckResponse.SERVING
    updates.cancel()


def test_reflection_v1alpha_lists_services_and_resolves_descriptors_on_the_gateway(suite):
    from google.protobuf.descriptor_pool import DescriptorPool

    database = ProtoReflectionDescriptorDatabase(suite.channel("gateway"))
    assert sorted(database.get_services()) == EXPECTED_SERVICES["gateway"]

    pool = DescriptorPool(database)
    methods = pool.FindServiceByName("notesuite.notes.v1.NotesService").methods_by_name
    assert sorted(methods) == [
        "CreateNote",
        "DeleteNote",
        "GetNote",
        "ImportNotes",
        "ListNotes",
        "PurgeUserNotes",
        "UpdateNote",
        "WatchNotes",
    ]
    note = pool.FindMessageTypeByName("notesuite.notes.v1.Note")
    assert note.fields_by_name["create_time"].message_type.full_name == "google.protobuf.Timestamp"


@pytest.mark.parametrize("port", PORTS)
def test_reflection_v1_lists_services_on_each_port(suite, port):
    # v1 and v1alpha share the wire format, so the v1alpha messages serve for a v1 call.
    reflection_v1 = suite.channel(port).stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [response] = list(reflection_v1(iter([request])))
    listed = sorted(service.name for service in response.list_services_response.service)
    assert listed == EXPECTED_SERVICES[port]


def test_a_token_works_on_the_notes_port_directly(suite, account):
    from notesuite.notes.v1 import notes_pb2_grpc

    direct = notes_pb2_grpc.NotesServiceStub(suite.channel("notes"))
    listed = direct.ListNotes(notes_pb2.ListNotesRequest(), metadata=bearer(account.token))
    assert listed.total_size == 0
