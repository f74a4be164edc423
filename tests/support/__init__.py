"""Helpers shared by the test modules: servers, contracts, fixtures and builders.

Test modules import from here, never from each other (``tests/`` is on ``sys.path``
through pytest's ``pythonpath``, so this package imports as ``support``).
"""
