"""`notesuite keygen`, the first step of a deployment."""

from __future__ import annotations

import stat

from conftest import NOTESUITE_BIN, run


def test_keygen_writes_a_private_key_only_its_owner_can_read_and_a_public_key(tmp_path):
    result = run(NOTESUITE_BIN, "keygen", "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr

    private_key, public_key = tmp_path / "jwt-private.pem", tmp_path / "jwt-public.pem"
    assert private_key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public_key.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert stat.S_IMODE(private_key.stat().st_mode) & 0o077 == 0


def test_keygen_never_overwrites_an_existing_key(tmp_path):
    assert run(NOTESUITE_BIN, "keygen", "--out-dir", tmp_path).returncode == 0
    private_key = (tmp_path / "jwt-private.pem").read_bytes()

    again = run(NOTESUITE_BIN, "keygen", "--out-dir", tmp_path)
    assert again.returncode != 0
    assert (tmp_path / "jwt-private.pem").read_bytes() == private_key


def test_keygen_creates_a_missing_output_directory(tmp_path):
    # The README's deployment steps start with `notesuite keygen --out-dir keys` on a fresh
    # checkout, where keys/ does not exist yet.
    keys = tmp_path / "keys"
    result = run(NOTESUITE_BIN, "keygen", "--out-dir", keys)
    assert result.returncode == 0, result.stderr
    assert {path.name for path in keys.iterdir()} == {"jwt-private.pem", "jwt-public.pem"}
