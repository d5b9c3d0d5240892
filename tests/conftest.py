"""Fixtures for tests/. The backend and strict-broadcasting setup is in the root conftest.py,
which also covers the package's doctests."""

import jax
import pytest


@pytest.fixture
def key():
    """A fixed PRNG key, jax.random.PRNGKey(0)."""
    return jax.random.PRNGKey(0)
