"""Test-wide settings: property tests draw the same examples on every run (CI is reproducible;
a failure found once is found again), with no per-example deadline on a busy 2-core machine."""

import sys
from pathlib import Path

from hypothesis import settings

# tests/ on the path (pytest runs with --import-mode=importlib): shared helpers such as
# signal_helpers import by name
sys.path.insert(0, str(Path(__file__).resolve().parent))

settings.register_profile("dspfx", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("dspfx")
