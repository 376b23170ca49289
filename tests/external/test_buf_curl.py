"""`buf curl` against the real binary, over gRPC with server reflection v1 (grpcurl 1.8.6 covers
v1alpha), and once with the schema taken from proto/ instead of reflection."""

from __future__ import annotations

import base64
import json

import pytest

from conftest import BUF, EXPECTED_SERVICES, PASSWORD, PORTS, PROTO_ROOT, require_tool, run, unique_email


@pytest.fixture(scope="module", autouse=True)
def _buf_installed():
    require_tool(BUF)


def buf_curl(address: str, *args: str, data: dict | None = None, token: str | None = None):
    options = ["--protocol", "grpc", "--http2-prior-knowledge"]
    if token is not None:
        options += ["--header", f"authorization: Bearer {token}"]
    if data is not None:
        options += ["--data", json.dumps(data)]
    return run(BUF, "curl", *options, *args, f"http://{address}")


def buf_curl_ok(address: str, *args: str, **kwargs) -> str:
    result = buf_curl(address, *args, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout


def call_url(address: str, method: str) -> str:
    return f"{address}/{method}"


@pytest.mark.parametrize("port", PORTS)
def test_buf_curl_lists_the_services_of_each_port_over_reflection_v1(suite, port):
    listed = buf_curl_ok(suite.addresses[port], "--reflect-protocol", "grpc-v1", "--list-services").split()
    assert listed == EXPECTED_SERVICES[port]


def test_buf_curl_signs_up_creates_and_lists_notes_through_the_gateway(suite):
    def call(method: str, data: dict, token: str | None = None) -> dict:
        url = call_url(suite.gateway, method)
        return json.loads(buf_curl_ok(url, "--reflect-protocol", "grpc-v1", data=data, token=token))

    email = unique_email("buf")
    signed_up = call(
        "notesuite.gateway.v1.GatewayService/SignUp",
        {"email": email, "display_name": "Barbara", "password": PASSWORD},
    )
    assert signed_up["user"]["email"] == email
    token = signed_up["accessToken"]

    empty = call("notesuite.notes.v1.NotesService/ListNotes", {"pageSize": 5}, token)
    # Proto3 JSON leaves out fields at their defaults: no notes, no next page, total 0.
    assert empty == {}

    created = call("notesuite.notes.v1.NotesService/CreateNote", {"note": {"title": "From buf"}}, token)
    listed = call("notesuite.notes.v1.NotesService/ListNotes", {"pageSize": 5}, token)
    assert [note["id"] for note in listed["notes"]] == [created["note"]["id"]]
    assert listed["totalSize"] == 1


def test_buf_curl_with_the_schema_from_proto_creates_a_note(suite, account):
    created = json.loads(
        buf_curl_ok(
            call_url(suite.gateway, "notesuite.notes.v1.NotesService/CreateNote"),
            "--schema",
            str(PROTO_ROOT),
            data={"note": {"title": "From buf", "tags": ["buf"]}},
            token=account.token,
        )
    )
    assert created["note"]["title"] == "From buf"
    assert created["note"]["ownerId"] == account.user.id


def test_buf_curl_error_carries_a_decodable_error_info(suite):
    from google.rpc import error_details_pb2

    result = buf_curl(
        call_url(suite.gateway, "notesuite.gateway.v1.GatewayService/SignUp"),
        data={"email": unique_email("buf"), "display_name": "Barbara", "password": "short"},
    )
    assert result.returncode != 0
    error = json.loads(result.stderr)
    assert error["code"] == "invalid_argument"
    # google.rpc is not among the reflected files, so buf curl shows the details still encoded.
    [info_value] = [detail["value"] for detail in error["details"] if detail["type"] == "google.rpc.ErrorInfo"]
    info = error_details_pb2.ErrorInfo.FromString(base64.b64decode(info_value + "=" * (-len(info_value) % 4)))
    assert (info.domain, info.reason) == ("notesuite", "INVALID_FIELDS")
