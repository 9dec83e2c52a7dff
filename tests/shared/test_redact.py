"""redact_url: the password of any URL in a text becomes ***, and nothing else changes."""

from __future__ import annotations

import pytest

from shared.redact import redact_url


@pytest.mark.parametrize(("text", "shown"), [
    ("mqtt://collector:hunter2@broker:1883", "mqtt://collector:***@broker:1883"),
    ("mqtts://:hunter2@broker", "mqtts://:***@broker"),
    ("postgresql://edgemeter:p%40ss@db:5432/results?sslmode=require",
     "postgresql://edgemeter:***@db:5432/results?sslmode=require"),
    ("mqtt://u:pa@ss/w@broker:1883", "mqtt://u:***@broker:1883"),  # unescaped @ and /
    ("mqtt://u:p@[::1]:1883", "mqtt://u:***@[::1]:1883"),
    ("cannot reach postgresql://a:b@h/db (see mqtt://c:d@e)",
     "cannot reach postgresql://a:***@h/db (see mqtt://c:***@e)"),
])
def test_the_password_is_masked(text: str, shown: str) -> None:
    assert redact_url(text) == shown


@pytest.mark.parametrize("text", [
    "mqtt://broker:1883", "mqtt://collector@broker", "sqlite:////var/lib/edgemeter/results.db",
    "not a url", "", "user:pass is not a URL", "http://[broken",
])
def test_text_without_a_password_is_unchanged(text: str) -> None:
    assert redact_url(text) == text


def test_anything_printable_is_accepted() -> None:
    assert redact_url(ValueError("mqtt://u:p@h")) == "mqtt://u:***@h"
    assert redact_url(None) == "None"
