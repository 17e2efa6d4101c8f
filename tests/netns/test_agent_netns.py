"""The SAP sandbox lives in its own network namespace, reachable only from the agent's
namespace; the control plane (root namespace) has no path to it, and the agent listens
on no port. Link-local /30 addresses on veth pairs we create (and delete) ourselves.

    [sap ns] 169.254.77.1 --veth-- 169.254.77.2 [agent ns] 169.254.78.2 --veth-- 169.254.78.1 [root: control plane]
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ml_connector.core.channel import ChannelRequest
from ml_connector.core.db import Database
from ml_connector.server.agents.channel import RemoteAgentChannel
from tests.support import AgentProc, ControlPlane, start_sandbox
from tests.support.netns import TAG, ip, netns_unavailable_reason

# Separate OS processes in network namespaces: `make test`, not `make test-fast`.
pytestmark = [pytest.mark.netns, pytest.mark.slow]

SAP_NS, AGENT_NS = f"mlcsap{TAG}", f"mlcagt{TAG}"


@pytest.fixture()
def namespaces() -> Iterator[None]:
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    try:
        ip("netns", "add", SAP_NS)
        ip("netns", "add", AGENT_NS)
        for ns in (SAP_NS, AGENT_NS):
            ip("-n", ns, "link", "set", "lo", "up")
        # sap <-> agent
        ip("link", "add", f"vs{TAG}", "type", "veth", "peer", "name", f"va{TAG}")
        ip("link", "set", f"vs{TAG}", "netns", SAP_NS)
        ip("link", "set", f"va{TAG}", "netns", AGENT_NS)
        ip("-n", SAP_NS, "addr", "add", "169.254.77.1/30", "dev", f"vs{TAG}")
        ip("-n", AGENT_NS, "addr", "add", "169.254.77.2/30", "dev", f"va{TAG}")
        ip("-n", SAP_NS, "link", "set", f"vs{TAG}", "up")
        ip("-n", AGENT_NS, "link", "set", f"va{TAG}", "up")
        # agent <-> root (control plane)
        ip("link", "add", f"vr{TAG}", "type", "veth", "peer", "name", f"vc{TAG}")
        ip("link", "set", f"vc{TAG}", "netns", AGENT_NS)
        ip("addr", "add", "169.254.78.1/30", "dev", f"vr{TAG}")
        ip("link", "set", f"vr{TAG}", "up")
        ip("-n", AGENT_NS, "addr", "add", "169.254.78.2/30", "dev", f"vc{TAG}")
        ip("-n", AGENT_NS, "link", "set", f"vc{TAG}", "up")
        yield
    finally:
        for ns in (SAP_NS, AGENT_NS):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", f"vr{TAG}"], capture_output=True, timeout=10)


def test_control_plane_has_no_path_to_sap_and_agent_has_no_listener(namespaces: None, tmp_path: Path) -> None:
    sandbox, sap = start_sandbox(prefix=["ip", "netns", "exec", SAP_NS], host="169.254.77.1")
    cp = ControlPlane(tmp_path / "cp", host="169.254.78.1")
    agent = AgentProc(tmp_path / "agent", cp.url, sap)
    # plain http between namespace addresses (not loopback): the agent needs the explicit opt-in
    agent_cfg = yaml.safe_load(agent.config.read_text(encoding="utf-8"))
    agent.config.write_text(yaml.safe_dump({**agent_cfg, "allow_insecure_http": True}), encoding="utf-8")
    db = None
    try:
        cp.start()
        sap_port = int(sap["base_url"].rsplit(":", 1)[1])
        # the control plane's namespace cannot reach SAP
        with pytest.raises(OSError), socket.create_connection(("169.254.77.1", sap_port), timeout=2):
            pass
        agent.setup(cp.token(), cp.url, sap["password"])
        agent.start(prefix=["ip", "netns", "exec", AGENT_NS])
        db = Database(cp.db_url)
        ch = RemoteAgentChannel(db, "plant1", timeout=30)
        r = ch.call(ChannelRequest(system="sap_ecc", function="STFC_CONNECTION", params={"REQUTEXT": "via agent"}))
        assert r.ok and r.result is not None and r.result["ECHOTEXT"] == "via agent"
        # the agent opened no listening TCP port in its namespace
        ss = subprocess.run(["ip", "netns", "exec", AGENT_NS, "ss", "-Hltn"], capture_output=True, text=True,
                            timeout=10)
        assert ss.returncode == 0 and ss.stdout.strip() == "", ss.stdout
        # ...while the SAP namespace does have its listener (the check can see one)
        ss_sap = subprocess.run(["ip", "netns", "exec", SAP_NS, "ss", "-Hltn"], capture_output=True, text=True,
                                timeout=10)
        assert f":{sap_port}" in ss_sap.stdout
    finally:
        agent.kill()
        cp.kill()
        sandbox.send_signal(signal.SIGKILL)
        sandbox.wait(10)
        if db is not None:
            db.dispose()
