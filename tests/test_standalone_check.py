"""tools/standalone_check.py compares what the chapters print alone with the strict build's."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import standalone_check  # tools/ is not a package: on the path above


def _stream(*chunks):
    return {"outputs": [{"output_type": "stream", "name": "stdout", "text": c} for c in chunks]}


def test_a_stream_in_chunks_reads_as_the_builds_merged_copy():
    alone = _stream("resnet20 30.2%\n", "plain20 30.8%\nfit on 1000\n")
    # the strict build's executed copy: the chunks joined into the first, then repeated
    build = _stream("resnet20 30.2%\nplain20 30.8%\nfit on 1000\n", "plain20 30.8%\nfit on 1000\n")
    numbers = standalone_check._numbers(alone)
    assert numbers == standalone_check._numbers(build) == ["20", "30.2", "20", "30.8", "1000"]
    # a number that really differs is still seen
    other = _stream("resnet20 30.2%\n", "plain20 31.0%\nfit on 1000\n")
    assert standalone_check._numbers(other) != numbers
