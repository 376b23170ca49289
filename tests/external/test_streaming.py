"""The streaming RPCs of NotesService through the gateway, as clients call them: WatchNotes
(server streaming) and ImportNotes (client streaming) from Python grpcio, grpcurl 1.8.6
(reflection v1alpha) and buf curl (reflection v1).

Every call has a deadline and every wait a timeout, so a stream that stops delivering fails a
test instead of hanging the run."""

from __future__ import annotations

import json
import queue
import signal
import threading
import time
import uuid
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import field_mask_pb2
from notesuite.notes.v1 import notes_pb2

from conftest import BUF, CALL_TIMEOUT_S, GRPCURL, bearer, error_details, require_tool, run, sign_up_on

NOTES = "notesuite.notes.v1.NotesService"
CREATED = notes_pb2.WatchNotesResponse.EVENT_TYPE_CREATED
UPDATED = notes_pb2.WatchNotesResponse.EVENT_TYPE_UPDATED
DELETED = notes_pb2.WatchNotesResponse.EVENT_TYPE_DELETED
HEARTBEAT = notes_pb2.WatchNotesResponse.EVENT_TYPE_HEARTBEAT

# `up` runs notes with its default watch settings: a HEARTBEAT every 5 s, at most 32 watch
# streams per user; and the gateway with a 10 s default deadline for calls that set none.
HEARTBEAT_INTERVAL_S = 5
MAX_WATCHES_PER_USER = 32
GATEWAY_DEFAULT_DEADLINE_S = 10

# `up`'s gateway ends a forwarded stream whose client has not read for 10 s, and the suite
# gets 5 s to finish its calls after SIGTERM.
STREAM_STALL_TIMEOUT_S = 10
SHUTDOWN_GRACE_S = 5
# Changes whose events together (20 MB) are more than every flow-control window on the way.
LARGE_NOTES = 100
LARGE_CONTENT = 200 * 1024

# A watch stream's own deadline: longer than any test needs it open.
WATCH_DEADLINE_S = 60
# The longest wait for one event: a heartbeat is due within HEARTBEAT_INTERVAL_S.
EVENT_TIMEOUT_S = HEARTBEAT_INTERVAL_S + 5
IMPORT_DEADLINE_S = 60
# How long a command-line tool keeps a watch open before its deadline ends it.
TOOL_WATCH_S = 3


# --- Helpers ---------------------------------------------------------------------------------


def create_note(notes, account, title: str, tags=()):
    request = notes_pb2.CreateNoteRequest(note=notes_pb2.Note(title=title, tags=list(tags)), request_id=new_id())
    return notes.CreateNote(request, metadata=account.metadata).note


def update_title(notes, account, note, title: str):
    request = notes_pb2.UpdateNoteRequest(
        note=notes_pb2.Note(id=note.id, etag=note.etag, title=title),
        update_mask=field_mask_pb2.FieldMask(paths=["title"]),
    )
    return notes.UpdateNote(request, metadata=account.metadata).note


def delete_note(notes, account, note) -> None:
    notes.DeleteNote(notes_pb2.DeleteNoteRequest(id=note.id, etag=note.etag), metadata=account.metadata)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class StreamEnd:
    """How a watch stream ended: `error` is None when the server closed it with OK."""

    error: grpc.RpcError | None

    def __str__(self) -> str:
        if self.error is None:
            return "the stream ended with OK"
        return f"the stream ended with {error_details(self.error)}"


class Watch:
    """A WatchNotes call whose events a thread reads into a queue, so that the test can wait
    for each one with a timeout."""

    def __init__(self, notes, metadata, *, deadline: float = WATCH_DEADLINE_S, **request):
        self.call = notes.WatchNotes(notes_pb2.WatchNotesRequest(**request), metadata=metadata, timeout=deadline)
        # The revision of the last change received, once known: a heartbeat must carry it.
        self.delivered: int | None = None if request.get("start_from_now") else request.get("after_revision", 0)
        self._events: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self._events.put(event)
        except grpc.RpcError as error:
            self._events.put(StreamEnd(error))
        else:
            self._events.put(StreamEnd(None))

    def next(self, timeout: float = EVENT_TIMEOUT_S):
        """The next event, which must come within `timeout` and not be the stream's end."""
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no watch event within {timeout}s") from None
        assert not isinstance(event, StreamEnd), str(event)
        if event.type == HEARTBEAT:
            # "Every change up to it has been sent": a heartbeat ahead of the last change
            # received means a change was skipped, one behind means a change came twice.
            if self.delivered is not None:
                assert event.revision == self.delivered, f"heartbeat {event.revision} after change {self.delivered}"
            self.delivered = event.revision
        else:
            self.delivered = event.revision
        return event

    def changes_through(self, revision: int) -> list:
        """The changes received until the one with `revision` (heartbeats checked and left out)."""
        changes = []
        while not changes or changes[-1].revision < revision:
            event = self.next()
            if event.type != HEARTBEAT:
                changes.append(event)
        return changes

    def cancel(self) -> tuple[list, StreamEnd]:
        """Cancels the call and returns the events not read yet and how the stream ended."""
        self.call.cancel()
        return self.wait_for_end()

    def wait_for_end(self, timeout: float = EVENT_TIMEOUT_S) -> tuple[list, StreamEnd]:
        """Waits for the stream to end and returns the events not read yet and how it ended."""
        self._reader.join(timeout=timeout)
        assert not self._reader.is_alive(), f"the watch did not end within {timeout}s"
        left = []
        while not isinstance(item := self._events.get_nowait(), StreamEnd):
            left.append(item)
        return left, item


def summary_of(changes) -> list[tuple]:
    return [(event.type, event.revision, event.note_id) for event in changes]


def import_item(title: str, tags=(), request_id: str | None = None, content: str = ""):
    return notes_pb2.ImportNotesRequest(
        note=notes_pb2.Note(title=title, tags=list(tags), content=content), request_id=request_id or new_id()
    )


def item_errors(summary) -> list[tuple]:
    return [
        (error.index, error.code, error.reason, [violation.field for violation in error.field_violations])
        for error in summary.errors
    ]


def json_values(text: str) -> list:
    """Every JSON value in `text`, as grpcurl and buf curl print one per streamed message."""
    decoder, values, position, text = json.JSONDecoder(), [], 0, text.strip()
    while position < len(text):
        value, position = decoder.raw_decode(text, position)
        values.append(value)
        while position < len(text) and text[position].isspace():
            position += 1
    return values


def json_changes(events: list[dict]) -> list[tuple]:
    """(type, revision, note id) of each change a tool printed; heartbeats must carry the last
    change's revision."""
    changes, last = [], 0
    for event in events:
        if event["type"] == "EVENT_TYPE_HEARTBEAT":
            assert int(event.get("revision", "0")) == last, events
        else:
            last = int(event["revision"])
            changes.append((event["type"], last, event["noteId"]))
    return changes


# --- WatchNotes from Python ------------------------------------------------------------------


def test_watch_delivers_every_change_once_in_revision_order_and_cancels_cleanly(notes, account):
    watch = Watch(notes, account.metadata, after_revision=0)
    # The replay of an empty log ends with a heartbeat at revision 0: the stream is live.
    first = watch.next()
    assert (first.type, first.revision) == (HEARTBEAT, 0)

    a = create_note(notes, account, "a", ["x"])
    b = create_note(notes, account, "b")
    c = create_note(notes, account, "c")
    renamed = update_title(notes, account, b, "b renamed")
    delete_note(notes, account, c)
    assert [a.revision, b.revision, c.revision, renamed.revision] == [1, 2, 3, 4]

    changes = watch.changes_through(5)
    assert summary_of(changes) == [
        (CREATED, 1, a.id),
        (CREATED, 2, b.id),
        (CREATED, 3, c.id),
        (UPDATED, 4, b.id),
        (DELETED, 5, c.id),
    ]
    # Each change carries the note as that change left it; a delete only its id.
    assert [event.note for event in changes[:4]] == [a, b, c, renamed]
    assert not changes[4].HasField("note")

    # Nothing more is pending: the next event is the periodic heartbeat at revision 5, not a
    # repeated change.
    after = watch.next()
    assert (after.type, after.revision) == (HEARTBEAT, 5)

    left, end = watch.cancel()
    assert left == []
    assert end.error is not None and end.error.code() == grpc.StatusCode.CANCELLED, str(end)


def test_watch_sees_only_the_callers_changes(notes, sign_up):
    alice, bob = sign_up("Alice"), sign_up("Bob")
    watch = Watch(notes, alice.metadata, after_revision=0)
    assert watch.next().type == HEARTBEAT
    create_note(notes, bob, "bob's")
    mine = create_note(notes, alice, "alice's")
    # Revisions are per owner: Bob's note takes his revision 1 and never reaches Alice.
    [change] = watch.changes_through(1)
    assert (change.type, change.revision, change.note_id) == (CREATED, 1, mine.id)
    watch.cancel()


def test_watch_from_now_replays_nothing_and_then_goes_live(notes, account):
    old = [create_note(notes, account, f"old {i}") for i in range(2)]
    watch = Watch(notes, account.metadata, start_from_now=True)
    first = watch.next()
    assert (first.type, first.revision) == (HEARTBEAT, old[-1].revision)
    new = create_note(notes, account, "new")
    assert summary_of(watch.changes_through(new.revision)) == [(CREATED, 3, new.id)]
    watch.cancel()


def test_watch_resumes_from_a_revision_without_repeating_earlier_changes(notes, account):
    made = [create_note(notes, account, f"note {i}") for i in range(4)]
    watch = Watch(notes, account.metadata, after_revision=2)
    assert summary_of(watch.changes_through(4)) == [(CREATED, 3, made[2].id), (CREATED, 4, made[3].id)]
    # The replay is over: its end is a heartbeat at the last revision.
    end_of_replay = watch.next()
    assert (end_of_replay.type, end_of_replay.revision) == (HEARTBEAT, 4)
    watch.cancel()


def test_list_then_watch_from_the_listings_revision_misses_nothing(notes, account):
    """A writer keeps creating notes while the client lists and then watches from the
    listing's revision: every note is either in the listing or in the watch, never both."""
    created: list = []
    failures: list[grpc.RpcError] = []
    some_created, listed = threading.Event(), threading.Event()

    def write() -> None:
        try:
            written_after_list = 0
            while written_after_list < 5 and len(created) < 500:
                # Only a create sent after the listing came back is surely after it: one
                # answered just after may have committed before the listing read.
                after_list = listed.is_set()
                created.append(create_note(notes, account, f"note {len(created)}"))
                if len(created) == 5:
                    some_created.set()
                if after_list:
                    written_after_list += 1
        except grpc.RpcError as error:
            failures.append(error)
        finally:
            # Whatever happened, the test goes on to see it.
            some_created.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert some_created.wait(timeout=CALL_TIMEOUT_S)
    page = notes.ListNotes(notes_pb2.ListNotesRequest(page_size=1000), metadata=account.metadata)
    listed.set()
    writer.join(timeout=CALL_TIMEOUT_S * 3)
    assert not writer.is_alive()
    assert failures == []

    assert [note.revision for note in created] == list(range(1, len(created) + 1))
    # The listing happened after the 5th create and before the last 5.
    assert 5 <= page.revision <= len(created) - 5
    assert not page.next_page_token
    # Exactly the notes created up to the listing's revision are in it.
    assert sorted(note.id for note in page.notes) == sorted(note.id for note in created[: page.revision])

    watch = Watch(notes, account.metadata, after_revision=page.revision)
    changes = watch.changes_through(len(created))
    assert summary_of(changes) == [(CREATED, note.revision, note.id) for note in created[page.revision :]]
    watch.cancel()


def test_cancelled_watches_give_their_upstream_stream_back(notes, account):
    """The gateway ends the backend's watch when its client cancels: a user at the watch
    limit who cancels every watch can open as many again."""

    def open_watch():
        call = notes.WatchNotes(notes_pb2.WatchNotesRequest(), metadata=account.metadata, timeout=WATCH_DEADLINE_S)
        first = next(call)
        assert first.type == HEARTBEAT
        return call

    calls = [open_watch() for _ in range(MAX_WATCHES_PER_USER)]
    with pytest.raises(grpc.RpcError) as refused:
        open_watch()
    details = error_details(refused.value)
    assert (details.code, details.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_WATCHES")
    assert details.retry_delay is not None and details.retry_delay > 0

    for call in calls:
        call.cancel()
    # The cancels reach the backend asynchronously: a watch refused meanwhile is retried after
    # the delay its RetryInfo asks for, as the contract tells clients to, for a bounded time.
    reopened, deadline = [], time.monotonic() + CALL_TIMEOUT_S
    while len(reopened) < MAX_WATCHES_PER_USER:
        try:
            reopened.append(open_watch())
        except grpc.RpcError as error:
            details = error_details(error)
            assert details.reason == "TOO_MANY_WATCHES", details
            assert time.monotonic() < deadline, f"only {len(reopened)} watches reopened: {details}"
            time.sleep(details.retry_delay)
    for call in reopened:
        call.cancel()


def test_a_watcher_that_stops_reading_is_ended_with_watch_too_slow_and_resumes_by_revision(suite, account):
    """A client that stops reading while changes wait is ended with a status (not a reset) it
    can act on, and watching again from the last revision it received misses nothing."""
    from notesuite.notes.v1 import notes_pb2_grpc

    # Enough changes that their events overflow every buffer between notes and the client.
    content = "x" * LARGE_CONTENT
    summary = notes_pb2_grpc.NotesServiceStub(suite.channel()).ImportNotes(
        (import_item(f"large {i}", content=content) for i in range(LARGE_NOTES)),
        metadata=account.metadata,
        timeout=IMPORT_DEADLINE_S,
    )
    assert (summary.created_count, summary.revision) == (LARGE_NOTES, LARGE_NOTES)

    # A connection of its own, so that what the stalled stream holds stays off the others.
    with grpc.insecure_channel(suite.gateway) as channel:
        notes = notes_pb2_grpc.NotesServiceStub(channel)
        call = notes.WatchNotes(
            notes_pb2.WatchNotesRequest(after_revision=0), metadata=account.metadata, timeout=WATCH_DEADLINE_S
        )
        received = [next(call)]
        # The client is slow, not waiting for the server: it stops reading for longer than
        # the stall timeout.
        time.sleep(STREAM_STALL_TIMEOUT_S + 2)
        with pytest.raises(grpc.RpcError) as ended:
            received.extend(call)
    details = error_details(ended.value)
    assert (details.code, details.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "WATCH_TOO_SLOW"), details
    revisions = [event.revision for event in received if event.type != HEARTBEAT]
    assert revisions == list(range(1, len(revisions) + 1))
    assert len(revisions) < LARGE_NOTES

    resumed = Watch(notes_pb2_grpc.NotesServiceStub(suite.channel()), account.metadata, after_revision=revisions[-1])
    changes = resumed.changes_through(LARGE_NOTES)
    assert [event.revision for event in changes] == list(range(revisions[-1] + 1, LARGE_NOTES + 1))
    resumed.cancel()


def test_sigterm_ends_a_watch_through_the_gateway_with_unavailable(start, tmp_path):
    """On drain a watch is ended with UNAVAILABLE, so that its client resumes on another
    replica, and does not hold the process for its shutdown grace."""
    from notesuite.notes.v1 import notes_pb2_grpc

    suite = start(tmp_path / "data")
    notes = notes_pb2_grpc.NotesServiceStub(suite.channel())
    account = sign_up_on(suite.channel())
    note = create_note(notes, account, "before the drain")
    watch = Watch(notes, account.metadata, after_revision=0)
    assert summary_of(watch.changes_through(1)) == [(CREATED, 1, note.id)]

    signalled = time.monotonic()
    suite.process.send_signal(signal.SIGTERM)
    left, end = watch.wait_for_end()
    assert [event.type for event in left] in ([], [HEARTBEAT])
    assert end.error is not None and end.error.code() == grpc.StatusCode.UNAVAILABLE, str(end)
    assert suite.wait() == 0
    assert time.monotonic() - signalled < SHUTDOWN_GRACE_S


def test_sigterm_ends_an_import_still_sending_with_unavailable_at_once(start, tmp_path):
    """An import answers only at its end, so a drain cannot end it by cutting its answer: it
    is answered UNAVAILABLE (SERVER_DRAINING) as soon as the drain cuts off, not held for the
    shutdown grace; what it sent with request ids can be sent again."""
    from notesuite.notes.v1 import notes_pb2_grpc

    suite = start(tmp_path / "data")
    notes = notes_pb2_grpc.NotesServiceStub(suite.channel())
    account = sign_up_on(suite.channel())
    release = threading.Event()

    def items():
        yield import_item("before the drain", request_id=new_id())
        # Still sending when the drain comes: the client has more to say.
        release.wait(SHUTDOWN_GRACE_S * 2)

    future = notes.ImportNotes.future(items(), metadata=account.metadata)
    try:
        signalled = time.monotonic()
        suite.process.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as failure:
            future.result(timeout=SHUTDOWN_GRACE_S * 2)
        ended = time.monotonic() - signalled
    finally:
        release.set()
        future.cancel()
    details = error_details(failure.value)
    assert (details.code, details.reason) == (grpc.StatusCode.UNAVAILABLE, "SERVER_DRAINING"), details
    assert ended < SHUTDOWN_GRACE_S, f"answered after {ended:.1f} s, not at the drain's cutoff"
    assert suite.wait() == 0


# --- ImportNotes from Python -----------------------------------------------------------------

IMPORT_SIZE = 300
# Bad items by index: (title, tags) and the fields their error names.
BAD_ITEMS = {
    7: (("", ["ok"]), ["note.title"]),
    150: (("bad tag", ["fine", "Not OK"]), ["note.tags[1]"]),
    299: (("   ", ["UPPER"]), ["note.title", "note.tags[0]"]),
}


def test_import_reports_bad_items_by_index_creates_the_rest_and_is_idempotent(notes, account):
    request_ids = [new_id() for _ in range(IMPORT_SIZE)]
    good = [index for index in range(IMPORT_SIZE) if index not in BAD_ITEMS]
    sent = []

    def items():
        # A generator: grpcio sends each item as the stream takes it.
        for index, request_id in enumerate(request_ids):
            title, tags = BAD_ITEMS[index][0] if index in BAD_ITEMS else (f"imported {index}", [f"tag-{index % 3}"])
            sent.append(index)
            yield import_item(title, tags, request_id)

    expected_errors = [
        (index, grpc.StatusCode.INVALID_ARGUMENT.value[0], "INVALID_FIELDS", fields)
        for index, (_, fields) in sorted(BAD_ITEMS.items())
    ]

    summary = notes.ImportNotes(items(), metadata=account.metadata, timeout=IMPORT_DEADLINE_S)
    assert len(sent) == IMPORT_SIZE
    assert (summary.created_count, summary.already_present_count, summary.error_count) == (len(good), 0, 3)
    assert item_errors(summary) == expected_errors
    assert all(error.message for error in summary.errors)
    assert summary.revision == len(good)

    # The notes are there, each with its own revision, in stream order, and in the change log.
    page = notes.ListNotes(notes_pb2.ListNotesRequest(page_size=1000), metadata=account.metadata)
    assert page.total_size == len(good)
    assert [note.title for note in sorted(page.notes, key=lambda note: note.revision)] == [
        f"imported {index}" for index in good
    ]
    watch = Watch(notes, account.metadata, after_revision=0)
    changes = watch.changes_through(len(good))
    assert [(event.type, event.revision, event.note.title) for event in changes] == [
        (CREATED, revision, f"imported {index}") for revision, index in enumerate(good, start=1)
    ]
    watch.cancel()

    # The same import again (same request ids) creates nothing.
    sent.clear()
    again = notes.ImportNotes(items(), metadata=account.metadata, timeout=IMPORT_DEADLINE_S)
    assert len(sent) == IMPORT_SIZE
    assert (again.created_count, again.already_present_count, again.error_count) == (0, len(good), 3)
    assert item_errors(again) == expected_errors
    after = notes.ListNotes(notes_pb2.ListNotesRequest(page_size=1), metadata=account.metadata)
    assert (after.total_size, after.revision) == (len(good), len(good))


def test_import_reports_a_request_id_reused_for_another_note(notes, account):
    request_id = new_id()
    first = notes.ImportNotes(iter([import_item("first", request_id=request_id)]), metadata=account.metadata)
    assert first.created_count == 1
    second = notes.ImportNotes(
        iter([import_item("other", request_id=request_id), import_item("fine")]), metadata=account.metadata
    )
    assert (second.created_count, second.already_present_count, second.error_count) == (1, 0, 1)
    assert [(error.index, error.code, error.reason) for error in second.errors] == [
        (0, grpc.StatusCode.FAILED_PRECONDITION.value[0], "REQUEST_ID_REUSED")
    ]


def test_an_empty_import_creates_nothing(notes, account):
    summary = notes.ImportNotes(iter([]), metadata=account.metadata)
    assert (summary.created_count, summary.already_present_count, summary.error_count, summary.revision) == (
        0,
        0,
        0,
        0,
    )


def test_an_import_without_a_deadline_outlasts_the_gateways_default_deadline(suite, account):
    """A client-streaming call answers only at its end, so the gateway must not give an
    import without a deadline its default one (10 s for unary calls)."""
    from notesuite.notes.v1 import notes_pb2_grpc

    # A channel of its own: the suite's channels give every call a deadline.
    with grpc.insecure_channel(suite.gateway) as channel:
        notes = notes_pb2_grpc.NotesServiceStub(channel)

        def items():
            yield import_item("before the pause")
            # The client is slow, not waiting for the server: it sends the rest only after
            # the gateway's default deadline would have passed.
            time.sleep(GATEWAY_DEFAULT_DEADLINE_S + 1)
            yield import_item("after the pause")

        future = notes.ImportNotes.future(items(), metadata=account.metadata)
        try:
            summary = future.result(timeout=GATEWAY_DEFAULT_DEADLINE_S + IMPORT_DEADLINE_S)
        finally:
            future.cancel()
    assert (summary.created_count, summary.error_count, summary.revision) == (2, 0, 2)


# --- Errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"after_revision": 3}, "after_revision"),
        ({"after_revision": -1}, "after_revision"),
        ({"after_revision": 1, "start_from_now": True}, "after_revision"),
    ],
    ids=["ahead-of-the-current-revision", "negative", "with-start-from-now"],
)
def test_watch_with_a_bad_start_is_invalid_argument(notes, account, request_fields, field):
    for i in range(2):
        create_note(notes, account, f"note {i}")
    call = notes.WatchNotes(notes_pb2.WatchNotesRequest(**request_fields), metadata=account.metadata)
    with pytest.raises(grpc.RpcError) as failure:
        next(call)
    details = error_details(failure.value)
    assert (details.code, details.reason, details.domain) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELDS",
        "notesuite",
    )
    assert details.fields == [field]


def test_watch_from_exactly_the_current_revision_is_allowed(notes, account):
    for i in range(2):
        create_note(notes, account, f"note {i}")
    watch = Watch(notes, account.metadata, after_revision=2)
    first = watch.next()
    assert (first.type, first.revision) == (HEARTBEAT, 2)
    watch.cancel()


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [((), "TOKEN_MISSING"), (bearer("not-a-token"), "TOKEN_MALFORMED")],
    ids=["no-token", "malformed-token"],
)
def test_streaming_calls_without_a_valid_token_are_unauthenticated(notes, metadata, reason):
    watch = notes.WatchNotes(notes_pb2.WatchNotesRequest(), metadata=metadata)
    with pytest.raises(grpc.RpcError) as failure:
        next(watch)
    details = error_details(failure.value)
    assert (details.code, details.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)

    with pytest.raises(grpc.RpcError) as failure:
        notes.ImportNotes(iter([import_item("never")]), metadata=metadata)
    details = error_details(failure.value)
    assert (details.code, details.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)


# --- grpcurl 1.8.6 (reflection v1alpha) ------------------------------------------------------


def grpcurl(address: str, *args: str, options=(), token: str | None = None, stdin: str | None = None):
    """grpcurl [options] address args...: grpcurl takes its options before the address."""
    require_tool(GRPCURL)
    options = ["-plaintext", *options]
    if token is not None:
        options += ["-H", f"authorization: Bearer {token}"]
    return run(GRPCURL, *options, address, *args, stdin=stdin)


def test_grpcurl_describes_both_streaming_methods(suite):
    result = grpcurl(suite.gateway, "describe", NOTES)
    assert result.returncode == 0, result.stderr
    assert (
        "rpc WatchNotes ( .notesuite.notes.v1.WatchNotesRequest ) "
        "returns ( stream .notesuite.notes.v1.WatchNotesResponse );" in result.stdout
    )
    assert (
        "rpc ImportNotes ( stream .notesuite.notes.v1.ImportNotesRequest ) "
        "returns ( .notesuite.notes.v1.ImportNotesResponse );" in result.stdout
    )


def test_grpcurl_imports_several_messages_from_stdin(suite, account):
    items = [
        {"note": {"title": "one", "tags": ["cli"]}, "requestId": new_id()},
        {"note": {"title": "two"}, "requestId": new_id()},
        {"note": {"title": ""}, "requestId": new_id()},
        {"note": {"title": "four"}, "requestId": new_id()},
    ]
    stdin = "\n".join(json.dumps(item) for item in items)

    def import_them() -> dict:
        result = grpcurl(suite.gateway, f"{NOTES}/ImportNotes", options=["-d", "@"], token=account.token, stdin=stdin)
        assert result.returncode == 0, result.stderr
        [summary] = json_values(result.stdout)
        return summary

    summary = import_them()
    assert summary["createdCount"] == 3
    assert summary["errorCount"] == 1
    assert summary["revision"] == "3"
    [error] = summary["errors"]
    assert (error["index"], error["code"], error["reason"]) == (2, 3, "INVALID_FIELDS")
    assert [violation["field"] for violation in error["fieldViolations"]] == ["note.title"]

    again = import_them()
    assert "createdCount" not in again  # proto3 JSON leaves out a 0
    assert again["alreadyPresentCount"] == 3
    assert again["errorCount"] == 1


def test_grpcurl_watch_replays_earlier_changes_until_its_max_time(suite, notes, account):
    a = create_note(notes, account, "a")
    b = create_note(notes, account, "b")
    update_title(notes, account, a, "a renamed")

    started = time.monotonic()
    result = grpcurl(
        suite.gateway,
        f"{NOTES}/WatchNotes",
        options=["-max-time", str(TOOL_WATCH_S), "-d", json.dumps({"after_revision": 0})],
        token=account.token,
    )
    # The watch stays open until grpcurl's deadline ends it.
    assert time.monotonic() - started >= TOOL_WATCH_S
    assert result.returncode != 0
    assert "Code: DeadlineExceeded" in result.stderr
    events = json_values(result.stdout)
    assert json_changes(events) == [
        ("EVENT_TYPE_CREATED", 1, a.id),
        ("EVENT_TYPE_CREATED", 2, b.id),
        ("EVENT_TYPE_UPDATED", 3, a.id),
    ]
    assert events[2]["note"]["title"] == "a renamed"
    # The end of the replay is marked by a heartbeat.
    assert events[3] == {"type": "EVENT_TYPE_HEARTBEAT", "revision": "3"}


# --- buf curl (reflection v1) ----------------------------------------------------------------


def buf_curl(address: str, method: str, *args: str, token: str, stdin: str | None = None):
    require_tool(BUF)
    options = ["--protocol", "grpc", "--http2-prior-knowledge", "--reflect-protocol", "grpc-v1"]
    options += ["--header", f"authorization: Bearer {token}"]
    return run(BUF, "curl", *options, *args, f"http://{address}/{NOTES}/{method}", stdin=stdin)


def test_buf_curl_watch_replays_earlier_changes_until_its_timeout(suite, notes, account):
    a = create_note(notes, account, "a")
    delete_note(notes, account, a)
    b = create_note(notes, account, "b")

    started = time.monotonic()
    result = buf_curl(
        suite.gateway,
        "WatchNotes",
        "--timeout",
        f"{TOOL_WATCH_S}s",
        "--data",
        json.dumps({"afterRevision": "0"}),
        token=account.token,
    )
    assert time.monotonic() - started >= TOOL_WATCH_S
    assert result.returncode != 0
    assert json.loads(result.stderr)["code"] == "deadline_exceeded"
    events = json_values(result.stdout)
    assert json_changes(events) == [
        ("EVENT_TYPE_CREATED", 1, a.id),
        ("EVENT_TYPE_DELETED", 2, a.id),
        ("EVENT_TYPE_CREATED", 3, b.id),
    ]
    assert "note" not in events[1]
    assert events[3] == {"type": "EVENT_TYPE_HEARTBEAT", "revision": "3"}


def test_buf_curl_imports_several_messages_from_stdin(suite, account):
    items = [{"note": {"title": f"from buf {i}"}, "requestId": new_id()} for i in range(3)]
    result = buf_curl(
        suite.gateway, "ImportNotes", "--data", "@-", token=account.token, stdin="\n".join(map(json.dumps, items))
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"createdCount": 3, "revision": "3"}
