"""Package discovery with the layout's one mapping (all other metadata: pyproject.toml).

connectors/ and adapters/ live at the top level of the repository but install under the
statesync namespace, so no other package called `connectors` or `adapters` can shadow
them. pyproject.toml can either list packages or find them, not find them through a
mapping; here every package under statesync/ and the mapped folders is found, so a new
subpackage needs no edit.
"""

from setuptools import find_packages, setup

MAPPED = {"statesync.connectors": "connectors", "statesync.adapters": "adapters"}

packages = find_packages(include=["statesync", "statesync.*"])
for name, folder in MAPPED.items():
    packages += [name, *(f"{name}.{sub}" for sub in find_packages(folder))]

setup(packages=packages, package_dir={"statesync": "statesync", **MAPPED})
