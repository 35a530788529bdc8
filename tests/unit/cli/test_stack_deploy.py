"""`stack deploy` against a fake Control API: registry credentials and
--resolve-image go into the requests as `service create/update` sends them,
and a service whose image the manager pinned is untouched by a redeploy of
the same file (no daemon needed)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import stack as stack_cli
from swarmlet.cli import stack_files
from swarmlet.cli.compose import stack as compose
from swarmlet.cli.options import ImageFlags
from swarmlet.core.updater import with_defaults

IMAGE = "reg.example:5000/team/web:1"
PINNED = IMAGE + "@sha256:" + "a" * 64


class FakeControl:
    def __init__(self, existing: list[pb.Service] | None = None) -> None:
        self.existing = existing or []
        self.sent: list[Any] = []
        self.stub = SimpleNamespace(
            ListServices=lambda req: cpb.ListServicesResponse(services=[cpb.ServiceSummary(service=s) for s in self.existing]),
            CreateService=self._record,
            UpdateService=self._record,
        )

    def _record(self, req: Any) -> cpb.ServiceResponse:
        self.sent.append(req)
        return cpb.ServiceResponse(service=pb.Service(id="svc1", spec=req.spec))

    def call(self, method: Any, request: Any) -> Any:
        return method(request)


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = base64.b64encode(b"alice:pa55").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"reg.example:5000": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))


def _stack(tmp_path: Path) -> compose.Stack:
    f = tmp_path / "stack.yml"
    f.write_text(f"services:\n  web:\n    image: {IMAGE}\n")
    return compose.load("app", [str(f)], environ={})


def _deploy(d: FakeControl, st: compose.Stack, resolve: str, auth: bool = False) -> None:
    how = stack_cli._Deploy(
        {"app_default": "net1"},
        stack_files.snapshot({}, {}),
        ImageFlags(with_registry_auth=auth, no_resolve_image=resolve == "never"),
        resolve == "always",
    )
    stack_cli._services(d, st, how, prune=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(("resolve", "no_resolve"), [("changed", False), ("always", False), ("never", True)])
def test_create_sends_credentials_and_the_resolve_mode(
    tmp_path: Path, docker_config: None, resolve: str, no_resolve: bool
) -> None:
    d = FakeControl()
    _deploy(d, _stack(tmp_path), resolve, auth=True)
    (req,) = d.sent
    assert isinstance(req, cpb.CreateServiceRequest)
    assert req.no_resolve_image is no_resolve
    assert (req.registry_auth.username, req.registry_auth.password) == ("alice", "pa55")


def test_without_the_flag_no_credentials_are_sent(tmp_path: Path, docker_config: None) -> None:
    d = FakeControl()
    _deploy(d, _stack(tmp_path), "changed")
    assert not d.sent[0].HasField("registry_auth")


def _as_stored(st: compose.Stack) -> pb.Service:
    """The service as the manager stored it: defaults, network ids, the image pinned."""
    spec = pb.ServiceSpec()
    spec.CopyFrom(st.services["web"])
    with_defaults(spec)
    spec.networks[0].target = "net1"
    spec.task.container.image = PINNED
    spec.task.container.image_id = "sha256:" + "b" * 64
    return pb.Service(id="svc1", spec=spec, meta=pb.Meta(version=7))


def test_a_pinned_image_the_file_did_not_change_is_untouched(tmp_path: Path) -> None:
    st = _stack(tmp_path)
    d = FakeControl([_as_stored(st)])
    _deploy(d, st, "changed")
    _deploy(d, st, "never")
    assert d.sent == []


def test_resolve_always_asks_again_for_a_digest_pinned_image(tmp_path: Path, docker_config: None) -> None:
    st = _stack(tmp_path)
    d = FakeControl([_as_stored(st)])
    _deploy(d, st, "always", auth=True)
    (req,) = d.sent
    assert isinstance(req, cpb.UpdateServiceRequest)
    assert req.spec.task.container.image == IMAGE  # as written: the manager pins it afresh
    assert req.has_registry_auth and req.registry_auth.username == "alice"
    assert (req.ref, req.version, req.no_resolve_image) == ("svc1", 7, False)


def test_a_changed_option_updates_with_the_pinned_image_kept(tmp_path: Path) -> None:
    st = _stack(tmp_path)
    d = FakeControl([_as_stored(st)])
    st.services["web"].task.container.user = "1000"
    _deploy(d, st, "changed")
    (req,) = d.sent
    assert req.spec.task.container.image == PINNED and req.spec.task.container.user == "1000"


def test_a_service_deployed_without_the_short_name_is_updated_once_to_add_it(tmp_path: Path) -> None:
    # A stack deployed before services got their short name as an alias:
    # the re-deploy sends the aliases (the task spec is unchanged, so the
    # manager replaces no task), then the next one leaves the service alone.
    st = _stack(tmp_path)
    old = _as_stored(st)
    del old.spec.networks[0].aliases[:]
    d = FakeControl([old])
    _deploy(d, st, "changed")
    (req,) = d.sent
    assert [list(a.aliases) for a in req.spec.networks] == [["web"]]
    assert req.spec.task == old.spec.task
    d2 = FakeControl([_as_stored(st)])
    _deploy(d2, st, "changed")
    assert d2.sent == []


def test_a_target_only_port_the_manager_assigned_is_untouched_by_a_redeploy(tmp_path: Path) -> None:
    # The manager stores the published port it assigned to `"6379"`; the
    # file still names only the target, and that is no change (the manager
    # keeps the port on an update, core/ports.keep_assigned).
    f = tmp_path / "stack.yml"
    f.write_text(f"services:\n  web:\n    image: {IMAGE}\n    ports: ['6379', '8080:80']\n")
    st = compose.load("app", [str(f)], environ={})
    stored = _as_stored(st)
    assert [(p.published_port, p.target_port) for p in stored.spec.endpoint.ports] == [(0, 6379), (8080, 80)]
    stored.spec.endpoint.ports[0].published_port = 30004
    d = FakeControl([stored])
    _deploy(d, st, "changed")
    assert d.sent == []
    # Another target is a change: sent as written, the manager assigns it.
    f.write_text(f"services:\n  web:\n    image: {IMAGE}\n    ports: ['6380', '8080:80']\n")
    _deploy(d, compose.load("app", [str(f)], environ={}), "changed")
    (req,) = d.sent
    assert [(p.published_port, p.target_port) for p in req.spec.endpoint.ports] == [(0, 6380), (8080, 80)]
