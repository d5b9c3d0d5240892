"""jaxrnn: Keras 3's recurrent layers as pure JAX functions.

Cells hold hyperparameters; their arrays live in a params pytree the caller owns.
The `RNN` layer runs a cell over time with one `jax.lax.scan`.
"""

from jaxrnn._cells import Cell as Cell
from jaxrnn._cells import GRUCell as GRUCell
from jaxrnn._cells import LSTMCell as LSTMCell
from jaxrnn._cells import LSTMState as LSTMState
from jaxrnn._cells import RNNCellBase as RNNCellBase
from jaxrnn._cells import SimpleRNNCell as SimpleRNNCell
from jaxrnn._cells import StackedRNNCells as StackedRNNCells
from jaxrnn._conv import ConvLSTM1D as ConvLSTM1D
from jaxrnn._conv import ConvLSTM2D as ConvLSTM2D
from jaxrnn._conv import ConvLSTM3D as ConvLSTM3D
from jaxrnn._conv import ConvLSTMCell as ConvLSTMCell
from jaxrnn._io import load as load
from jaxrnn._io import save as save
from jaxrnn._keras import from_keras as from_keras
from jaxrnn._keras import to_keras as to_keras
from jaxrnn._layers import GRU as GRU
from jaxrnn._layers import LSTM as LSTM
from jaxrnn._layers import RNN as RNN
from jaxrnn._layers import Bidirectional as Bidirectional
from jaxrnn._layers import Sequential as Sequential
from jaxrnn._layers import SimpleRNN as SimpleRNN
from jaxrnn._lstm_variants import LayerNormLSTMCell as LayerNormLSTMCell
from jaxrnn._lstm_variants import PeepholeLSTMCell as PeepholeLSTMCell
from jaxrnn._parallel_cells import LRUCell as LRUCell
from jaxrnn._parallel_cells import LRUState as LRUState
from jaxrnn._parallel_cells import MinGRUCell as MinGRUCell
from jaxrnn._parallel_cells import MinLSTMCell as MinLSTMCell
from jaxrnn._registry import deserialize as deserialize
from jaxrnn._registry import register as register
from jaxrnn._registry import serialize as serialize
from jaxrnn._sharding import data_mesh as data_mesh
from jaxrnn._sharding import replicate as replicate
from jaxrnn._sharding import shard_batch as shard_batch
from jaxrnn._stream import Stream as Stream
from jaxrnn._torch import from_torch as from_torch
from jaxrnn._torch import to_torch as to_torch

__version__ = "0.1.0"

__all__ = [
    "Bidirectional",
    "Cell",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
    "ConvLSTMCell",
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "LSTMState",
    "LRUCell",
    "LayerNormLSTMCell",
    "LRUState",
    "MinGRUCell",
    "MinLSTMCell",
    "PeepholeLSTMCell",
    "RNN",
    "RNNCellBase",
    "Sequential",
    "SimpleRNN",
    "SimpleRNNCell",
    "StackedRNNCells",
    "Stream",
    "__version__",
    "data_mesh",
    "deserialize",
    "from_keras",
    "from_torch",
    "load",
    "register",
    "replicate",
    "save",
    "serialize",
    "shard_batch",
    "to_keras",
    "to_torch",
]
