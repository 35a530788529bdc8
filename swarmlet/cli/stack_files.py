"""A stack's secrets and configs on the cluster: `stack deploy` creates the
file-backed ones (STACK_KEY, or their `name:`), checks that external ones
exist, and refuses a file whose content changed since it was deployed:
secrets and configs are immutable, as in Swarm, so a changed file needs a new
name. `stack rm` removes those the stack created.

The data of a secret never comes back from the manager, so a deployed object
carries a salted, slow hash of its data in a label (a verifier, never the data)
to tell whether the file changed."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Any

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.client import CLIError, DaemonClient
from swarmlet.cli.compose.storage import NAMESPACE_LABEL, StackFile
from swarmlet.core import state as st

DIGEST_LABEL = "com.swarmlet.stack.digest"
_ITERATIONS = 100_000


def digest(data: bytes, salt: bytes | None = None) -> str:
    """`pbkdf2-sha256$ITER$SALT$HASH`: slow and salted, so the label does not
    make guessing a weak secret any easier than trying it against a service."""
    salt = salt if salt is not None else os.urandom(16)
    h = hashlib.pbkdf2_hmac("sha256", data, salt, _ITERATIONS)
    return f"pbkdf2-sha256${_ITERATIONS}${salt.hex()}${h.hex()}"


def same_data(label: str, data: bytes) -> bool:
    try:
        algo, iterations, salt, want = label.split("$")
        if algo != "pbkdf2-sha256":
            return False
        got = hashlib.pbkdf2_hmac("sha256", data, bytes.fromhex(salt), int(iterations)).hex()
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


def _list(d: DaemonClient, kind: str) -> list[Any]:
    if kind == "secret":
        return list(d.call(d.stub.ListSecrets, cpb.ListSecretsRequest()).secrets)
    return list(d.call(d.stub.ListConfigs, cpb.ListConfigsRequest()).configs)


def _create(d: DaemonClient, obj: StackFile) -> Any:
    labels = dict(obj.labels)
    labels[DIGEST_LABEL] = digest(obj.data)
    if obj.kind == "secret":
        spec = pb.SecretSpec(name=obj.name, labels=labels, data=obj.data)
        return d.call(d.stub.CreateSecret, cpb.CreateSecretRequest(spec=spec)).secret
    cspec = pb.ConfigSpec(name=obj.name, labels=labels, data=obj.data)
    return d.call(d.stub.CreateConfig, cpb.CreateConfigRequest(spec=cspec)).config


def check(d: DaemonClient, stack: str, objects: dict[str, StackFile], kind: str) -> dict[str, Any]:
    """Refuse what cannot be deployed (before anything changes); every
    existing object of that kind by name."""
    existing = {o.spec.name: o for o in _list(d, kind)}
    for obj in objects.values():
        have = existing.get(obj.name)
        if obj.external:
            if have is None:
                raise CLIError(f"{kind} {obj.name!r} is declared as external, but could not be found")
        elif have is not None:
            if have.spec.labels.get(NAMESPACE_LABEL) != stack:
                raise CLIError(f"{kind} {obj.name!r} exists and is not part of stack {stack}: rename it in the file")
            if not same_data(have.spec.labels.get(DIGEST_LABEL, ""), obj.data):
                raise CLIError(
                    f"{kind} {obj.name!r}: the file {obj.path} changed since it was deployed, and {kind}s are immutable: "
                    f"give the {kind} a new name (name: in the file), or remove the stack first"
                )
    return existing


def create(d: DaemonClient, objects: dict[str, StackFile], kind: str, existing: dict[str, Any]) -> None:
    """Create the stack's missing ones (after check); `existing` gets them."""
    for obj in sorted(objects.values(), key=lambda o: o.name):
        if not obj.external and obj.name not in existing:
            typer.echo(f"Creating {kind} {obj.name}")
            existing[obj.name] = _create(d, obj)


def remove(d: DaemonClient, stack: str, kind: str) -> int:
    """Remove the stack's secrets or configs (external ones are not labelled
    with it and stay). Returns how many."""
    rm: Callable[[str], Any] = (
        (lambda ref: d.call(d.stub.RemoveSecret, cpb.RemoveSecretRequest(ref=ref)))
        if kind == "secret"
        else (lambda ref: d.call(d.stub.RemoveConfig, cpb.RemoveConfigRequest(ref=ref)))
    )
    mine = sorted((o for o in _list(d, kind) if o.spec.labels.get(NAMESPACE_LABEL) == stack), key=lambda o: o.spec.name)
    for o in mine:
        typer.echo(f"Removing {kind} {o.spec.name}")
        rm(o.id)
    return len(mine)


def snapshot(secrets: dict[str, pb.Secret], configs: dict[str, pb.Config]) -> st.Snapshot:
    """The secrets and configs as a snapshot, so a service's references can be
    resolved as the manager does (ids and file defaults) before comparing."""
    return st.Snapshot(
        secrets={s.id: s for s in secrets.values()},
        configs={c.id: c for c in configs.values()},
    )
