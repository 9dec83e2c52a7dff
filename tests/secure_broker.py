"""A secured private Mosquitto for tests, started from the deployed files in ``deploy/mosquitto/``.

It proves the broker config a fleet runs: the test broker is ``deploy/mosquitto/edgemeter.conf``
with only its paths, ports and ``user`` rewritten, and ``deploy/mosquitto/edgemeter.acl`` copied
as it is, run by the one Mosquitto launcher (:class:`edgemeter.demo.mosquitto.Mosquitto`). Each
:class:`SecureBroker` makes, in its own temporary folder (with ``openssl``), a CA, a server
certificate for ``127.0.0.1`` and ``localhost``, and a client certificate per user (CN =
username), and a password file (``mosquitto_passwd -b``) with a random password per user.

The pytest fixture ``secure_broker`` (module scope, so that retained messages and sessions one test
file leaves never reach another; registered in ``tests/conftest.py``) yields a started
:class:`SecureBroker` with devices ``dev-a`` and ``dev-b`` in fleet ``lab`` and the
``collector`` user::

    def test_something(secure_broker: SecureBroker) -> None:
        dev = secure_broker.user("dev-a")
        dev.username, dev.password          # str, str (the username is the device_id)
        dev.password_file                   # Path: the password alone, mode 0600, like the
                                            # systemd credential "mqtt-password"
        dev.cert_file, dev.key_file         # Path: client certificate (CN=dev-a) and its key
        secure_broker.collector             # the same for the "collector" user
        secure_broker.plain_url             # mqtt://127.0.0.1:PORT   password required
        secure_broker.tls_url               # mqtts://127.0.0.1:PORT  password required
        secure_broker.mtls_url              # mqtts://127.0.0.1:PORT  client certificate required,
                                            #   its CN is the username; no password
        secure_broker.ports.plain, .tls, .mtls  # the same three listeners' port numbers
        secure_broker.ca_file               # Path: the CA to trust ([mqtt.tls] ca_file)
        secure_broker.fleet                 # "lab"
        secure_broker.add_device("dev-c")   # runs deploy/mosquitto/add-device, reloads (SIGHUP)
        secure_broker.add_device("col-2", collector=True)  # a second collector's login

The ACL lets a device write ``edgemeter/v1/<its fleet>/<id>/{result,status,telemetry,progress,ack}``
and read its own ``cmd`` and ``receipt``; the collector reads ``edgemeter/v1/#`` and writes ``cmd``,
``receipt`` and its presence. The broker takes each login's username as its client id.
Over MQTT v5 a denied QoS 1 publish is answered with PUBACK reason code 135
(not authorized) and is not delivered. A test that wants a broker of its own (to restart it, say)
builds one: ``with SecureBroker(tmp_path) as broker: ...``.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from edgemeter.demo.loopback import free_port
from edgemeter.demo.mosquitto import Mosquitto, find_mosquitto
from shared.errors import BrokerError
from tests.conftest import unavailable

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_MOSQUITTO = REPO_ROOT / "deploy" / "mosquitto"
CONF_TEMPLATE = DEPLOY_MOSQUITTO / "edgemeter.conf"
ACL_TEMPLATE = DEPLOY_MOSQUITTO / "edgemeter.acl"
ADD_DEVICE = DEPLOY_MOSQUITTO / "add-device"

HOST = "127.0.0.1"
FLEET = "lab"
DEVICES = ("dev-a", "dev-b")
COLLECTOR = "collector"
CERT_DAYS = 2
# Where the deployed files live on a broker host; rendering moves them into the test's folder.
DEPLOYED_ETC = "/etc/mosquitto/"
MTLS_LINES = ("require_certificate true", "use_identity_as_username true")


class SecureBrokerError(RuntimeError):
    """The secured test broker could not be set up or started; the message says which step."""


@dataclass(frozen=True)
class BrokerUser:
    """One MQTT account of the test broker: a password and a client certificate (CN=username)."""

    username: str
    password: str
    password_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ListenerPorts:
    plain: int
    tls: int
    mtls: int


def _run(args: Sequence[str], *, what: str, stdin: str | None = None) -> None:
    try:
        subprocess.run(
            list(args), input=stdin, text=True, check=True, capture_output=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", None) or str(err)
        raise SecureBrokerError(f"{what} failed: {detail.strip()[-300:]}") from err


# -- certificates -------------------------------------------------------------------------------

_LEAF_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid,issuer\n"
)


def _new_key(path: Path) -> None:
    _run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(path)],
        what=f"openssl genpkey {path.name}",
    )
    path.chmod(0o600)


def make_ca(folder: Path) -> tuple[Path, Path]:
    """A self-signed test CA: ``(ca.crt, ca.key)`` in ``folder``."""
    key, cert = folder / "ca.key", folder / "ca.crt"
    _new_key(key)
    _run(
        ["openssl", "req", "-x509", "-new", "-key", str(key), "-out", str(cert),
         "-days", str(CERT_DAYS), "-subj", "/CN=edgemeter test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        what="openssl req (CA)",
    )
    return cert, key


def make_leaf(
    folder: Path, name: str, common_name: str, ca: tuple[Path, Path], *,
    server_names: Sequence[str] = (),
) -> tuple[Path, Path]:
    """A certificate signed by ``ca``: a server's when ``server_names`` is given, else a client's."""
    key, csr, cert, ext = (folder / f"{name}{suffix}" for suffix in (".key", ".csr", ".crt", ".ext"))
    _new_key(key)
    _run(
        ["openssl", "req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={common_name}"],
        what=f"openssl req ({name})",
    )
    if server_names:
        alt = ",".join(f"IP:{n}" if re.fullmatch(r"[\d.]+", n) else f"DNS:{n}" for n in server_names)
        ext.write_text(f"{_LEAF_EXTENSIONS}extendedKeyUsage=serverAuth\nsubjectAltName={alt}\n")
    else:
        ext.write_text(f"{_LEAF_EXTENSIONS}extendedKeyUsage=clientAuth\n")
    ca_cert, ca_key = ca
    _run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", str(CERT_DAYS), "-extfile", str(ext)],
        what=f"openssl x509 ({name})",
    )
    csr.unlink()
    ext.unlink()
    return cert, key


# -- the deployed config, rendered for a test ----------------------------------------------------

def render_mosquitto_conf(
    template: str, *, conf_dir: Path, data_dir: Path, ports: ListenerPorts, user: str | None
) -> str:
    """``deploy/mosquitto/edgemeter.conf`` with test paths, loopback ports and a third listener.

    What changes: every ``/etc/mosquitto/...`` path moves under ``conf_dir``; persistence goes to
    ``data_dir``; the TLS listener (8883) and the loopback listener (1883) move to ``ports.tls``
    and ``ports.plain`` on 127.0.0.1; a copy of the TLS listener with its commented mutual-TLS
    lines switched on listens on ``ports.mtls``; ``user`` is set when given (mosquitto started
    as root would otherwise switch to the ``mosquitto`` user, who cannot read a test's files).
    Anything else stays as deployed. Raises :class:`SecureBrokerError` when the template no longer
    has the shape this relies on, so a changed deploy file fails the tests loudly.
    """
    head: list[str] = []
    blocks: list[list[str]] = []
    for raw in template.splitlines():
        line = raw.strip()
        words = line.split()
        if words and words[0] == "listener":
            blocks.append([line])
            continue
        if words and words[0] == "persistence_location":
            line = f"persistence_location {data_dir}/"
        elif words and words[0] == "user":
            continue
        line = line.replace(DEPLOYED_ETC, f"{conf_dir}/")
        (blocks[-1] if blocks else head).append(line)

    def listener_port(block: list[str]) -> str:
        return " ".join(block[0].split()[1:])

    by_port = {listener_port(block): block for block in blocks}
    if set(by_port) != {"8883", "1883 127.0.0.1"}:
        raise SecureBrokerError(f"{CONF_TEMPLATE} should have listeners 8883 and 1883 127.0.0.1, not {sorted(by_port)}")
    tls, plain = by_port["8883"], by_port["1883 127.0.0.1"]
    commented = [f"#{option}" for option in MTLS_LINES]
    if not all(option in tls for option in commented) or not any(x.startswith("cafile ") for x in tls):
        raise SecureBrokerError(f"{CONF_TEMPLATE}: the 8883 listener lost its cafile or its commented mutual-TLS lines")
    mtls = [f"listener {ports.mtls} {HOST}"] + [
        line[1:] if line in commented else line for line in tls[1:]
    ]
    rendered = [
        *head,
        *([f"user {user}"] if user else []),
        f"listener {ports.tls} {HOST}", *tls[1:],
        f"listener {ports.plain} {HOST}", *plain[1:],
        *mtls,
    ]
    return "\n".join(rendered) + "\n"


# -- the broker ----------------------------------------------------------------------------------

class SecureBroker:
    """Mosquitto with TLS, passwords and the fleet ACL, on free loopback ports. See the module doc."""

    def __init__(
        self, workdir: Path, *, devices: Sequence[str] = DEVICES, fleet: str = FLEET,
        mosquitto: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.fleet = fleet
        self.devices = tuple(devices)
        self._mosquitto = mosquitto or find_mosquitto()
        self.conf_dir = self.workdir / "etc"
        self.data_dir = self.workdir / "data"
        self.creds_dir = self.workdir / "credentials"
        self.ports = ListenerPorts(plain=free_port(), tls=free_port(), mtls=free_port())
        self._users: dict[str, BrokerUser] = {}
        self._ca: tuple[Path, Path] | None = None
        self._broker = Mosquitto(
            self.workdir, [], ports=[self.ports.plain, self.ports.tls, self.ports.mtls],
            binary=self._mosquitto, name="secured test broker",
        )

    # urls and files
    @property
    def plain_url(self) -> str:
        return f"mqtt://{HOST}:{self.ports.plain}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://{HOST}:{self.ports.tls}"

    @property
    def mtls_url(self) -> str:
        return f"mqtts://{HOST}:{self.ports.mtls}"

    @property
    def ca_file(self) -> Path:
        return self.conf_dir / "certs" / "ca.crt"

    @property
    def passwd_file(self) -> Path:
        return self.conf_dir / "passwd"

    @property
    def acl_file(self) -> Path:
        return self.conf_dir / "edgemeter.acl"

    @property
    def conf_file(self) -> Path:
        return self._broker.conf_file

    @property
    def collector(self) -> BrokerUser:
        return self.user(COLLECTOR)

    def user(self, username: str) -> BrokerUser:
        try:
            return self._users[username]
        except KeyError:
            raise KeyError(f"the test broker has no user {username!r}; it has {sorted(self._users)}") from None

    def log(self) -> str:
        return self._broker.log()

    @property
    def running(self) -> bool:
        return self._broker.running

    # set-up
    def prepare(self) -> None:
        """Certificates, password file, ACL and config; no process yet."""
        certs = self.conf_dir / "certs"
        for folder in (certs, self.data_dir, self.creds_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._ca = make_ca(certs)
        make_leaf(certs, "server", "localhost", self._ca, server_names=(HOST, "localhost"))
        shutil.copyfile(ACL_TEMPLATE, self.acl_file)
        self.passwd_file.write_text("")
        self.passwd_file.chmod(0o600)
        for username in (COLLECTOR, *self.devices):
            password = secrets.token_urlsafe(18)
            if username == COLLECTOR:  # edgemeter.acl has its block
                _run(["mosquitto_passwd", "-b", str(self.passwd_file), username, password],
                     what=f"mosquitto_passwd {username}")
            else:  # a board's ACL lines bind it to its fleet: add-device writes them
                self._run_add_device(username, password, ["--fleet", self.fleet])
            self._add_user(username, password)
        # user=None: the launcher keeps a root-started mosquitto running as the caller
        self._broker.config = render_mosquitto_conf(
            CONF_TEMPLATE.read_text(), conf_dir=self.conf_dir, data_dir=self.data_dir,
            ports=self.ports, user=None,
        ).splitlines()

    def _add_user(self, username: str, password: str) -> BrokerUser:
        assert self._ca is not None
        password_file = self.creds_dir / f"{username}.mqtt-password"
        password_file.write_text(password)
        password_file.chmod(0o600)
        cert, key = make_leaf(self.creds_dir, username, username, self._ca)
        self._users[username] = BrokerUser(username, password, password_file, cert, key)
        return self._users[username]

    def start(self) -> SecureBroker:
        """Prepare (once) and start Mosquitto; return once all three ports accept connections."""
        if self.running:
            return self
        if self._mosquitto is None:
            raise SecureBrokerError("mosquitto is not installed (apt-get install mosquitto)")
        if self._ca is None:
            self.prepare()
        try:
            self._broker.start()
        except BrokerError as err:
            raise SecureBrokerError(str(err)) from err
        return self

    def stop(self) -> None:
        """SIGTERM, so Mosquitto writes its persistence file as a clean shutdown does."""
        self._broker.stop()

    def restart(self) -> None:
        """Stop and start on the same ports, files and persistence store."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password and ACL files."""
        if not self.running:
            raise SecureBrokerError("the broker is not running")
        self._broker.reload()

    def add_device(self, device_id: str, *, fleet: str | None = None,
                   collector: bool = False) -> BrokerUser:
        """A new device (in ``fleet``, default :attr:`fleet`), or with ``collector`` a collector's
        login, through ``deploy/mosquitto/add-device``, then a reload; returns its account.

        The reload is asynchronous: a client may need to retry its first connection briefly.
        """
        password = secrets.token_urlsafe(18)
        self._run_add_device(device_id, password,
                             ["--collector"] if collector else ["--fleet", fleet or self.fleet])
        self.reload()
        return self._add_user(device_id, password)

    def _run_add_device(self, name: str, password: str, options: list[str]) -> None:
        _run(
            [str(ADD_DEVICE), "--passwd", str(self.passwd_file), "--acl", str(self.acl_file),
             *options, "--password-stdin", name],
            stdin=password + "\n", what=f"add-device {name}",
        )

    def __enter__(self) -> SecureBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def missing_tools() -> list[str]:
    """The programs a :class:`SecureBroker` needs that this machine lacks."""
    needed = {"openssl": shutil.which("openssl"), "mosquitto_passwd": shutil.which("mosquitto_passwd"),
              "mosquitto": find_mosquitto()}
    return [name for name, found in needed.items() if not found]


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A started :class:`SecureBroker` for one test module (devices dev-a, dev-b; fleet lab)."""
    missing = missing_tools()
    if missing:
        unavailable(f"the secured test broker needs {', '.join(missing)} (apt-get install mosquitto openssl)")
    broker = SecureBroker(tmp_path_factory.mktemp("secure-broker"))
    # The tools are here, so a broker that does not start is a broken deploy file: fail, never skip.
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
