"""Plain option values are coerced without pydantic (cli/coercion.py, issue 15):
the same results and the same errors as typer's own coercion, and a command
that does not import pydantic."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
import typer.core
from typer import _coercion
from typer.testing import CliRunner

from swarmlet.cli import coercion
from swarmlet.cli.main import app

runner = CliRunner()


def test_the_hook_is_installed() -> None:
    """A typer upgrade that moves build_runtime_param fails here, not silently
    (the CLI would only be slower)."""
    assert typer.core.build_runtime_param is coercion.build_runtime_param
    coercion.install()  # again: no change, and no recursion
    assert typer.core.build_runtime_param is coercion.build_runtime_param


def _sample_app(seen: dict[str, Any] | None = None) -> typer.Typer:
    """Every kind of parameter swarmlet's commands declare, and two it does
    not (typer keeps those)."""
    tiny = typer.Typer(add_completion=False)

    @tiny.command()
    def cmd(
        names: Annotated[list[str], typer.Argument()],
        text: Annotated[str | None, typer.Option("--text")] = None,
        count: Annotated[int | None, typer.Option("--count")] = None,
        replicas: Annotated[int, typer.Option("--replicas", min=0)] = 1,
        port: Annotated[int | None, typer.Option("--port", min=1, max=65535)] = None,
        ratio: Annotated[float | None, typer.Option("--ratio")] = None,
        interval: Annotated[float, typer.Option("--interval", min=0.1)] = 1.0,
        flag: Annotated[bool, typer.Option("--flag")] = False,
        tri: Annotated[bool | None, typer.Option("--tri/--no-tri")] = None,
        many: Annotated[list[str] | None, typer.Option("--many")] = None,
        numbers: Annotated[list[int] | None, typer.Option("--number", min=0)] = None,
        text_env: Annotated[str | None, typer.Option("--text-env", envvar="SWARMLET_TEST_TEXT")] = None,
        path: Annotated[Path | None, typer.Option("--path")] = None,
        clamped: Annotated[int | None, typer.Option("--clamped", min=0, max=9, clamp=True)] = None,
    ) -> None:
        values = dict(locals())  # the values as the command gets them (and `seen`)
        if seen is not None:
            seen.update((k, v) for k, v in values.items() if k != "seen")

    return tiny


def _sample_command() -> Any:
    return typer.main.get_command(_sample_app())


VALUES: list[Any] = [
    None, "", "0", "5", "-5", "-0", "05", "+5", " 5", "5 ", "5_000", "1.0", "1.5", "-2.25", ".5", "5.", "1e3",
    "inf", "nan", "abc", "٥", "99999999999999999999", "65535", "65536", "0.05", "0.1", "-", "--5", "-.5", "1.2.3", "1.",
    0, 1, -1, 3.5, 0.01, float("nan"), True, False, b"7", ("a", "b"), ["1", "2"], ("1", "-1"), (), ["x", 2],
]  # fmt: skip


def _outcome(runtime: _coercion.RuntimeParam, value: Any, param: Any, ctx: Any) -> tuple[str, Any]:
    try:
        result = runtime.coerce(value, param=param, ctx=ctx)
    except typer.BadParameter as e:
        return "error", e.message
    except Exception as e:  # typer's own may fail otherwise on odd input: so must ours
        return "raised", type(e).__name__
    if isinstance(result, float) and result != result:
        return "nan", float
    return "value", (type(result), result, [type(r) for r in result] if isinstance(result, list) else None)


def test_results_and_errors_are_typers_own() -> None:
    cmd = _sample_command()
    ctx = typer.Context(cmd)
    plain = 0
    for param in cmd.params:
        desc = param.type_descriptor
        ours = coercion.build_runtime_param(desc)
        own = _coercion.build_runtime_param(desc)
        if param.name in ("path", "clamped"):
            assert not isinstance(ours, coercion.PlainRuntimeParam), param.name
            continue
        assert isinstance(ours, coercion.PlainRuntimeParam), param.name
        plain += 1
        for value in VALUES:
            assert _outcome(ours, value, param, ctx) == _outcome(own, value, param, ctx), (param.name, value)
    assert plain == 12


def test_plain_values_need_no_pydantic() -> None:
    cmd = _sample_command()
    ctx = typer.Context(cmd)
    params = {p.name: p for p in cmd.params}
    cases = {
        "names": [("a", "b")],
        "text": ["web", ""],
        "count": ["7", "-3", 4],
        "replicas": ["0", "12", 1],
        "port": ["1", "65535"],
        "ratio": ["0.25", "-1", "3", 0.5],
        "interval": ["0.1", "2", 1.0],
        "tri": [True, False],
        "many": [("x", "y"), ()],
        "numbers": [("1", "2")],
    }
    for name, values in cases.items():
        runtime = coercion.build_runtime_param(params[name].type_descriptor)
        assert isinstance(runtime, coercion.PlainRuntimeParam)
        for value in values:
            runtime.coerce(value, param=params[name], ctx=ctx)
        assert "typer_own" not in vars(runtime), (name, values)  # typer's (pydantic) coercion never built


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text)).strip()


@pytest.fixture(params=["typer", "plain"])
def factory(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with typer's own coercion, then with coercion.py's."""
    if request.param == "typer":
        monkeypatch.setattr(typer.core, "build_runtime_param", _coercion.build_runtime_param)
    else:
        monkeypatch.setattr(typer.core, "build_runtime_param", coercion.build_runtime_param)
    return str(request.param)


NOT_INT = "Input should be a valid integer, unable to parse string as an integer"

# What typer (with pydantic) says; both factories must say it.
USAGE_ERRORS = [
    (["--replicas", "abc"], f"Invalid value for '--replicas': {NOT_INT}"),
    (["--replicas", "-1"], "Invalid value for '--replicas': Input should be greater than or equal to 0"),
    (["--replicas", "1.5"], f"Invalid value for '--replicas': {NOT_INT}"),
    (["--port", "70000"], "Invalid value for '--port': Input should be less than or equal to 65535"),
    (["--ratio", "x"], "Invalid value for '--ratio': Input should be a valid number, unable to parse string as a number"),
    (["--interval", "0.05"], "Invalid value for '--interval': Input should be greater than or equal to 0.1"),
    (["--number", "1", "--number", "z"], "Invalid value for '--number': Input should be a valid integer"),
    (["--number", "-2"], "Invalid value for '--number': Input should be greater than or equal to 0"),
    (["--flag=yes"], "Option '--flag' does not take a value"),
    (["--replicas"], "Option '--replicas' requires an argument"),
]


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_bad_values_are_typers_usage_errors(factory: str, args: list[str], message: str) -> None:
    result = runner.invoke(_sample_app(), ["n1", *args])
    assert result.exit_code == 2, result.output
    assert message in _flat(result.output)


GOOD = [
    [],
    ["--replicas", "3", "--ratio", "0.5", "--flag", "--no-tri", "--many", "x", "--many", "y"],
    ["--count", "-7", "--port", "65535", "--interval", "2", "--tri", "--number", "0", "--number", "12", "--text", ""],
    ["--replicas", " 4", "--count", "5_000", "--ratio", "1e3", "--interval", "inf", "--text-env", "flag wins"],
    ["--ratio", "-0", "--count", "+3", "--path", "/tmp", "--clamped", "12"],
]


@pytest.mark.parametrize("args", GOOD, ids=lambda a: " ".join(a))
def test_values_reach_the_command_as_with_typers_own(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = []
    for build in (_coercion.build_runtime_param, coercion.build_runtime_param):
        monkeypatch.setattr(typer.core, "build_runtime_param", build)
        seen: dict[str, Any] = {}
        result = runner.invoke(_sample_app(seen), ["a", "b", *args], env={"SWARMLET_TEST_TEXT": "from env"})
        assert result.exit_code == 0, result.output
        outcomes.append({k: (type(v), v, [type(i) for i in v] if isinstance(v, list) else None) for k, v in seen.items()})
    assert outcomes[0] == outcomes[1]
    assert outcomes[1]["names"][1] == ["a", "b"]


def test_defaults_multiple_options_and_envvar(factory: str) -> None:
    seen: dict[str, Any] = {}
    args = ["a", "--replicas", "3", "--ratio", "0.5", "--flag", "--many", "x", "--many", "y"]
    assert runner.invoke(_sample_app(seen), args, env={"SWARMLET_TEST_TEXT": "from env"}).exit_code == 0
    assert {k: seen[k] for k in ("names", "replicas", "ratio", "flag", "tri", "many", "numbers", "text", "text_env")} == {
        "names": ["a"],
        "replicas": 3,
        "ratio": 0.5,
        "flag": True,
        "tri": None,
        "many": ["x", "y"],
        "numbers": None,
        "text": None,
        "text_env": "from env",
    }
    assert type(seen["ratio"]) is float and type(seen["interval"]) is float and seen["interval"] == 1.0


def test_a_command_does_not_import_pydantic(tmp_path: Path) -> None:
    """`node ls` and a `service update` with many options, against no daemon:
    every parameter is processed, and pydantic is never imported."""
    code = (
        "import sys\n"
        "from swarmlet.cli.main import app\n"
        "for args in sys.argv[1:]:\n"
        "    try:\n"
        "        app(args.split(), prog_name='swarmlet')\n"
        "    except SystemExit as e:\n"
        "        print('EXIT', e.code)\n"
        "print('PYDANTIC', sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core')))\n"
    )
    host = f"unix://{tmp_path}/missing.sock"
    commands = [
        f"-H {host} node ls",
        f"-H {host} service update --replicas 3 --update-parallelism 2 --update-max-failure-ratio 0.5 "
        "--env-add A=1 --env-add B=2 --no-init --label-add k=v web",
    ]
    out = subprocess.run([sys.executable, "-c", code, *commands], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["EXIT 1", "EXIT 1", "PYDANTIC []"], out


def test_swarmlet_usage_error_is_unchanged() -> None:
    result = runner.invoke(app, ["service", "create", "--replicas", "many", "nginx"])
    assert result.exit_code == 2
    assert f"Invalid value for '--replicas': {NOT_INT}" in _flat(result.output)
