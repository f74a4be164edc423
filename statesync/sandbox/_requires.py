"""The emulator is a part of its own (``statesync[sandbox]``): imported first by the package,
this names the extra when graphql-core (its GraphQL API) is missing, instead of failing
deep inside it."""

from statesync._extras import Extra

GRAPHQL_CORE = Extra("the API emulator", "sandbox", "graphql-core")
with GRAPHQL_CORE.importing():
    import graphql  # noqa: F401
GRAPHQL_CORE.require()
