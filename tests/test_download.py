"""Downloads say what happens and never hang: a local HTTP server plays CIFAR-10's host, fast,
stalled, slow and broken (resnet_lab.download, and load_cifar10's download)."""

from __future__ import annotations

import hashlib
import http.server
import tarfile
import threading
import time

import pytest

from resnet_lab.cifar10 import DataError, load_cifar10

BLOB = bytes(range(256)) * 4096  # 1 MiB


class Host(http.server.BaseHTTPRequestHandler):
    """Serves ``body``; honours Range; ``delay`` seconds before each 64 KiB chunk."""

    body, delay, ranges = BLOB, 0.0, []

    def do_GET(self):
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            type(self).ranges.append(start)
        body = self.body[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(0, len(body), 1 << 16):
            time.sleep(self.delay)
            try:
                self.wfile.write(body[i : i + (1 << 16)])
            except OSError:
                return  # the client gave up

    def log_message(self, *args):
        pass


@pytest.fixture
def host():
    Host.body, Host.delay, Host.ranges = BLOB, 0.0, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Host)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/cifar.tar.gz"
    server.shutdown()


def _official_archive(python_batches, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(python_batches / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive.read_bytes()


def test_load_cifar10_downloads_the_official_release(host, python_batches, tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    Host.body = _official_archive(python_batches, tmp_path)
    monkeypatch.setattr(CIFAR10, "url", host)
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(Host.body).hexdigest())
    (tmp_path / "new").mkdir()  # an explicit folder must exist: a mistyped one is refused
    data = load_cifar10(tmp_path / "new")
    assert data.train_images.shape[0] == 50 and "official" in data.source


def test_a_failed_cifar10_download_says_how_to_retry_in_one_line(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    root = tmp_path / "new"
    root.mkdir()
    with pytest.raises(DataError) as e:
        load_cifar10(root)
    message = str(e.value)
    assert "\n" not in message and message.startswith("CIFAR-10 download: ")
    assert "Retry" in message and "RESNET_LAB_DATA" in message
    assert e.value._render_traceback_() == [f"DataError: {message}"]  # Jupyter shows this line
