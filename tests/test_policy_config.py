"""Retry policies from TOML, mappings and the environment; per-kind overrides; the CLI."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from statesync import ChunkPolicy, PolicySet, RetryPolicy, SyncState
from statesync._cli import main
from statesync._policy import KindOverride
from statesync._policy_config import (
    Known,
    PolicyConfigError,
    known_from_names,
    load_policies,
    policies_from_env,
    policies_from_mapping,
)
from statesync.adapters.local import LocalRunner
from statesync.connectors.stripe import StripeConnector
from statesync.destinations.memory import MemoryDestination
from statesync.errors import (
    AuthError,
    ConfigurationError,
    ErrorKind,
    RateLimitedError,
    TransientError,
)
from statesync.sandbox import FaultRule, Sandbox, SandboxConfig
from statesync.stores.memory import MemoryStateStore

_KINDS = ", ".join(sorted(k.value for k in ErrorKind))

FILES = Path(__file__).resolve().parent / "policy_files"
GOOD = FILES / "good.toml"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "policies.toml"
RL, AUTH = ErrorKind.RATE_LIMITED, ErrorKind.AUTH
STRIPE_KNOWN: Known = {"stripe": {"customers", "invoices"}}

# -- bad files: each names the file, the key path and what was expected -------------------

BAD: list[tuple[str, str, Known | None, str, str]] = [
    # (case, TOML, known, key path, expectation)
    ("wrong type", '[default]\nattempts = "five"', None, "default.attempts",
     'expected an integer, got the string "five"'),
    ("float for int", "[default.chunk]\npage_size = 2.5", None, "default.chunk.page_size",
     "expected an integer, got 2.5"),
    ("bool for int", "[connectors.stripe.entities.invoices]\nattempts = true", None,
     "connectors.stripe.entities.invoices.attempts", "expected an integer, got true"),
    ("unknown key", "[connectors.stripe]\natempts = 3", None, "connectors.stripe.atempts",
     "unknown key; expected one of: attempts, initial_delay"),
    ("unknown top-level key", "[defaults]\nattempts = 3", None, "defaults",
     "unknown key; expected one of: default, connectors"),
    ("negative delay", "[connectors.stripe.entities.invoices]\ninitial_delay = -1", None,
     "connectors.stripe.entities.invoices.initial_delay", "expected a value >= 0.0, got -1.0"),
    ("unknown error kind", "[default.kinds.throttled]\nattempts = 3", None,
     "default.kinds.throttled", "unknown error kind 'throttled'; expected one of: auth,"),
    ("unknown kind in retry_on", '[default]\nretry_on = ["transient", "flaky"]', None,
     "default.retry_on[1]", 'expected an error kind (one of: auth, bad_request, '),
    ("retry_on not a list", '[default]\nretry_on = "transient"', None, "default.retry_on",
     f"expected a list of error kinds (one of: {_KINDS}), got the string \"transient\""),
    ("unknown entity", "[connectors.stripe.entities.invoice]\nattempts = 2", STRIPE_KNOWN,
     "connectors.stripe.entities.invoice", "unknown entity; expected one of: customers, invoices"),
    ("unknown connector", "[connectors.strpe]\nattempts = 2", {"stripe": None},
     "connectors.strpe", "unknown connector; expected one of: stripe"),
    ("jitter above 1", "[default]\njitter = 1.5", None, "default.jitter",
     "expected a value <= 1.0, got 1.5"),
    ("attempts 0", "[default.kinds.rate_limited]\nattempts = 0", None,
     "default.kinds.rate_limited.attempts", "expected a value >= 1, got 0"),
    ("multiplier below 1", "[connectors.stripe]\nmultiplier = 0.5", None,
     "connectors.stripe.multiplier", "expected a value >= 1.0, got 0.5"),
    ("lease ttl 0", "[default.chunk]\nlease_ttl = 0", None, "default.chunk.lease_ttl",
     "expected a value > 0.0, got 0.0"),
    ("bad TOML syntax", "[default\nattempts = 3", None, "(file)",
     "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 9)"),
    ("non-table default", "default = 5", None, "default", "expected a table, got 5"),
    ("non-table connector", '[connectors]\nstripe = "fast"', None, "connectors.stripe",
     'expected a table, got the string "fast"'),
    ("non-table entities", '[connectors.stripe]\nentities = ["invoices"]', None,
     "connectors.stripe.entities", 'expected a table, got a list ["invoices"]'),
    ("non-table kind", "[default.kinds]\nauth = false", None, "default.kinds.auth",
     "expected a table, got false"),
    ("non-bool retry", '[default.kinds.auth]\nretry = "no"', None, "default.kinds.auth.retry",
     'expected true or false, got the string "no"'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("toml", "known", "path", "expected"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_file_names_file_key_path_and_expectation(
    tmp_path: Path, toml: str, known: Known | None, path: str, expected: str
) -> None:
    file = tmp_path / "policies.toml"
    file.write_text(toml)
    with pytest.raises(PolicyConfigError) as info:
        load_policies(file, known=known)
    error = info.value
    assert isinstance(error, ConfigurationError)
    assert error.source == str(file)
    assert [(p.path, p.message) for p in error.problems] == [(path, error.problems[0].message)], (
        str(error)
    )
    assert expected in error.problems[0].message
    message = str(error)
    assert str(file) in message and f"{path}: " in message
    # The user sees our message only, never cattrs' tree or its chained traceback.
    for noise in ("cattrs", "ClassValidationError", "Traceback", "@ $"):
        assert noise not in message
    assert (error.__cause__ is None and error.__suppress_context__) or error.__context__ is None


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    file = tmp_path / "p.toml"
    file.write_text("[default]\nattempts = 0\njitter = 2\n[connectors.stripe]\nbogus = 1\n")
    with pytest.raises(PolicyConfigError) as info:
        load_policies(file)
    assert [p.path for p in info.value.problems] == [
        "default.attempts",
        "default.jitter",
        "connectors.stripe.bogus",
    ]


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"nope\.toml cannot be read"):
        load_policies(tmp_path / "nope.toml")


# -- a good file, entity by entity -------------------------------------------------------------


@pytest.fixture(scope="module")
def good() -> PolicySet:
    return load_policies(GOOD)


def test_default_level(good: PolicySet) -> None:
    kinds = {RL: KindOverride(attempts=9), AUTH: KindOverride(retry=False)}
    assert good.retry == RetryPolicy(attempts=4, initial_delay=0.5, jitter=0.0, kinds=kinds)
    assert good.chunk == ChunkPolicy(max_iterations=20, page_size=50)
    assert good.retry_for("github", "issues") == good.retry
    assert good.chunk_for("github", "issues") == good.chunk


def test_connector_level_inherits_the_default(good: PolicySet) -> None:
    kinds = {RL: KindOverride(attempts=9, max_delay=90.0), AUTH: KindOverride(retry=False)}
    stripe = RetryPolicy(attempts=6, initial_delay=0.5, jitter=0.0, max_delay=30.0, kinds=kinds)
    assert good.retry_for("stripe", "charges") == stripe
    assert good.chunk_for("stripe", "charges") == ChunkPolicy(max_iterations=20, page_size=100)
    assert good.retry_for("stripe") == stripe
    assert good.chunk_for("stripe") == good.chunk_for("stripe", "charges")


def test_entity_levels(good: PolicySet) -> None:
    invoices = good.retry_for("stripe", "invoices")
    assert invoices.attempts == 2 and invoices.max_delay == 30.0
    assert good.chunk_for("stripe", "invoices") == ChunkPolicy(max_iterations=5, page_size=100)
    assert invoices.next_delay(1, TransientError("x")) == 0.5
    assert invoices.next_delay(2, TransientError("x")) is None
    # The rate-limit override is inherited: 9 attempts, delays capped at 90 s.
    assert invoices.next_delay(8, RateLimitedError("slow")) == 64.0
    assert invoices.next_delay(9, RateLimitedError("slow")) is None
    assert invoices.next_delay(1, AuthError("key")) is None

    customers = good.retry_for("stripe", "customers")
    assert customers.kinds[AUTH] == KindOverride(attempts=3, retry=True)
    assert customers.next_delay(2, AuthError("key")) == 1.0
    assert customers.next_delay(3, AuthError("key")) is None
    assert good.chunk_for("stripe", "customers") == good.chunk_for("stripe", "charges")

    contacts = good.retry_for("hubspot", "contacts")
    assert contacts.retry_on == frozenset({ErrorKind.TRANSIENT})
    assert not contacts.respect_retry_after
    assert contacts.next_delay(1, RateLimitedError("slow", retry_after=3)) is None
    assert contacts.next_delay(1, TransientError("x", retry_after=3)) == 0.5
    assert good.retry_for("hubspot", "deals") == good.retry  # no hubspot level of its own


def test_kind_override_is_validated_and_frozen() -> None:
    with pytest.raises(ValueError, match="jitter"):
        KindOverride(jitter=2)
    policy = RetryPolicy(kinds={"timeout": KindOverride(initial_delay=7)})
    assert policy.kinds == {ErrorKind.TIMEOUT: KindOverride(initial_delay=7)}
    assert policy.for_kind(ErrorKind.TRANSIENT) is policy
    assert policy.for_kind(ErrorKind.TIMEOUT).initial_delay == 7
    # kinds are frozen: hashed with the rest, and cannot be changed in place.
    assert hash(policy) == hash(RetryPolicy(kinds={"timeout": KindOverride(initial_delay=7)}))
    assert policy != RetryPolicy()
    with pytest.raises(TypeError, match="immutable"):
        policy.kinds[ErrorKind.TRANSIENT] = KindOverride()  # type: ignore[index]


def test_the_example_file_is_valid() -> None:
    policies = load_policies(EXAMPLE, known={"stripe": None})
    assert policies.retry_for("stripe", "invoices").attempts == 2
    assert policies.chunk_for("stripe", "invoices").max_iterations == 5


# -- the same shape from a mapping and from the environment ---------------------------------


def env_from(
    document: Mapping[str, Any], prefix: str = "STATESYNC_POLICY"
) -> Iterator[tuple[str, str]]:
    for key, value in document.items():
        name = f"{prefix}__{key.upper()}"
        if isinstance(value, Mapping):
            yield from env_from(value, name)
        else:
            yield name, json.dumps(value)  # JSON scalars and string lists are TOML values


def test_dict_and_env_forms_equal_the_toml(good: PolicySet) -> None:
    document = tomllib.loads(GOOD.read_text())
    assert policies_from_mapping(document) == good
    environ = dict(env_from(document))
    assert environ["STATESYNC_POLICY__CONNECTORS__STRIPE__ENTITIES__INVOICES__ATTEMPTS"] == "2"
    assert policies_from_env({**environ, "HOME": "/root"}) == good


def test_env_by_hand() -> None:
    environ = {
        "STATESYNC_POLICY__DEFAULT__ATTEMPTS": "3",
        "STATESYNC_POLICY__DEFAULT__KINDS__RATE_LIMITED__ATTEMPTS": "10",
        "STATESYNC_POLICY__DEFAULT__RETRY_ON": '["transient", "rate_limited"]',
        "STATESYNC_POLICY__CONNECTORS__STRIPE__ENTITIES__INVOICES__CHUNK__MAX_ITERATIONS": "5",
    }
    assert policies_from_env(environ) == policies_from_mapping(
        {
            "default": {
                "attempts": 3,
                "kinds": {"rate_limited": {"attempts": 10}},
                "retry_on": ["transient", "rate_limited"],
            },
            "connectors": {"stripe": {"entities": {"invoices": {"chunk": {"max_iterations": 5}}}}},
        }
    )


def test_env_errors_name_the_variable() -> None:
    name = "STATESYNC_POLICY__CONNECTORS__STRIPE__ATTEMPTS"
    with pytest.raises(PolicyConfigError) as info:
        policies_from_env({name: "many"})
    assert f"connectors.stripe.attempts (${name}): expected an integer" in str(info.value)
    with pytest.raises(ConfigurationError, match="STATESYNC_POLICY__DEFAULT__ATTEMPTS"):
        policies_from_env(
            {"STATESYNC_POLICY__DEFAULT": "3", "STATESYNC_POLICY__DEFAULT__ATTEMPTS": "3"}
        )


def test_known_from_names() -> None:
    assert known_from_names(["stripe.invoices", "stripe.customers", "hubspot"]) == {
        "stripe": {"invoices", "customers"},
        "hubspot": None,
    }


# -- the CLI -------------------------------------------------------------------------------


def test_cli_check_prints_each_entity() -> None:
    result = CliRunner().invoke(
        main, ["policy", "check", str(GOOD), "--entity", "stripe.invoices", "--json"]
    )
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)["stripe.invoices"]
    assert resolved["retry"]["attempts"] == 2
    assert resolved["chunk"] == {"max_iterations": 5, "page_size": 100, "lease_ttl": 15.0}
    assert resolved["kinds"] == {
        "auth": "not retried",
        "rate_limited": "retried with attempts=9 max_delay=90.0",
    }
    text = CliRunner().invoke(main, ["policy", "check", str(GOOD)])
    assert text.exit_code == 0
    for target in ("default", "stripe", "stripe.invoices", "stripe.customers", "hubspot.contacts"):
        assert f"\n{target}\n" in text.output


def test_cli_check_reports_a_bad_file_without_a_traceback(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text("[connectors.stripe.entities.invoices]\nattempts = -2\n")
    result = CliRunner().invoke(main, ["policy", "check", str(file)])
    assert result.exit_code == 1
    assert "connectors.stripe.entities.invoices.attempts: expected a value >= 1" in result.output
    assert str(file) in result.output and "Traceback" not in result.output
    strict = CliRunner().invoke(
        main, ["policy", "check", str(GOOD), "--strict", "--entity", "stripe.invoices"]
    )
    assert strict.exit_code == 1
    assert "connectors.hubspot: unknown connector" in strict.output
    assert "connectors.stripe.entities.customers: unknown entity" in strict.output


# -- against the emulator: the policy's attempts are what the API sees ----------------------

EMULATOR_POLICIES = """
[default]
initial_delay = 0.01
jitter = 0.0
[default.chunk]
page_size = 10
[connectors.stripe.entities.invoices]
attempts = 2
[connectors.stripe.entities.customers]
attempts = 5
"""


async def test_entity_attempts_follow_the_policy_against_a_flaky_api(tmp_path: Path) -> None:
    file = tmp_path / "policies.toml"
    file.write_text(EMULATOR_POLICIES)
    policies = load_policies(file, known={"stripe": {"invoices", "customers"}})
    with Sandbox(SandboxConfig(sizes={"customers": 25, "invoices": 25})) as sandbox:
        sandbox.faults.add_rule(FaultRule("/v1/invoices", nth=1, times=1000, status=503))
        sandbox.faults.add_rule(FaultRule("/v1/customers", nth=1, times=3, status=503))
        connector = StripeConnector(sandbox.config.api_key, base_url=sandbox.url)
        runner = LocalRunner(
            connector=connector,
            store=MemoryStateStore(),
            destination=MemoryDestination(),
            chunk_policy=policies.chunk_for("stripe", "customers"),
            retry_policy=policies.retry_resolver("stripe"),
        )
        result = await runner.sync(["invoices", "customers"])
        await connector.aclose()
        log = sandbox.log()
    states = {e.entity: e.state for e in result.entities}
    assert states == {"invoices": SyncState.FAILED, "customers": SyncState.COMPLETE}
    invoices = [e.status for e in log if e.path.startswith("/v1/invoices")]
    assert invoices == [503, 503]  # exactly the 2 attempts the policy allows
    customers = [e.status for e in log if e.path.startswith("/v1/customers")]
    assert customers[:3] == [503, 503, 503] and set(customers[3:]) == {200}
    assert result.entities[1].records == 25
