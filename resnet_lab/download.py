"""Fetch one file over HTTP(S): a progress bar, no silent hang, resume after a stop.

CIFAR-10's official archive (163 MB) comes from one university server, and some readers wait
close to an hour for it. :func:`fetch` shows its progress, gives up when no byte arrives for
``stall_seconds``, says in one line when the rate means a long wait, stops at a deadline, and
keeps what arrived (``<name>.part``) so that the next call resumes where this one stopped
(with an HTTP range request, where the server allows one). The file gets its final name only
once complete and, given ``md5``, checked.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

CHUNK = 1 << 16
SLOW_AFTER_SECONDS = 30  # judge the rate after this long


class DownloadError(OSError):
    """A download that failed or stopped; the message says what happened, in one line."""


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, start: int, stall_seconds: float):
    headers = {"User-Agent": "resnet-lab"} | ({"Range": f"bytes={start}-"} if start else {})
    return urllib.request.urlopen(
        urllib.request.Request(url, headers=headers), timeout=stall_seconds
    )


def _copy(response, part: Path, start: int, deadline: float, progress: bool) -> None:
    """Append the body of ``response`` to ``part`` (from byte ``start``) with a progress bar;
    a line when the rate means a long wait; DownloadError at ``deadline`` seconds."""
    size = response.headers.get("Content-Length")
    total = int(size) + start if size else None
    t0, warned = time.monotonic(), False
    with (
        open(part, "ab" if start else "wb") as f,
        tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            desc=part.stem,
            disable=not progress,
        ) as bar,
    ):
        while chunk := response.read(CHUNK):
            f.write(chunk)
            bar.update(len(chunk))
            elapsed = time.monotonic() - t0
            rate = (bar.n - start) / max(elapsed, 1e-9)
            if total and not warned and elapsed > SLOW_AFTER_SECONDS:
                left = (total - bar.n) / max(rate, 1.0)
                if elapsed + left > deadline:
                    tqdm.write(
                        f"slow download: {rate / 1e6:.2f} MB/s, about {left / 60:.0f} "
                        f"more minutes; stopping after {deadline / 60:.0f} (what "
                        "arrived is kept, and the next try resumes)"
                    )
                warned = True
            if elapsed > deadline:
                raise DownloadError(
                    f"stopped after {deadline / 60:.0f} min at {bar.n / 1e6:.0f}"
                    f" of {(total or 0) / 1e6:.0f} MB ({rate / 1e6:.2f} MB/s)"
                )


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    stall_seconds: float = 60,
    deadline_minutes: float = 20,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (kept as it is when already there and, given ``md5``,
    intact). Raises :class:`DownloadError` with a one-line reason when the server cannot be
    reached, sends nothing for ``stall_seconds``, or the download passes ``deadline_minutes``;
    what arrived stays in ``<dest>.part`` and the next call resumes from it."""
    dest = Path(dest)
    if dest.is_file() and (md5 is None or _md5(dest) == md5):
        return dest
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    try:
        with _open(url, start, stall_seconds) as response:
            if start and response.status != 206:
                start = 0  # the server sent the whole file: start again
            _copy(response, part, start, deadline_minutes * 60, progress)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the range starts at the end: the part is complete
            pass
        else:
            raise DownloadError(f"{url} answered HTTP {e.code} {e.reason}") from e
    except DownloadError:
        raise
    except TimeoutError as e:
        raise DownloadError(f"{url} sent nothing for {stall_seconds:.0f} s") from e
    except OSError as e:  # no network, no such host, refused, reset
        why = getattr(e, "reason", None) or e
        raise DownloadError(f"{url} failed: {type(e).__name__}: {why}") from e
    if md5 is not None and _md5(part) != md5:
        part.unlink()
        raise DownloadError(
            f"{dest.name} from {url} is damaged (its MD5 differs from the "
            "published one) and was deleted"
        )
    os.replace(part, dest)
    return dest
