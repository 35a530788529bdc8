"""The rolling updater, through the whole leader round (planner.plan_round) on
the simulated cluster: availability invariants, monitor, delay, parallelism,
failure ratio and actions, rollback, pause/resume, canaries, leader change."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import planner, updater
from swarmlet.core import state as st
from tests.core_sim import Sim

US = pb.UpdateStatus
UC = pb.UpdateConfig

# Test images: how the simulated agent treats a task of each.
BAD = "bad:1"  # exits at once
UNHEALTHY = "unhealthy:1"  # starts, never passes its health check
SLOW = "slow:1"  # stays STARTING (health check pending) until told


def cluster(n: int = 3, **kw) -> Sim:
    sim = Sim(**kw)
    for i in range(1, n + 1):
        sim.add_node(f"n{i}")
    return sim


def service(sim: Sim, sid: str = "s", replicas: int = 6, **cfg) -> pb.Service:
    sim.add_service(sid, replicas=replicas, delay=cfg.pop("restart_delay", 0.0))
    svc = pb.Service()
    svc.CopyFrom(sim.snap.services[sid])
    svc.spec.update.CopyFrom(config(**cfg))
    svc.spec.rollback.CopyFrom(config(**cfg.get("rollback_cfg", {})) if "rollback_cfg" in cfg else config())
    sim.apply([st.put(svc)])
    settle(sim)
    return sim.snap.services[sid]


def config(**kw) -> pb.UpdateConfig:
    c = pb.UpdateConfig()
    c.CopyFrom(updater.DEFAULT_CONFIG)
    kw.pop("rollback_cfg", None)
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def update(sim: Sim, sid: str = "s", image: str = "busybox:2", **cfg) -> None:
    svc = sim.snap.services[sid]
    spec = pb.ServiceSpec()
    spec.CopyFrom(svc.spec)
    spec.task.container.image = image
    for k, v in cfg.items():
        setattr(spec.update, k, v)
    sim.apply([st.put(updater.updated_service(svc, spec, sim.now))])


def agent(sim: Sim, rng: random.Random | None = None, p: float = 1.0, healthy: set[str] | None = None) -> int:
    """What agents do: start tasks desired RUNNING, stop tasks desired
    stopped, fail tasks of bad images. With `rng`, each action happens with
    probability p (agents report at their own pace)."""
    acts = []
    for t in list(sim.snap.tasks.values()):
        if rng is not None and rng.random() > p:
            continue
        s = t.status.state
        image = t.spec.container.image
        status = None
        if t.desired_state == pb.RUNNING and pb.ASSIGNED <= s < pb.RUNNING:
            if image == BAD:
                status = pb.TaskStatus(state=pb.FAILED, err="task: non-zero exit (1)", exit_code=1)
            elif image == UNHEALTHY and s == pb.STARTING:
                status = pb.TaskStatus(state=pb.FAILED, err="container unhealthy")
            elif image in (UNHEALTHY, SLOW) and s < pb.STARTING:
                status = pb.TaskStatus(state=pb.STARTING, message="starting: waiting for the health check")
            elif image == SLOW and t.id not in (healthy or set()):
                continue
            else:
                status = pb.TaskStatus(state=pb.RUNNING, message="started")
        elif t.desired_state > pb.RUNNING and pb.ASSIGNED <= s < pb.COMPLETE:
            status = pb.TaskStatus(state=pb.SHUTDOWN, message="stopped")
        if status is not None:
            status.timestamp = sim.now
            acts.append(st.set_status(t.id, status, t.node_id))
    if acts:
        sim.apply(acts)
    return len(acts)


def plan(sim: Sim) -> list:
    acts = planner.plan_round(sim.snap, sim.now, sim.new_id, strict=True)
    sim.apply(acts)
    return acts


def settle(sim: Sim, rounds: int = 30) -> None:
    for _ in range(rounds):
        if not plan(sim) and not agent(sim):
            return
    raise AssertionError("did not settle")


def running(sim: Sim, sid: str = "s") -> list[pb.Task]:
    return [t for t in sim.tasks(sid) if t.desired_state == pb.RUNNING and t.status.state == pb.RUNNING]


def live(sim: Sim, sid: str = "s") -> list[pb.Task]:
    return [t for t in sim.tasks(sid) if t.desired_state <= pb.RUNNING]


def status(sim: Sim, sid: str = "s") -> pb.UpdateStatus:
    return sim.snap.services[sid].update_status


def drive(
    sim: Sim,
    until: Callable[[], bool],
    *,
    step: float = 0.5,
    limit: int = 400,
    check: Callable[[], None] | None = None,
    rng: random.Random | None = None,
    p: float = 1.0,
    healthy: set[str] | None = None,
) -> None:
    """Rounds and agent reactions with time moving on, checking `check` after
    every plan and every agent step, until `until()`."""
    for _ in range(limit):
        if until():
            return
        plan(sim)
        if check:
            check()
        agent(sim, rng, p, healthy)
        if check:
            check()
        sim.now += step
    raise AssertionError(f"not reached; update status: {status(sim)}")


def images(sim: Sim, sid: str = "s") -> list[str]:
    return sorted(t.spec.container.image for t in running(sim, sid))


# ---- availability invariants ----


@pytest.mark.parametrize("seed", range(5))
def test_stop_first_parallelism_1_never_below_n_minus_1(seed):
    rng = random.Random(seed)
    sim = cluster()
    service(sim, replicas=6, parallelism=1, monitor=2.0)
    update(sim)
    seen = []

    def check():
        n = len(running(sim))
        seen.append(n)
        assert n >= 5, f"only {n} running"
        # Never two live tasks in one slot with stop-first.
        slots = [t.slot for t in live(sim)]
        assert len(slots) == len(set(slots))

    drive(sim, lambda: status(sim).state == US.COMPLETED, check=check, rng=rng, p=0.6)
    assert images(sim) == ["busybox:2"] * 6
    assert min(seen) == 5  # it did take one down at a time
    assert status(sim).completed_at == sim.now - 0.5 or status(sim).completed_at <= sim.now


@pytest.mark.parametrize("seed", range(5))
def test_start_first_never_below_n(seed):
    rng = random.Random(seed)
    sim = cluster()
    service(sim, replicas=6, parallelism=2, monitor=1.0, order=UC.START_FIRST)
    update(sim)
    most = []

    def check():
        n = len(running(sim))
        assert n >= 6, f"only {n} running"
        most.append(len(live(sim)))
        assert len(live(sim)) <= 6 + 2  # at most `parallelism` extra

    drive(sim, lambda: status(sim).state == US.COMPLETED, check=check, rng=rng, p=0.6)
    assert images(sim) == ["busybox:2"] * 6
    assert max(most) > 6
    settle(sim)
    assert len(live(sim)) == 6


def test_parallelism_bounds_slots_in_flight_and_monitor_gates_the_next_batch():
    sim = cluster()
    service(sim, replicas=6, parallelism=2, monitor=5.0)
    update(sim)
    plan(sim)
    new = [t for t in live(sim) if t.spec.container.image == "busybox:2"]
    assert len(new) == 2 and all(t.desired_state == pb.READY for t in new)  # stop-first: placed, not started
    agent(sim)  # old ones stop
    plan(sim)  # new ones may start
    agent(sim)
    assert len([t for t in running(sim) if t.spec.container.image == "busybox:2"]) == 2
    # Within the monitor period: no further slot starts.
    for _ in range(4):
        sim.now += 1.0
        plan(sim)
        agent(sim)
        assert len([t for t in live(sim) if t.spec.container.image == "busybox:2"]) == 2
    sim.now += 1.0
    plan(sim)
    assert len([t for t in live(sim) if t.spec.container.image == "busybox:2"]) == 4


def test_delay_between_batches():
    sim = cluster()
    service(sim, replicas=2, parallelism=1, monitor=1.0, delay=10.0)
    update(sim)
    t0 = sim.now
    starts = []

    def check():
        for t in live(sim):
            if t.spec.container.image == "busybox:2" and t.id not in starts:
                starts.append(t.id)
                starts.append(sim.now)

    drive(sim, lambda: status(sim).state == US.COMPLETED, check=check)
    first, second = starts[1], starts[3]
    assert first == t0 and second - first >= 11.0


def test_parallelism_0_updates_everything_at_once():
    sim = cluster()
    service(sim, replicas=5, parallelism=0, monitor=1.0)
    update(sim)
    plan(sim)
    assert len([t for t in live(sim) if t.spec.container.image == "busybox:2"]) == 5
    drive(sim, lambda: status(sim).state == US.COMPLETED)


def test_health_check_pending_does_not_count_as_updated():
    sim = cluster()
    service(sim, replicas=2, parallelism=1, monitor=1.0)
    update(sim, image=SLOW)
    healthy: set[str] = set()
    drive(sim, lambda: any(t.status.state == pb.STARTING for t in live(sim)), healthy=healthy)
    (starting,) = [t for t in live(sim) if t.spec.container.image == SLOW]
    for _ in range(10):  # still STARTING: the second slot waits
        plan(sim)
        agent(sim, healthy=healthy)
        sim.now += 1.0
    assert len([t for t in live(sim) if t.spec.container.image == SLOW]) == 1
    healthy.add(starting.id)
    drive(sim, lambda: len([t for t in live(sim) if t.spec.container.image == SLOW]) == 2, healthy=healthy)


# ---- failures ----


def test_failure_pauses_by_default_and_another_update_resumes():
    sim = cluster()
    service(sim, replicas=4, parallelism=1, monitor=1.0, restart_delay=100.0)
    update(sim, image=BAD)
    drive(sim, lambda: status(sim).state == US.PAUSED)
    assert "update paused" in status(sim).message and "non-zero exit" in status(sim).message
    # Paused: nothing else is touched, whatever time passes.
    for _ in range(10):
        sim.now += 1.0
        plan(sim)
        agent(sim)
    assert len([t for t in live(sim) if t.spec.container.image == "busybox:latest"]) == 3
    # Resume with a good image: the update goes on to the end.
    update(sim, image="busybox:3")
    assert status(sim).state == US.UPDATING
    drive(sim, lambda: status(sim).state == US.COMPLETED)
    settle(sim)
    assert images(sim) == ["busybox:3"] * 4


def test_resume_with_unchanged_spec():
    sim = cluster()
    service(sim, replicas=3, parallelism=1, monitor=1.0, restart_delay=0.0)
    update(sim, image=BAD)
    drive(sim, lambda: status(sim).state == US.PAUSED)
    svc = sim.snap.services["s"]
    resumed = updater.updated_service(svc, svc.spec, sim.now)
    assert resumed.update_status.state == US.UPDATING and resumed.spec_version == svc.spec_version
    sim.apply([st.put(resumed)])
    # Same bad image: it pauses again, on a new failure.
    sim.now += 1
    drive(sim, lambda: status(sim).state == US.PAUSED)


def test_max_failure_ratio_continues_under_and_acts_over():
    # 6 slots, ratio 0.34: 2 failures (0.33) continue, the 3rd (0.5) pauses.
    sim = cluster()
    service(sim, replicas=6, parallelism=1, monitor=1.0, max_failure_ratio=0.34, restart_delay=1000.0)
    update(sim, image=BAD)
    drive(sim, lambda: status(sim).state == US.PAUSED)
    failed = [t for t in sim.tasks("s") if t.status.state == pb.FAILED]
    assert len(failed) == 3
    assert "3 of 6" in status(sim).message


def test_failure_action_continue_finishes_the_update():
    sim = cluster()
    service(sim, replicas=3, parallelism=1, monitor=1.0, failure_action=UC.CONTINUE, restart_delay=1000.0)
    update(sim, image=BAD)
    drive(sim, lambda: status(sim).state == US.COMPLETED)
    assert "failed on the way" in status(sim).message


def test_failure_action_rollback_returns_every_slot_to_the_old_spec():
    sim = cluster()
    service(sim, replicas=6, parallelism=2, monitor=1.0, failure_action=UC.ROLLBACK, order=UC.STOP_FIRST, restart_delay=5.0)
    old_version = sim.snap.services["s"].spec_version
    update(sim, image=UNHEALTHY)
    drive(sim, lambda: status(sim).state == US.ROLLBACK_COMPLETED)
    svc = sim.snap.services["s"]
    assert svc.spec.task.container.image == "busybox:latest"
    assert svc.previous_spec.task.container.image == UNHEALTHY
    assert svc.spec_version == old_version + 2
    assert "rolled back" in status(sim).message or "rollback completed" in status(sim).message
    settle(sim)
    assert images(sim) == ["busybox:latest"] * 6
    assert sorted(t.slot for t in running(sim)) == [1, 2, 3, 4, 5, 6]


def test_start_first_failure_rolls_back_without_losing_a_task():
    sim = cluster()
    service(sim, replicas=4, parallelism=1, monitor=1.0, failure_action=UC.ROLLBACK, order=UC.START_FIRST)
    before = {t.id for t in running(sim)}
    update(sim, image=UNHEALTHY)

    def check():
        assert len(running(sim)) >= 4

    drive(sim, lambda: status(sim).state == US.ROLLBACK_COMPLETED, check=check)
    settle(sim)
    assert {t.id for t in running(sim)} == before  # the old tasks never stopped


def test_manual_rollback():
    sim = cluster()
    service(sim, replicas=3, parallelism=1, monitor=1.0)
    update(sim, image="busybox:2")
    drive(sim, lambda: status(sim).state == US.COMPLETED)
    svc = sim.snap.services["s"]
    sim.apply([st.put(updater.rollback_service(svc, sim.now, "manually requested rollback"))])
    drive(sim, lambda: status(sim).state == US.ROLLBACK_COMPLETED)
    settle(sim)
    assert images(sim) == ["busybox:latest"] * 3


def test_rollback_uses_the_rollback_config():
    sim = cluster()
    service(sim, replicas=4, parallelism=1, monitor=1.0)
    svc = sim.snap.services["s"]
    spec = pb.ServiceSpec()
    spec.CopyFrom(svc.spec)
    spec.task.container.image = "busybox:2"
    spec.rollback.parallelism = 0  # roll back everything at once
    sim.apply([st.put(updater.updated_service(svc, spec, sim.now))])
    drive(sim, lambda: status(sim).state == US.COMPLETED)
    sim.apply([st.put(updater.rollback_service(sim.snap.services["s"], sim.now, "manual"))])
    plan(sim)
    assert len([t for t in live(sim) if t.spec.container.image == "busybox:latest"]) == 4


# ---- canaries ----


def test_canary_waits_for_promotion_then_rolls_on():
    sim = cluster()
    service(sim, replicas=5, parallelism=2, monitor=1.0, canary=2)
    old_ids = {t.id for t in running(sim)}
    update(sim)
    drive(sim, lambda: status(sim).canaries_ready)
    new = [t for t in running(sim) if t.spec.container.image == "busybox:2"]
    assert len(new) == 2
    assert old_ids <= {t.id for t in running(sim)}  # beside the old ones, nothing stopped
    assert "promote" in status(sim).message
    for _ in range(10):  # it stays there
        sim.now += 1
        plan(sim)
        agent(sim)
    assert len(running(sim)) == 7 and status(sim).state == US.UPDATING
    sim.apply([st.put(updater.promoted_service(sim.snap.services["s"], sim.now))])
    drive(sim, lambda: status(sim).state == US.COMPLETED, check=lambda: None)
    settle(sim)
    assert images(sim) == ["busybox:2"] * 5
    with pytest.raises(ValueError):
        updater.promoted_service(sim.snap.services["s"], sim.now)


def test_canary_auto_promote():
    sim = cluster()
    service(sim, replicas=4, parallelism=2, monitor=2.0, canary=1, auto_promote=True)
    update(sim)
    drive(sim, lambda: status(sim).state == US.COMPLETED)
    assert status(sim).promoted
    settle(sim)
    assert images(sim) == ["busybox:2"] * 4


def test_failing_canary_rolls_back_without_touching_old_tasks():
    sim = cluster()
    # Even with failure action pause: a failing canary is rolled back.
    service(sim, replicas=4, parallelism=1, monitor=1.0, canary=1)
    before = {t.id for t in running(sim)}

    def check():
        assert before <= {t.id for t in running(sim)}

    update(sim, image=UNHEALTHY)
    drive(sim, lambda: status(sim).state == US.ROLLBACK_COMPLETED, check=check)
    assert "canary" in status(sim).message or "rollback completed" in status(sim).message
    settle(sim)
    assert {t.id for t in running(sim)} == before


# ---- leader change, idempotence, other modes ----


def test_new_leader_continues_from_the_replicated_state():
    sim = cluster()
    service(sim, replicas=6, parallelism=1, monitor=1.0)
    update(sim)
    for _ in range(7):
        plan(sim)
        agent(sim)
        sim.now += 0.5
    created = {t.id for t in sim.tasks("s") if t.spec.container.image == "busybox:2"}
    assert 1 < len(created) < 6
    # A new leader: nothing but the replicated objects (protobuf bytes).
    other = Sim()
    other.snap = st.Snapshot(version=sim.snap.version)
    for table in ("nodes", "services", "tasks", "clusters"):
        for oid, obj in getattr(sim.snap, table).items():
            getattr(other.snap, table)[oid] = type(obj).FromString(obj.SerializeToString())
    other.now = sim.now
    other._ids = sim._ids + 1000
    drive(other, lambda: status(other).state == US.COMPLETED)
    new = [t for t in other.tasks("s") if t.spec.container.image == "busybox:2"]
    assert len(new) == 6 and created <= {t.id for t in new}  # nothing redone, nothing restarted


def test_a_round_is_idempotent_mid_update():
    sim = cluster()
    service(sim, replicas=6, parallelism=2, monitor=1.0)
    update(sim)
    for _ in range(12):
        plan(sim)
        assert planner.plan_round(sim.snap, sim.now, sim.new_id, strict=True) == []
        agent(sim)
        sim.now += 0.5


def test_replicas_only_change_is_no_update():
    sim = cluster()
    service(sim, replicas=3)
    svc = sim.snap.services["s"]
    spec = pb.ServiceSpec()
    spec.CopyFrom(svc.spec)
    spec.replicated.replicas = 5
    new = updater.updated_service(svc, spec, sim.now)
    assert new.spec_version == svc.spec_version and new.update_status.state == US.NONE
    sim.apply([st.put(new)])
    settle(sim)
    assert len(running(sim)) == 5


def test_scale_during_update():
    sim = cluster()
    service(sim, replicas=4, parallelism=1, monitor=1.0)
    update(sim)
    for _ in range(3):
        plan(sim)
        agent(sim)
        sim.now += 0.5
    sim.update_service("s", replicas=6)
    drive(sim, lambda: status(sim).state == US.COMPLETED)
    settle(sim)
    assert images(sim) == ["busybox:2"] * 6


def test_global_service_update():
    sim = cluster(4)
    sim.add_service("g", global_=True)
    svc = pb.Service()
    svc.CopyFrom(sim.snap.services["g"])
    svc.spec.update.CopyFrom(config(parallelism=1, monitor=1.0))
    sim.apply([st.put(svc)])
    settle(sim)

    def check():
        assert len(running(sim, "g")) >= 3
        per_node = [t.node_id for t in live(sim, "g")]
        assert len(per_node) == len(set(per_node))

    update(sim, "g")
    drive(sim, lambda: status(sim, "g").state == US.COMPLETED, check=check)
    settle(sim)
    assert images(sim, "g") == ["busybox:2"] * 4
    assert sorted(t.node_id for t in running(sim, "g")) == ["n1", "n2", "n3", "n4"]


def test_node_down_mid_update_is_replaced_with_the_new_spec():
    sim = cluster()
    service(sim, replicas=6, parallelism=1, monitor=1.0)
    update(sim)
    for _ in range(3):
        plan(sim)
        agent(sim)
        sim.now += 0.5
    sim.set_node("n3", state=pb.NodeStatus.DOWN)
    drive(sim, lambda: status(sim).state == US.COMPLETED)
    settle(sim)
    assert images(sim) == ["busybox:2"] * 6
    assert all(t.node_id != "n3" for t in running(sim))


def test_validate_config():
    updater.validate_config(updater.DEFAULT_CONFIG, "update")
    for bad, msg in ((config(delay=-1), "delay"), (config(monitor=-1), "monitor"), (config(max_failure_ratio=1.5), "ratio")):
        with pytest.raises(ValueError, match=msg):
            updater.validate_config(bad, "update")


def test_next_deadline_is_the_end_of_a_monitor_period():
    sim = cluster()
    service(sim, replicas=2, parallelism=1, monitor=3.0)
    assert updater.next_deadline(sim.snap, sim.now) is None  # not updating
    update(sim)
    t0 = sim.now
    plan(sim)
    agent(sim)
    plan(sim)
    agent(sim)  # the first new task runs from t0
    assert updater.next_deadline(sim.snap, sim.now) == t0 + 3.0
