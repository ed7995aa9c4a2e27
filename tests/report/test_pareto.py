"""Pareto fronts on hand-made points: maximise accuracy, minimise cost."""

import itertools
import math

import pytest

from accel.report.pareto import pareto_front


def dominated(i, costs, accs):
    """The definition, by brute force: another point is no worse on both and better on one."""
    return any(costs[j] <= costs[i] and accs[j] >= accs[i] and (costs[j] < costs[i] or accs[j] > accs[i])
               for j in range(len(costs)))


def test_front_of_hand_made_points():
    # cost:      1   2   3   4   5   6
    costs = [3.0, 1.0, 2.0, 5.0, 4.0, 6.0]
    accs = [90.0, 80.0, 85.0, 95.0, 70.0, 95.0]
    # 1 (cost 1, 80) < 2 (cost 2, 85) < 0 (cost 3, 90) < 3 (cost 5, 95); 4 is beaten by 0; 5 by 3.
    assert pareto_front(costs, accs) == [1, 2, 0, 3]


def test_equal_points_are_both_on_the_front_and_equal_cost_keeps_the_better():
    assert pareto_front([1, 1, 2], [50, 50, 60]) == [0, 1, 2]
    assert pareto_front([1, 1], [40, 50]) == [1]
    assert pareto_front([1, 2], [50, 50]) == [0]  # same accuracy at a higher cost is dominated


def test_missing_values_take_no_part():
    assert pareto_front([None, 2, 1, math.nan], [99, 60, None, 99]) == [1]
    assert pareto_front([], []) == []


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="3 costs but 2 accuracies"):
        pareto_front([1, 2, 3], [1, 2])


def test_front_matches_the_definition_on_every_small_grid():
    values = [1, 2, 3]
    for costs in itertools.product(values, repeat=4):
        for accs in itertools.product(values, repeat=4):
            expected = sorted((i for i in range(4) if not dominated(i, costs, accs)),
                              key=lambda i: (costs[i], -accs[i], i))
            assert pareto_front(costs, accs) == expected, (costs, accs)
