"""Pins the public import surface."""

import jaxrnn as jr

PUBLIC = {
    "Bidirectional", "Cell", "GRU", "GRUCell", "LSTM", "LSTMCell", "LSTMState", "RNN", "RNNCellBase",
    "Sequential", "SimpleRNN", "SimpleRNNCell", "StackedRNNCells", "__version__", "deserialize",
    "register", "serialize", "from_keras", "to_keras", "from_torch", "to_torch", "save", "load",
    "data_mesh", "replicate", "shard_batch", "MinGRUCell", "MinLSTMCell", "LRUCell", "LRUState",
    "Stream", "PeepholeLSTMCell", "LayerNormLSTMCell", "ConvLSTMCell", "ConvLSTM1D",
    "ConvLSTM2D", "ConvLSTM3D",
}


def test_public_names():
    assert set(jr.__all__) == PUBLIC
    for name in PUBLIC:
        assert hasattr(jr, name), name


def test_cells_are_immutable_and_hashable():
    cell = jr.LSTMCell(8)
    assert hash(cell) == hash(jr.LSTMCell(8)) and cell == jr.LSTMCell(8)
    try:
        cell.units = 4
    except AttributeError:
        pass
    else:
        raise AssertionError("cells must be immutable")
