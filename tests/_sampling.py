"""Covering samples of flag matrices: the default run takes a sample that meets every pair
of flag values; the remaining items are marked ``slow`` (run by ``pytest -m slow``)."""

import itertools

import pytest


def pairwise(rows):
    """A deterministic covering subset of ``rows`` (tuples of flag values): every pair of
    values that two positions take together in some row is taken together in a chosen row
    too. Greedy: repeatedly the first row that covers the most uncovered pairs. The chosen
    rows keep their order in ``rows``."""
    rows = [tuple(r) for r in rows]

    def pairs(r):
        # repr: True and 1 must stay different values.
        return {(i, repr(r[i]), j, repr(r[j])) for i, j in itertools.combinations(range(len(r)), 2)}

    uncovered = set().union(*map(pairs, rows))
    chosen = set()
    while uncovered:
        best = max(rows, key=lambda r: len(pairs(r) & uncovered))
        chosen.add(best)
        uncovered -= pairs(best)
    return [r for r in rows if r in chosen]


def sampled(rows, ids, sample=None):
    """pytest params for ``rows`` with ``ids``: the rows in ``sample`` (default: the pairwise
    sample of ``rows``) run by default, the others are marked ``slow``."""
    rows = [tuple(r) for r in rows]
    sample = {tuple(r) for r in (pairwise(rows) if sample is None else sample)}
    assert sample <= set(rows), sample - set(rows)
    return [
        pytest.param(*r, id=i, marks=() if r in sample else pytest.mark.slow)
        for r, i in zip(rows, ids)
    ]
