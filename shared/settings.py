"""Settings tables both sides' configuration files use alike (the agent's and the collector's).

Each side has its own pydantic-settings model (``agent.config``, the daemon's, the collector's);
what is the same idea on both — a table that refuses unknown keys, the broker's TLS files — is
defined once here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from shared.mqtt import TlsFiles


class SettingsTable(BaseModel):
    """A ``[table]`` of a config file: an unknown key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class TlsSettings(SettingsTable):
    """``[mqtt.tls]``: the broker's CA, and this client's own pair for mutual TLS (PEM files)."""

    ca_file: Path | None = Field(None, description="CA certificate that signed the broker's (PEM)")
    cert_file: Path | None = Field(None, description="this client's certificate (mutual TLS)")
    key_file: Path | None = Field(None, description="this client's private key (mutual TLS)")

    def files(self) -> TlsFiles:
        return TlsFiles(ca_file=self.ca_file, cert_file=self.cert_file, key_file=self.key_file)
