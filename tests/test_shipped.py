"""connectors/all.py is the one list of shipped parts, and it agrees with the kernel's lists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bridge.config import Settings
from bridge.config_sections import PLATFORMS, PlatformSections
from bridge.publish import TARGETS
from connectors.all import SHIPPED

ROOT = Path(__file__).resolve().parent.parent


def test_every_platform_has_a_connector_and_every_connector_a_platform():
    assert set(SHIPPED.connectors) == set(PLATFORMS)
    assert set(SHIPPED.publishers) == set(TARGETS)


def test_every_messenger_is_named_and_configured_beside_its_settings_section():
    # Adding a messenger: its connector module, its line in connectors/all.py, its fake, and in
    # bridge/config_sections.py its section class, its field and its name. Nothing else.
    assert set(PLATFORMS) <= set(PlatformSections.model_fields)
    assert set(SHIPPED.connectors) <= set(PlatformSections.model_fields)
    assert not set(PlatformSections.model_fields) & set(SHIPPED.surfaces)


def test_every_connector_and_surface_has_its_settings_section_and_says_how_to_turn_it_on():
    settings = Settings()
    said = dict(SHIPPED.turn_on())
    for name in [*SHIPPED.connectors, *SHIPPED.surfaces]:
        assert getattr(settings, name).enabled is False
        assert said[name].startswith(f"set [{name}]")


def test_nothing_is_built_without_settings():
    settings = Settings()
    for part in SHIPPED.publishers.values():
        assert part.build(settings, None) == []


def test_connectors_load_neither_storage_nor_the_short_links():
    code = (
        "import sys, connectors.all\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'storage'"
        " or m in ('bridge.links', 'bridge.pipeline', 'bridge.app'))\n"
        "print(','.join(bad))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == ""
