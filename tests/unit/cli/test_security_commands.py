"""The CLI's security commands against a fake manager (issue 13): unlock and
unlock-key, cluster update --autolock, encrypted backup and restore (keys
from a prompt, a file or standard input, never the command line), and the
Raft secret's rotation with its progress."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import control_pb2_grpc
from swarmlet.cli.main import app

runner = CliRunner()
UNLOCK = "SWLKEY-1-" + "A" * 52
BACKUP_KEY = "SWLBKP-1-" + "B" * 52


class FakeSecurity(control_pb2_grpc.ControlServicer):
    def __init__(self) -> None:
        self.requests: list[object] = []
        self.rotations = 0
        self.polls = 0

    def Unlock(self, request: cpb.UnlockRequest, context: grpc.ServicerContext) -> cpb.UnlockResponse:
        self.requests.append(request)
        if request.unlock_key != UNLOCK:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid unlock key: it does not unlock this manager")
        return cpb.UnlockResponse()

    def UnlockKey(self, request: cpb.UnlockKeyRequest, context: grpc.ServicerContext) -> cpb.UnlockKeyResponse:
        self.requests.append(request)
        return cpb.UnlockKeyResponse(unlock_key=UNLOCK)

    def SetAutolock(self, request: cpb.SetAutolockRequest, context: grpc.ServicerContext) -> cpb.UnlockKeyResponse:
        self.requests.append(request)
        return cpb.UnlockKeyResponse(unlock_key=UNLOCK if request.autolock else "")

    def Backup(self, request: cpb.BackupRequest, context: grpc.ServicerContext) -> cpb.BackupResponse:
        self.requests.append(request)
        header = {"format": "swarmlet-backup", "version": 2, "counts": {"services": 3}, "store_version": 9}
        header["encryption"] = {"key": "passphrase" if request.key else "backup-key"}
        data = json.dumps(header).encode() + b"\nCIPHERTEXT"
        if request.key:
            return cpb.BackupResponse(data=data, key_kind="passphrase")
        return cpb.BackupResponse(data=data, key_kind="backup-key", generated_key=BACKUP_KEY)

    def Restore(self, request: cpb.RestoreRequest, context: grpc.ServicerContext) -> cpb.InitResponse:
        self.requests.append(request)
        return cpb.InitResponse(node_id="n1", cluster_id="c1", worker_token="SWLTKN-w", api_addr="10.0.0.1:4242")

    def RotateRaftSecret(self, request: cpb.RotateRaftSecretRequest, context: grpc.ServicerContext) -> cpb.RaftSecretStatus:
        self.rotations += 1
        return cpb.RaftSecretStatus(epoch=1, rotating=True, reason="rotated on demand", waiting_for=["10.0.0.2:4243"])

    def GetRaftSecretStatus(self, request: cpb.RaftSecretStatusRequest, context: grpc.ServicerContext) -> cpb.RaftSecretStatus:
        self.polls += 1
        rotating = self.rotations > 0 and self.polls < 3
        return cpb.RaftSecretStatus(epoch=self.rotations, rotating=rotating, reason="rotated on demand" if self.rotations else "")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeSecurity, str]]:
    servicer = FakeSecurity()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    control_pb2_grpc.add_ControlServicer_to_server(servicer, server)
    host = f"unix://{tmp_path}/swarmlet.sock"
    server.add_insecure_port(host)
    server.start()
    try:
        yield servicer, host
    finally:
        server.stop(None)


def run(host: str, *args: str, stdin: str | None = None):  # noqa: ANN201
    return runner.invoke(app, ["-H", host, *args], input=stdin)


def test_unlock_reads_the_key_from_standard_input(fake: tuple[FakeSecurity, str]) -> None:
    servicer, host = fake
    ok = run(host, "unlock", stdin=UNLOCK + "\n")
    assert ok.exit_code == 0 and "unlocked" in ok.stdout
    assert servicer.requests[-1].unlock_key == UNLOCK
    bad = run(host, "unlock", stdin="SWLKEY-1-nope\n")
    assert bad.exit_code == 1 and "invalid unlock key" in bad.stderr
    assert run(host, "unlock", stdin="\n").exit_code != 0


def test_unlock_key_and_autolock(fake: tuple[FakeSecurity, str]) -> None:
    servicer, host = fake
    assert run(host, "unlock-key", "-q").stdout.strip() == UNLOCK
    rotated = run(host, "unlock-key", "--rotate")
    assert "Successfully rotated manager unlock key" in rotated.stdout and UNLOCK in rotated.stdout
    assert servicer.requests[-1].rotate
    on = run(host, "cluster", "update", "--autolock=true")
    assert on.exit_code == 0 and "swarmlet unlock" in on.stdout and UNLOCK in on.stdout
    assert servicer.requests[-1].autolock is True
    off = run(host, "cluster", "update", "--autolock", "false")
    assert off.exit_code == 0 and "Autolock is off" in off.stdout and servicer.requests[-1].autolock is False
    bad = run(host, "cluster", "update", "--autolock=maybe")
    assert bad.exit_code == 2 and "expected true or false" in bad.output
    assert run(host, "cluster", "update").exit_code == 2


def test_backup_shows_a_generated_key_once_and_writes_0600(fake: tuple[FakeSecurity, str], tmp_path: Path) -> None:
    servicer, host = fake
    out = run(host, "cluster", "backup", str(tmp_path / "b"))
    assert out.exit_code == 0 and BACKUP_KEY in out.stdout and "3 services" in out.stdout
    assert stat.S_IMODE(os.stat(tmp_path / "b").st_mode) == 0o600
    keyfile = tmp_path / "k"
    keyfile.write_text("correct horse battery staple\n")
    out = run(host, "cluster", "backup", "--key-file", str(keyfile), str(tmp_path / "c"))
    assert out.exit_code == 0 and "its passphrase" in out.stdout and BACKUP_KEY not in out.stdout
    assert servicer.requests[-1].key == "correct horse battery staple"


def test_restore_asks_for_the_key_of_an_encrypted_backup(fake: tuple[FakeSecurity, str], tmp_path: Path) -> None:
    servicer, host = fake
    run(host, "cluster", "backup", str(tmp_path / "b"))
    out = run(host, "cluster", "restore", str(tmp_path / "b"), stdin=BACKUP_KEY + "\n")
    assert out.exit_code == 0 and "restored" in out.stdout
    assert servicer.requests[-1].key == BACKUP_KEY
    keyfile = tmp_path / "k"
    keyfile.write_text(BACKUP_KEY + "\n")
    assert run(host, "cluster", "restore", "--key-file", str(keyfile), str(tmp_path / "b")).exit_code == 0
    assert servicer.requests[-1].key == BACKUP_KEY


def test_raft_secret_rotation_follows_progress_or_detaches(fake: tuple[FakeSecurity, str]) -> None:
    servicer, host = fake
    shown = run(host, "cluster", "raft-secret")
    assert shown.exit_code == 0 and "epoch: 0" in shown.stdout and "complete" in shown.stdout
    rotated = run(host, "cluster", "raft-secret", "--rotate")
    assert rotated.exit_code == 0 and "complete" in rotated.stdout and servicer.polls >= 3
    detached = run(host, "cluster", "raft-secret", "--rotate", "--detach", "--format", "json")
    assert json.loads(detached.stdout)["rotating"] is True
