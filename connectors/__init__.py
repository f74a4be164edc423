"""Connectors shipped with statesync (imported as ``statesync.connectors``)."""
