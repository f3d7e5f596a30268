"""Table-driven tests of flag evaluation, bucketing and the stale report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import mmh3
import pytest
from pydantic import ValidationError

from zerodown.flags.evaluate import (
    VARIANT_SEED,
    EvalContext,
    Reason,
    evaluate,
    normalized_value,
    select_variant,
)
from zerodown.flags.model import (
    Constraint,
    DefaultStrategy,
    Flag,
    FlagType,
    GradualRolloutStrategy,
    NeverStrategy,
    Operator,
    Payload,
    RemoteAddressStrategy,
    UserIdsStrategy,
    Variant,
)
from zerodown.flags.stale import stale_report

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def flag(*strategies: object, enabled: bool = True, **kw: object) -> Flag:
    return Flag(key="f", enabled=enabled, strategies=strategies, **kw)  # type: ignore[arg-type]


def c(name: str, op: str, *values: str, value: str | None = None, **kw: bool) -> Constraint:
    return Constraint(context_name=name, operator=Operator(op), values=values, value=value, **kw)


def test_bucket_is_murmur3_of_group_and_sticky_value_mod_100_plus_1() -> None:
    # The formula from Unleash's clients, written out against mmh3 directly.
    for uid in ("122", "155", "user-7", ""):
        expected = mmh3.hash(f"AB12A:{uid}", 0, signed=False) % 100 + 1
        assert normalized_value(uid, "AB12A") == expected
        assert 1 <= expected <= 100
    # Two vectors from the spec's 03 file: userId 122 is in 50%, 155 is not.
    assert normalized_value("122", "AB12A") <= 50 < normalized_value("155", "AB12A")


def test_variant_bucket_uses_its_own_seed() -> None:
    v = normalized_value("u", "g", modulus=1000, seed=VARIANT_SEED)
    assert v == mmh3.hash("g:u", VARIANT_SEED, signed=False) % 1000 + 1


@pytest.mark.parametrize(
    ("f", "ctx", "on"),
    [
        (flag(enabled=False), EvalContext(), False),
        (flag(), EvalContext(), True),  # enabled, no strategies: on for everyone
        (flag(DefaultStrategy()), EvalContext(), True),
        (flag(UserIdsStrategy(user_ids=("a", "b"))), EvalContext(user_id="b"), True),
        (flag(UserIdsStrategy(user_ids=("a", "b"))), EvalContext(user_id="c"), False),
        (flag(UserIdsStrategy(user_ids=("a",))), EvalContext(), False),
        (flag(GradualRolloutStrategy(rollout=100, stickiness="userId")), EvalContext(), False),
        (flag(GradualRolloutStrategy(rollout=100)), EvalContext(), True),  # default → random
        (flag(GradualRolloutStrategy(rollout=0)), EvalContext(user_id="x"), False),
        (flag(NeverStrategy(reason="custom")), EvalContext(), False),
        (
            flag(RemoteAddressStrategy(addresses=("192.168.0.0/16", "x"))),
            EvalContext(remote_address="192.168.4.2"),
            True,
        ),
        (flag(RemoteAddressStrategy(addresses=("192.168.0.0/16",))), EvalContext(), False),
        (flag(NeverStrategy(reason="x"), DefaultStrategy()), EvalContext(), True),  # ordered, any
    ],
)
def test_strategies(f: Flag, ctx: EvalContext, on: bool) -> None:
    assert evaluate(f, ctx).enabled is on


@pytest.mark.parametrize("stickiness", ["userId", "sessionId", "tenant"])
def test_gradual_rollout_sticks_to_the_chosen_field(stickiness: str) -> None:
    f = flag(GradualRolloutStrategy(rollout=30, stickiness=stickiness, group_id="g"))
    on = 0
    for i in range(1000):
        value = f"id-{i}"
        ctx = EvalContext(user_id=value, session_id=value, properties={"tenant": value})
        got = evaluate(f, ctx).enabled
        assert got == (normalized_value(value, "g") <= 30)
        on += got
    assert 230 < on < 370  # about 30 %


def test_group_id_defaults_to_flag_key() -> None:
    a = Flag(key="a", enabled=True, strategies=(GradualRolloutStrategy(rollout=50),))
    for uid in ("1", "2", "3", "4"):
        expected = normalized_value(uid, "a") <= 50
        assert evaluate(a, EvalContext(user_id=uid)).enabled is expected


@pytest.mark.parametrize(
    ("constraint", "ctx", "holds"),
    [
        (c("environment", "IN", "prod", "stage"), EvalContext(environment="prod"), True),
        (c("environment", "IN", "prod"), EvalContext(), False),
        (c("environment", "NOT_IN", "prod"), EvalContext(), True),
        (c("environment", "NOT_IN", "prod"), EvalContext(environment="prod"), False),
        (c("email", "STR_ENDS_WITH", "@x.io"), EvalContext(properties={"email": "a@x.io"}), True),
        (c("email", "STR_ENDS_WITH", "@X.IO"), EvalContext(properties={"email": "a@x.io"}), False),
        (
            c("email", "STR_ENDS_WITH", "@X.IO", case_insensitive=True),
            EvalContext(properties={"email": "a@x.io"}),
            True,
        ),
        (c("email", "STR_STARTS_WITH", "a", "b"), EvalContext(properties={"email": "bob"}), True),
        (c("email", "STR_CONTAINS", "o"), EvalContext(properties={"email": "bob"}), True),
        (
            c("email", "STR_CONTAINS", "o", inverted=True),
            EvalContext(properties={"email": "bob"}),
            False,
        ),
        (c("n", "NUM_GT", value="5"), EvalContext(properties={"n": 6}), True),
        (c("n", "NUM_LTE", value="5"), EvalContext(properties={"n": "5.0"}), True),
        (c("n", "NUM_EQ", value="5"), EvalContext(properties={"n": "five"}), False),
        (
            c("currentTime", "DATE_AFTER", value="2026-01-01T00:00:00Z"),
            EvalContext(current_time=NOW),
            True,
        ),
        (
            c("currentTime", "DATE_BEFORE", value="2026-01-01T00:00:00+02:00"),
            EvalContext(current_time=NOW),
            False,
        ),
        (
            c("version", "SEMVER_GT", value="1.2.3"),
            EvalContext(properties={"version": "1.10.0"}),
            True,
        ),
        (
            c("version", "SEMVER_LT", value="2.0.0"),
            EvalContext(properties={"version": "2.0.0-rc.1"}),
            True,
        ),
        (
            c("version", "SEMVER_EQ", value="1.0.0"),
            EvalContext(properties={"version": "v1"}),
            False,
        ),
        (c("userId", "REGEX", value=r"^u\d+$"), EvalContext(user_id="u42"), True),
        (c("userId", "REGEX", value="^(?i)abc$"), EvalContext(user_id="ABC"), True),
        (c("userId", "REGEX", value="(broken"), EvalContext(user_id="x"), False),
        (c("userId", "REGEX", value=r"^(a)\1$"), EvalContext(user_id="aa"), False),  # as RE2
        (c("ip", "IN_CIDR", "bad", "10.0.0.0/8"), EvalContext(properties={"ip": "10.1.2.3"}), True),
        (c("ip", "IN_CIDR", "10.0.0.0/8"), EvalContext(properties={"ip": "::1"}), False),
        (c("ip", "IN_CIDR", "10.0.0.0/8"), EvalContext(properties={"ip": "nope"}), False),
    ],
)
def test_constraints(constraint: Constraint, ctx: EvalContext, holds: bool) -> None:
    assert evaluate(flag(DefaultStrategy(constraints=(constraint,))), ctx).enabled is holds


def test_all_constraints_of_a_strategy_must_hold() -> None:
    s = DefaultStrategy(
        constraints=(c("environment", "IN", "prod"), c("userId", "IN", "1", "2")),
    )
    assert evaluate(flag(s), EvalContext(environment="prod", user_id="1")).enabled
    assert not evaluate(flag(s), EvalContext(environment="prod", user_id="3")).enabled


def test_single_value_operator_without_value_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs `value`"):
        Constraint(context_name="n", operator=Operator.NUM_GT, values=("1",))


def test_variants_split_by_weight_and_stick() -> None:
    variants = (
        Variant(name="a", weight=1, payload=Payload(value="A")),
        Variant(name="b", weight=3),
    )
    f = flag(DefaultStrategy(), variants=variants)
    counts = {"a": 0, "b": 0}
    for i in range(2000):
        e = evaluate(f, EvalContext(user_id=str(i)))
        assert e.reason is Reason.SPLIT
        counts[e.variant] += 1
        assert evaluate(f, EvalContext(user_id=str(i))).variant == e.variant  # sticky
    assert 380 < counts["a"] < 620
    assert evaluate(f, EvalContext(user_id="x")).variant_enabled


def test_strategy_variants_win_over_flag_variants() -> None:
    s = DefaultStrategy(variants=(Variant(name="s", weight=1),))
    f = flag(s, variants=(Variant(name="f", weight=1),))
    assert evaluate(f, EvalContext()).variant == "s"


def test_zero_total_weight_gives_no_variant() -> None:
    assert select_variant((Variant(name="a", weight=0),), "g", EvalContext()) is None


def test_disabled_flag_gives_disabled_variant() -> None:
    f = flag(DefaultStrategy(), enabled=False, variants=(Variant(name="a", weight=1),))
    e = evaluate(f, EvalContext())
    assert (e.enabled, e.variant, e.variant_enabled, e.reason) == (
        False,
        "disabled",
        False,
        Reason.DISABLED,
    )


def test_bad_keys_are_refused() -> None:
    for key in ("", "a b", "a/b", "a,b", "a=b"):
        with pytest.raises(ValidationError):
            Flag(key=key)
    Flag(key="new-checkout.v2")


def test_duplicate_variant_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="repeated: a"):
        Flag(key="k", variants=(Variant(name="a", weight=1), Variant(name="a", weight=1)))


def test_expected_lifetimes_are_unleash_s() -> None:
    days = {t.value: (t.expected_lifetime.days if t.expected_lifetime else None) for t in FlagType}
    assert days == {
        "release": 40,
        "experiment": 40,
        "operational": 7,
        "kill-switch": None,
        "permission": None,
    }


def test_stale_report() -> None:
    old = NOW - timedelta(days=50)
    flags = [
        Flag(key="old-release", created_at=old, changed_at=NOW, last_evaluated_at=NOW, enabled=True,
             strategies=(GradualRolloutStrategy(rollout=20),)),
        Flag(key="kill", type=FlagType.KILL_SWITCH, created_at=old, last_evaluated_at=NOW,
             changed_at=NOW - timedelta(days=1)),
        Flag(key="unused", type=FlagType.PERMISSION, created_at=old, changed_at=NOW,
             last_evaluated_at=NOW - timedelta(days=31), enabled=True,
             strategies=(UserIdsStrategy(user_ids=("1",)),)),
        Flag(key="settled", type=FlagType.PERMISSION, created_at=old, changed_at=old,
             last_evaluated_at=NOW, enabled=True, strategies=(DefaultStrategy(),)),
        Flag(key="fresh", created_at=NOW - timedelta(days=3)),
    ]  # fmt: skip
    report = {s.key: s.reasons for s in stale_report(flags, NOW, unused_days=30, settled_days=30)}
    assert set(report) == {"old-release", "unused", "settled"}
    assert report["old-release"] == ("50 days old; release flags are expected to live 40 days",)
    assert report["unused"] == ("not evaluated for 31 days",)
    assert report["settled"] == ("fully on and unchanged for 50 days",)
