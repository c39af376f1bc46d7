import sys

import pytest



_FRESH_PROCESS_CHECK = """
from desktop_ft.core import memwatch
before = bytearray(300 * 2**20)  # a big earlier peak, like a GGUF conversion
before[::4096] = b"x" * len(before[::4096])
del before
earlier_peak = memwatch.lifetime_peak_rss()
memwatch.start("cpu")
start_peak = memwatch.peak_bytes("cpu")
assert start_peak is not None and start_peak < earlier_peak - 200 * 2**20, (start_peak, earlier_peak)
during = bytearray(150 * 2**20)
during[::4096] = b"y" * len(during[::4096])
peak = memwatch.peak_bytes("cpu")
del during
assert peak - start_peak > 120 * 2**20, (peak, start_peak)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="peak RSS reset is a Linux feature")
def test_peak_covers_only_what_happened_since_start() -> None:
    # In a fresh process, as a training child is: inside the test session the RSS left by earlier
    # tests' models would already sit above the 300 MB "conversion" peak and hide what is measured.
    import subprocess

    result = subprocess.run([sys.executable, "-c", _FRESH_PROCESS_CHECK], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
