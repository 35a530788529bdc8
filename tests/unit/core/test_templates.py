"""Swarm placeholders: the accepted subset, expansion, and refusals."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.core import templates as tpl

CTX = tpl.Context(
    service_id="svc1",
    service_name="web",
    service_labels={"tier": "front", "a": "1"},
    task_id="t9",
    task_slot=3,
    node_id="n7",
    node_hostname="h2",
    node_os="linux",
    node_arch="x86_64",
)


def test_plain_text_is_untouched() -> None:
    assert tpl.expand("no braces here", CTX) == "no braces here"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("{{.Service.Name}}", "web"),
        ("{{ .Service.ID }}", "svc1"),
        ("{{.Node.Hostname}}-{{.Task.Slot}}", "h2-3"),
        ("/data/{{.Task.Name}}", "/data/web.3.t9"),
        ("{{.Node.ID}}:{{.Node.Platform.OS}}/{{.Node.Platform.Architecture}}", "n7:linux/x86_64"),
        ('{{index .Service.Labels "tier"}}', "front"),
        ('{{index .Service.Labels "missing"}}', ""),
        ("{{.Service.Labels}}", "map[a:1 tier:front]"),
    ],
)
def test_expand(text: str, want: str) -> None:
    tpl.check(text)
    assert tpl.expand(text, CTX) == want


def test_global_task_name_uses_the_node() -> None:
    ctx = tpl.Context(service_name="agent", task_id="t1", node_id="n2")
    assert tpl.expand("{{.Task.Name}}", ctx) == "agent.n2.t1"
    assert tpl.expand("[{{.Task.Slot}}]", ctx) == "[]"


@pytest.mark.parametrize("text", ["{{.Service.Nope}}", "{{.Task}}", '{{printf "%s" .Task.ID}}', "{{.Node.Hostname", "x}}"])
def test_refused(text: str) -> None:
    with pytest.raises(tpl.TemplateError) as ei:
        tpl.check(text)
    assert isinstance(ei.value, errors.Invalid)
    assert text in str(ei.value)
