"""Hypothesis settings shared by the fuzz tests: a bounded, repeatable run in CI
(`HERALD_FUZZ_EXAMPLES`, default 25 examples a test), longer on demand, e.g.
`HERALD_FUZZ_EXAMPLES=500 pytest tests/test_fuzz_inbound.py -k sqlite`."""

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("HERALD_FUZZ_EXAMPLES", "25"))


def fuzz(scale: int = 1) -> settings:
    """`scale` times the configured examples (cheap tests afford more), derandomized, no example database."""
    return settings(max_examples=EXAMPLES * scale, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
