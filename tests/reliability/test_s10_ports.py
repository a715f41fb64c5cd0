"""S10 — nothing is reachable by accident: published ports bind 127.0.0.1 unless asked twice.

Pass criterion (reliability.md S10): by default every published port listens on 127.0.0.1 only (the
kernel's listening sockets, `ss -ltn`, and `docker inspect`), and is not reachable through the host's
other addresses; 0.0.0.0 needs both the manifest's `host_ip` and `--publish-all-interfaces`, and then
warns; duplicate host ports are refused before anything is created.

tests/unit/test_hostile_inputs.py (`all-interfaces`, `port-twice`) and
tests/integration/test_engine_create.py (`PortBindings` of a created run) hold parts of this; here it
is checked on the kernel's listening sockets and the host's non-loopback addresses.
"""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from oracle import check_consistency
from runkit import RunKit, free_port
from support import BUSYBOX, assert_clean_output, records, run

HTTPD = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"


def _manifest(name: str, ports: str) -> str:
    return f"""
        name: {name}
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        run:
          - command: {HTTPD}
        ports:
{ports}
    """


def _listeners(port: int) -> set[str]:
    """Local addresses with a TCP listener on `port` (IPv4 and IPv6), from the kernel via `ss`."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


def _other_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines() if " lo " not in line]


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_default_binding_is_loopback_only(kit: RunKit, wait_for, figures):
    same = free_port()
    ports = f"""
          - {{name: web, type: http, port: 8080, host_port: {same}}}
          - {{name: any, type: tcp, port: 8081, host_port: 0}}
          - {{name: plain, type: http, port: {free_port()}}}"""
    result = kit.cli("create", "-f", kit.manifest(_manifest("s10-default", ports), "default.yaml"), "--json")
    assert result.code == 0, result.text
    run_id = result.json()["id"]
    wait_for(lambda: _connects("127.0.0.1", same), what=f"httpd on 127.0.0.1:{same}", timeout=30)
    bindings = kit.inspect(run_id)["NetworkSettings"]["Ports"]
    host_ports = []
    for key, entries in bindings.items():
        assert entries, f"{key} is not published"
        assert {e["HostIp"] for e in entries} == {"127.0.0.1"}, (key, entries)
        host_ports += [int(e["HostPort"]) for e in entries]
    assert same in host_ports
    checked = 0
    for port in host_ports:
        assert _listeners(port) == {"127.0.0.1"}, (port, _listeners(port))
        checked += 1
    others = _other_addresses()
    assert others, "no non-loopback address to try"
    for address in others:
        assert not _connects(address, same), f"port {same} is reachable on {address}"
    figures.add("S10", ports_checked=checked, addresses_refused=len(others))
    assert kit.cli("terminate", run_id, "--grace", "1").code == 0
    kit.assert_clean()


def test_all_interfaces_needs_the_field_and_the_flag(kit: RunKit, figures):
    port = free_port()
    entry = f"          - {{name: web, type: http, port: 8080, host_port: {port}, host_ip: 0.0.0.0}}"
    manifest = kit.manifest(_manifest("s10-open", entry), "open.yaml")
    refused = run(kit, "create", "-f", manifest)
    assert_clean_output(refused)
    assert refused.code == 4, refused.text
    assert "0.0.0.0" in refused.err and "--publish-all-interfaces" in refused.err
    assert records(kit) == {} and kit.leftovers() == []

    flag_only = run(kit, "create", "-f", kit.manifest(_manifest("s10-flag-only", f"""
          - {{name: web, type: http, port: 8080, host_port: {port}}}"""), "flag.yaml"), "--publish-all-interfaces",
                    "--json")
    assert flag_only.code == 0, flag_only.text
    assert _listeners(port) == {"127.0.0.1"}, "the flag alone must not open a port to every interface"
    assert kit.cli("terminate", "s10-flag-only", "--grace", "1").code == 0

    opened = run(kit, "create", "-f", manifest, "--publish-all-interfaces", "--wait", "--json")
    assert opened.code == 0, opened.text
    run_id = json.loads(opened.out)["id"]
    entries = kit.inspect(run_id)["NetworkSettings"]["Ports"]["8080/tcp"]
    assert {e["HostIp"] for e in entries} == {"0.0.0.0"}
    assert "0.0.0.0" in _listeners(port) or "*" in _listeners(port), _listeners(port)
    figures.add("S10", policy_refusals=1)
    assert kit.cli("terminate", run_id, "--grace", "1").code == 0
    assert check_consistency(kit, grace_s=0) == []
    kit.assert_clean()


@pytest.mark.parametrize("ports", [
    "  - {name: a, type: http, port: 8080, host_port: HOSTPORT}\n  - {name: b, type: http, port: 8081, "
    "host_port: HOSTPORT}",
    "  - {name: a, type: http, port: 8080}\n  - {name: b, type: tcp, port: 8080}",
], ids=["same-host-port", "same-container-port"])
def test_duplicate_ports_are_refused_before_anything_exists(kit: RunKit, ports: str, figures):
    text = (f"name: s10-dup\nresources: {{preset: cpu-small}}\nimage: {BUSYBOX}\nrun: sleep 600\nports:\n"
            + ports.replace("HOSTPORT", str(free_port())) + "\n")
    path = kit.workdir / "dup.yaml"
    path.write_text(text)
    result = run(kit, "create", "-f", str(path))
    assert_clean_output(result)
    assert result.code == 2, result.text
    assert "twice" in result.err and "ports[1]" in result.err, result.err
    assert not (kit.home / "runner.db").exists() or records(kit) == {}
    figures.add("S10", policy_refusals=1)


@pytest.mark.parametrize("dry", [False, True], ids=["create", "dry-run"])
def test_all_interfaces_warns(kit: RunKit, dry: bool):
    entry = "          - {name: web, type: http, port: 8080, host_port: 0, host_ip: 0.0.0.0}"
    manifest = kit.manifest(_manifest("s10-warn", entry), "warn.yaml")
    result = run(kit, "create", "-f", manifest, "--publish-all-interfaces", *(["--dry-run"] if dry else []))
    if not dry:
        kit.cli("terminate", "s10-warn", "--grace", "0")
    assert result.code == 0, result.text
    said = result.out if dry else result.err  # a dry run's plan lists its warnings; create warns on stderr
    assert "warning" in said.lower() and "other machines on the network can reach it" in said, result.text
    assert "0.0.0.0" in said
