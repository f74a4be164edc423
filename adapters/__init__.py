"""Adapters that drive the engine (imported as ``statesync.adapters``)."""
