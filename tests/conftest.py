"""Settings for the whole suite."""

from hypothesis import settings

# scripts/test runs a worker per core beside the daemons the e2e tests start: an example that takes longer than
# hypothesis's default 200 ms deadline there is slow because the machine is busy, not a bug in the code under test.
settings.register_profile("relentad", deadline=None)
settings.load_profile("relentad")
