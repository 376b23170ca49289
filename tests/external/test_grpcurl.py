"""grpcurl 1.8.6 against the real binary: it knows only reflection v1alpha, so these tests
also pin the server's v1alpha reflection (descriptors, comments, well-known types)."""

from __future__ import annotations

import json
import shlex

import pytest

from conftest import EXPECTED_SERVICES, GRPCURL, PASSWORD, PORTS, SERVICE_NAMES, require_tool, run, unique_email

DESCRIBED_METHOD = {
    "gateway": "notesuite.gateway.v1.GatewayService.SignUp",
    "users": "notesuite.users.v1.UsersService.GetUser",
    "notes": "notesuite.notes.v1.NotesService.CreateNote",
}
# A message of each port's own contract, with one of its field declarations.
DESCRIBED_MESSAGE = {
    "gateway": ("notesuite.gateway.v1.SignUpRequest", "string password = 3;"),
    "users": ("notesuite.users.v1.User", ".google.protobuf.Timestamp create_time = 4;"),
    "notes": ("notesuite.notes.v1.ListNotesRequest", "int32 page_size = 1;"),
}


@pytest.fixture(scope="module", autouse=True)
def _grpcurl_installed():
    require_tool(GRPCURL)


def grpcurl(address: str, *args: str, data: dict | None = None, token: str | None = None):
    options = ["-plaintext"]
    if token is not None:
        options += ["-H", f"authorization: Bearer {token}"]
    if data is not None:
        options += ["-d", json.dumps(data)]
    return run(GRPCURL, *options, address, *args)


def grpcurl_ok(address: str, *args: str, **kwargs) -> str:
    result = grpcurl(address, *args, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_grpcurl_is_version_1_8_6():
    result = run(GRPCURL, "-version")
    assert "grpcurl v1.8.6" in result.stdout + result.stderr


@pytest.mark.parametrize("port", PORTS)
def test_grpcurl_lists_the_services_of_each_port(suite, port):
    listed = grpcurl_ok(suite.addresses[port], "list").split()
    assert listed == EXPECTED_SERVICES[port]


@pytest.mark.parametrize("port", PORTS)
def test_grpcurl_lists_the_methods_of_each_ports_service(suite, port):
    listed = grpcurl_ok(suite.addresses[port], "list", SERVICE_NAMES[port]).split()
    assert DESCRIBED_METHOD[port] in listed


@pytest.mark.parametrize("port", PORTS)
def test_grpcurl_describes_a_method_with_its_comment(suite, port):
    method = DESCRIBED_METHOD[port]
    output = grpcurl_ok(suite.addresses[port], "describe", method)
    assert f"{method} is a method:" in output
    assert f"rpc {method.rsplit('.', 1)[1]} (" in output
    assert "\n// " in output


@pytest.mark.parametrize("port", PORTS)
def test_grpcurl_describes_a_message_of_each_port(suite, port):
    message, declaration = DESCRIBED_MESSAGE[port]
    output = grpcurl_ok(suite.addresses[port], "describe", message)
    assert f"{message} is a message:" in output
    assert declaration in output


@pytest.mark.parametrize("port", PORTS)
def test_grpcurl_describes_the_well_known_timestamp_on_each_port(suite, port):
    output = grpcurl_ok(suite.addresses[port], "describe", "google.protobuf.Timestamp")
    assert "google.protobuf.Timestamp is a message:" in output
    assert "int64 seconds = 1;" in output
    assert "int32 nanos = 2;" in output


def test_grpcurl_describes_note_with_every_field_and_its_documentation(suite):
    output = grpcurl_ok(suite.gateway, "describe", "notesuite.notes.v1.Note")
    for declaration in [
        "string id = 1;",
        "string owner_id = 2;",
        "string title = 3;",
        "string content = 4;",
        "repeated string tags = 5;",
        ".google.protobuf.Timestamp create_time = 6;",
        ".google.protobuf.Timestamp update_time = 7;",
        "int64 revision = 8;",
        "string etag = 9;",
    ]:
        assert declaration in output
    assert "// Opaque version for optimistic concurrency" in output


@pytest.mark.parametrize("port", PORTS)
@pytest.mark.parametrize("service", ["", "liveness", "own"])
def test_grpcurl_health_check_is_serving_on_each_port(suite, port, service):
    service = SERVICE_NAMES[port] if service == "own" else service
    output = grpcurl_ok(suite.addresses[port], "grpc.health.v1.Health/Check", data={"service": service})
    assert json.loads(output) == {"status": "SERVING"}


def test_grpcurl_signs_up_creates_and_lists_notes_through_the_gateway(suite):
    email = unique_email("grpcurl")
    signed_up = json.loads(
        grpcurl_ok(
            suite.gateway,
            "notesuite.gateway.v1.GatewayService/SignUp",
            data={"email": email, "display_name": "Grace", "password": PASSWORD},
        )
    )
    assert signed_up["user"]["email"] == email
    token = signed_up["accessToken"]

    created = json.loads(
        grpcurl_ok(
            suite.gateway,
            "notesuite.notes.v1.NotesService/CreateNote",
            data={"note": {"title": "From grpcurl", "content": "hi", "tags": ["cli", "demo"]}},
            token=token,
        )
    )["note"]
    assert created["title"] == "From grpcurl"
    assert created["tags"] == ["cli", "demo"]
    assert created["ownerId"] == signed_up["user"]["id"]

    listed = json.loads(
        grpcurl_ok(suite.gateway, "notesuite.notes.v1.NotesService/ListNotes", data={"page_size": 10}, token=token)
    )
    assert [note["id"] for note in listed["notes"]] == [created["id"]]
    assert listed["totalSize"] == 1


def test_grpcurl_error_output_shows_the_code_and_error_info_reason(suite):
    result = grpcurl(
        suite.gateway,
        "notesuite.gateway.v1.GatewayService/SignUp",
        data={"email": "not-an-email", "display_name": "Grace", "password": "short"},
    )
    assert result.returncode != 0
    assert "Code: InvalidArgument" in result.stderr
    assert '"reason":"INVALID_FIELDS"' in result.stderr
    assert '"domain":"notesuite"' in result.stderr
    assert '"field":"email"' in result.stderr
    assert '"field":"password"' in result.stderr


def test_grpcurl_without_a_token_shows_token_missing(suite):
    result = grpcurl(suite.gateway, "notesuite.notes.v1.NotesService/ListNotes", data={})
    assert result.returncode != 0
    assert "Code: Unauthenticated" in result.stderr
    assert '"reason":"TOKEN_MISSING"' in result.stderr


def banner_command(banner: str, ending: str) -> str:
    """The banner's example grpcurl line that ends with `ending`, set to run our grpcurl."""
    examples = [line.strip() for line in banner.splitlines() if line.strip().startswith("grpcurl ")]
    [line] = [line for line in examples if line.endswith(ending)]
    return shlex.quote(str(GRPCURL)) + line.removeprefix("grpcurl")


def test_banner_examples_work_when_pasted_into_a_shell(suite):
    listed = run("bash", "-c", banner_command(suite.banner, " list"))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == EXPECTED_SERVICES["gateway"]

    sign_up = run("bash", "-c", banner_command(suite.banner, "GatewayService/SignUp"))
    assert sign_up.returncode == 0, sign_up.stderr
    token = json.loads(sign_up.stdout)["accessToken"]

    create = run("bash", "-c", banner_command(suite.banner, "NotesService/CreateNote"), env={"TOKEN": token})
    assert create.returncode == 0, create.stderr
    note = json.loads(create.stdout)["note"]
    assert note["title"] == "Hello"
    assert note["tags"] == ["demo"]
