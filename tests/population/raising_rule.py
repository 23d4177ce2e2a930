"""A rule that always raises, registered inside a Spark worker by ``raising_evaluator`` (the worker is another
process: the test process's registry does not reach it)."""

from __future__ import annotations

from cdshooks.cards import registry as rules
from cdshooks.population.evaluation import Evaluator

RAISES = "zz-probe-raises"


def boom(call: rules.Call) -> list:
    raise RuntimeError("probe rule failure")


def raising_evaluator(hook, now, *, orders=None, replay=False) -> Evaluator:
    rules.rule(id=RAISES, title=RAISES, hooks=rules.HOOKS, indicator="info", reads={},
               source=rules.Source("000", ("Test",)))(boom)
    try:
        return Evaluator(hook, now, orders=orders, replay=replay)
    finally:
        rules._REGISTRY.pop(RAISES, None)
