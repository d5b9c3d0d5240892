"""Moving a PyTorch LSTM into jaxrnn, and checking that the outputs agree.

`from_torch(module)` returns a jaxrnn layer and its params; ``layer(params, x)`` computes
``module(x)[0]``, the output sequence, in the module's layout. Here a 2-layer bidirectional
``torch.nn.LSTM`` (batch_first) becomes a `jaxrnn.Sequential` of `jaxrnn.Bidirectional`
layers. The script compares the outputs, padded batches included (a right-padding mask in
jaxrnn against packed sequences in PyTorch), saves the converted model with `jaxrnn.save`,
and moves it back with `to_torch`.

    python examples/from_pytorch.py
    python examples/from_pytorch.py --layers 3 --hidden 128 --no-bidirectional
"""

from __future__ import annotations

import argparse
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input-size", type=int, default=8)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    import torch  # an example-only dependency: pip install torch

    args = parse_args(argv)
    torch.manual_seed(args.seed)
    module = torch.nn.LSTM(args.input_size, args.hidden, num_layers=args.layers,
                           bidirectional=args.bidirectional, batch_first=True).eval()
    x = torch.randn(args.batch_size, args.seq_len, args.input_size)
    with torch.no_grad():
        want = module(x)[0].numpy()

    layer, params = jr.from_torch(module)
    print(f"torch: {module}")
    print(f"jaxrnn: {type(layer).__name__} with params "
          f"{jax.tree.map(jnp.shape, params)}")
    forward = jax.jit(lambda p, x, m=None: layer(p, x, mask=m))
    got = np.asarray(forward(params, jnp.asarray(x.numpy())))
    diff = float(np.max(np.abs(got - want)))
    print(f"output {got.shape}: max abs difference {diff:.2e}")

    # Padded batches: a mask in jaxrnn is a packed sequence in PyTorch.
    lengths = np.linspace(args.seq_len, 1, args.batch_size).round().astype(np.int64)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.from_numpy(lengths),
                                                     batch_first=True)
    with torch.no_grad():
        want_packed, _ = torch.nn.utils.rnn.pad_packed_sequence(
            module(packed)[0], batch_first=True, total_length=args.seq_len)
    mask = jnp.arange(args.seq_len)[None, :] < jnp.asarray(lengths)[:, None]
    got_masked = np.asarray(forward(params, jnp.asarray(x.numpy()), mask))
    masked_diff = float(np.max(np.abs(got_masked - want_packed.numpy())))
    print(f"lengths {lengths.tolist()}: max abs difference to packed sequences "
          f"{masked_diff:.2e}")

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "lstm.safetensors")
        jr.save(path, layer, params)
        layer2, params2 = jr.load(path)
    assert layer2 == layer
    back = jr.to_torch(layer2, params2)
    with torch.no_grad():
        round_trip_diff = float(np.max(np.abs(back(x)[0].numpy() - want)))
    print(f"saved, loaded and moved back with to_torch: max abs difference "
          f"{round_trip_diff:.2e}")
    return {"max_abs_diff": diff, "masked_max_abs_diff": masked_diff,
            "round_trip_max_abs_diff": round_trip_diff}


if __name__ == "__main__":
    main()
