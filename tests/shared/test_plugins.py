"""The one registry lookup every plugin registry uses (shared.plugins)."""

from __future__ import annotations

import sys

import pytest

from shared.errors import ConfigError
from shared.plugins import load_plugin

REGISTRY = {"json": "json:JSONDecoder", "colour": "colorsys:rgb_to_hsv"}


def test_a_registered_name_is_imported_on_first_use() -> None:
    sys.modules.pop("colorsys", None)
    found = load_plugin(REGISTRY, "colour", kind="thing")
    assert "colorsys" in sys.modules
    assert found(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)


def test_an_unknown_name_is_one_line_listing_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        load_plugin(REGISTRY, "yaml", kind="format", also=("auto",))
    assert str(err.value) == "unknown format 'yaml'; choose one of: auto, json, colour"
