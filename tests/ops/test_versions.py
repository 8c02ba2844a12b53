"""One version: the six packages declare the same one, and every service reports what is installed."""

from __future__ import annotations

import tomllib
from importlib.metadata import version

from ._tools import ROOT
from .test_requirements import PYPROJECTS


def _declared() -> dict[str, str]:
    out = {}
    for rel in PYPROJECTS:
        project = tomllib.loads((ROOT / rel).read_text())["project"]
        out[project["name"]] = project["version"]
    return out


def test_every_package_declares_the_same_version() -> None:
    assert len(set(_declared().values())) == 1, _declared()


def test_each_service_reports_its_installed_version() -> None:
    from voicebridge.agent import server as agent_server
    from voicebridge.edge import app as edge_app
    from voicebridge.media import server as media_server

    declared = _declared()
    services = [(edge_app, "voicebridge-edge"), (media_server, "voicebridge-media")]
    for module, dist in [*services, (agent_server, "voicebridge-agent")]:
        assert module.VERSION == version(dist) == declared[dist]
