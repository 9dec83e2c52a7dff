#!/usr/bin/env bash
# Install the edgemeter agent daemon on a board (Raspberry Pi OS, JetPack/Ubuntu, any Debian).
# Run as root from a copy of deploy/ (it installs the unit and udev rule beside it):
#
#   sudo deploy/install.sh --fleet lab --broker mqtts://broker.example:8883 \
#        --ca-file ca.crt --password-file pi-017.pw dist/edgemeter-0.1.0-py3-none-any.whl
#
# What it does, each step safe to repeat (run it again with a newer wheel to upgrade):
#   - creates the system group and user `edgemeter` (no home, no shell; also declared for
#     systemd-sysusers in /etc/sysusers.d/edgemeter.conf);
#   - copies the wheel to /opt/edgemeter/dist/ and writes /opt/edgemeter/build-venv.sh, which
#     creates the venv /opt/edgemeter/venv with every runtime that has a wheel for this board
#     (LiteRT and ONNX Runtime on aarch64 and x86_64; --extra narrows or names them);
#   - writes /etc/edgemeter/agent.toml from the arguments if it is absent (never overwrites it);
#   - copies the CA (and a client certificate and key for mutual TLS) to /etc/edgemeter/tls/;
#   - installs the MQTT password as /etc/edgemeter/credentials/mqtt-password (root, 0600), read
#     by systemd's LoadCredential; without a new password an existing one is kept, and a missing
#     one becomes an empty file (mutual TLS needs none);
#   - installs edgemeter-agent.service, a drop-in with the board's i2c/gpio/render/apex groups,
#     and the udev rule that lets the edgemeter group read RAPL and INA power sensors;
#   - enables the unit and (re)starts it.
#
# Options:
#   --device-id ID        this board's id and MQTT username (default: the host name)
#   --fleet NAME          fleet it reports to (needed when agent.toml is written)
#   --broker URL          mqtts://host:8883; repeat for fail-over brokers (needed likewise)
#   --ca-file FILE        CA that signed the broker's certificate
#   --cert-file FILE --key-file FILE   this board's client certificate and key (mutual TLS)
#   --password-file FILE  the board's broker password (from add-device); or --password-stdin
#   --models-url URL      the collector's HTTP server, where jobs fetch their models
#   --telemetry-s N       seconds between telemetry messages (default 10)
#   --extra NAMES         pip extras: auto (default: every runtime with a wheel here), litert,
#                         onnx, litert,onnx, gpu (onnxruntime-gpu instead of onnx), or '' (none)
#   --python PATH         interpreter for the venv (default python3; >= 3.10)
#   --python uv:VERSION   where the system Python is older (JetPack 5, Mendel): uv installs a
#                         prebuilt CPython VERSION into /opt/edgemeter/python (needs uv on PATH)
#   --pip-option OPT      passed to pip install (repeatable), e.g. --pip-option=--no-index
#   --no-start            install and enable, but do not (re)start the unit
#   --root DIR            install into an image's root DIR: the venv is built inside it with its
#                         own Python (chroot), or, when that cannot run here (another CPU), at
#                         the board's first boot by edgemeter-firstboot.service; the units are
#                         enabled there (systemctl --root); udevadm, reloads and starting the
#                         unit are skipped and printed. Run inside a chroot without --root, it
#                         does the same: reloads happen at first boot.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
unit_src=$here/systemd/edgemeter-agent.service
rules_src=$here/udev/60-edgemeter-power.rules

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}
die() {
  echo "install.sh: $*" >&2
  exit 2
}
say() { echo "install.sh: $*" >&2; }

device_id=""
fleet=""
brokers=()
ca_file=""
cert_file=""
key_file=""
password_file=""
password_stdin=false
models_url=""
telemetry_s=10
extra=auto
python=python3
pip_options=()
start=true
root=/
wheel=""
while [ $# -gt 0 ]; do
  case "$1" in  # --option=value is --option value
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
  esac
  case "$1" in
    --device-id) device_id=${2:?$1 needs a value}; shift 2 ;;
    --fleet) fleet=${2:?$1 needs a value}; shift 2 ;;
    --broker) brokers+=("${2:?$1 needs a value}"); shift 2 ;;
    --ca-file) ca_file=${2:?$1 needs a value}; shift 2 ;;
    --cert-file) cert_file=${2:?$1 needs a value}; shift 2 ;;
    --key-file) key_file=${2:?$1 needs a value}; shift 2 ;;
    --password-file) password_file=${2:?$1 needs a value}; shift 2 ;;
    --password-stdin) password_stdin=true; shift ;;
    --models-url) models_url=${2:?$1 needs a value}; shift 2 ;;
    --telemetry-s) telemetry_s=${2:?$1 needs a value}; shift 2 ;;
    --extra) extra=${2?$1 needs a value}; shift 2 ;;
    --python) python=${2:?$1 needs a value}; shift 2 ;;
    --pip-option) pip_options+=("${2:?$1 needs a value}"); shift 2 ;;
    --no-start) start=false; shift ;;
    --root) root=${2:?$1 needs a value}; shift 2 ;;
    -h|--help) usage ;;
    -*) die "unknown option $1 (try --help)" ;;
    *) [ -z "$wheel" ] || die "one wheel only (got $wheel and $1)"; wheel=$1; shift ;;
  esac
done

# ---- checks before anything changes ---------------------------------------------------------
[ -n "$wheel" ] || die "give the wheel to install (make wheel builds dist/edgemeter-*.whl)"
[ -f "$wheel" ] || die "no wheel at $wheel"
wheel=$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")
for f in "$unit_src" "$rules_src"; do
  [ -f "$f" ] || die "run me from a full copy of deploy/ (no $f)"
done
live=false
[ "$root" = / ] && live=true
if [ "$live" = true ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (sudo): it creates a user and installs a system service"
fi
[ -n "$device_id" ] || device_id=$(hostname)
level='^[A-Za-z0-9._:@-]{1,128}$'
[[ "$device_id" =~ $level ]] || die "device id '$device_id' must be 1-128 letters, digits or . _ : @ -"
[ -z "$fleet" ] || [[ "$fleet" =~ $level ]] || die "fleet '$fleet' must be 1-128 letters, digits or . _ : @ -"
broker_re='^mqtts?://[][A-Za-z0-9._:-]+/?$'
http_re='^https?://[][A-Za-z0-9._:/-]+$'
for url in "${brokers[@]}"; do
  [[ "$url" =~ $broker_re ]] \
    || die "broker '$url' must look like mqtts://host:8883 (no user or password in it: use --password-file)"
done
[ -z "$models_url" ] || [[ "$models_url" =~ $http_re ]] \
  || die "models URL '$models_url' must look like http://collector:8080"
[[ "$telemetry_s" =~ ^[0-9]+$ ]] || die "--telemetry-s takes whole seconds"
[[ "$extra" =~ ^[a-z,]*$ ]] || die "--extra takes auto, or names like litert, onnx or litert,onnx"
for f in "$ca_file" "$cert_file" "$key_file" "$password_file"; do
  [ -z "$f" ] || [ -f "$f" ] || die "no file at $f"
done
{ [ -z "$cert_file" ] && [ -z "$key_file" ]; } || { [ -n "$cert_file" ] && [ -n "$key_file" ]; } \
  || die "--cert-file and --key-file go together"
[ -z "$password_file" ] || [ "$password_stdin" = false ] || die "--password-file or --password-stdin, not both"
password=""
if [ "$password_stdin" = true ]; then
  IFS= read -r password || true
  [ -n "$password" ] || die "empty password on stdin"
elif [ -n "$password_file" ]; then
  password=$(head -n 1 "$password_file")
  [ -n "$password" ] || die "$password_file is empty"
fi

etc=${root%/}/etc/edgemeter
prefix=${root%/}/opt/edgemeter
config=$etc/agent.toml
if [ ! -f "$config" ] && { [ -z "$fleet" ] || [ "${#brokers[@]}" -eq 0 ]; }; then
  die "$config does not exist yet: give --fleet and --broker to write it"
fi

# Commands that change the running system; with --root they are printed instead.
system() {
  if [ "$live" = true ]; then
    "$@"
  else
    say "skipped (--root): $*"
  fi
}
# A live install without a running systemd (a chroot while building an image, a container):
# reloading udev and systemd happens at first boot instead.
booted=false
if [ "$live" = true ] && [ -d /run/systemd/system ]; then
  booted=true
  if command -v systemd-detect-virt >/dev/null 2>&1 && systemd-detect-virt --quiet --chroot; then booted=false; fi
fi
if [ "$live" = true ] && [ "$booted" = false ]; then
  say "no running systemd here (a chroot or an image build): udev and systemd pick the rules and unit up at first boot, so reloads and the start are skipped"
fi
running() {
  if [ "$booted" = true ]; then "$@"; else say "skipped (first boot does it): $*"; fi
}
group_exists() {
  if [ "$live" = true ]; then getent group "$1" >/dev/null; else grep -q "^$1:" "$root/etc/group" 2>/dev/null; fi
}

# ---- user and group -----------------------------------------------------------------------------
# Declared for systemd-sysusers too, so an image's first boot creates them if nothing else did.
install -d -m 0755 "${root%/}/etc/sysusers.d"
printf '%s\n' '# Written by deploy/install.sh: the agent'"'"'s system user (no home, no shell).' \
  'u edgemeter - "edgemeter agent" /var/lib/edgemeter /usr/sbin/nologin' >"${root%/}/etc/sysusers.d/edgemeter.conf"
if [ "$live" = true ]; then
  getent group edgemeter >/dev/null || groupadd --system edgemeter
  id -u edgemeter >/dev/null 2>&1 || useradd --system --gid edgemeter --no-create-home \
    --home-dir /var/lib/edgemeter --shell /usr/sbin/nologin --comment "edgemeter agent" edgemeter
elif [ -f "$root/etc/passwd" ] && command -v systemd-sysusers >/dev/null 2>&1; then
  systemd-sysusers --root="$root" "$root/etc/sysusers.d/edgemeter.conf" || say "systemd-sysusers failed: the user edgemeter is made at first boot"
else
  say "skipped (--root): the user and group edgemeter are made at first boot (systemd-sysusers)"
fi

# ---- venv and wheel -----------------------------------------------------------------------------
# One script builds the venv, wherever it runs: here (a live board), inside the image's root
# (chroot, so the venv's interpreter is the board's own), or at the image's first boot (a oneshot
# unit) when the root's Python cannot run here. It installs every runtime that has a wheel for
# the board (--extra auto) or exactly the extras named, and leaves edgemeter-install.txt in the
# venv, which the agent's install hints read.
if [[ "$python" == uv:* ]]; then
  [ "$live" = true ] || die "--python uv:VERSION installs on the board itself (not with --root)"
  command -v uv >/dev/null 2>&1 || die "--python ${python}: uv is not on PATH (install uv first, or give --python PATH)"
  export UV_PYTHON_INSTALL_DIR=$prefix/python
  uv python install "${python#uv:}" || die "uv could not install Python ${python#uv:}"
  python=$(uv python find --no-project "${python#uv:}") || die "uv installed Python ${python#uv:} but cannot find it"
  say "using $python (installed by uv)"
fi
if [ "$live" = true ]; then
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$python is older than Python 3.10: give --python PATH (deploy/README.md: older JetPacks)"
  if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    system apt-get install -y -q python3-venv
  fi
fi
umask 022
install -d -m 0755 "$prefix" "$prefix/dist"
rm -f "$prefix"/dist/edgemeter-*.whl
install -m 0644 "$wheel" "$prefix/dist/"
builder=$prefix/build-venv.sh
{
  echo '#!/bin/bash'
  echo '# Written by deploy/install.sh: builds /opt/edgemeter/venv from the wheel in dist/. Safe to rerun.'
  echo 'set -euo pipefail'
  printf 'python=%q\n' "$python"
  printf 'extra=%q\n' "$extra"
  printf 'pip_options=(%s)\n' "$(if [ "${#pip_options[@]}" -gt 0 ]; then printf '%q ' "${pip_options[@]}"; fi)"
  printf 'wheel_name=%q\n' "$(basename "$wheel")"
  cat <<'BUILD'
prefix=${EDGEMETER_PREFIX:-/opt/edgemeter}
say() { echo "build-venv: $*" >&2; }
venv=$prefix/venv
wheel=$prefix/dist/$wheel_name
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { say "$python is older than Python 3.10 (install.sh --python PATH)"; exit 2; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip() { "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pip_options[@]}" "$@"; }
pip "$wheel"
# The same version number rebuilt (a fix on the same release) must replace what is installed.
pip --no-deps --force-reinstall "$wheel"
declare -A module=([litert]=ai_edge_litert [onnx]=onnxruntime [gpu]=onnxruntime)
tolerant=false
if [ "$extra" = auto ]; then
  tolerant=true
  case "$(uname -m)" in
    x86_64|aarch64|arm64) IFS=, read -ra wanted <<<"litert,onnx" ;;
    *) wanted=(); say "no LiteRT or ONNX Runtime wheels for $(uname -m): install a runtime by hand (tflite-runtime)" ;;
  esac
else
  IFS=, read -ra wanted <<<"$extra"
fi
got=()
for e in "${wanted[@]}"; do
  [ -n "$e" ] || continue
  if pip "$wheel[$e]" && { [ -z "${module[$e]:-}" ] || "$venv/bin/python" -c "import ${module[$e]}" 2>/dev/null; }; then
    got+=("$e")
  elif [ "$tolerant" = true ]; then
    say "no '$e' runtime installs here ($(uname -m), $("$venv/bin/python" -V)): skipped"
  else
    say "the '$e' extra did not install"; exit 1
  fi
done
{ echo "# Written by install.sh's build-venv.sh; edgemeter's install hints read it."
  echo "extra=$(IFS=,; echo "${got[*]}")"
  echo "wheel=/opt/edgemeter/dist/$wheel_name"; } >"$venv/edgemeter-install.txt"
say "venv ready: $venv (runtimes: ${got[*]:-none})"
BUILD
} >"$builder.tmp"
chmod 0755 "$builder.tmp"
mv "$builder.tmp" "$builder"

firstboot=false
if [ "$live" = true ]; then
  "$builder"
elif [ -x "$root/usr/bin/python3" ] && [ "$(id -u)" -eq 0 ] && chroot "$root" /usr/bin/true 2>/dev/null; then
  say "building the venv inside $root with its own Python (chroot), so its paths are the board's"
  chroot "$root" env EDGEMETER_PREFIX=/opt/edgemeter /opt/edgemeter/build-venv.sh
else
  firstboot=true
  say "the root's Python cannot run here: the board builds its venv at first boot (edgemeter-firstboot.service)"
fi

# ---- configuration, certificates, credential -------------------------------------------------
install -d -m 0755 "$etc"
install -d -m 0755 "$etc/tls"
if [ -n "$ca_file" ]; then install -m 0644 "$ca_file" "$etc/tls/ca.crt"; fi
if [ -n "$cert_file" ]; then
  install -m 0644 "$cert_file" "$etc/tls/device.crt"
  # the agent itself reads its key, so its group may; nobody else
  install -m 0640 "$key_file" "$etc/tls/device.key"
  system chgrp edgemeter "$etc/tls/device.key"
fi

if [ -f "$config" ]; then
  say "kept $config (it exists; edit it, or remove it to write a new one)"
else
  umask 022
  {
    echo "# Written by deploy/install.sh; it never overwrites this file."
    echo "# Settings: \`edgemeter agent sample-config\`. The broker password is not here: systemd"
    echo "# hands it over as the credential mqtt-password (/etc/edgemeter/credentials/)."
    echo "device_id = \"$device_id\""
    echo "fleet = \"$fleet\""
    echo "telemetry_s = $telemetry_s"
    echo
    echo "[mqtt]"
    echo "url = \"${brokers[0]}\""
    if [ "${#brokers[@]}" -gt 1 ]; then
      printf 'urls = ['
      printf '"%s", ' "${brokers[@]:1}" | sed 's/, $//'
      printf ']\n'
    fi
    echo "keepalive_s = 30"
    echo "username = \"$device_id\""
    echo
    echo "[mqtt.tls]"
    if [ -f "$etc/tls/ca.crt" ]; then echo "ca_file = \"/etc/edgemeter/tls/ca.crt\""; fi
    if [ -f "$etc/tls/device.crt" ]; then
      echo "cert_file = \"/etc/edgemeter/tls/device.crt\""
      echo "key_file = \"/etc/edgemeter/tls/device.key\""
    fi
    echo
    echo "[spool]"
    echo "path = \"/var/lib/edgemeter/spool.db\""
    echo "max_mb = 256"
    echo
    echo "[models]"
    if [ -n "$models_url" ]; then echo "url = \"$models_url\""; fi
    echo "cache_dir = \"/var/lib/edgemeter/models\""
    echo "max_mb = 2048"
    echo
    echo "[bench]"
    echo "power = \"auto\""
  } >"$config.tmp"
  mv "$config.tmp" "$config"
  say "wrote $config"
fi

umask 077
install -d -m 0700 "$etc/credentials"
credential=$etc/credentials/mqtt-password
if [ -n "$password" ]; then
  printf '%s\n' "$password" >"$credential.tmp"
  mv "$credential.tmp" "$credential"
  say "installed the MQTT password as $credential"
elif [ ! -f "$credential" ]; then
  : >"$credential"
  say "no password given: $credential is empty (fine with mutual TLS; else rerun with --password-file)"
fi
chmod 0600 "$credential"
umask 022

# ---- unit, groups drop-in, udev rule ----------------------------------------------------------
units=${root%/}/etc/systemd/system
install -d -m 0755 "$units/edgemeter-agent.service.d"
install -m 0644 "$unit_src" "$units/edgemeter-agent.service"
groups=()
for g in i2c gpio render apex; do
  if group_exists "$g"; then groups+=("$g"); fi
done
dropin=$units/edgemeter-agent.service.d/10-groups.conf
if [ "${#groups[@]}" -gt 0 ]; then
  printf '# Written by install.sh: the device groups this board has.\n[Service]\nSupplementaryGroups=%s\n' \
    "${groups[*]}" >"$dropin"
else
  rm -f "$dropin"
fi
install -d -m 0755 "${root%/}/etc/udev/rules.d"
install -m 0644 "$rules_src" "${root%/}/etc/udev/rules.d/60-edgemeter-power.rules"
if [ "$firstboot" = true ]; then
  cat >"$units/edgemeter-firstboot.service" <<'UNIT'
# Written by deploy/install.sh --root: builds the agent's venv on the board's first boot.
[Unit]
Description=edgemeter: build the agent's venv at first boot
ConditionPathExists=!/opt/edgemeter/venv/bin/edgemeter
Wants=network-online.target
After=network-online.target
Before=edgemeter-agent.service

[Service]
Type=oneshot
ExecStart=/opt/edgemeter/build-venv.sh
RemainAfterExit=yes
TimeoutStartSec=30min

[Install]
WantedBy=multi-user.target
UNIT
  printf '# Written by install.sh --root: the venv is built at first boot.\n[Unit]\nRequires=edgemeter-firstboot.service\nAfter=edgemeter-firstboot.service\n' \
    >"$units/edgemeter-agent.service.d/20-firstboot.conf"
else
  rm -f "$units/edgemeter-firstboot.service" "$units/edgemeter-agent.service.d/20-firstboot.conf"
fi

running udevadm control --reload
running udevadm trigger --action=add --subsystem-match=powercap --subsystem-match=hwmon --subsystem-match=iio

running systemctl daemon-reload
services=(edgemeter-agent.service)
[ "$firstboot" = false ] || services+=(edgemeter-firstboot.service)
if [ "$booted" = true ]; then
  systemctl enable --quiet "${services[@]}"
else
  systemctl --root="$root" enable --quiet "${services[@]}"  # an image: only the symlinks
fi
if [ "$start" = true ]; then
  running systemctl restart edgemeter-agent.service
fi
say "done: $device_id; follow it with journalctl -u edgemeter-agent -f"
