"""The CLI's settings, pure: the config file (found where documented, checked against the
real commands and options, errors placed at file:line:col), instants given as options
(bare dates at the program's midnight, the far future refused), and error codes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import typer

from loyalty_engine.cli.app import app
from loyalty_engine.cli.config import Config, ConfigError, find_config, load_config
from loyalty_engine.cli.context import InstantError, chosen_database, parse_instant
from loyalty_engine.domain import errors

ROOT_COMMAND = typer.main.get_command(app)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "loyalty.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_file_gives_the_database_and_option_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, 'database = "postgresql://loyalty@db/loyalty"\n'
                            "[serve]\nport = 8080\nworkers = 4\n"
                            "[scheduler.tick]\nno-wait = true\n"
                            "[members.list]\njson = true\n")
    found = load_config(path, ROOT_COMMAND)
    assert found.database == "postgresql://loyalty@db/loyalty"
    # Click's default_map: by command, by parameter name (the option's dashes or not).
    assert found.defaults == {"serve": {"port": 8080, "workers": 4},
                              "scheduler": {"tick": {"no_wait": True}},
                              "members": {"list": {"json_out": True}}}


@pytest.mark.parametrize(("text", "message"), [
    ("[serve]\nprot = 8080\n", r"\[serve\] has no option or command 'prot'"),
    ("[nonsense]\nx = 1\n", "the top level has no option or command 'nonsense'"),
    ("[points.expire]\nas-of = \"2027-01-01\"\n", "as-of in \\[points.expire\\] cannot be set"),
    ("database = 5\n", "database must be a URL in quotes"),
    ("[serve]\nport = \n", r"loyalty.toml:2:8: Invalid value"),
])
def test_a_config_file_with_a_mistake_is_refused_with_its_place(
        tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text), ROOT_COMMAND)


def test_the_config_file_is_found_where_documented(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOYALTY_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_config(None) is None
    user = tmp_path / "xdg" / "loyalty" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("")
    assert find_config(None) == user
    here = _write(tmp_path, "")
    assert find_config(None) == here  # ./loyalty.toml before the user's
    other = tmp_path / "other.toml"
    other.write_text("")
    monkeypatch.setenv("LOYALTY_CONFIG", str(other))
    assert find_config(None) == other  # the environment before both
    assert find_config(here) == here  # --config before everything
    with pytest.raises(ConfigError, match="does not exist"):
        find_config(tmp_path / "missing.toml")


def test_the_environment_outranks_the_config_file_and_the_option_both(
        monkeypatch: pytest.MonkeyPatch) -> None:
    found = Config(database="sqlite:///from-file.db")
    monkeypatch.delenv("LOYALTY_DATABASE_URL", raising=False)
    assert chosen_database(None, found) == "sqlite:///from-file.db"
    monkeypatch.setenv("LOYALTY_DATABASE_URL", "sqlite:///from-env.db")
    assert chosen_database(None, found) is None  # resolve_url reads the environment
    assert chosen_database("sqlite:///given.db", found) == "sqlite:///given.db"


AMSTERDAM = ZoneInfo("Europe/Amsterdam")


@pytest.mark.parametrize(("value", "zone", "expected"), [
    ("2027-01-01", AMSTERDAM, datetime(2026, 12, 31, 23, tzinfo=UTC)),
    ("2027-07-01", AMSTERDAM, datetime(2027, 6, 30, 22, tzinfo=UTC)),  # summer time
    ("2027-01-01T00:00:00+05:00", AMSTERDAM, datetime(2026, 12, 31, 19, tzinfo=UTC)),
])
def test_instants_with_an_offset_or_a_bare_date_in_the_programs_zone(
        value: str, zone: ZoneInfo, expected: datetime) -> None:
    assert parse_instant(value, "--as-of", zone) == expected


def test_instants_that_cannot_be_used_are_refused() -> None:
    with pytest.raises(InstantError, match="no program says which zone"):
        parse_instant("2027-01-01", "--as-of")
    with pytest.raises(InstantError, match="after 2199"):
        parse_instant("9999-12-31T00:00:00+00:00", "--as-of")
    with pytest.raises(typer.BadParameter, match="no UTC offset"):
        parse_instant("2027-01-01T10:00:00", "--as-of")
    with pytest.raises(typer.BadParameter, match="not an ISO 8601"):
        parse_instant("tomorrow", "--as-of")


def test_every_error_class_has_a_stable_code() -> None:
    # Scripts key on these (README: "Scripting"); renaming a class must be deliberate.
    codes = {cls.__name__: cls.code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.LoyaltyError)}
    assert codes == {
        "LoyaltyError": "refused", "PurchaseConflictError": "purchase_conflict",
        "PurchaseRejectedError": "purchase_rejected", "ProgramApplyError": "program_apply",
        "SchemaNotCurrentError": "schema_not_current", "ImportFileError": "import_file",
        "RefundRejectedError": "refund_rejected",
        "RefundPurchaseMissingError": "refund_purchase_missing",
        "RefundConflictError": "refund_conflict",
        "RedemptionRejectedError": "redemption_rejected",
        "RedemptionConflictError": "redemption_conflict",
        "RedemptionBackdatedError": "redemption_backdated", "NotFoundError": "not_found",
        "ClubError": "club", "FeeError": "fee", "TierError": "tier",
        "VerificationError": "verification", "MemberError": "member", "ApiKeyError": "api_key",
        "AdjustmentRejectedError": "adjustment_rejected",
        "AdjustmentConflictError": "adjustment_conflict", "MemberErasedError": "member_erased",
        "NoPurchasesError": "no_purchases",
    }


def test_the_readme_lists_every_error_code() -> None:
    import loyalty_engine.api.app  # noqa: F401  (its errors too)

    def all_subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        return found | {sub for c in found for sub in all_subclasses(c)}

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`([a-z_]+)`", readme.split("The codes are\nstable:")[1]
                            .split("**Shell completion**")[0]))
    codes = {cls.code for cls in all_subclasses(errors.LoyaltyError)}
    assert codes - listed == set()
