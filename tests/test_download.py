"""Downloads say what happens and never hang: a local HTTP server plays CIFAR-10's host, fast,
stalled, slow and broken (resnet_lab.download, and load_cifar10's download)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import tarfile
import threading
import time

import pytest

import resnet_lab.download as dl
from resnet_lab.cifar10 import DataError, load_cifar10
from resnet_lab.download import DownloadError, fetch

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


def test_fetch_downloads_checks_and_renames(host, tmp_path):
    out = fetch(host, tmp_path / "f.tar.gz", md5=hashlib.md5(BLOB).hexdigest(), progress=False)
    assert out.read_bytes() == BLOB and not (tmp_path / "f.tar.gz.part").exists()
    assert fetch("http://127.0.0.1:9/unused", out, md5=hashlib.md5(BLOB).hexdigest()) == out


def test_a_stalled_server_fails_in_one_line(host, tmp_path):
    Host.delay = 3.0
    with pytest.raises(DownloadError, match=r"sent nothing for 1 s$"):
        fetch(host, tmp_path / "f", stall_seconds=1, progress=False)


def test_the_deadline_stops_a_slow_download_and_the_next_call_resumes(
    host, tmp_path, capsys, monkeypatch
):
    Host.delay = 0.05
    monkeypatch.setattr(dl, "SLOW_AFTER_SECONDS", 0.1)
    with pytest.raises(DownloadError, match=r"stopped after 0 min at \d+ of 1 MB"):
        fetch(host, tmp_path / "f", deadline_minutes=0.005, progress=False)
    assert "slow download:" in capsys.readouterr().out  # said before it stopped
    kept = (tmp_path / "f.part").stat().st_size
    assert 0 < kept < len(BLOB)
    Host.delay = 0.0
    out = fetch(host, tmp_path / "f", md5=hashlib.md5(BLOB).hexdigest(), progress=False)
    assert out.read_bytes() == BLOB and Host.ranges == [kept]


def test_a_damaged_download_is_deleted(host, tmp_path):
    with pytest.raises(DownloadError, match="MD5 differs .* deleted"):
        fetch(host, tmp_path / "f", md5="0" * 32, progress=False)
    assert not list(tmp_path.iterdir())


def test_no_server_fails_in_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(DownloadError, match="failed: URLError") as e:
        fetch(f"http://127.0.0.1:{port}/x", tmp_path / "f", progress=False)
    assert "\n" not in str(e.value)


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
    data = load_cifar10(tmp_path / "new" / "cifar10")
    assert data.train_images.shape[0] == 50 and "downloaded" in data.source


def test_a_failed_cifar10_download_says_how_to_retry_in_one_line(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    root = tmp_path / "new" / "cifar10"
    with pytest.raises(DataError) as e:
        load_cifar10(root)
    message = str(e.value)
    assert "\n" not in message and message.startswith("CIFAR-10 download: ")
    assert "run this again (it resumes)" in message and "RESNET_LAB_DATA" in message
    assert e.value._render_traceback_() == [f"DataError: {message}"]  # Jupyter shows this line
    assert not (tmp_path / "new").exists()  # no empty folders left behind
