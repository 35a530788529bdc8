"""`--with-registry-auth`: the user's credentials for an image's registry, read
from the docker client config as the docker CLI reads them (issue 9).

Where: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. What: an
entry under `auths` (base64 "user:password" in `auth`, or an
`identitytoken`), or a credential helper (`credHelpers[host]`, else
`credsStore`): the program `docker-credential-<helper>`, asked with `get`
and the server on its standard input, answers JSON {Username, Secret}
(Username "<token>" means Secret is an identity token). No credentials for
the registry is not an error: the request carries none, as docker's does.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import images

HELPER_TIMEOUT = 30.0


class CredentialsError(Exception):
    """The config or a helper is unusable: the message says which and why."""


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("DOCKER_CONFIG")
    if base:
        return Path(base) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CredentialsError(f"cannot read the docker client config {path}: {e}") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"the docker client config {path} is not a JSON object")
    return data


def _host_of(key: str) -> str:
    """ "https://reg:5000/v2/" -> "reg:5000": config keys may carry a scheme and a path."""
    host = key.split("://", 1)[-1]
    return host.split("/", 1)[0]


def _find(entries: Mapping[str, Any], key: str) -> Any:
    if key in entries:
        return entries[key]
    want = _host_of(key)
    if key == images.DOCKER_HUB_AUTH_KEY:
        want = "index.docker.io"
    for k, v in entries.items():
        if _host_of(k) in (want, "registry-1." + want.removeprefix("index.")):
            return v
    return None


def _from_helper(helper: str, server: str) -> pb.RegistryAuth | None:
    program = f"docker-credential-{helper}"
    if shutil.which(program) is None:
        raise CredentialsError(f"the credential helper {program} named in the docker client config is not installed")
    try:
        proc = subprocess.run([program, "get"], input=server, capture_output=True, text=True, timeout=HELPER_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CredentialsError(f"the credential helper {program} failed: {e}") from None
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        if "credentials not found" in out.lower():
            return None
        raise CredentialsError(f"the credential helper {program} failed: {out or f'exit {proc.returncode}'}")
    try:
        got = json.loads(proc.stdout)
        user, secret = str(got.get("Username") or ""), str(got.get("Secret") or "")
    except (ValueError, AttributeError):
        raise CredentialsError(f"the credential helper {program} gave no JSON answer") from None
    if user == "<token>":
        return pb.RegistryAuth(server_address=server, identity_token=secret)
    return pb.RegistryAuth(server_address=server, username=user, password=secret)


def credentials_for(image: str, environ: Mapping[str, str] | None = None) -> pb.RegistryAuth:
    """The credentials for `image`'s registry (an empty RegistryAuth with
    only the server when the config has none)."""
    ref = images.parse(image)
    key = images.auth_key(ref)
    path = config_path(environ)
    cfg = _load(path)
    helpers = cfg.get("credHelpers") or {}
    helper = _find(helpers, key) if isinstance(helpers, dict) else None
    if helper is None and cfg.get("credsStore"):
        helper = cfg["credsStore"]
    if isinstance(helper, str) and helper:
        found = _from_helper(helper, key)
        if found is not None:
            return found
    auths = cfg.get("auths") or {}
    entry = _find(auths, key) if isinstance(auths, dict) else None
    if not isinstance(entry, dict):
        return pb.RegistryAuth(server_address=key)
    out = pb.RegistryAuth(server_address=key, identity_token=str(entry.get("identitytoken") or ""))
    if entry.get("auth"):
        try:
            # validate: without it stray characters are dropped, not refused.
            user, colon, password = base64.b64decode(str(entry["auth"]), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            colon = ""
        if not colon:  # "user:password", as docker requires
            raise CredentialsError(f"the docker client config {path} has an unreadable auth entry for {key}")
        out.username, out.password = user, password
    else:
        out.username = str(entry.get("username") or "")
        out.password = str(entry.get("password") or "")
    return out
