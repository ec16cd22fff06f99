"""A real Orthanc (Debian's ``orthanc`` and ``orthanc-dicomweb``) on free loopback ports with a temporary storage
folder, started once per test session and stopped after. Skipped only when the ``Orthanc`` binary is missing."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

#: Where Debian's orthanc-dicomweb puts the plugin.
PLUGIN_PATHS = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    Path("/usr/lib/orthanc/libOrthancDicomWeb.so"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc process: ``url`` (REST), ``dicomweb`` (the plugin's root), ``start``/``stop`` (same storage);
    ``users`` (name -> password): HTTP basic authentication required."""

    def __init__(self, root: Path, users: dict[str, str] | None = None) -> None:
        self.root = root
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb = f"{self.url}/dicom-web"
        plugin = next((p for p in PLUGIN_PATHS if p.exists()), None)
        if plugin is None:
            pytest.fail(f"Orthanc is installed but its DICOMweb plugin is not in {[str(p) for p in PLUGIN_PATHS]}")
        (root / "storage").mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "lungcad-test",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(users),
            "RegisteredUsers": users or {},
            "HttpServerEnabled": True,
            "DicomServerEnabled": True,
            "Plugins": [str(plugin)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "StudiesMetadata": "Full"},
        }
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=1))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        with open(self.root / "orthanc.log", "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(["Orthanc", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self.proc.returncode}): see {self.root / 'orthanc.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/system", timeout=2) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError:  # it answers (401 when authentication is on)
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer /system in {timeout} s: see {self.root / 'orthanc.log'}")

    def rest(self, method: str, path: str, body=None, *, raw: bool = False):
        """One REST request (``body``: bytes as is, anything else as JSON); its JSON answer (None when empty), or
        with ``raw`` its bytes."""
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=120) as r:
            text = r.read()
        return text if raw else json.loads(text) if text else None

    def add_modality(self, name: str, ae_title: str, port: int, host: str = "127.0.0.1") -> None:
        """Register a DICOM node (``PUT /modalities/NAME``) that Orthanc can C-ECHO and C-STORE to."""
        self.rest("PUT", f"/modalities/{name}", {"AET": ae_title, "Host": host, "Port": port})

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def running_orthanc(root: Path, users: dict[str, str] | None = None):
    """Yield a started :class:`Orthanc` on ``root``, stopped after; the test is skipped where the binary is missing."""
    if shutil.which("Orthanc") is None:
        pytest.skip("the Orthanc binary is missing (apt-get install orthanc orthanc-dicomweb; .ci/run does this)")
    server = Orthanc(root, users=users)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    yield from running_orthanc(tmp_path_factory.mktemp("orthanc"))


@pytest.fixture(scope="module")
def own_orthanc(tmp_path_factory):
    """An Orthanc for one test module alone (results stored into it do not reach another module's checks)."""
    yield from running_orthanc(tmp_path_factory.mktemp("own-orthanc"))


@pytest.fixture
def locked_orthanc(tmp_path):
    """An Orthanc that requires HTTP basic authentication (user ``reader``, password ``pw-123``)."""
    yield from running_orthanc(tmp_path / "locked", users={"reader": "pw-123"})
