"""Where names resolve against the registries: the pre-flight step of every run.

``RunConfig`` checks its own ranges and fixed choices on construction and knows no
registry (so the config layer imports neither torch nor any strategy). This module is the
one place that looks a config's names up: the strategy (a PyTorch strategy class or a
framework adapter's strategy, both implementing ``StrategyFacts``), the model and the
dataset, and the checks that need the strategy's process count. ``check_run`` is what
every entry point (``run``, suites, ``profile``, ``validate``) calls before a process starts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from distbench.config import RunConfig, SuiteConfig, available_cores, setting_field
from distbench.errors import UserError
from distbench.strategies.contract import StrategyFacts


def strategy_facts(framework: str, strategy: str) -> StrategyFacts:
    """The PyTorch strategy class, or for another framework the strategy its adapter
    declares (``distbench.frameworks``). UserError if either name is unknown."""
    if framework != "torch":
        from distbench.frameworks import adapter_strategy

        return adapter_strategy(framework, strategy)
    from distbench.names import canonical_strategy
    from distbench.strategies.registry import STRATEGIES

    strategy = canonical_strategy(framework, strategy)
    if strategy not in STRATEGIES:
        raise UserError(f"unknown strategy '{strategy}' (known: {', '.join(sorted(STRATEGIES))})")
    return STRATEGIES[strategy]


def processes(cfg: RunConfig) -> int:
    """Processes the run needs in all (workers plus any server processes)."""
    return int(strategy_facts(cfg.framework, cfg.strategy).world_size(cfg))


def resolved_threads(cfg: RunConfig, cores: int | None = None) -> int:
    """Threads per process: the user's choice, else max(1, cores // local processes)."""
    if cfg.threads is not None:
        return cfg.threads
    cores = cores or available_cores()
    local = max(1, processes(cfg) // cfg.nnodes)
    return max(1, cores // local)


def check_run(cfg: RunConfig) -> RunConfig:
    """Resolve every name of ``cfg`` and run the checks that need them; returns ``cfg``.

    Raises ``UserError`` (one line, exit code 2 at the CLI) for an unknown model, dataset or
    strategy, for settings the strategy cannot run, and for processes that do not divide
    over the nodes or emulated hosts."""
    from distbench.data import DATASETS
    from distbench.models import check_model_name
    from distbench.strategies.convergence import check_target

    check_model_name(cfg.model)
    if cfg.dataset not in DATASETS:
        raise UserError(f"unknown dataset '{cfg.dataset}' (known: {', '.join(sorted(DATASETS))})")
    facts = strategy_facts(cfg.framework, cfg.strategy)
    _check_applies(cfg, facts)
    _check_compute(cfg, facts)
    if cfg.trains_to_goal:
        check_target(cfg, facts.name, trains_to_target(cfg.framework, facts))
    facts.validate(cfg)
    _check_placement(cfg)
    return cfg


#: Settings that only some strategies read (the contract's ``settings``).
STRATEGY_SETTINGS = ("servers", "ps_semaphore", "microbatches", "partition", "vertical_sync")


def _is_default(cfg: RunConfig, name: str) -> bool:
    return bool(getattr(cfg, name) == setting_field(name).default)


def trains_to_target(framework: str, facts: StrategyFacts) -> list[str]:
    """The strategies of ``framework`` that can train to a target accuracy."""
    from distbench.strategies.registry import STRATEGIES

    if framework != "torch":
        return [facts.name] if facts.trains_to_target else []
    return [name for name, cls in STRATEGIES.items() if cls.trains_to_target]


def users_of(name: str) -> list[str]:
    """The PyTorch strategies that read the strategy-specific setting ``name``."""
    from distbench.strategies.registry import STRATEGIES

    return [s for s, cls in STRATEGIES.items() if name in cls.settings]


def _check_applies(cfg: RunConfig, facts: StrategyFacts) -> None:
    """A strategy-specific setting given to a strategy that does not read it is refused,
    not silently ignored."""
    for name in STRATEGY_SETTINGS:
        if name in facts.settings or _is_default(cfg, name):
            continue
        flag = "--" + name.replace("_", "-")
        given = "" if isinstance(getattr(cfg, name), bool) else f" {getattr(cfg, name)}"
        where = cfg.strategy if cfg.framework == "torch" else f"{cfg.strategy} ({cfg.framework})"
        raise UserError(
            f"{flag}{given} does not apply to {where}: it is read by "
            f"{', '.join(users_of(name))} (with --framework torch)"
        )


def _check_compute(cfg: RunConfig, facts: StrategyFacts) -> None:
    """Emulated compute needs a strategy that computes through ``ctx.compute``, and has
    no operators to profile."""
    if cfg.compute == "real":
        return
    if not facts.emulated_compute:
        from distbench.strategies.registry import STRATEGIES

        where = cfg.strategy if cfg.framework == "torch" else f"{cfg.strategy} ({cfg.framework})"
        emulating = sorted(s for s, cls in STRATEGIES.items() if cls.emulated_compute)
        raise UserError(
            f"--compute {cfg.compute} does not apply to {where}: compute can be emulated "
            f"for {', '.join(emulating)} (with --framework torch)"
        )
    if cfg.profile_ops:
        raise UserError(
            f"--profile-ops profiles real operators; with --compute {cfg.compute} none run"
        )


def without_unused_settings(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the strategy-specific settings its strategy does not read reset to their
    defaults (a suite's shared setting applies to the strategies that read it)."""
    facts = strategy_facts(cfg.framework, cfg.strategy)
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(RunConfig)
        if f.name in STRATEGY_SETTINGS and f.name not in facts.settings
    }
    return cfg.replace(**defaults) if defaults else cfg


def _check_placement(cfg: RunConfig) -> None:
    """It is the *processes* (workers plus any server processes) that must divide over
    nodes and emulated hosts, not the workers alone."""
    count = processes(cfg)
    if count % cfg.nnodes != 0:
        raise UserError(
            f"{count} processes ({cfg.strategy}, --workers {cfg.workers}) must divide "
            f"evenly over --nnodes {cfg.nnodes}"
        )
    if cfg.hosts and count != 1 and count % cfg.hosts != 0:
        raise UserError(
            f"{count} processes ({cfg.strategy}, --workers {cfg.workers}) must divide "
            f"evenly over --hosts {cfg.hosts}"
        )


def expand_suite(suite: SuiteConfig) -> list[RunConfig]:
    """Every run of the suite, checked, in a stable order; single-process strategies run
    with one worker only."""
    framework = str(suite.base.get("framework", "torch"))
    for count in suite.workers:
        if count < 1:
            raise UserError(f"--workers must be at least 1, got {count}")
    _check_suite_settings(suite, framework)
    if suite.seeds and "seed" in suite.base:
        raise UserError("give either --seed or --seeds, not both")
    if len(set(suite.seeds)) < len(suite.seeds):
        raise UserError(f"--seeds repeats a seed: {','.join(map(str, suite.seeds))}")
    seeds: list[dict[str, Any]] = [{"seed": s} for s in suite.seeds] or [{}]
    runs: list[RunConfig] = []
    for model in suite.models:
        for strategy in suite.strategies:
            counts = [1] if strategy_facts(framework, strategy).single_worker else suite.workers
            for n in counts:
                for seed in seeds:
                    settings = {
                        **suite.base,
                        "model": model,
                        "strategy": strategy,
                        "workers": n,
                        **seed,
                    }
                    cfg = without_unused_settings(RunConfig.from_dict(settings))
                    runs.append(check_run(cfg))
    return runs


def _check_suite_settings(suite: SuiteConfig, framework: str) -> None:
    """A strategy-specific setting of the suite must be read by one of its strategies."""
    for name in STRATEGY_SETTINGS:
        if name not in suite.base:
            continue
        readers = [s for s in suite.strategies if name in strategy_facts(framework, s).settings]
        if not readers and suite.base[name] != setting_field(name).default:
            flag = "--" + name.replace("_", "-")
            raise UserError(
                f"{flag} does not apply to {', '.join(suite.strategies)}"
                + (f" ({framework})" if framework != "torch" else "")
                + f": it is read by {', '.join(users_of(name))} (with --framework torch)"
            )
