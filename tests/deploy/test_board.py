"""A board-like install: a minimal Debian 12 root (what Raspberry Pi OS 64-bit is built on), the
wheel ``make wheel`` builds, ``deploy/install.sh --root``, then the installed agent run inside the
root (chroot): ``edgemeter power``, ``edgemeter analyze`` and a short ``bench`` with each runtime,
the missing-extra hint, and ``systemd-analyze verify`` of the installed unit.

The root comes from ``debootstrap`` and is cached as a tarball between runs (under
``$EDGEMETER_TEST_ROOTFS_CACHE``, else ``$XDG_CACHE_HOME/edgemeter-test-rootfs``, else
``/var/cache/edgemeter-test-rootfs``). The mirror is the one apt on this machine uses (read from
``/etc/apt/sources.list*`` at run time). Python packages come from this machine's pip
configuration into a wheelhouse handed to the root, so the root itself needs no network.

Marked ``slow`` and ``board``: ``make test`` leaves it out, ``make test-board`` (and ``.ci/run``
after ``make test``) runs it. Needs root (chroot) and debootstrap; skips locally, fails in CI.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.board]

REPO = Path(__file__).resolve().parents[2]
INSTALL_SH = REPO / "deploy" / "install.sh"
SUITE = "bookworm"  # Debian 12
MODELS = ("vww_96_int8.tflite", "vww_96_int8_qdq.onnx")
PACKAGES = "python3,python3-venv,ca-certificates,systemd"  # what a board's OS has (systemd: verify's targets)


def apt_mirror(etc_apt: Path = Path("/etc/apt")) -> str | None:
    """The first URI apt is configured to fetch ``bookworm`` from (one-line or deb822 sources)."""
    files = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list")),
             *sorted((etc_apt / "sources.list.d").glob("*.sources"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
                if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split() \
                        and "false" not in fields.get("Enabled", "yes").lower():
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                found = re.match(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
                if found and found.group(2) == SUITE:
                    return found.group(1)
    return None


def cache_dir() -> Path:
    if os.environ.get("EDGEMETER_TEST_ROOTFS_CACHE"):
        return Path(os.environ["EDGEMETER_TEST_ROOTFS_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "edgemeter-test-rootfs"
    return Path("/var/cache/edgemeter-test-rootfs")


def debian_root(target: Path) -> Path:
    """A fresh Debian 12 root at ``target``, unpacked from the cached debootstrap tarball."""
    if os.geteuid() != 0:
        unavailable("the board test needs root (debootstrap, chroot)")
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        unavailable("debootstrap is not installed (.ci/run installs it)")
    assert debootstrap is not None
    tarball = cache_dir() / f"debian12-{os.uname().machine}-{PACKAGES.replace(',', '+')}.tar"
    if not tarball.is_file():
        mirror = apt_mirror()
        if mirror is None:
            unavailable(f"apt has no {SUITE} source in /etc/apt/sources.list* to debootstrap from")
        assert mirror is not None
        build = cache_dir() / "build"
        shutil.rmtree(build, ignore_errors=True)
        build.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([debootstrap, "--variant=minbase", f"--include={PACKAGES}",
                               SUITE, str(build), mirror], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            unavailable(f"debootstrap failed: {(done.stdout + done.stderr).strip().splitlines()[-1:]}")
        def skip_mounts(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
            top = member.name.split("/")[1:2]
            deep = member.name.count("/") > 1
            return None if top in (["proc"], ["sys"]) and deep else member

        with tarfile.open(f"{tarball}.tmp", "w") as archive:
            archive.add(build, arcname=".", filter=skip_mounts)
        os.replace(f"{tarball}.tmp", tarball)
        shutil.rmtree(build, ignore_errors=True)
    target.mkdir()
    with tarfile.open(tarball) as archive:
        archive.extractall(target, filter="fully_trusted")
    return target


@contextlib.contextmanager
def proc_mounted(root: Path) -> Iterator[None]:
    """/proc inside the root while the agent runs there (a booted board has one)."""
    target = root / "proc"
    done = subprocess.run(["mount", "-t", "proc", "proc", str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        unavailable(f"cannot mount /proc in the root: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(target)], check=False)


def in_root(root: Path, *command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    return subprocess.run(["chroot", str(root), *command], capture_output=True, text=True,
                          timeout=timeout, env=env)


def built_wheel(out: Path) -> Path:
    """What `make wheel` builds (the Makefile's recipe, into a scratch folder)."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("edgemeter-*-py3-none-any.whl")
    return wheel


def test_install_sh_root_gives_a_board_that_benchmarks_with_each_runtime(
        tmp_path: Path, shared_models: Path) -> None:
    root = debian_root(tmp_path / "root")
    wheel = built_wheel(tmp_path / "dist")
    # The root has no network of its own here: the runtimes' wheels come from this machine's pip.
    house = root / "var/tmp/wheelhouse"
    fetched = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(house),
                              f"{wheel}[litert,onnx]"], capture_output=True, text=True, timeout=900)
    if fetched.returncode != 0:
        unavailable(f"pip could not fetch the runtimes' wheels: {fetched.stderr.strip().splitlines()[-1:]}")
    for name in MODELS:
        shutil.copy(shared_models / name, root / "var/tmp" / name)

    done = subprocess.run(
        [str(INSTALL_SH), "--root", str(root), "--device-id", "pi-img", "--fleet", "lab",
         "--broker", "mqtts://broker.example:8883", "--no-start", "--pip-option=--no-index",
         "--pip-option=--find-links=/var/tmp/wheelhouse", str(wheel)],
        capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    assert "inside" in done.stderr and "chroot" in done.stderr  # built with the board's own Python
    assert "edgemeter-firstboot" not in done.stderr

    with proc_mounted(root):
        edgemeter = "/opt/edgemeter/venv/bin/edgemeter"
        power = in_root(root, edgemeter, "power")
        assert power.returncode == 0, power.stderr
        assert re.search(r"^backend onnxruntime \d", power.stdout, re.M), power.stdout
        assert re.search(r"^backend litert \d", power.stdout, re.M), power.stdout
        marker = (root / "opt/edgemeter/venv/edgemeter-install.txt").read_text()
        assert "extra=litert,onnx" in marker  # both runtimes, as the board's platform has wheels for both

        for name in MODELS:
            analyzed = in_root(root, edgemeter, "analyze", f"/var/tmp/{name}")
            assert analyzed.returncode == 0, analyzed.stderr
            assert "MAC" in analyzed.stdout or "mac" in analyzed.stdout.lower()
            bench = in_root(root, edgemeter, "bench", f"/var/tmp/{name}", "--iterations", "20", "--warmup", "2",
                            "--power", "none", "--fidelity", "0", "-q", "--json", f"/var/tmp/{name}.json")
            assert bench.returncode == 0, bench.stderr
            assert (root / f"var/tmp/{name}.json").stat().st_size > 0

        # A missing extra names a command that works in this root: its venv's pip and the kept wheel.
        hint = in_root(root, "/opt/edgemeter/venv/bin/python", "-c",
                       "from shared.errors import MissingExtraError; print(MissingExtraError('collector', 'x'))")
        assert hint.returncode == 0, hint.stderr
        assert (f"/opt/edgemeter/venv/bin/python -m pip install '/opt/edgemeter/dist/{wheel.name}[collector]'"
                in hint.stdout), hint.stdout
        assert "deploy/install.sh --extra litert,onnx,collector" in hint.stdout

    verify = subprocess.run(["systemd-analyze", f"--root={root}", "verify", "--man=no",
                             "/etc/systemd/system/edgemeter-agent.service"],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    wants = root / "etc/systemd/system/multi-user.target.wants/edgemeter-agent.service"
    assert wants.is_symlink()


def test_the_mirror_is_read_from_apt_sources_in_either_format(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n")
    assert apt_mirror(tmp_path) == "http://mirror.invalid/debian"
    (tmp_path / "sources.list").write_text("# comment\ndeb [arch=amd64] http://other.invalid/debian bookworm main\n")
    assert apt_mirror(tmp_path) == "http://other.invalid/debian"
