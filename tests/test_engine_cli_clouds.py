"""`plan`, `apply` and `destroy` from the CLI against the Azure and GCP stand-ins, as users
run them: the SDKs find the stand-ins through the topology's endpoint settings
(azure.armEndpoint, gcp.apiEndpoint) and their credentials through the environment, as
they would a sovereign cloud or a Private Service Connect endpoint."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nsgsync.cli.main import main
from tests.azure.conftest import LOCATION, RG, SUB, VNET, VNET_CIDRS
from tests.fakes.azure_arm import FakeArm
from tests.fakes.gcp_compute import FakeCompute
from tests.gcp.conftest import PROJECT, gcp_block

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "config/example"
Handle = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]


def serve(handle: Handle) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, content = handle(self.command, self.path, dict(self.headers), body)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def token_reply(*_: Any) -> tuple[int, dict[str, str], bytes]:
    doc = {
        "access_token": "stand-in-token",
        "expires_in": 3600,
        "expires_on": str(int(time.time()) + 3600),
        "token_type": "Bearer",
        "resource": "stand-in",
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(doc).encode()


def example(provider: str, block: dict[str, Any], tmp_path: Path) -> Path:
    doc = yaml.safe_load((EXAMPLE / "topology.yaml").read_text())
    doc["provider"] = provider
    doc[provider] = block
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def cycle(topology: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = ["-f", str(EXAMPLE / "cluster"), "--topology", str(topology)]
    assert main(["plan", *files, "--detailed-exitcode"]) == 2
    assert "to add, 0 to change, 0 to destroy." in capsys.readouterr().out
    assert main(["apply", *files, "--auto-approve"]) == 0
    assert "Apply complete!" in capsys.readouterr().out
    assert main(["plan", *files, "--detailed-exitcode"]) == 0
    assert "No changes." in capsys.readouterr().out
    assert main(["destroy", "--topology", str(topology), "--auto-approve"]) == 0
    assert "Destroy complete!" in capsys.readouterr().out
    assert main(["destroy", "--topology", str(topology), "--plan", "--detailed-exitcode"]) == 0


def test_gcp_from_the_cli_through_api_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = serve(token_reply)
    token_url = next(tokens)
    creds = tmp_path / "adc.json"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # A service account key file, as GOOGLE_APPLICATION_CREDENTIALS names one; its
    # token_uri is where the signed assertion is exchanged for a token.
    creds.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "stand-in",
                "private_key": pem.decode(),
                "client_email": f"nsgsync@{PROJECT}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": f"{token_url}/token",
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(creds))
    with FakeCompute() as fake:
        topology = example("gcp", gcp_block(apiEndpoint=fake.endpoint), tmp_path)
        cycle(topology, capsys)
        assert fake.firewalls(PROJECT) == []
    next(tokens, None)


def test_azure_from_the_cli_through_arm_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeArm()
    base: list[str] = []

    def arm(method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        if path.startswith("/msi/token"):
            return token_reply()
        reply = fake.handle(method, base[0] + path, headers, body or None)
        content = b"" if reply.body is None else json.dumps(reply.body).encode()
        out = {**reply.headers, "Content-Type": "application/json"}
        return reply.status, out, content

    server = serve(arm)
    base.append(next(server))
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    # Managed identity as App Service offers it: the credential chain finds it by these.
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{base[0]}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "stand-in")
    doc = yaml.safe_load((EXAMPLE / "topology.yaml").read_text())
    for seg in doc["segments"]:
        fake.add_subnet(SUB, RG, VNET, seg["name"], seg["cidrs"][0], location=LOCATION)
        seg["azure"] = {
            "subnetId": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network"
            f"/virtualNetworks/{VNET}/subnets/{seg['name']}"
        }
    doc.pop("aws", None)
    block = {
        "subscriptionId": SUB,
        "resourceGroup": RG,
        "location": LOCATION,
        "vnetCIDRs": VNET_CIDRS,
        "armEndpoint": base[0],
    }
    path = tmp_path / "topo-doc.yaml"
    path.write_text(yaml.safe_dump({**doc, "provider": "azure", "azure": block}))
    cycle(path, capsys)
    next(server, None)
