"""Running one benchmark module on its own (``python bench/<name>.py``) as bench/run.py would."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

NETGUARD = Path(__file__).resolve().parents[1] / "tests" / "netguard"


def run_alone(measure: Callable[[], list], markdown: Callable[[list], list[str]]) -> None:
    sys.path.insert(0, str(NETGUARD))
    import loopback_only

    loopback_only.install()  # like bench/run.py and the tests: traffic stays on loopback
    began = time.perf_counter()
    rows = measure()
    print(f"{os.cpu_count()} cores; {time.perf_counter() - began:.0f} s\n")
    print("\n".join(markdown(rows)))
