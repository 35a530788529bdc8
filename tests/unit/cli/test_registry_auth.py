"""`--with-registry-auth` reads the docker client config as the docker CLI
does (issue 9): `auths` entries, and credential helpers, which are real
programs here (`docker-credential-<name>` scripts on PATH speaking the
helpers' protocol: `get`, the server on standard input, JSON out)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from swarmlet.cli import registry_auth as ra

REG = "reg.example:5000"
IMAGE = f"{REG}/team/app:1"


def write_config(d: Path, cfg: dict) -> dict[str, str]:
    (d / "config.json").write_text(json.dumps(cfg))
    return {"DOCKER_CONFIG": str(d), "PATH": os.environ.get("PATH", "")}


def install_helper(d: Path, name: str, body: str) -> None:
    """A credential helper program: `body` is the shell run for `get`, with
    the server it was asked for in $server."""
    bin_dir = d / "bin"
    bin_dir.mkdir(exist_ok=True)
    p = bin_dir / f"docker-credential-{name}"
    p.write_text(f'#!/bin/sh\n[ "$1" = get ] || exit 2\nread -r server\n{body}\n')
    p.chmod(0o755)


def env_with_helpers(d: Path, env: dict[str, str]) -> dict[str, str]:
    return env | {"PATH": f"{d / 'bin'}{os.pathsep}{env['PATH']}"}


def answer(user: str, secret: str) -> str:
    doc = json.dumps({"ServerURL": "x", "Username": user, "Secret": secret})
    return f"echo '{doc}'"


@pytest.fixture(autouse=True)
def helpers_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # registry_auth finds helpers with shutil.which, which reads os.environ.
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")


def test_an_auths_entry_is_decoded(tmp_path: Path) -> None:
    auth = base64.b64encode(b"ann:pa:ss").decode()
    env = write_config(tmp_path, {"auths": {REG: {"auth": auth}}})
    got = ra.credentials_for(IMAGE, env)
    assert (got.server_address, got.username, got.password) == (REG, "ann", "pa:ss")


def test_an_auths_key_with_scheme_and_path_matches_its_host(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {f"https://{REG}/v2/": {"username": "bo", "password": "pw"}}})
    got = ra.credentials_for(IMAGE, env)
    assert (got.username, got.password) == ("bo", "pw")


def test_docker_hub_images_use_the_index_key(tmp_path: Path) -> None:
    auth = base64.b64encode(b"hub:pw").decode()
    env = write_config(tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": auth}}})
    got = ra.credentials_for("library/alpine:3", env)
    assert (got.server_address, got.username) == ("https://index.docker.io/v1/", "hub")


def test_no_entry_means_no_credentials_not_an_error(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {"other:5000": {"auth": base64.b64encode(b"a:b").decode()}}})
    got = ra.credentials_for(IMAGE, env)
    assert (got.server_address, got.username, got.password, got.identity_token) == (REG, "", "", "")


def test_a_registry_helper_is_asked_for_its_server(tmp_path: Path) -> None:
    # The helper answers only for the server it expects: a wrong question fails.
    install_helper(
        tmp_path, "team", f'[ "$server" = "{REG}" ] || {{ echo "asked for $server" >&2; exit 1; }}\n' + answer("tom", "s3")
    )
    env = env_with_helpers(tmp_path, write_config(tmp_path, {"credHelpers": {REG: "team"}, "auths": {REG: {}}}))
    got = ra.credentials_for(IMAGE, env)
    assert (got.username, got.password) == ("tom", "s3")


def test_a_per_registry_helper_wins_over_the_store(tmp_path: Path) -> None:
    install_helper(tmp_path, "team", answer("tom", "s3"))
    install_helper(tmp_path, "store", answer("sam", "s4"))
    env = env_with_helpers(tmp_path, write_config(tmp_path, {"credsStore": "store", "credHelpers": {REG: "team"}}))
    assert ra.credentials_for(IMAGE, env).username == "tom"
    assert ra.credentials_for("other.example:5000/app:1", env).username == "sam"


def test_the_store_serves_every_registry_and_a_token_is_an_identity_token(tmp_path: Path) -> None:
    install_helper(tmp_path, "store", answer("<token>", "tok-123"))
    env = env_with_helpers(tmp_path, write_config(tmp_path, {"credsStore": "store"}))
    got = ra.credentials_for(IMAGE, env)
    assert (got.username, got.password, got.identity_token) == ("", "", "tok-123")


def test_a_helper_without_the_credentials_leaves_the_auths_entry(tmp_path: Path) -> None:
    install_helper(tmp_path, "store", 'echo "credentials not found in native keychain"; exit 1')
    env = env_with_helpers(
        tmp_path, write_config(tmp_path, {"credsStore": "store", "auths": {REG: {"username": "u", "password": "p"}}})
    )
    got = ra.credentials_for(IMAGE, env)
    assert (got.username, got.password) == ("u", "p")


def test_a_helper_that_is_not_installed_is_named(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"credsStore": "nosuch"})
    with pytest.raises(ra.CredentialsError, match="docker-credential-nosuch .*not installed"):
        ra.credentials_for(IMAGE, env)


def test_a_failing_helper_says_why(tmp_path: Path) -> None:
    install_helper(tmp_path, "store", 'echo "keyring locked" >&2; exit 3')
    env = env_with_helpers(tmp_path, write_config(tmp_path, {"credsStore": "store"}))
    with pytest.raises(ra.CredentialsError, match="docker-credential-store failed: keyring locked"):
        ra.credentials_for(IMAGE, env)


def test_a_helper_answering_no_json_is_refused(tmp_path: Path) -> None:
    install_helper(tmp_path, "store", "echo not-json")
    env = env_with_helpers(tmp_path, write_config(tmp_path, {"credsStore": "store"}))
    with pytest.raises(ra.CredentialsError, match="gave no JSON answer"):
        ra.credentials_for(IMAGE, env)


def test_a_malformed_config_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ra.CredentialsError, match=f"cannot read the docker client config {tmp_path / 'config.json'}"):
        ra.credentials_for(IMAGE, {"DOCKER_CONFIG": str(tmp_path)})
    (tmp_path / "config.json").write_text(json.dumps({"auths": {REG: {"auth": "%%%"}}}))
    with pytest.raises(ra.CredentialsError, match=f"unreadable auth entry for {REG}"):
        ra.credentials_for(IMAGE, {"DOCKER_CONFIG": str(tmp_path)})


def test_no_config_at_all_means_no_credentials(tmp_path: Path) -> None:
    got = ra.credentials_for(IMAGE, {"HOME": str(tmp_path)})
    assert (got.server_address, got.username) == (REG, "")
    assert ra.config_path({"HOME": str(tmp_path)}) == tmp_path / ".docker" / "config.json"
