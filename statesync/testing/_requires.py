"""``statesync.testing`` needs ``statesync[testing]``: imported first by the package, this
names the extra when pytest is missing, instead of failing deep inside the contract."""

from statesync._extras import Extra

PYTEST = Extra("statesync.testing", "testing", "pytest")
with PYTEST.importing():
    import pytest  # noqa: F401
PYTEST.require()
