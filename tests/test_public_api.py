"""Guards the public surface: sorted ``__all__``, everything in it importable."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = ["statesync", "statesync.sandbox", "statesync.testing", "statesync.connectors.rest"]


def _isort_key(name: str) -> tuple[int, str]:
    """CONSTANTS, then Classes, then functions: the order ruff's RUF022 keeps."""
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", PUBLIC)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    names = list(module.__all__)
    assert names == sorted(names, key=_isort_key), f"{name}.__all__ is not sorted"
    assert len(names) == len(set(names))
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing


def test_plugin_packages_are_namespaced_under_statesync() -> None:
    # connectors/ and adapters/ are top-level folders mapped into the package.
    connectors = importlib.import_module("statesync.connectors")
    adapters = importlib.import_module("statesync.adapters")
    assert connectors.__name__ == "statesync.connectors"
    assert adapters.__name__ == "statesync.adapters"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("connectors.stripe")


def test_every_error_derives_from_the_one_root() -> None:
    from statesync import errors

    classes = [
        v
        for v in vars(errors).values()
        if isinstance(v, type) and issubclass(v, BaseException) and v.__module__ == errors.__name__
    ]
    assert classes and all(issubclass(c, errors.StatesyncError) for c in classes)
