"""from_torch / to_torch: PyTorch's RNN, LSTM (projected too) and GRU against their jaxrnn
conversions, over the whole matrix of kind x num_layers x bidirectional x batch_first x bias."""

import dataclasses
import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn._torch import from_torch, to_torch
from tests._sampling import sampled

torch = pytest.importorskip("torch")
# PyTorch's own notice that its oneDNN kernel lacks projections (it computes them anyway).
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

B, T, F, H = 2, 5, 3, 4
P = 2  # proj_size
ATOL = 1e-5
KINDS = {
    "lstm": lambda **kw: torch.nn.LSTM(F, H, **kw),
    "lstm_proj": lambda **kw: torch.nn.LSTM(F, H, proj_size=P, **kw),
    "gru": lambda **kw: torch.nn.GRU(F, H, **kw),
    "rnn_tanh": lambda **kw: torch.nn.RNN(F, H, nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: torch.nn.RNN(F, H, nonlinearity="relu", **kw),
}
# Every kind x num_layers x bidirectional; (batch_first, bias) cycles through its four values,
# so each kind meets each of them (the full product would double the time for no new path).
_FLAGS = list(itertools.product((False, True), (False, True)))
MATRIX = [(kind, layers, bi, *_FLAGS[i % 4]) for i, (kind, layers, bi) in
          enumerate(itertools.product(KINDS, (1, 2), (False, True)))]
# The projected LSTM by default with two bidirectional layers (a Sequential): its other rows
# run under the slow marker.
_DEFAULT = [r for r in MATRIX if r[0] != "lstm_proj" or r[1:3] == (2, True)]


def _module(kind, seed=0, **kw):
    torch.manual_seed(seed)
    module = KINDS[kind](**kw)
    with torch.no_grad():  # biases far from zero, so that their mapping is checked
        for p in module.parameters():
            p.uniform_(-0.6, 0.6)
    return module.eval()


def _x(batch_first, seed=0):
    x = np.random.default_rng(seed).normal(size=(B, T, F)).astype(np.float32)
    return x if batch_first else np.ascontiguousarray(x.transpose(1, 0, 2))


def _torch_out(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x))[0].numpy()


@pytest.mark.parametrize("kind,layers,bi,batch_first,bias",
                         sampled(MATRIX, ["-".join(map(str, p)) for p in MATRIX], _DEFAULT))
def test_same_outputs(kind, layers, bi, batch_first, bias):
    module = _module(kind, num_layers=layers, bidirectional=bi, batch_first=batch_first,
                     bias=bias)
    x = _x(batch_first)
    layer, params = from_torch(module)
    got = np.asarray(layer(params, jnp.asarray(x)))
    want = _torch_out(module, x)
    size = P if kind == "lstm_proj" else H
    assert got.shape == want.shape == ((B, T) if batch_first else (T, B)) + ((2 if bi else 1) *
                                                                             size,)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=ATOL)

    # to_torch inverts it: the same module weights, and the module computes the layer.
    back = to_torch(layer, params)
    np.testing.assert_allclose(_torch_out(back, x), got, atol=ATOL, rtol=ATOL)
    layer2, params2 = from_torch(back)
    assert layer2 == layer
    jax.tree.map(np.testing.assert_allclose, params2, params)


def test_layer_structure():
    layer, params = from_torch(_module("lstm", batch_first=True))
    assert layer == jr.LSTM(H, return_sequences=True, zero_output_for_mask=True)
    assert jax.tree.map(jnp.shape, params) == {"kernel": (F, 4 * H),
                                               "recurrent_kernel": (H, 4 * H),
                                               "bias": (4 * H,)}
    stacked, params = from_torch(_module("gru", num_layers=2))
    assert isinstance(stacked, jr.RNN) and stacked.time_major
    assert [c.reset_after for c in stacked.cell.cells] == [True, True]
    assert params[1]["bias"].shape == (2, 3 * H)
    deep_bi, params = from_torch(_module("rnn_relu", num_layers=2, bidirectional=True))
    assert isinstance(deep_bi, jr.Sequential)
    assert all(isinstance(l, jr.Bidirectional) and l.merge_mode == "concat"
               for l in deep_bi.layers)
    assert deep_bi.layers[0].layer.cell.activation == "relu"
    assert params[1]["forward"]["kernel"].shape == (2 * H, H)
    bi, params = from_torch(_module("gru", bidirectional=True, bias=False))
    assert isinstance(bi, jr.Bidirectional) and set(params) == {"forward", "backward"}
    assert "bias" not in params["forward"] and not bi.layer.cell.use_bias


@pytest.mark.parametrize("bi", [False, True])
def test_projected_lstm_final_states_and_initial_states(bi):
    """nn.LSTM(proj_size=P) with given (h_0, c_0): the output and (h_n, c_n) equal the
    converted layer's, called with return_state and the same initial states (h [B, P],
    c [B, H]); ``weight_hr`` [P, H] is ``projection`` [H, P] transposed."""
    layers = 1 if bi else 2
    module = _module("lstm_proj", num_layers=layers, bidirectional=bi, batch_first=True)
    x = _x(True, seed=2)
    rng = np.random.default_rng(3)
    d = 2 if bi else 1
    h0 = rng.normal(size=(layers * d, B, P)).astype(np.float32)
    c0 = rng.normal(size=(layers * d, B, H)).astype(np.float32)
    with torch.no_grad():
        y, (hn, cn) = module(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    layer, params = from_torch(module)
    if bi:  # (merged, *forward states, *backward states)
        layer = dataclasses.replace(layer, layer=dataclasses.replace(layer.layer,
                                                                     return_state=True))
        got_y, *states = layer(params, jnp.asarray(x), initial_state=[h0[0], c0[0], h0[1],
                                                                      c0[1]])
        got_h, got_c = states[0::2], states[1::2]
        np.testing.assert_array_equal(params["forward"]["projection"],
                                      module.weight_hr_l0.detach().numpy().T)
    else:  # (output, *per-cell states)
        layer = dataclasses.replace(layer, return_state=True)
        got_y, *states = layer(params, jnp.asarray(x),
                               initial_state=[(h0[k], c0[k]) for k in range(layers)])
        got_h, got_c = [s.h for s in states], [s.c for s in states]
        assert params[1]["kernel"].shape == (P, 4 * H)
    first = params["forward"] if bi else params[0]
    assert first["projection"].shape == (H, P) and first["recurrent_kernel"].shape == (P, 4 * H)
    np.testing.assert_allclose(got_y, y.numpy(), atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(np.stack(got_h), hn.numpy(), atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(np.stack(got_c), cn.numpy(), atol=ATOL, rtol=ATOL)


def test_gru_gate_mapping():
    """Torch's r, z, n blocks land on Keras's z, r, h; b_ih and b_hh on the bias rows."""
    module = _module("gru")
    _, params = from_torch(module)
    w = module.weight_ih_l0.detach().numpy()
    k = np.asarray(params["kernel"])
    np.testing.assert_array_equal(k[:, :H], w[H:2 * H].T)  # z
    np.testing.assert_array_equal(k[:, H:2 * H], w[:H].T)  # r
    np.testing.assert_array_equal(k[:, 2 * H:], w[2 * H:].T)  # n / h
    np.testing.assert_array_equal(np.asarray(params["bias"])[1, :H],
                                  module.bias_hh_l0.detach().numpy()[H:2 * H])


@pytest.mark.parametrize("bi", [False, True])
def test_mask_matches_packed_sequences(bi):
    """A right-padding mask gives what PyTorch gives on the packed batch (zeros padded)."""
    module = _module("lstm", num_layers=2, bidirectional=bi, batch_first=True)
    x = _x(True, seed=1)
    lengths = np.array([5, 2])
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                                     batch_first=True)
    with torch.no_grad():
        want, _ = torch.nn.utils.rnn.pad_packed_sequence(module(packed)[0], batch_first=True,
                                                         total_length=T)
    layer, params = from_torch(module)
    mask = jnp.arange(T)[None, :] < jnp.asarray(lengths)[:, None]
    got = layer(params, jnp.asarray(x), mask=mask)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), atol=ATOL, rtol=ATOL)


def test_dtypes_carry_over():
    module = _module("gru", batch_first=True).double()
    _, params = from_torch(module)
    assert params["kernel"].dtype == jnp.float32 or jax.config.jax_enable_x64
    layer, params = from_torch(_module("lstm", batch_first=True).to(torch.bfloat16))
    assert params["kernel"].dtype == jnp.bfloat16
    back = to_torch(layer, params)
    assert back.weight_ih_l0.dtype == torch.bfloat16
    assert torch.equal(back.weight_ih_l0, _module("lstm").to(torch.bfloat16).weight_ih_l0)


def test_unsupported_modules_are_clear_errors():
    with pytest.raises(TypeError, match="expected torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU"):
        from_torch(torch.nn.Linear(F, H))
    with pytest.raises(TypeError, match="LSTMCell is a single-step cell"):
        from_torch(torch.nn.LSTMCell(F, H))


def test_dropout_between_layers_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own warnings
        module = torch.nn.GRU(F, H, num_layers=2, dropout=0.3)
    with pytest.warns(UserWarning, match="dropout=0.3 between layers is not carried over"):
        layer, _ = from_torch(module)
    assert all(c.dropout == 0 for c in layer.cell.cells)


def test_to_torch_unrepresentable_is_a_clear_error():
    key = jax.random.PRNGKey(0)

    def check(layer, match):
        params = jax.eval_shape(lambda k: layer.init(k, (B, T, F)), key)  # no arrays needed
        with pytest.raises(ValueError, match=match):
            to_torch(layer, params)

    check(jr.LSTM(H), "return_sequences=True")
    check(jr.GRU(H, reset_after=False, return_sequences=True), "reset_after=False")
    check(jr.SimpleRNN(H, activation="sigmoid", return_sequences=True), "tanh or relu")
    check(jr.LSTM(H, dropout=0.1, return_sequences=True), "dropout")
    check(jr.RNN([jr.LSTMCell(H), jr.GRUCell(H)], return_sequences=True), "one kind")
    check(jr.RNN([jr.LSTMCell(H), jr.LSTMCell(H + 1)], return_sequences=True), "same units")
    check(jr.RNN([jr.LSTMCell(H, proj_size=2), jr.LSTMCell(H, proj_size=1)],
                 return_sequences=True), r"proj_size \[1, 2\]")
    check(jr.Bidirectional(jr.GRU(H, return_sequences=True), merge_mode="sum"), "concat")
