"""--mount, --secret, --config and their update forms -> spec (pure), and the
`secret`/`config` commands' own checks and output."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import secret as secret_cli
from swarmlet.cli.main import app
from swarmlet.cli.output import format_service_pretty
from swarmlet.cli.service_flags import StorageFlags, StorageUpdateFlags
from swarmlet.cli.storage import apply_storage, apply_storage_changes, parse_file_ref, parse_mount

M = pb.Mount
runner = CliRunner()


def test_parse_mount_docker_syntax() -> None:
    m = parse_mount("type=volume,source=data-{{.Task.Slot}},target=/data,volume-driver=local,volume-opt=type=tmpfs,volume-nocopy")
    assert (m.type, m.source, m.target, m.volume_driver, dict(m.volume_options), m.volume_nocopy) == (
        M.VOLUME,
        "data-{{.Task.Slot}}",
        "/data",
        "local",
        {"type": "tmpfs"},
        True,
    )
    assert parse_mount("src=v1,dst=/v").type == M.VOLUME  # docker's default type and aliases
    b = parse_mount("type=bind,source=/srv/x,destination=/x,readonly")
    assert (b.type, b.source, b.target, b.read_only) == (M.BIND, "/srv/x", "/x", True)
    assert not parse_mount("type=bind,src=/s,target=/x,ro=false").read_only
    t = parse_mount("type=tmpfs,target=/scratch,tmpfs-size=8m,tmpfs-mode=1770")
    assert (t.type, t.tmpfs_size, t.tmpfs_mode) == (M.TMPFS, 8 << 20, 0o1770)
    # CSV quoting keeps a comma inside a value.
    q = parse_mount('type=volume,src=nfs,target=/n,"volume-opt=o=addr=10.0.0.1,rw"')
    assert q.volume_options["o"] == "addr=10.0.0.1,rw"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type=volume,source=v", "target is required"),
        ("type=nfs,target=/x", "unknown mount type 'nfs'"),
        ("type=bind,target=/x", "a bind mount needs source"),
        ("type=tmpfs,source=x,target=/x", "takes no source"),
        ("type=bind,source=/s,target=/x,volume-nocopy", "volume-nocopy only apply to type=volume"),
        ("type=volume,source=vv,target=/x,tmpfs-size=1m", "tmpfs-size only apply to type=tmpfs"),
        ("type=tmpfs,target=/x,tmpfs-size=big", "invalid size"),
        ("type=tmpfs,target=/x,tmpfs-mode=9", "expected an octal mode"),
        ("target=/x,readonly=maybe", "invalid value for readonly"),
        ("target=/x,bind-propagation=rshared", "unknown field 'bind-propagation'"),
        ("target=/x,junk", "invalid field 'junk'"),
        ("type=volume,target=/x,volume-opt=novalue", "invalid volume-opt 'novalue'"),
    ],
)
def test_parse_mount_refusals(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_mount(text)


def test_parse_file_ref() -> None:
    assert parse_file_ref("db-pass", "secret") == ("db-pass", pb.FileTarget())
    name, f = parse_file_ref("source=db-pass,target=pw,uid=1000,gid=1001,mode=0400", "secret")
    assert (name, f.name, f.uid, f.gid, f.mode) == ("db-pass", "pw", "1000", "1001", 0o400)
    assert parse_file_ref("src=c,mode=400", "config")[1].mode == 0o400  # octal either way
    for text, message in (
        ("target=x", "source=NAME is required"),
        ("source=a,uid=root", "invalid uid 'root'"),
        ("source=a,mode=999", "expected an octal mode"),
        ("source=a,mode=1777", "at most 777"),
        ("source=a,owner=1", "unknown field 'owner'"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_file_ref(text, "secret")


def spec() -> pb.ServiceSpec:
    s = pb.ServiceSpec(name="web")
    c = s.task.container
    c.image = "img"
    c.mounts.add(type=M.VOLUME, source="data", target="/data")
    c.mounts.add(type=M.TMPFS, target="/tmp")
    c.secrets.add(secret_id="id1", secret_name="pw-v1", file=pb.FileTarget(name="pw", uid="0", gid="0", mode=0o444))
    c.configs.add(config_id="cid", config_name="app", file=pb.FileTarget(name="/app", uid="0", gid="0", mode=0o444))
    return s


def test_create_flags_fill_the_spec() -> None:
    s = pb.ServiceSpec(name="web")
    apply_storage(s, StorageFlags(mounts=["type=tmpfs,target=/t"], secrets=["pw,"], configs=["source=app,target=/etc/app"]))
    c = s.task.container
    assert [m.target for m in c.mounts] == ["/t"]
    assert [(r.secret_name, r.file.name) for r in c.secrets] == [("pw", "")]
    assert [(r.config_name, r.file.name) for r in c.configs] == [("app", "/etc/app")]
    with pytest.raises(typer.BadParameter, match="target is required"):
        apply_storage(s, StorageFlags(mounts=["type=tmpfs"]))


def test_update_flags_change_only_what_they_name() -> None:
    before = spec()
    assert apply_storage_changes(before, StorageUpdateFlags()) == before
    out = apply_storage_changes(
        before,
        StorageUpdateFlags(
            mount_add=["type=volume,source=other,target=/data", "type=tmpfs,target=/new"],
            mount_rm=["/tmp"],
            secret_rm=["pw-v1"],
            secret_add=["source=pw-v2,target=pw"],  # a rotation at the same target
            config_rm=["cid"],  # by id works too
        ),
    )
    c = out.task.container
    assert [(m.source, m.target) for m in c.mounts] == [("other", "/data"), ("", "/new")]
    assert [(r.secret_name, r.secret_id, r.file.name) for r in c.secrets] == [("pw-v2", "", "pw")]
    assert list(c.configs) == []
    assert before == spec()  # the input is untouched
    with pytest.raises(typer.BadParameter, match="no mount at '/nope'"):
        apply_storage_changes(before, StorageUpdateFlags(mount_rm=["/nope"]))
    with pytest.raises(typer.BadParameter, match="does not use 'nope'"):
        apply_storage_changes(before, StorageUpdateFlags(secret_rm=["nope"]))


def test_inspect_pretty_lists_mounts_secrets_and_configs() -> None:
    text = format_service_pretty(pb.Service(id="x", spec=spec()))
    assert "volume data -> /data" in text and "tmpfs -> /tmp" in text
    assert "pw-v1:" in text and "/run/secrets/pw (uid 0, gid 0, mode 0444)" in text
    assert "/app (uid 0, gid 0, mode 0444)" in text


# ---- the secret / config commands, before anything is sent ----


def test_secret_create_refuses_bad_input_without_calling_the_daemon(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (500 * 1024 + 10))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    sock = f"unix://{tmp_path}/no-daemon.sock"  # a call would fail with "Cannot connect"
    for args, message in (
        (["secret", "create", "big", str(big)], "is 512001 bytes: the limit is 512000 bytes"),
        (["secret", "create", "e", str(empty)], "the secret 'e' is empty"),
        (["secret", "create", "bad name", str(big)], "invalid secret name 'bad name'"),
        (["config", "create", "c", str(tmp_path / "missing")], "cannot read"),
        (["secret", "create", "x", str(empty), "--label", "=v"], "non-empty key"),
    ):
        r = runner.invoke(app, ["-H", sock, *args])
        assert r.exit_code != 0 and message in r.output, r.output
        assert "Cannot connect" not in r.output


def test_read_data_from_stdin_stops_past_the_limit() -> None:
    src = io.BytesIO(b"y" * (2 * 1024 * 1024))
    assert len(secret_cli.read_data("-", src)) == 500 * 1024 + 1


def test_pretty_shows_a_configs_content_but_no_secret_data() -> None:
    c = pb.Config(id="c1", spec=pb.ConfigSpec(name="app", data=b"listen 80\n", labels={"a": "b"}))
    assert secret_cli.pretty(c).endswith("Data:\nlisten 80")
    s = pb.Secret(id="s1", spec=pb.SecretSpec(name="pw"))
    out = secret_cli.pretty(s)
    assert "Name:" in out and "pw" in out and "Data" not in out
    rows = secret_cli.rows([s], now=0.0)
    assert rows == [["s1", "pw", "", ""]]
    assert json.loads(json.dumps(rows))
