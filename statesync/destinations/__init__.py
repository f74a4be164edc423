"""Destination implementations; the interface is :mod:`statesync.destination`.

Import the one you use (``statesync.destinations.sqlite``, ``.postgres``, ``.memory``):
the PostgreSQL one needs ``statesync[postgres]`` and says so when it is missing.
"""
