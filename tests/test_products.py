"""The hand-written gradients are autodiff's own gradients, only computed another way."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from training.loss import mean_cross_entropy
from training.model.norm import layer_norm
from training.products import dense, dense_t, matmul, matmul_nt, split3

KEYS = jax.random.split(jax.random.key(0), 3)


def _check(ours, plain, *shapes):
    args = [jax.random.normal(k, s) for k, s in zip(KEYS, shapes, strict=False)]
    probe = jax.random.normal(KEYS[-1], jax.eval_shape(plain, *args).shape)
    np.testing.assert_allclose(ours(*args), plain(*args), rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda *a: (f(*a) * probe).sum()  # noqa: E731
    got = jax.grad(loss(ours), argnums=(0, 1))(*args)
    want = jax.grad(loss(plain), argnums=(0, 1))(*args)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_matmul_gradients(batch):
    _check(matmul, jnp.matmul, (*batch, 5, 4), (*batch, 4, 6))


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_matmul_nt_gradients(batch):
    _check(matmul_nt, lambda a, b: a @ jnp.swapaxes(b, -1, -2), (*batch, 5, 4), (*batch, 6, 4))


def test_dense_gradients_sum_over_leading_axes():
    _check(dense, lambda x, w: x @ w, (2, 3, 4), (4, 6))
    _check(dense_t, lambda x, w: x @ w.T, (2, 3, 4), (6, 4))


def test_gradients_compile_the_same_inside_jit():
    a, b = jax.random.normal(KEYS[0], (4, 5, 6)), jax.random.normal(KEYS[1], (4, 6, 3))
    eager = jax.grad(lambda a, b: matmul(a, b).sum(), argnums=1)(a, b)
    jitted = jax.jit(jax.grad(lambda a, b: matmul(a, b).sum(), argnums=1))(a, b)
    np.testing.assert_allclose(eager, jitted, rtol=1e-5)


def test_layer_norm_gradient_is_autodiffs():
    """Both outputs' cotangents, as the capture's 1/std is an output too."""
    k = jax.random.split(jax.random.key(1), 5)
    x = 2 * jax.random.normal(k[0], (3, 4, 20)) + 1
    scale, bias = jax.random.normal(k[1], (20,)), jax.random.normal(k[2], (20,))
    g, g_inv = jax.random.normal(k[3], (3, 4, 20)), jax.random.normal(k[4], (3, 4))

    def plain(x, scale, bias):
        c = x - x.mean(-1, keepdims=True)
        inv = jax.lax.rsqrt((c * c).mean(-1, keepdims=True) + 1e-5)
        return c * inv * scale + bias, inv[..., 0]

    def loss(fn):
        return lambda *a: (fn(*a)[0] * g).sum() + (fn(*a)[1] * g_inv).sum()

    ours = lambda x, s, b: layer_norm(x, s, b, 1e-5)  # noqa: E731
    for o, p in zip(ours(x, scale, bias), plain(x, scale, bias), strict=True):
        np.testing.assert_allclose(o, p, rtol=1e-5, atol=1e-5)
    got = jax.grad(loss(ours), argnums=(0, 1, 2))(x, scale, bias)
    want = jax.grad(loss(plain), argnums=(0, 1, 2))(x, scale, bias)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_split3_gradient_is_autodiffs():
    x = jax.random.normal(KEYS[0], (4, 5, 3, 6))
    probes = jax.random.split(KEYS[1], 3)
    weights = [jax.random.normal(k, (4, 5, 6)) for k in probes]

    def loss(split):
        return lambda x: sum((part * w).sum() for part, w in zip(split(x), weights, strict=True))

    plain = lambda x: (x[..., 0, :], x[..., 1, :], x[..., 2, :])  # noqa: E731
    np.testing.assert_array_equal(jax.grad(loss(split3))(x), jax.grad(loss(plain))(x))


def test_cross_entropy_is_optaxs_with_the_same_gradient():
    logits = 3 * jax.random.normal(KEYS[0], (4, 12, 19))
    labels = jax.random.randint(KEYS[1], (4, 12), 0, 19)
    optaxs = lambda x: optax.softmax_cross_entropy_with_integer_labels(x, labels).mean()  # noqa: E731
    ours = lambda x: mean_cross_entropy(x, labels)  # noqa: E731
    np.testing.assert_allclose(ours(logits), optaxs(logits), rtol=1e-6)
    np.testing.assert_allclose(
        jax.jit(jax.grad(ours))(logits), jax.grad(optaxs)(logits), rtol=1e-5, atol=1e-7
    )
