"""A system and a flow shipped as a package of their own (tests/example_system): found through the
entry points `ml_connector.systems` and `ml_connector.flows`, the system's provider facts read from
its own package, with nothing registered by hand."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ml_connector.core import flow_modules, providers
from ml_connector.core.flow import load_pair
from tests.example_system.launch import ROOT, install, uninstall
from tests.support.plugins import write_dist_info

CONFIG = """\
connections:
  shop: {type: example, base_url: "http://127.0.0.1:1", api_key_secret: k}
flows:
  f:
    pair: example_catalog
    source: shop
    target: shop
    streams: [items]
"""


def test_a_registered_entry_carries_its_facts_from_its_own_package() -> None:
    install()
    try:
        assert providers.package_of("example") == "tests.example_system"
        f = providers.facts("example")
        assert (f.name, f.auth.mode, f.ping.path) == ("example", "api_key", "/ping")
        assert f.need_retry().statuses == [502, 503, 504]
        assert load_pair("example_catalog").__module__ == "tests.example_system.flows.example_catalog"
    finally:
        uninstall()
    assert "example_catalog" not in flow_modules.pairs()


def test_an_unknown_pair_names_both_places_a_flow_is_found() -> None:
    why = "no module ml_connector.flows.nope and no entry point 'nope' of 'ml_connector.flows'"
    with pytest.raises(ValueError, match=re.escape(why)):
        load_pair("nope")


def test_entry_points_install_the_system_its_facts_and_its_flow(tmp_path: Path) -> None:
    """In a fresh process with only the package's metadata on the path: config, facts and flow are found."""
    site = write_dist_info(tmp_path / "site", "mlc_example_plugin", {
        "ml_connector.systems": {"example": "tests.example_system:ENTRY"},
        "ml_connector.flows": {"example_catalog": "tests.example_system.flows.example_catalog"},
    })
    code = ("from ml_connector.config import parse_config\n"
            "from ml_connector.core import providers\n"
            "from ml_connector.core.flow import load_pair\n"
            f"cfg = parse_config({CONFIG!r})\n"
            "print(cfg.connections['shop'].type, cfg.flows['f'].pair)\n"
            "print(providers.facts('example').ping.path, providers.facts('example').need_retry().max_retries)\n"
            "print(load_pair('example_catalog').__module__)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={"PYTHONPATH": f"{site}:{ROOT}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["example example_catalog", "/ping 3",
                                        "tests.example_system.flows.example_catalog"]
