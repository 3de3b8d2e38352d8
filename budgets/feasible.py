"""Random networks that fit: rejection sampling of a search space against the budget checker.

Here rather than in ``space.subnets`` because it needs the checker: data flows space -> budgets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from posenas.budgets.checker import check
from posenas.budgets.device import Budget
from posenas.errors import SpecOutsideSpace
from posenas.space.sampling import SearchSpace
from posenas.space.spec import ArchSpec
from posenas.space.subnets import random_arch


def feasible_random_arch(
    space: SearchSpace,
    budget: Budget,
    rng: np.random.Generator,
    *,
    bits: Sequence[int] | None = None,
    lowest_bits: int | None = None,
    max_tries: int = 2000,
    name: str = "random",
    accept: Callable[[ArchSpec], bool] | None = None,
) -> ArchSpec:
    """A random network of ``space`` that ``budget`` accepts (rejection sampling against the checker).

    Weight bits may differ from the space's (``bits``, ``lowest_bits``: see ``random_arch``); ``accept``
    adds a further condition. Raises
    SpecOutsideSpace when ``max_tries`` draws found none (a space with almost nothing feasible)."""
    for _ in range(max_tries):
        spec = random_arch(space, rng, bits=bits, lowest_bits=lowest_bits, name=name)
        if check(spec, budget).fits and (accept is None or accept(spec)):
            return spec
    raise SpecOutsideSpace(f"no network of the space fits {budget.device.name} in {max_tries} random draws")
