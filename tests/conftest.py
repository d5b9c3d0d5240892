"""Shared pytest setup: the Keras backend, strict broadcasting and a default PRNG key."""

import os

# Must run before anything imports keras (test modules, pytest plugins, xdist workers).
os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import pytest

# Turn silent rank promotion (e.g. adding a [H] bias to a [B, T, H] array by accident)
# into an error during tests, as Equinox does. Everything else keeps JAX's defaults
# (float32, no x64).
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    """A fixed PRNG key, jax.random.PRNGKey(0)."""
    return jax.random.PRNGKey(0)
