"""State-store implementations; the interface is :mod:`statesync.store`.

Import the one you use (``statesync.stores.sqlite``, ``.redis``, ``.memory``): the Redis
one needs ``statesync[redis]`` and says so when it is missing.
"""
