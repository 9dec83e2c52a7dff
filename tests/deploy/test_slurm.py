"""A one-node Slurm cluster (Debian's slurm-wlm and munge, slurmctld and slurmd on loopback) runs
deploy/slurm/edgemeter-bench.sbatch; `edgemeter results import` stores what it wrote once, and the
run appears in `compare` as an ``hpc`` baseline beside an edge run of the same model.

Needs root (slurmd) and the Debian packages slurm-wlm and munge (.ci/run installs them); skips
locally without them, fails in CI. Every daemon it starts is stopped by its pid file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgemeter.cli import main
from tests.conftest import unavailable

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SBATCH_SCRIPT = REPO / "deploy" / "slurm" / "edgemeter-bench.sbatch"
MODEL = "vww_96_int8.tflite"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tool(name: str) -> str:
    for folder in ("/usr/sbin", "/usr/bin"):
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed (apt-get install slurm-wlm munge; .ci/run does)")
    assert found is not None
    return found


def stop(pid_file: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text().strip()), 15)


@pytest.fixture
def slurm(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private munged, slurmctld and slurmd; yields the environment that reaches them."""
    if os.geteuid() != 0:
        unavailable("a one-node Slurm needs root (slurmd)")
    munged, slurmctld, slurmd = tool("munged"), tool("slurmctld"), tool("slurmd")
    tool("sbatch")
    base = tmp_path / "slurm"
    for sub in ("munge", "state", "spool", "log"):
        (base / sub).mkdir(parents=True)
    key = base / "munge/munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    (base / "munge").chmod(0o711)
    socket_path = base / "munge/sock"
    subprocess.run([munged, "--force", f"--socket={socket_path}", f"--key-file={key}",
                    f"--log-file={base}/log/munged.log", f"--pid-file={base}/munge/munged.pid",
                    f"--seed-file={base}/munge/seed"], check=True, timeout=30)
    conf = base / "slurm.conf"
    conf.write_text(f"""ClusterName=edgemeter-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={socket_path}
CredType=cred/munge
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/log/slurmctld.log
SlurmdLogFile={base}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        subprocess.run([slurmctld, "-i"], env=env, check=True, timeout=30)
        subprocess.run([slurmd, "-N", "localhost"], env=env, check=True, timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            time.sleep(0.5)  # waiting on real daemons, not timing anything
        else:
            pytest.fail(f"slurmd never became idle: {(base / 'log/slurmd.log').read_text()[-2000:]}")
        yield env
    finally:
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            stop(base / pid_file)


def test_a_slurm_job_s_results_are_imported_once_and_compared_as_hpc(
        slurm: dict[str, str], tmp_path: Path, shared_models: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    env = {**slurm, "EDGEMETER": str(Path(sys.executable).parent / "edgemeter"),
           "EDGEMETER_HARDWARE": "lumi-g-node", "EDGEMETER_RESULTS": str(results)}
    models_list = tmp_path / "models.txt"
    models_list.write_text(f"{shared_models / MODEL}\n")
    job = subprocess.run(["sbatch", "--wait", "--array=1-1", f"--output={tmp_path}/job-%A_%a.out",
                          str(SBATCH_SCRIPT), "--models-list", str(models_list),
                          "--iterations", "30", "--warmup", "3", "--power", "none", "--fidelity", "0"],
                         env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    outputs = "".join(p.read_text() for p in tmp_path.glob("job-*.out"))
    assert job.returncode == 0, job.stderr + outputs
    (written,) = results.glob("*.json")
    assert json.loads(written.read_text())["role"] == "hpc"

    db = f"sqlite:///{tmp_path}/fleet.db"
    assert main(["results", "import", str(results), "--db", db]) == 0
    assert main(["results", "import", str(results), "--db", db]) == 0
    err = capsys.readouterr().err
    assert "imported 1 new result(s) of 1 read" in err and "imported 0 new result(s) of 1 read (1 already" in err

    edge = tmp_path / "edge.json"
    assert main(["bench", str(shared_models / MODEL), "--iterations", "30", "--warmup", "3", "--power", "none",
                 "--fidelity", "0", "-q", "--device-id", "pi-01", "--json", str(edge)]) == 0
    assert main(["results", "import", str(edge), "--db", db]) == 0
    capsys.readouterr()
    assert main(["compare", "--db", db, "--no-shipped", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    hpc_run = json.loads(written.read_text())["run_id"]
    assert any(row["baseline"]["run_id"] == hpc_run and row["edge_device_id"] == "pi-01" for row in rows), rows
