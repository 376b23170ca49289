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
        with grpc.insecure_channel(address) as channel:
            stub = self.notes_grpc.NotesServiceStub(channel)
            response = stub.CreateNote(
                self.create_note_request(title),
                metadata=bearer(token),
                timeout=CALL_TIMEOUT_S,
            )
            return response.note.id

    def get_note(self, address: str, token: str, note_id: str) -> str | None:
        """None when GetNote succeeds, else the gRPC status it ended with."""
        with grpc.insecure_channel(address) as channel:
            stub = self.notes_grpc.NotesServiceStub(channel)
            try:
                stub.GetNote(self.get_note_request(note_id), metadata=bearer(token), timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as error:
                return f"GetNote ended {error.code().name}: {error.details()}"
        return None

    def create_note_request(self, title: str):
        return self.notes_pb2.CreateNoteRequest(note=self.notes_pb2.Note(title=title))

    def get_note_request(self, note_id: str):
        return self.notes_pb2.GetNoteRequest(id=note_id)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def grpc_frame(message) -> bytes:
    """A request body as it goes on the wire: uncompressed flag, big-endian length, message."""
    payload = message.SerializeToString()
    return struct.pack(">BI", 0, len(payload)) + payload
