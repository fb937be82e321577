"""Test-wide settings: property tests draw the same examples on every run (CI is reproducible;
a failure found once is found again), with no per-example deadline on a busy 2-core machine."""

from hypothesis import settings

settings.register_profile("dspfx", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("dspfx")
