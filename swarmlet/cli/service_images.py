"""The image flags of `service create` / `service update` (issue 9) onto the
request: the pull policy into the spec, the credentials from the docker
client config, the manager's warnings to stderr."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import typer

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.client import CLIError
from swarmlet.cli.options import ImageFlags
from swarmlet.cli.registry_auth import CredentialsError, credentials_for
from swarmlet.core import images


def apply_pull(spec: pb.ServiceSpec, flags: ImageFlags) -> None:
    policy = flags.policy()
    if policy is not None:
        spec.task.container.pull = policy  # type: ignore[assignment]


def credentials(image: str, flags: ImageFlags, environ: Mapping[str, str] | None = None) -> pb.RegistryAuth | None:
    """The credentials to send, or None without --with-registry-auth."""
    if not flags.with_registry_auth:
        return None
    try:
        return credentials_for(image, environ)
    except images.InvalidReference as e:
        raise CLIError(str(e)) from None
    except CredentialsError as e:
        raise CLIError(f"--with-registry-auth: {e}") from None


def show_warnings(warnings: Sequence[str]) -> None:
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)
