#!/usr/bin/env python3
"""Bar chart of a cluster_bench.py run: swarmlet vs Docker Swarm.

    python scripts/bench/plot.py [--in docs/bench/cluster.json] [--out docs/bench/cluster.png]

Panels: create 30 replicas -> 30 running (with the measured floor, the issue's
~1 s floor estimate and the 40%-of-Swarm target), a worker cut off -> its tasks
running elsewhere (with the 5 s target), and daemon RSS per node. Bars are
medians, dots the individual runs; a missing half is drawn as "not measured".

matplotlib is a bench-only dependency (pip install matplotlib), not a project one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SWARMLET_COLOR = "#2a7ab9"
SWARM_COLOR = "#9a9a9a"
TARGET_COLOR = "#d62728"
FLOOR_COLOR = "#2ca02c"


def _runs(res: dict, system: str, test: str) -> tuple[float | None, list[float]]:
    r = ((res.get(system) or {}).get(test)) or {}
    runs = [x["seconds"] for x in r.get("runs") or []]
    return r.get("median"), runs


def _bars(ax, res: dict, test: str, title: str, headroom: float = 1.25) -> float | None:
    """Two bars (swarmlet, Swarm) with run dots; returns Swarm's median."""
    top = 0.0
    out = None
    for i, (system, label, color) in enumerate(
        (("swarmlet", "swarmlet", SWARMLET_COLOR), ("swarm", "Docker Swarm", SWARM_COLOR))
    ):
        med, runs = _runs(res, system, test)
        if system == "swarm":
            out = med
        if med is None:
            ax.text(
                i, 0.02, "not\nmeasured", ha="center", va="bottom", fontsize=9, color="#555", transform=ax.get_xaxis_transform()
            )
            continue
        ax.bar(i, med, width=0.6, color=color, label=label)
        ax.scatter([i] * len(runs), runs, color="black", s=12, zorder=3)
        ax.text(
            i + 0.33,
            med,
            f"{med:.2f} s",
            ha="center",
            va="bottom",
            fontsize=9,
            bbox=dict(facecolor="white", edgecolor="none", alpha=0.7, pad=1),
        )
        top = max(top, med, *runs)
    ax.set_xticks([0, 1], ["swarmlet", "Docker Swarm"])
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel("seconds")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, max(top * headroom, 1.0))
    return out


def plot(res: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1, 1.3]})

    # 1. create 30
    ax = axes[0]
    swarm_med = _bars(ax, res, "create30", "service create --replicas 30 → 30 running", headroom=1.6)
    floors = res.get("floor") or {}
    floor_top = 0.0
    for i, shape, what in ((0, "none", "no network"), (1, "bridge", "default bridge")):
        f = (floors.get(shape) or {}).get("seconds")
        if f:
            ax.hlines(
                f,
                i - 0.42,
                i + 0.42,
                color=FLOOR_COLOR,
                ls="--",
                lw=1.6,
                label=f"floor: 30 containers, no orchestrator ({what}) {f:.2f} s",
            )
            floor_top = max(floor_top, f)
    ax.axhline(1.0, color=FLOOR_COLOR, ls=":", lw=1.2, label="floor, the issue's estimate (~1 s)")
    if swarm_med:
        ax.axhline(0.4 * swarm_med, color=TARGET_COLOR, ls="-", lw=1.2, label=f"target: 40% of Swarm ({0.4 * swarm_med:.2f} s)")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, max(hi, floor_top * 1.6))
    ax.legend(fontsize=7, loc="upper left")

    # 2. failover
    ax = axes[1]
    _bars(ax, res, "failover", "worker cut off → its tasks running elsewhere", headroom=1.35)
    ax.axhline(5.0, color=TARGET_COLOR, ls="-", lw=1.2, label="target: < 5 s")
    ax.legend(fontsize=7, loc="upper left")

    # 3. memory with 30 tasks running
    ax = axes[2]
    sl = (res.get("swarmlet") or {}).get("rss_30_tasks") or {}
    sw = (res.get("swarm") or {}).get("rss_30_tasks") or {}
    hosts = sorted(set(sl) | set(sw)) or ["h1", "h2", "h3", "h4"]
    xs = range(len(hosts))
    w = 0.27
    series = [
        ("swarmlet daemon", [(sl.get(h) or {}).get("swarmlet_mb") for h in hosts], SWARMLET_COLOR, -w),
        ("dockerd, swarmlet run (engine only)", [(sl.get(h) or {}).get("dockerd_mb") for h in hosts], "#c6dbef", 0),
        ("dockerd, Swarm run (engine + swarm mode)", [(sw.get(h) or {}).get("dockerd_mb") for h in hosts], SWARM_COLOR, w),
    ]
    for label, vals, color, dx in series:
        pts = [(x + dx, v) for x, v in zip(xs, vals, strict=False) if v is not None]
        if pts:
            ax.bar([p[0] for p in pts], [p[1] for p in pts], width=w, color=color, label=label)
    if not any(v is not None for v in series[0][1]):
        ax.text(0.5, 0.5, "swarmlet RSS not measured", ha="center", transform=ax.transAxes, color="#555")
    ax.axhline(60, color=TARGET_COLOR, lw=1.2, label="target: worker daemon < 60 MB")
    ax.set_xticks(list(xs), [f"{h}\n{'manager' if i == 0 else 'worker'}" for i, h in enumerate(hosts)])
    ax.set_ylabel("RSS, MB")
    ax.set_title("memory per node with 30 tasks running", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    ymax = max([v for _, vals, _, _ in series for v in vals if v is not None] + [60])
    ax.set_ylim(0, ymax * 1.45)

    m = res.get("machine") or {}
    fig.suptitle(
        f"swarmlet vs Docker Swarm, 4 hosts (1 manager + 3 workers) on one {m.get('cpus', '?')}-core "
        f"machine, busybox, {res.get('repeats', '?')} runs each ({m.get('date', '')[:10]})",
        fontsize=11,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--in", dest="inp", default=str(REPO / "docs" / "bench" / "cluster.json"))
    ap.add_argument("--out", default=str(REPO / "docs" / "bench" / "cluster.png"))
    args = ap.parse_args()
    plot(json.loads(Path(args.inp).read_text()), Path(args.out))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
