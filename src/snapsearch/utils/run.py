"""Run-level helpers for the entry points: config tree printing, the fail-safe task wrapper, loggers."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import rich.syntax
import rich.tree
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from rich.console import Console

from snapsearch.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_FIRST = ("data", "model", "augment", "trainer", "callbacks", "logger", "paths")


def print_config_tree(cfg: DictConfig, save_to: Path | None = None, order: Sequence[str] = CONFIG_FIRST) -> None:
    """Print the composed config as a rich tree (main groups first) and keep a copy in the run dir."""
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    names = [n for n in order if n in cfg] + [n for n in cfg if n not in order]
    for name in names:
        node = cfg[name]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        tree.add(str(name), style="dim").add(rich.syntax.Syntax(text, "yaml"))
    console = Console()
    console.print(tree)
    if save_to is not None:
        with console.capture() as cap:
            console.print(tree)
        atomic_write_text(save_to, cap.get())


# Errors a user causes (a bad path, manifest, bundle or config): the project raises them with a message that
# says what to do, so the user sees that one line and a non-zero exit, not a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)
USER_ERROR_EXIT = 2
DEBUG_ENV = "SNAPSEARCH_DEBUG"


def task_wrapper(fn: F) -> F:
    """Turn a user's error into its one-line message and exit status 2 (``SNAPSEARCH_DEBUG=1`` re-raises it
    with the traceback), log any other failure with its traceback, and always close the wandb run, so a
    failed job in a sweep leaves a readable log and does not poison the next job."""

    @functools.wraps(fn)
    def wrapped(cfg: DictConfig, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(cfg, *args, **kwargs)
        except USER_ERRORS as err:
            if os.environ.get(DEBUG_ENV):
                raise
            log.error("%s: %s", type(err).__name__, err)
            raise SystemExit(USER_ERROR_EXIT) from None
        except Exception:
            log.exception("task failed; its outputs are in %s", cfg.paths.output_dir)
            raise
        finally:
            import wandb

            if wandb.run is not None:
                wandb.finish()

    return wrapped  # type: ignore[return-value]


def instantiate_loggers(logger_cfg: DictConfig | None) -> list[Logger]:
    """One Lightning logger per non-empty entry of the ``logger`` group."""
    if not logger_cfg:
        return []
    return [instantiate(c) for c in logger_cfg.values() if c is not None and "_target_" in c]


def instantiate_callbacks(callbacks_cfg: DictConfig | None, **overrides: dict[str, Any]) -> list[Any]:
    """Callbacks from config; ``overrides[name]`` adds keyword arguments to entry ``name``."""
    if not callbacks_cfg:
        return []
    return [
        instantiate(c, **overrides.get(name, {}))
        for name, c in callbacks_cfg.items()
        if c is not None and "_target_" in c
    ]
