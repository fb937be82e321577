"""Test-wide settings: property tests draw the same examples on every run (CI is reproducible;
a failure found once is found again), with no per-example deadline on a busy 2-core machine;
torch on one thread, in this process and the ones the tests start (the tests' tensors are small:
on the 2-core machine two threads cost more in hand-offs than they gain, and the suite ran in
9 min 58 s with two against 8 min 7 s with one, a training job on the other core)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads; inherited by subprocesses
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# tests/ on the path (pytest runs with --import-mode=importlib): shared helpers such as
# signal_helpers import by name
sys.path.insert(0, str(Path(__file__).resolve().parent))

settings.register_profile("dspfx", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("dspfx")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
