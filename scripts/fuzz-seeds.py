#!/usr/bin/env python3
"""Writes the hand-made seed corpus of the bolero fuzz targets (docs/fuzzing.md).

Run from the repository root; it only (re)writes files named seed-*. Long runs add their own
findings beside them (`cargo bolero test` keeps what widens coverage).
"""

import base64
import hashlib
import struct
from pathlib import Path


def varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, value) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def message(*fields) -> bytes:
    return b"".join(field(number, value) for number, value in fields)


def write(directory: str, seeds: dict) -> None:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        (path / f"seed-{name}").write_bytes(data)


NOTE_ID = "0190c5a0-0000-7000-8000-000000000001"
REQUEST_ID = "0f8c2a4e-3b1d-4e5f-9a6b-7c8d9e0f1a2b"


def note(*fields) -> bytes:
    return message(*fields)


def fnv(text: str) -> int:
    value = 0xCBF29CE484222325
    for byte in text.encode():
        value = ((value ^ byte) * 0x100000001B3) & ((1 << 64) - 1)
    return value


def page_token(key: bytes, filter_: str) -> str:
    raw = bytes([1, len(key)]) + key + struct.pack(">Q", fnv(filter_))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def notes_requests() -> dict:
    good_note = note((2, "title"), (3, "content"), (4, "work"), (4, "home"))
    bad_note = note((2, ""), (3, "a\0b"), (4, "Not A Tag"), (4, ""))
    mask = message((1, "title"), (1, "etag"), (1, "nope"))
    seeds = {
        # CreateNoteRequest: note = 1, request_id = 2.
        "create": b"\x00" + message((1, good_note), (2, REQUEST_ID)),
        "create-invalid": b"\x00" + message((1, bad_note), (2, "not-a-uuid")),
        "create-no-note": b"\x00" + message((2, REQUEST_ID)),
        # GetNoteRequest: id = 1.
        "get": b"\x01" + message((1, NOTE_ID)),
        "get-invalid": b"\x01" + message((1, "x")),
        # ListNotesRequest: page_size = 1, page_token = 2, tag = 3.
        "list": b"\x02" + message((1, 10), (3, "work")),
        "list-token": b"\x02"
        + message((1, 2), (2, page_token(bytes(16), "owner=;tag="))),
        "list-invalid": b"\x02" + message((1, -1), (2, "!!"), (3, "BAD")),
        # UpdateNoteRequest: note = 1 (id = 1, etag = 9), update_mask = 2.
        "update": b"\x03"
        + message((1, note((1, NOTE_ID), (2, "new"), (9, "r3"))), (2, message((1, "title")))),
        "update-invalid": b"\x03" + message((1, note((1, "x"), (9, "r-1"))), (2, mask)),
        "update-empty-mask": b"\x03" + message((1, note((1, NOTE_ID), (9, "r1")))),
        # DeleteNoteRequest: id = 1, etag = 2.
        "delete": b"\x04" + message((1, NOTE_ID), (2, "r1")),
        "delete-invalid": b"\x04" + message((1, ""), (2, "etag")),
        # WatchNotesRequest: after_revision = 1, start_from_now = 2.
        "watch": b"\x05" + message((1, 0)),
        "watch-invalid": b"\x05" + message((1, -5), (2, 1)),
        "watch-ahead": b"\x05" + message((1, 1 << 40)),
        # ImportNotesRequest: note = 1, request_id = 2.
        "import": b"\x06" + message((1, good_note), (2, REQUEST_ID)),
        "import-invalid": b"\x06" + message((1, bad_note)),
    }
    return seeds


def users_requests() -> dict:
    user = message((1, NOTE_ID), (2, "a@example.com"), (3, "Ann"), (6, "u1"))
    return {
        # CreateUserRequest: email = 1, display_name = 2, password = 3.
        "create": b"\x00" + message((1, "a@example.com"), (2, "Ann"), (3, "correct horse")),
        "create-invalid": b"\x00" + message((1, "not an email"), (2, ""), (3, "short")),
        # GetUserRequest: id = 1.
        "get": b"\x01" + message((1, NOTE_ID)),
        "get-invalid": b"\x01" + message((1, "x")),
        # BatchGetUsersRequest: ids = 1.
        "batch-get": b"\x02" + message((1, NOTE_ID), (1, "x")),
        "batch-get-empty": b"\x02",
        # ListUsersRequest: page_size = 1, page_token = 2.
        "list": b"\x03" + message((1, 5), (2, page_token(bytes(16), ""))),
        "list-invalid": b"\x03" + message((1, -1), (2, page_token(b"short", ""))),
        # UpdateUserRequest: user = 1, update_mask = 2.
        "update": b"\x04" + message((1, user), (2, message((1, "display_name")))),
        "update-invalid": b"\x04" + message((1, message((1, "x"))), (2, message((1, "id")))),
        # DeleteUserRequest: id = 1, etag = 2.
        "delete": b"\x05" + message((1, NOTE_ID), (2, "u2")),
        # VerifyCredentialsRequest: email = 1, password = 2.
        "verify": b"\x06" + message((1, "a@example.com"), (2, "pw")),
        "verify-empty": b"\x06",
    }


def main() -> None:
    write(
        "crates/pagination/src/__fuzz__/fuzz__page_token_decode/corpus",
        {
            "token": b"owner=a;tag=\0" + page_token(bytes(range(16)), "owner=a;tag=").encode(),
            "other-filter": b"owner=b;tag=\0" + page_token(bytes(16), "owner=a;tag=").encode(),
            "empty": b"",
            "garbage": b"\0!!not base64",
        },
    )
    create = message((1, note((2, "t"), (3, "c"))), (2, REQUEST_ID))
    write(
        "crates/gateway/src/forward/__fuzz__/forward__fuzz__request_id_scan/corpus",
        {
            "with-id": b"\0" + struct.pack(">I", len(create)) + create,
            "without-id": b"\0" + struct.pack(">I", 4) + message((2, "")),
            "id-twice-last-empty": b"\0\0\0\0\0" + message((2, REQUEST_ID), (2, "")),
            "compressed": b"\1\0\0\0\0" + create,
            "truncated": b"\0\0\0\0\3\x12\x05a",
        },
    )
    write(
        "crates/gateway/src/deadline/__fuzz__/deadline__fuzz__deadline_headers/corpus",
        {
            "client": b"!\0" + b"250m",
            "largest": b"!\x0099999999H",
            "two-values": b"!\0" + b"x\0!\0" + b"1S",
            "with-token": b"authorization\0Bearer x\0!\0" + b"1n",
        },
    )
    write(
        "crates/gateway/src/upstream/discovery/__fuzz__/upstream__discovery__fuzz__target_list/corpus",
        {
            "list": b"http://127.0.0.1:8081, http://notes:8082,http://[::1]:1",
            "empty-host": b"http://:80",
            "https": b"https://a:1",
            "path": b"http://a:1/x",
            "empty": b" , ",
        },
    )
    write("crates/notes/src/grpc/__fuzz__/grpc__fuzz__notes_requests/corpus", notes_requests())
    write("crates/users/src/grpc/__fuzz__/grpc__fuzz__users_requests/corpus", users_requests())
    print(hashlib.sha256(b"".join(notes_requests().values())).hexdigest()[:12], "seeds written")


if __name__ == "__main__":
    main()
