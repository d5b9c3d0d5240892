"""Activations and initializers by Keras's names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import _resolve

Z = jnp.linspace(-4.0, 4.0, 17)


def test_keras_defaults_where_jax_differs():
    keras = pytest.importorskip("keras")
    for name in ["tanh", "sigmoid", "hard_sigmoid", "relu", "linear", "elu", "selu", "gelu",
                 "softplus", "softsign", "silu", "leaky_relu", "relu6", "mish", "hard_silu"]:
        want = np.asarray(keras.activations.get(name)(np.asarray(Z)))
        np.testing.assert_allclose(_resolve.activation(name)(Z), want, rtol=1e-5, atol=1e-6,
                                   err_msg=name)


@pytest.mark.parametrize("name", sorted(_resolve.INITIALIZERS))
def test_initializers_make_the_asked_shape_and_dtype(name):
    w = _resolve.initializer(name)(jax.random.key(0), (6, 6), jnp.float32)
    assert w.shape == (6, 6) and w.dtype == jnp.float32


def test_orthogonal_is_orthogonal_and_random_uniform_symmetric():
    q = _resolve.initializer("orthogonal")(jax.random.key(0), (8, 32), jnp.float32)
    np.testing.assert_allclose(q @ q.T, jnp.eye(8), atol=1e-5)
    u = _resolve.initializer("random_uniform")(jax.random.key(0), (1000,), jnp.float32)
    assert -0.05 <= float(u.min()) < -0.04 and 0.04 < float(u.max()) <= 0.05
