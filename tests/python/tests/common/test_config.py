"""Settings: every accessor's error names the variable; a bad setting stops a service with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from pm.common.config import ConfigError, Env, load_or_exit, sqlite_default


@pytest.mark.parametrize(
    ("value", "read"),
    [
        (None, lambda env: env.text("PM_THING")),
        ("twelve", lambda env: env.integer("PM_THING", 1)),
        ("70000", lambda env: env.integer("PM_THING", 1, maximum=65535)),
        ("-1", lambda env: env.integer("PM_THING", 1)),
        ("fast", lambda env: env.number("PM_THING", 1.0)),
        ("-0.5", lambda env: env.number("PM_THING", 1.0)),
        ("maybe", lambda env: env.flag("PM_THING", True)),
        ("http", lambda env: env.port("PM_THING", 80)),
        ("65536", lambda env: env.port("PM_THING", 80)),
        ("ftp://auth", lambda env: env.url("PM_THING", "http://x")),
        ("mysql://db", lambda env: env.database_url("PM_THING", "sqlite:///x")),
        ("kafka", lambda env: env.host_port("PM_THING", "a:1")),
        ("kafka:port", lambda env: env.host_port("PM_THING", "a:1")),
        (":9092", lambda env: env.host_port("PM_THING", "a:1")),
    ],
    ids=[
        "text-missing",
        "integer-not-a-number",
        "integer-above-maximum",
        "integer-below-minimum",
        "number-not-a-number",
        "number-below-minimum",
        "flag-not-boolean",
        "port-not-a-number",
        "port-out-of-range",
        "url-wrong-scheme",
        "database-url-unsupported",
        "host-port-no-port",
        "host-port-port-not-numeric",
        "host-port-no-host",
    ],
)
def test_every_accessor_error_names_the_variable_and_the_bad_value(
    value: str | None, read: Callable[[Env], object]
) -> None:
    environ = {} if value is None else {"PM_THING": value}
    with pytest.raises(ConfigError) as caught:
        read(Env(environ))
    message = str(caught.value)
    assert message.startswith("PM_THING ")
    if value is not None:
        assert value in message


def test_log_level_error_names_pm_log_level() -> None:
    with pytest.raises(ConfigError, match=r"^PM_LOG_LEVEL .*'LOUD'"):
        Env({"PM_LOG_LEVEL": "loud"}).log_level()


def test_accessors_parse_good_values_and_fall_back_to_defaults() -> None:
    env = Env(
        {
            "PM_PORT": " 4005 ",
            "PM_ON": "Yes",
            "PM_OFF": "0",
            "PM_URL": "https://auth.example/",
            "PM_TARGET": "billing:9001",
            "PM_RATIO": "0.25",
            "PM_BLANK": "   ",
            "PM_LOG_LEVEL": "debug",
        }
    )
    assert env.port("PM_PORT", 1) == 4005
    assert env.flag("PM_ON", False) is True
    assert env.flag("PM_OFF", True) is False
    assert env.url("PM_URL", "http://x") == "https://auth.example"
    assert env.host_port("PM_TARGET", "a:1") == "billing:9001"
    assert env.number("PM_RATIO", 1.0) == 0.25
    assert env.text("PM_BLANK", "fallback") == "fallback"
    assert env.optional("PM_BLANK") is None
    assert env.integer("PM_UNSET", 7) == 7
    assert env.log_level() == "DEBUG"


def test_sqlite_default_lives_in_the_data_folder(tmp_path: Path) -> None:
    url = sqlite_default(Env({"PM_DATA_DIR": str(tmp_path)}), "billing")
    assert url == f"sqlite:///{tmp_path / 'billing.db'}"


def test_load_or_exit_returns_the_settings_when_they_are_good() -> None:
    assert load_or_exit(lambda: Env({"PM_PORT": "80"}).port("PM_PORT", 1), "svc") == 80


SCRIPT = textwrap.dedent("""
    from pm.common.config import Env, load_or_exit
    from pm.common.logs import configure_logging

    configure_logging("patient")
    env = Env()
    load_or_exit(lambda: (env.port("PM_PATIENT_PORT", 4000), env.url("PM_AUTH_URL", "http://x")), "patient")
    print("started")
    """)


def run_service(environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PM_")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    env.update(environ)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(
    ("environ", "variable"),
    [({"PM_PATIENT_PORT": "port"}, "PM_PATIENT_PORT"), ({"PM_AUTH_URL": "auth:4005"}, "PM_AUTH_URL")],
)
def test_a_bad_setting_stops_the_service_with_one_line_and_status_2(
    environ: dict[str, str], variable: str
) -> None:
    result = run_service(environ)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"patient: configuration error: {variable} ")
    assert "Traceback" not in result.stderr


def test_good_settings_start_the_service() -> None:
    result = run_service({"PM_PATIENT_PORT": "4100"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "started\n"


def test_networks_are_addresses_or_cidrs_and_none_by_default() -> None:
    assert Env({}).networks("PM_TRUSTED_PROXIES") == ()
    parsed = Env({"PM_TRUSTED_PROXIES": " 10.0.10.0/24, 127.0.0.1 ,::1,10.0.0.7/16"}).networks(
        "PM_TRUSTED_PROXIES"
    )
    assert parsed == ("10.0.10.0/24", "127.0.0.1/32", "::1/128", "10.0.0.0/16")
    with pytest.raises(ConfigError, match="PM_TRUSTED_PROXIES.*'gateway'"):
        Env({"PM_TRUSTED_PROXIES": "127.0.0.1,gateway"}).networks("PM_TRUSTED_PROXIES")
