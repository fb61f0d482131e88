"""Downloads say what happens and never hang: a local HTTP server plays CIFAR-10's host, fast,
stalled, slow and broken (load_cifar10's download of the official release)."""

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
    assert "Run it again (it resumes)" in message and "cifar-10-python.tar.gz" in message
    assert e.value._render_traceback_() == [f"DataError: {message}"]  # Jupyter shows this line


@pytest.fixture
def official(host, python_batches, tmp_path, monkeypatch):
    """The official release served by ``host``; returns an empty folder to download it into."""
    from torchvision.datasets import CIFAR10

    Host.body = _official_archive(python_batches, tmp_path)
    monkeypatch.setattr(CIFAR10, "url", host)
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(Host.body).hexdigest())
    (tmp_path / "into").mkdir()
    return tmp_path / "into"


def test_the_deadline_stops_a_slow_download_and_the_next_call_resumes(official, monkeypatch):
    assert len(Host.body) > 2 * (1 << 16)  # three chunks or more
    Host.delay = 0.2  # before each chunk of 64 KiB: the deadline comes after the second
    monkeypatch.setenv("RESNET_LAB_DOWNLOAD_MINUTES", "0.005")  # 0.3 s
    with pytest.raises(DataError, match=r"stopped after 0.005 min at \d+ MB\. Run it again") as e:
        load_cifar10(official)
    assert "\n" not in str(e.value)
    kept = (official / "cifar-10-python.tar.gz.part").stat().st_size
    assert 0 < kept < len(Host.body)
    Host.delay = 0.0
    monkeypatch.delenv("RESNET_LAB_DOWNLOAD_MINUTES")
    assert load_cifar10(official).train_images.shape[0] == 50
    assert Host.ranges == [kept]  # the second call asked only for the rest


def test_a_stalled_server_fails_in_one_line(official, monkeypatch):
    import resnet_lab.cifar10 as D

    monkeypatch.setattr(D, "STALL_SECONDS", 0.5)
    Host.delay = 3.0
    with pytest.raises(DataError, match=r"^CIFAR-10 download: nothing came for 0.5 s\. Run it"):
        load_cifar10(official)


def test_a_damaged_download_is_deleted(official, monkeypatch):
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "tgz_md5", "0" * 32)
    with pytest.raises(DataError, match="arrived damaged .* deleted"):
        load_cifar10(official)
    assert not list(official.iterdir())


@pytest.mark.parametrize("minutes", ["abc", "-5", "0", "nan", " "])
def test_a_bad_download_deadline_is_named_and_refused(official, monkeypatch, minutes):
    monkeypatch.setenv("RESNET_LAB_DOWNLOAD_MINUTES", minutes)
    with pytest.raises(
        DataError, match="^RESNET_LAB_DOWNLOAD_MINUTES=.* is not a number of minutes"
    ):
        load_cifar10(official)
    assert not list(official.iterdir()) and Host.ranges == []  # nothing was asked for
