#!/usr/bin/env python3
"""Power cuts for daemons whose state directories live on loop-mounted ext4
images (no device-mapper in these kernels; see /work/shared/TESTBED.md).

A power cut of a set of processes, all at once:

1. SIGSTOP every process (nothing more reaches any file system);
2. copy each image file with `cp --sparse=always`: the copy holds what the
   file system had written to its device, and so misses whatever was only in
   the page cache (never fsync'd, not yet written back: vm.dirty_expire is
   30 s), as after a real power loss;
3. SIGKILL the processes, unmount, replace each image by its copy,
   `e2fsck -fy` it (journal replay, as at boot) and mount it again.

The caller restarts the daemons. Needs root (mount, e2fsck).

    from powercut import Disk, power_cut
    disk = Disk(Path("/x/h1.img"), Path("/x/h1/state"))
    disk.create()                       # truncate + mkfs.ext4 + mount
    ... start a daemon with --state-dir /x/h1/state ...
    power_cut([(pid, disk)])            # returns e2fsck's reports
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class PowerCutError(RuntimeError):
    pass


def _run(cmd: Sequence[str], ok_codes: Sequence[int] = (0,)) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120)
    if proc.returncode not in ok_codes:
        raise PowerCutError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stdout.strip()} {proc.stderr.strip()}")
    return proc


@dataclass
class Disk:
    """An ext4 file system in the image file `image`, mounted at `mount`."""

    image: Path
    mount: Path
    size_mb: int = 256

    def create(self) -> None:
        self.image.parent.mkdir(parents=True, exist_ok=True)
        self.mount.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(self.size_mb << 20)
        # -m 0: no blocks reserved for root (the daemons run as root; a test
        # that fills the disk should not have to know about the reserve).
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", str(self.image)])
        self.do_mount()

    def do_mount(self) -> None:
        _run(["mount", "-o", "loop", str(self.image), str(self.mount)])
        os.chmod(self.mount, 0o700)

    def umount(self) -> None:
        # The loop device goes with the mount (mount -o loop sets autoclear).
        _run(["umount", str(self.mount)])

    def mounted(self) -> bool:
        return os.path.ismount(self.mount)


def _wait_gone(pids: Sequence[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)  # our child: reap it
                if done == pid:
                    break
            except ChildProcessError:
                # Not our child: gone once /proc says so (or it is a zombie).
                try:
                    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                except OSError:
                    break
                if state == "Z":
                    break
            if time.monotonic() > deadline:
                raise PowerCutError(f"process {pid} survived SIGKILL")
            time.sleep(0.02)


def power_cut(victims: Sequence[tuple[int, Disk]], kill_timeout: float = 30.0) -> list[str]:
    """Cut power to every (pid, disk) pair at once; see the module docstring.
    Returns e2fsck's output per disk (the disks are mounted again)."""
    pids = [pid for pid, _ in victims]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    copies = []
    for _, disk in victims:
        cut = disk.image.with_name(disk.image.name + ".cut")
        _run(["cp", "--sparse=always", str(disk.image), str(cut)])
        copies.append(cut)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pids, kill_timeout)
    reports = []
    for (_, disk), cut in zip(victims, copies, strict=True):
        disk.umount()
        os.replace(cut, disk.image)
        # 0: clean, 1: errors fixed, 2: fixed, reboot advised; 4+: not fixed.
        fsck = _run(["e2fsck", "-fy", str(disk.image)], ok_codes=(0, 1, 2))
        reports.append(f"{disk.image.name}: e2fsck exit {fsck.returncode}")
        disk.do_mount()
    return reports


def fill(directory: Path, rounds: int = 100) -> list[Path]:
    """Fill the file system holding `directory` until it takes not one more
    block (files filler-N in it; delete them to free the space). One dd is
    not enough: ext4 reserves blocks for delayed allocation and frees the
    unused part when the data is written back, so a round of writes that
    stopped at ENOSPC is followed by another until a round cannot write 4 KiB."""
    fillers: list[Path] = []
    for chunk in [1 << 20, 1 << 16] + [4096] * rounds:
        path = directory / f"filler-{len(fillers)}"
        wrote = 0
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                return fillers
            raise
        fillers.append(path)
        try:
            block = bytes(chunk)
            while True:
                wrote += os.write(fd, block)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        finally:
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)
        if wrote == 0 and chunk == 4096:
            return fillers
    raise PowerCutError(f"could not fill the file system under {directory}")
