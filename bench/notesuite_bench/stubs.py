"""Python stubs generated from proto/ at run time (as tests/external does), for the calls that
set a benchmark up: signing up, creating notes, and the request bodies h2load sends."""

from __future__ import annotations

import importlib
import importlib.resources
import shutil
import struct
import sys
import tempfile
import uuid
from pathlib import Path

import grpc

CALL_TIMEOUT_S = 30


class Stubs:
    def __init__(self, proto_root: Path):
        from grpc_tools import protoc

        self.directory = tempfile.mkdtemp(prefix="notesuite-bench-stubs-")
        well_known_types = importlib.resources.files("grpc_tools") / "_proto"
        protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
        exit_code = protoc.main(
            [
                "grpc_tools.protoc",
                f"--proto_path={proto_root}",
                f"--proto_path={well_known_types}",
                f"--python_out={self.directory}",
                f"--grpc_python_out={self.directory}",
                *protos,
            ]
        )
        if exit_code != 0:
            raise RuntimeError(f"grpc_tools.protoc failed ({exit_code}) on {protos}")
        sys.path.insert(0, self.directory)
        self.gateway_pb2 = importlib.import_module("notesuite.gateway.v1.gateway_pb2")
        self.gateway_grpc = importlib.import_module("notesuite.gateway.v1.gateway_pb2_grpc")
        self.notes_pb2 = importlib.import_module("notesuite.notes.v1.notes_pb2")
        self.notes_grpc = importlib.import_module("notesuite.notes.v1.notes_pb2_grpc")

    def close(self) -> None:
        sys.path.remove(self.directory)
        shutil.rmtree(self.directory, ignore_errors=True)

    def sign_up(self, gateway_address: str) -> str:
        """A new account's access token."""
        request = self.gateway_pb2.SignUpRequest(
            email=f"bench-{uuid.uuid4().hex[:12]}@example.com",
            display_name="Bench",
            password="correct horse battery",
        )
        with grpc.insecure_channel(gateway_address) as channel:
            stub = self.gateway_grpc.GatewayServiceStub(channel)
            return stub.SignUp(request, timeout=CALL_TIMEOUT_S).access_token

    def create_note(self, address: str, token: str, title: str) -> str:
        """Creates a note (on notes directly or through a gateway); returns its id."""
        return self.create_notes(address, token, [self.create_note_request(title)])[0]

    def create_notes(self, address: str, token: str, requests: list) -> list[str]:
        """Makes each CreateNote call in turn, on one connection; returns the notes' ids."""
        with grpc.insecure_channel(address) as channel:
            stub = self.notes_grpc.NotesServiceStub(channel)
            return [
                stub.CreateNote(request, metadata=bearer(token), timeout=CALL_TIMEOUT_S).note.id for request in requests
            ]

    def get_note(self, address: str, token: str, note_id: str) -> str | None:
        """None when GetNote succeeds, else the gRPC status it ended with."""
        with grpc.insecure_channel(address) as channel:
            stub = self.notes_grpc.NotesServiceStub(channel)
            try:
                stub.GetNote(self.get_note_request(note_id), metadata=bearer(token), timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as error:
                return f"GetNote ended {error.code().name}: {error.details()}"
        return None

    def create_note_request(self, title: str, content: str = "", tags: tuple[str, ...] = (), request_id: str = ""):
        note = self.notes_pb2.Note(title=title, content=content, tags=list(tags))
        return self.notes_pb2.CreateNoteRequest(note=note, request_id=request_id)

    def list_notes_request(self, page_size: int, tag: str = ""):
        return self.notes_pb2.ListNotesRequest(page_size=page_size, tag=tag)

    def list_notes(self, address: str, token: str, page_size: int, tag: str = "") -> int:
        """How many notes the first page of ListNotes holds."""
        with grpc.insecure_channel(address) as channel:
            stub = self.notes_grpc.NotesServiceStub(channel)
            request = self.list_notes_request(page_size, tag)
            return len(stub.ListNotes(request, metadata=bearer(token), timeout=CALL_TIMEOUT_S).notes)

    def get_note_request(self, note_id: str):
        return self.notes_pb2.GetNoteRequest(id=note_id)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def grpc_frame(message) -> bytes:
    """A request body as it goes on the wire: uncompressed flag, big-endian length, message."""
    payload = message.SerializeToString()
    return struct.pack(">BI", 0, len(payload)) + payload
