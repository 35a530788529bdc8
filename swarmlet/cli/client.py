"""The CLI's connection to the local daemon: a gRPC channel on its unix socket, the
Control stub, and the translation of gRPC failures into one-line user errors."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

import grpc
import typer

from swarmlet.api import control_pb2_grpc
from swarmlet.cli import retry
from swarmlet.cli.host import DEFAULT_HOST, HOST_ENV, GlobalOptions, global_options, socket_path
from swarmlet.core.bounds import MAX_LOCAL_MESSAGE

__all__ = ["DEFAULT_HOST", "HOST_ENV", "CLIError", "DaemonClient", "GlobalOptions", "connect", "handle_errors", "socket_path"]

# Generous: a daemon is local, so a slow answer means it is busy (e.g. waiting for a
# Raft commit), not that a packet was lost. Long operations pass their own.
DEFAULT_TIMEOUT = 30.0

# Listings of a large cluster can exceed gRPC's 4 MiB default (a known Swarm
# pain); the daemon's local API uses the same bound (core/bounds.py).
_MAX_MESSAGE = MAX_LOCAL_MESSAGE

Req = TypeVar("Req")
Resp = TypeVar("Resp")
P = ParamSpec("P")
R = TypeVar("R")


class CLIError(Exception):
    """An expected failure: printed as "Error: <message>" without a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class DaemonClient:
    """The CLI's connection to one daemon (not the daemon itself). Create with
    connect(ctx); use as a context manager."""

    def __init__(self, host: str) -> None:
        self.host = host
        try:
            path = socket_path(host)
        except ValueError as e:
            raise CLIError(str(e)) from None
        self._channel = grpc.insecure_channel(
            f"unix://{path}",
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
                ("grpc.max_send_message_length", _MAX_MESSAGE),
            ],
        )
        self.stub = control_pb2_grpc.ControlStub(self._channel)

    def call(
        self,
        method: Callable[..., Resp],
        request: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Resp:
        """One unary RPC, e.g. d.call(d.stub.Info, cpb.InfoRequest()); gRPC errors
        come out as CLIError with the daemon's message. A write (a request
        with a request_id) is retried safely while that can help (retry.py)."""
        if retry.idempotent(request):
            try:
                return retry.call_write(method, request, timeout)
            except retry.WriteFailed as f:
                err = translate_rpc_error(f.error, self.host, timeout)
                if f.maybe_applied:
                    err = CLIError(retry.maybe_applied_note(err.message), err.exit_code)
                raise err from None
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as e:
            raise translate_rpc_error(e, self.host, timeout) from None

    def stream(self, method: Callable[..., Any], request: Any) -> Iterator[Any]:
        """A server-streaming RPC without deadline (followed logs run until Ctrl-C)."""
        call = method(request)
        try:
            yield from call
        except grpc.RpcError as e:
            raise translate_rpc_error(e, self.host, None) from None
        finally:
            call.cancel()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(ctx: typer.Context | None) -> DaemonClient:
    return DaemonClient(global_options(ctx).host)


def translate_rpc_error(err: grpc.RpcError, host: str, timeout: float | None) -> CLIError:
    code = err.code() if isinstance(err, grpc.Call) else None
    details = (err.details() if isinstance(err, grpc.Call) else str(err)) or ""
    if code == grpc.StatusCode.UNAVAILABLE and "failed to connect" in details:
        # The channel never reached a server: say what to do instead of gRPC internals.
        if "Permission denied" in details:
            return CLIError(
                f"Permission denied while connecting to the swarmlet daemon at {host}: run as root or get access to the socket"
            )
        return CLIError(f"Cannot connect to the swarmlet daemon at {host}: is the daemon running?")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        waited = f" within {timeout:g}s" if timeout else ""
        return CLIError(f"the swarmlet daemon at {host} did not answer{waited}: {details or 'deadline exceeded'}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return CLIError(f"the swarmlet daemon at {host} does not support this operation: {details}")
    if code == grpc.StatusCode.CANCELLED and not details:
        return CLIError("the request was cancelled")
    if details:
        return CLIError(details)
    return CLIError(code.name.lower().replace("_", " ") if code else "request failed")


def fail(message: str, exit_code: int = 1) -> typer.Exit:
    """Print "Error: message" to stderr and return the Exit to raise."""
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(exit_code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command so expected failures print one line and exit non-zero
    instead of a traceback. functools.wraps keeps the signature typer reads."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CLIError as e:
            raise fail(e.message, e.exit_code) from None
        except grpc.RpcError as e:  # a stub used directly, outside DaemonClient.call
            err = translate_rpc_error(e, "the daemon", None)
            raise fail(err.message, err.exit_code) from None

    return wrapper


def report_errors(errors: list[str]) -> None:
    """Per-item failures of a multi-argument command (`rm a b`, `inspect a b`):
    all printed, exit 1 at the end; the other items were still processed, as
    Docker does."""
    if errors:
        for e in errors[:-1]:
            typer.echo(f"Error: {e}", err=True)
        raise fail(errors[-1])
