"""The deployment files check out: units, scripts, udev rule, containers, compose and Ansible.

What a machine without systemd, Docker or boards can check is checked with the real tools:
``systemd-analyze verify``, ``shellcheck``, ``ansible-playbook`` (syntax, and one real run of the
board play on localhost into a scratch root), and install.sh run into a scratch root twice. The
broker's config and ACL are proven on a running Mosquitto in ``test_broker_acl.py``.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from agent.daemon.config import load_agent_settings
from tests.conftest import unavailable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNITS = DEPLOY / "systemd"
AGENT_UNIT = UNITS / "edgemeter-agent.service"
COLLECTOR_UNIT = UNITS / "edgemeter-collector.service"
INSTALL_SH = DEPLOY / "install.sh"
ADD_DEVICE = DEPLOY / "mosquitto" / "add-device"
UDEV_RULES = DEPLOY / "udev" / "60-edgemeter-power.rules"
CONTAINER = DEPLOY / "container"
PLAYBOOK = DEPLOY / "ansible" / "playbook.yml"
INVENTORY = DEPLOY / "ansible" / "inventory.example.yml"
VENV_EDGEMETER = "/opt/edgemeter/venv/bin/edgemeter"


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        unavailable(f"{name} is not installed (.ci/run installs it)")
    assert found is not None
    return found


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Key -> [values]`` of a unit file's [Service] section (keys may repeat)."""
    section, found = "", {}  # type: str, dict[str, list[str]]
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        if section == "[Service]":
            found.setdefault(key, []).append(value)
    return found


# -- systemd -------------------------------------------------------------------------------------

@pytest.mark.subprocess
@pytest.mark.parametrize("unit", [AGENT_UNIT, COLLECTOR_UNIT], ids=lambda p: p.name)
def test_unit_passes_systemd_analyze_verify_without_a_warning(unit: Path, tmp_path: Path) -> None:
    # verify insists the ExecStart binary exists: point it at a stub, change nothing else.
    stub = tmp_path / "edgemeter"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace(VENV_EDGEMETER, str(stub)))
    done = subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", str(copy)],
        capture_output=True, text=True, timeout=60,
    )
    # verify exits 0 on unknown keys and bad values, only warning: so the output must be empty.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("unit", [AGENT_UNIT, COLLECTOR_UNIT], ids=lambda p: p.name)
def test_unit_command_line_expands_no_variable_so_no_secret_reaches_it(unit: Path) -> None:
    (command,) = unit_settings(unit)["ExecStart"]
    assert "$" not in command and "%" not in command
    assert re.fullmatch(rf"{VENV_EDGEMETER} (agent run|collector serve) --config /etc/edgemeter/\w+\.toml", command)


def test_agent_unit_keeps_device_nodes_visible_and_its_files_private() -> None:
    settings = unit_settings(AGENT_UNIT)
    for hides_devices in ("PrivateDevices", "DeviceAllow", "DevicePolicy", "ProtectClock"):
        assert hides_devices not in settings
    assert settings["User"] == ["edgemeter"]
    assert settings["UMask"] == ["0077"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["StateDirectory"] == ["edgemeter"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["LoadCredential"] == ["mqtt-password:/etc/edgemeter/credentials/mqtt-password"]
    assert set(settings["SupplementaryGroups"][0].split()) == {"video", "plugdev"}


def test_collector_unit_receives_its_three_secrets_as_credentials() -> None:
    settings = unit_settings(COLLECTOR_UNIT)
    assert sorted(c.split(":")[0] for c in settings["LoadCredential"]) == ["db-password", "http-token", "mqtt-password"]
    assert settings["UMask"] == ["0077"]
    assert settings["ProtectSystem"] == ["strict"]


# -- shell scripts -------------------------------------------------------------------------------

@pytest.mark.subprocess
@pytest.mark.parametrize("script", [INSTALL_SH, ADD_DEVICE, DEPLOY / "slurm" / "edgemeter-bench.sbatch",
                                    DEPLOY.parent / "bench" / "gpu_baseline.sh"], ids=lambda p: p.name)
def test_shell_script_passes_shellcheck(script: Path) -> None:
    done = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


@pytest.mark.subprocess
@pytest.mark.parametrize("device_id", ["a+b", "a/b", "fleet#", "", "collector", "x" * 129])
def test_add_device_refuses_ids_the_acl_could_not_confine(device_id: str, tmp_path: Path) -> None:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    shutil.copyfile(DEPLOY / "mosquitto" / "edgemeter.acl", acl)
    done = subprocess.run([str(ADD_DEVICE), "--passwd", str(passwd), "--acl", str(acl), device_id],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert not passwd.exists()


@pytest.mark.subprocess
def test_add_device_prints_a_new_password_and_writes_acl_lines_once(tmp_path: Path) -> None:
    tool("mosquitto_passwd")
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    shutil.copyfile(DEPLOY / "mosquitto" / "edgemeter.acl", acl)
    args = [str(ADD_DEVICE), "--passwd", str(passwd), "--acl", str(acl), "--fleet", "lab", "pi-017"]
    first = subprocess.run(args, capture_output=True, text=True, check=True)
    second = subprocess.run(args, capture_output=True, text=True, check=True)
    assert re.fullmatch(r"[A-Za-z0-9]{20,}\n", first.stdout)
    assert first.stdout != second.stdout  # a new password each time it is not given
    assert [line.split(":")[0] for line in passwd.read_text().splitlines()] == ["pi-017"]
    assert stat.S_IMODE(passwd.stat().st_mode) & 0o007 == 0
    lines = acl.read_text().split()
    assert acl.read_text().count("user pi-017") == 1
    assert "edgemeter/v1/lab/pi-017/result" in lines and "edgemeter/v1/+/pi-017/result" not in lines


@pytest.mark.subprocess
@pytest.mark.parametrize("fleet", ["_collector", "a/b", "+", ""])
def test_add_device_refuses_fleets_a_board_could_escape_with(fleet: str, tmp_path: Path) -> None:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    shutil.copyfile(DEPLOY / "mosquitto" / "edgemeter.acl", acl)
    done = subprocess.run([str(ADD_DEVICE), "--passwd", str(passwd), "--acl", str(acl),
                           "--fleet", fleet, "pi-1"], capture_output=True, text=True)
    assert done.returncode == 2 and not passwd.exists()


# -- udev ----------------------------------------------------------------------------------------

@pytest.mark.subprocess
def test_udev_rule_commands_make_rapl_and_ina_readable_by_the_group(tmp_path: Path) -> None:
    """Run each rule's RUN commands on a fake sysfs tree, with our own group standing in."""
    own_group = grp.getgrgid(os.getegid()).gr_name
    rapl = tmp_path / "devices/virtual/powercap/intel-rapl/intel-rapl:0"
    ina = tmp_path / "devices/platform/i2c/1-0040/hwmon/hwmon3"
    for folder, files in ((rapl, ["energy_uj"]), (ina, ["in1_input", "curr1_input", "power1_input"])):
        folder.mkdir(parents=True)
        for name in files:
            (folder / name).write_text("1\n")
            (folder / name).chmod(0o400)
    device_paths = {"powercap": rapl, "hwmon": ina}
    for line in UDEV_RULES.read_text().splitlines():
        subsystem = re.search(r'SUBSYSTEM=="(\w+)"', line)
        if line.startswith("#") or not subsystem or subsystem.group(1) not in device_paths:
            continue
        devpath = "/" + str(device_paths[subsystem.group(1)].relative_to(tmp_path))
        for command in re.findall(r'RUN\+="([^"]+)"', line):
            command = command.replace("%S", str(tmp_path)).replace("%p", devpath)
            command = command.replace("chgrp edgemeter", f"chgrp {own_group}")
            program, _, rest = command.partition(" ")
            args = [program, "-c", rest[3:].strip("'")] if program == "/bin/sh" else command.split()
            subprocess.run(args, check=True, timeout=30)
    for path in [rapl / "energy_uj", *ina.iterdir()]:
        assert path.stat().st_mode & stat.S_IRGRP, path
        assert path.stat().st_gid == os.getegid()
        assert not path.stat().st_mode & stat.S_IROTH  # still hidden from everyone else


# -- install.sh ----------------------------------------------------------------------------------

def make_probe_wheel(folder: Path) -> Path:
    """A tiny wheel named edgemeter with a `litert` extra and an `edgemeter` script, so install.sh
    runs offline and fast; the real wheel is what `make wheel` builds."""
    files = {
        "edgemeter_probe.py": "def main() -> None:\n    print('probe')\n",
        "edgemeter-0.0.0.dist-info/METADATA":
            "Metadata-Version: 2.1\nName: edgemeter\nVersion: 0.0.0\nProvides-Extra: litert\n",
        "edgemeter-0.0.0.dist-info/WHEEL":
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "edgemeter-0.0.0.dist-info/entry_points.txt": "[console_scripts]\nedgemeter = edgemeter_probe:main\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append("edgemeter-0.0.0.dist-info/RECORD,,")
    wheel = folder / "edgemeter-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr("edgemeter-0.0.0.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


def venv_python() -> str:
    """This interpreter, when it can make a venv with pip (Debian splits that into python3-venv)."""
    if subprocess.run([sys.executable, "-c", "import venv, ensurepip"], capture_output=True).returncode:
        unavailable(f"{sys.executable} cannot create a venv with pip (apt-get install python3-venv)")
    return sys.executable


def install(root: Path, wheel: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALL_SH), "--root", str(root), "--python", venv_python(),
         "--pip-option=--no-index", *args, str(wheel)],
        input=stdin, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.subprocess
@pytest.mark.slow
def test_install_sh_sets_a_board_up_and_a_second_run_keeps_its_config(tmp_path: Path) -> None:
    root, wheel = tmp_path / "root", make_probe_wheel(tmp_path)
    (root / "etc").mkdir(parents=True)
    (root / "etc/group").write_text("root:x:0:\ngpio:x:997:\napex:x:998:\n")
    (tmp_path / "ca.crt").write_text("CA\n")
    (tmp_path / "pw").write_text("first-password\n")
    first = install(
        root, wheel, "--device-id", "pi-017", "--fleet", "lab", "--broker", "mqtts://b1.example:8883",
        "--broker=mqtts://b2.example:8883", "--ca-file", str(tmp_path / "ca.crt"),
        "--password-file", str(tmp_path / "pw"), "--models-url", "http://collector:8080",
    )
    assert first.returncode == 0, first.stderr
    etc = root / "etc/edgemeter"

    settings = load_agent_settings(etc / "agent.toml")  # the daemon accepts what install.sh wrote
    assert (settings.device_id, settings.fleet, settings.mqtt.username) == ("pi-017", "lab", "pi-017")
    assert [u.host for u in settings.mqtt.broker_urls()] == ["b1.example", "b2.example"]
    assert str(settings.mqtt.tls.ca_file) == "/etc/edgemeter/tls/ca.crt"
    assert str(settings.spool.path).startswith("/var/lib/edgemeter/")  # the unit's StateDirectory
    assert (settings.mqtt.password, settings.mqtt.password_file) == (None, None)  # systemd brings it
    assert "first-password" not in (etc / "agent.toml").read_text()

    credential = etc / "credentials/mqtt-password"
    assert credential.read_text() == "first-password\n"
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600
    assert stat.S_IMODE(credential.parent.stat().st_mode) == 0o700
    units = root / "etc/systemd/system"
    assert (units / "edgemeter-agent.service").read_text() == AGENT_UNIT.read_text()
    assert (units / "multi-user.target.wants/edgemeter-agent.service").is_symlink()
    assert "SupplementaryGroups=gpio apex\n" in (units / "edgemeter-agent.service.d/10-groups.conf").read_text()
    assert (root / "etc/udev/rules.d/60-edgemeter-power.rules").read_text() == UDEV_RULES.read_text()
    # A scratch root has no Python of its own: the board builds its venv at first boot.
    assert "the board builds its venv at first boot" in first.stderr
    assert (units / "multi-user.target.wants/edgemeter-firstboot.service").is_symlink()
    assert "Requires=edgemeter-firstboot.service" in (units / "edgemeter-agent.service.d/20-firstboot.conf").read_text()
    assert (root / "opt/edgemeter/dist" / wheel.name).is_file()
    assert 'u edgemeter - "edgemeter agent"' in (root / "etc/sysusers.d/edgemeter.conf").read_text()
    build = subprocess.run([str(root / "opt/edgemeter/build-venv.sh")], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "EDGEMETER_PREFIX": str(root / "opt/edgemeter")})
    assert build.returncode == 0, build.stderr
    assert (root / VENV_EDGEMETER.lstrip("/")).is_file()  # what ExecStart runs
    marker = (root / "opt/edgemeter/venv/edgemeter-install.txt").read_text()
    assert f"wheel=/opt/edgemeter/dist/{wheel.name}" in marker  # the install hints read it

    # Again, with other arguments and a new password: the edited config stays, the password changes.
    (etc / "agent.toml").write_text((etc / "agent.toml").read_text() + "# edited by hand\n")
    second = install(root, wheel, "--device-id", "other", "--password-stdin", stdin="second-password\n")
    assert second.returncode == 0, second.stderr
    assert (etc / "agent.toml").read_text().endswith("# edited by hand\n")
    assert credential.read_text() == "second-password\n"
    # And with no password at all: the one installed stays.
    third = install(root, wheel)
    assert third.returncode == 0, third.stderr
    assert credential.read_text() == "second-password\n"


WRITES_CONFIG = ["--fleet", "lab", "--broker", "mqtts://b1:8883"]


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--fleet", "lab", "--broker", "mqtts://user:secret@b1:8883"], "no user or password"),
        (["--device-id", "a/b", *WRITES_CONFIG], "device id"),
        (["--cert-file", "{wheel}", *WRITES_CONFIG], "go together"),
        (["--password-file", "{wheel}", "--password-stdin", *WRITES_CONFIG], "not both"),
        ([], "give --fleet and --broker"),
    ],
)
def test_install_sh_refuses_bad_arguments_before_changing_anything(
    tmp_path: Path, args: list[str], complaint: str
) -> None:
    root, wheel = tmp_path / "root", make_probe_wheel(tmp_path)
    root.mkdir()
    done = install(root, wheel, *(a.format(wheel=wheel) for a in args))
    assert done.returncode == 2
    assert complaint in done.stderr
    assert list(root.iterdir()) == []


# -- containers ----------------------------------------------------------------------------------

def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((CONTAINER / "compose.yaml").read_text())


def test_compose_runs_broker_database_and_collector_from_the_deploy_files() -> None:
    spec = compose()
    assert set(spec["services"]) == {"mosquitto", "postgres", "collector"}
    mounts = {v.split(":")[1]: v.split(":")[0] for v in spec["services"]["mosquitto"]["volumes"] if v.startswith(".")}
    assert (CONTAINER / mounts["/etc/mosquitto/mosquitto.conf"]).resolve() == DEPLOY / "mosquitto/edgemeter.conf"
    # a copy of edgemeter.acl that add-device appends the boards' lines to
    assert mounts["/etc/mosquitto/edgemeter.acl"] == "./secrets/edgemeter.acl"
    build = spec["services"]["collector"]["build"]
    assert (CONTAINER / build["context"] / build["dockerfile"]).resolve() == CONTAINER / "Dockerfile.collector"
    config = tomllib.loads((CONTAINER / "collector.toml").read_text())
    assert {"mqtt", "db", "http"} <= set(config)


def test_compose_keeps_every_secret_in_files_outside_itself() -> None:
    spec = compose()
    assert all(set(s) == {"file"} and s["file"].startswith("./secrets/") for s in spec["secrets"].values())
    for name, service in spec["services"].items():
        for key, value in (service.get("environment") or {}).items():
            assert not re.search(r"PASSWORD|TOKEN|SECRET", key) or key.endswith("_FILE"), (name, key)
            assert str(value).lower() != "trust", (name, key)
        for secret in service.get("secrets", []):
            assert (secret if isinstance(secret, str) else secret["source"]) in spec["secrets"]
    text = json.dumps(spec) + (CONTAINER / "collector.toml").read_text()
    assert not re.search(r"://[^/\s\"]*:[^/\s\"]*@", text)  # no user:password@ in any URL


@pytest.mark.parametrize("dockerfile", ["Dockerfile.agent", "Dockerfile.collector"])
def test_dockerfile_builds_from_slim_python_copies_what_exists_and_runs_unprivileged(dockerfile: str) -> None:
    text = (CONTAINER / dockerfile).read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.M)
    sources = {s for line in copied for s in line.split()}
    assert sources and all((REPO / s).exists() for s in sources)
    ignore = (CONTAINER / f"{dockerfile}.dockerignore").read_text().split()
    assert all(f"!{s}" in ignore for s in sources)  # the build context lets them through
    users = re.findall(r"^USER (\S+)$", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert "ENV CREDENTIALS_DIRECTORY=/run/secrets" in text


def test_agent_dockerfile_names_the_jetson_base_image() -> None:
    assert "nvcr.io/nvidia/l4t-" in (CONTAINER / "Dockerfile.agent").read_text()


# -- broker persistence sizing -------------------------------------------------------------------

def test_broker_config_queues_an_hours_outage_and_saves_often() -> None:
    conf = {}
    for line in (DEPLOY / "mosquitto/edgemeter.conf").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf.setdefault(key, value)
    assert conf["persistence"] == "true"
    assert int(conf["autosave_interval"]) <= 60
    assert int(conf["max_queued_messages"]) >= 100_000
    assert int(conf["max_inflight_messages"]) >= 100  # the collector acknowledges after storing
    assert conf["allow_anonymous"] == "false"


# -- Ansible -------------------------------------------------------------------------------------

def ansible_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(tmp_path), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "ANSIBLE_NOCOLOR": "1"}


@pytest.mark.subprocess
def test_playbook_passes_ansible_syntax_check(tmp_path: Path) -> None:
    done = subprocess.run(
        [tool("ansible-playbook"), "--syntax-check", "-i", str(INVENTORY), str(PLAYBOOK)],
        capture_output=True, text=True, timeout=120, env=ansible_env(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.subprocess
@pytest.mark.slow
def test_playbook_rolls_a_board_out_through_install_sh(tmp_path: Path) -> None:
    """The board play, for real, on localhost into a scratch root (no systemd, no broker host)."""
    playbook = tool("ansible-playbook")
    creds, root, dist = tmp_path / "credentials", tmp_path / "root", tmp_path / "dist"
    for folder in (creds, root / "etc", dist):
        folder.mkdir(parents=True)
    (root / "etc/group").write_text("root:x:0:\n")
    (creds / "pi-test-01.mqtt-password").write_text("from-the-controller")
    wheel = make_probe_wheel(dist)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"broker": {"hosts": {}}, "boards": {"hosts": {
        "pi-test-01": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    extra = {
        "edgemeter_credentials_dir": str(creds), "edgemeter_stage": str(tmp_path / "stage"),
        "edgemeter_wheel": str(wheel), "edgemeter_fleet": "lab",
        "edgemeter_brokers": ["mqtts://b1:8883", "mqtts://b2:8883"], "edgemeter_start": False,
        "edgemeter_install_args": ["--root", str(root), "--python", venv_python(), "--pip-option=--no-index"],
    }
    done = subprocess.run(
        [playbook, "-i", str(inventory), str(PLAYBOOK), "--limit", "boards", "-e", json.dumps(extra)],
        capture_output=True, text=True, timeout=300, env=ansible_env(tmp_path),
    )
    assert done.returncode == 0, done.stdout[-3000:]
    settings = load_agent_settings(root / "etc/edgemeter/agent.toml")
    assert (settings.device_id, settings.mqtt.url, settings.mqtt.urls) == ("pi-test-01", "mqtts://b1:8883", ["mqtts://b2:8883"])
    assert (root / "etc/edgemeter/credentials/mqtt-password").read_text() == "from-the-controller\n"
    assert not (tmp_path / "stage/mqtt-password").exists()  # the staged copy is gone
    assert "from-the-controller" not in done.stdout
