"""Interleaving: the order in which a benchmark's competing configurations take turns, and
paired rounds. On this VM the machine's speed moves by half within minutes, so a goal that
compares two configurations by a few percent is judged on rounds: the configurations it compares
up at once, each measured in turn seconds apart, the order rotated per round, and the ratio taken
within each round. `make bench-overhead` judges the native shell's rate goal this way,
`make bench-lb` S0's CPU goal."""

import statistics
from typing import Callable, TypeVar

T = TypeVar("T")


def rotated(names: list[str] | tuple[str, ...], start: int) -> list[str]:
    """`names` in the order of repetition or round `start`: each one starts one further along."""
    first = start % len(names)
    return list(names[first:]) + list(names[:first])


def paired_rounds(measure: dict[str, Callable[[], T]], count: int, rotation: int) -> list[dict[str, T]]:
    """`count` rounds, each running every measurement of `measure` once (keyed by configuration),
    the first round's order starting at `rotation`."""
    return [{name: measure[name]() for name in rotated(list(measure), rotation + i)} for i in range(count)]


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """The first quartile, the median and the third quartile: how the per-round ratios of paired
    rounds are summarised."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3
