"""`notesuite keygen`, the first step of a deployment."""

from __future__ import annotations

import shutil
import stat

from conftest import NOTESUITE_BIN, run, sign_up_on


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


def test_keygen_writes_keys_openssl_reads_and_agrees_with(tmp_path):
    # Operators inspect and convert keys with standard tools: the private key must be the
    # PKCS#8 form OpenSSL 3 and Python's cryptography read, and its public half must be the
    # public key file.
    openssl = shutil.which("openssl")
    assert openssl, "this test needs the openssl command line tool"
    assert run(NOTESUITE_BIN, "keygen", "--out-dir", tmp_path).returncode == 0
    derived = run(openssl, "pkey", "-in", tmp_path / "jwt-private.pem", "-pubout")
    assert derived.returncode == 0, derived.stderr
    assert derived.stdout == (tmp_path / "jwt-public.pem").read_text()


def test_a_key_made_by_openssl_signs_tokens(start, tmp_path):
    openssl = shutil.which("openssl")
    assert openssl, "this test needs the openssl command line tool"
    key = tmp_path / "openssl-ed25519.pem"
    made = run(openssl, "genpkey", "-algorithm", "ed25519", "-out", key)
    assert made.returncode == 0, made.stderr
    suite = start(tmp_path / "data", "--jwt-private-key", str(key))
    assert sign_up_on(suite.channel("gateway")).token
