"""Data and tokens survive a restart when the suite keeps its data directory and signing key."""

from __future__ import annotations

from notesuite.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from notesuite.notes.v1 import notes_pb2, notes_pb2_grpc

from conftest import NOTESUITE_BIN, bearer, run, sign_up_on


def test_accounts_notes_and_tokens_survive_a_restart_with_the_same_data_and_key(start, tmp_path):
    keygen = run(NOTESUITE_BIN, "keygen", "--out-dir", tmp_path)
    assert keygen.returncode == 0, keygen.stderr
    data_dir = tmp_path / "data"
    options = ("--jwt-private-key", str(tmp_path / "jwt-private.pem"))

    first = start(data_dir, *options)
    account = sign_up_on(first.channel("gateway"))
    notes = notes_pb2_grpc.NotesServiceStub(first.channel("gateway"))
    request = notes_pb2.CreateNoteRequest(note=notes_pb2.Note(title="Survives", content="restart", tags=["keep"]))
    note = notes.CreateNote(request, metadata=account.metadata).note
    assert first.stop() == 0

    second = start(data_dir, *options)
    gateway = gateway_pb2_grpc.GatewayServiceStub(second.channel("gateway"))
    login = gateway.Login(gateway_pb2.LoginRequest(email=account.email, password=account.password))
    assert login.user == account.user

    notes = notes_pb2_grpc.NotesServiceStub(second.channel("gateway"))
    assert notes.GetNote(notes_pb2.GetNoteRequest(id=note.id), metadata=bearer(login.access_token)).note == note
    # The token issued before the restart is still good: same key.
    listed = notes.ListNotes(notes_pb2.ListNotesRequest(), metadata=account.metadata)
    assert list(listed.notes) == [note]
    assert second.stop() == 0
