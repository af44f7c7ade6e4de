"""The runner's pure parts: wrk's summary line, paired ratios against targets, percentiles, the table."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pm.bench import nginx
from pm.bench.reads import EDGE_CPU_TARGET
from pm.bench.results import (
    CpuTarget,
    Target,
    WrkOutputError,
    WrkRun,
    evaluate,
    evaluate_cpu,
    parse_wrk,
    percentile,
    table,
)

WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:4004/api/patients/123e4567-e89b-12d3-a456-426614174000
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    32.10ms   12.30ms 120.00ms   70.00%
  1200 requests in 3.00s, 1.10MB read
Requests/sec:    400.00
BENCH {"requests":1200,"duration_us":3000000,"bytes":1153433,"errors":{"connect":0,"read":0,"write":0,\
"status":3,"timeout":1},"latency_us":{"p50":25200,"p90":41000,"p99":292020,"max":310000,"mean":32100.5}}
"""


def run(rps: float, errors: int = 0) -> WrkRun:
    return WrkRun(int(rps * 10), 10.0, errors, {"status": errors}, 1.0, 2.0, 3.0, 4.0)


def test_parses_the_summary_line_of_report_lua() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.requests == 1200
    assert result.rps == pytest.approx(400.0)
    assert result.errors == 4
    assert result.error_detail["status"] == 3
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (25.2, 292.02, 310.0)


def test_output_without_a_summary_line_is_an_error_quoting_its_tail() -> None:
    with pytest.raises(WrkOutputError, match="unable to connect"):
        parse_wrk(
            "Running 3s test @ http://127.0.0.1:1\nunable to connect to 127.0.0.1:1 Connection refused\n"
        )


def test_a_truncated_summary_line_is_an_error() -> None:
    with pytest.raises(WrkOutputError, match="unreadable"):
        parse_wrk('BENCH {"requests":12')


def test_target_uses_the_median_of_per_round_ratios() -> None:
    target = Target("gateway >= 0.6 x direct", "gateway", "direct", 0.6)
    rounds = [
        {"gateway": run(300), "direct": run(500)},  # 0.6
        {"gateway": run(100), "direct": run(500)},  # 0.2: a burst of outside load in one round
        {"gateway": run(350), "direct": run(500)},  # 0.7
    ]
    verdict = evaluate(target, rounds)
    assert verdict.ratio == pytest.approx(0.6)
    assert verdict.met
    assert verdict.as_dict()["round_ratios"] == [0.6, 0.2, 0.7]


def test_target_below_its_minimum_is_not_met() -> None:
    target = Target("gateway >= 1.2 x nginx", "gateway", "nginx_auth", 1.2)
    verdict = evaluate(target, [{"gateway": run(300), "nginx_auth": run(290)}])
    assert verdict.ratio == pytest.approx(300 / 290)
    assert not verdict.met


def test_rounds_with_errors_or_a_missing_side_do_not_count() -> None:
    target = Target("t", "a", "b", 0.5)
    rounds = [{"a": run(900, errors=5), "b": run(100)}, {"a": run(900)}, {"a": run(100), "b": run(0)}]
    verdict = evaluate(target, rounds)
    assert verdict.ratios == ()
    assert not verdict.met


def test_edge_cpu_target_compares_cpu_per_request_not_throughput() -> None:
    # Both edges answer 300 req/s (the service behind them is the limit); the gateway burns 30 % of a
    # core for it (1.0 ms a request), nginx 4 % and auth 30 % (1.13 ms a request).
    rounds = [{"gateway": run(300), "nginx_auth": run(300)}]
    cpu = [{"gateway": {"gateway": 30.0, "patient": 80.0}, "nginx_auth": {"nginx": 4.0, "auth": 30.0}}]
    verdict = evaluate_cpu(EDGE_CPU_TARGET, rounds, cpu)
    assert verdict.ratio == pytest.approx(30 / 34)
    assert not verdict.met  # 0.88 > 0.8
    figures = verdict.as_dict()
    assert figures["maximum"] == 0.8
    assert figures["numerator"] == "gateway: gateway CPU per request"
    assert figures["denominator"] == "nginx_auth: nginx + auth CPU per request"


def test_edge_cpu_target_is_met_at_or_under_its_maximum_and_uses_the_median_of_rounds() -> None:
    target = CpuTarget("t", "a", ("a",), "b", ("b1", "b2"), 0.8)
    rounds = [{"a": run(100), "b": run(200)}] * 3
    cpu = [
        {"a": {"a": 10.0}, "b": {"b1": 20.0, "b2": 20.0}},  # 1.0 ms against 2.0 ms: 0.5
        {"a": {"a": 40.0}, "b": {"b1": 20.0, "b2": 20.0}},  # 2.0: a burst elsewhere during one run
        {"a": {"a": 12.0}, "b": {"b1": 10.0, "b2": 10.0}},  # 1.2 ms against 1.0 ms: 1.2
    ]
    verdict = evaluate_cpu(target, rounds, cpu)
    assert verdict.ratios == pytest.approx((0.5, 2.0, 1.2))
    assert verdict.ratio == pytest.approx(1.2)
    assert not verdict.met
    assert evaluate_cpu(target, rounds[:1], cpu[:1]).met
    assert evaluate_cpu(
        target, [{"a": run(100), "b": run(100)}], [{"a": {"a": 8.0}, "b": {"b1": 10.0, "b2": 0.0}}]
    ).met


def test_edge_cpu_rounds_with_errors_an_unsampled_process_or_no_cpu_do_not_count() -> None:
    target = CpuTarget("t", "a", ("a",), "b", ("b1", "b2"), 0.8)
    rounds = [
        {"a": run(100, errors=2), "b": run(100)},
        {"a": run(100), "b": run(100)},
        {"a": run(100), "b": run(100)},
        {"a": run(100)},
    ]
    cpu = [
        {"a": {"a": 1.0}, "b": {"b1": 5.0, "b2": 5.0}},
        {"a": {"a": 1.0}, "b": {"b1": 5.0}},  # b2 not sampled: it would count as free
        {"a": {"a": 1.0}, "b": {"b1": 0.0, "b2": 0.0}},
        {"a": {"a": 1.0}},
    ]
    verdict = evaluate_cpu(target, rounds, cpu)
    assert verdict.ratios == ()
    assert not verdict.met


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_table_is_markdown_with_aligned_columns() -> None:
    text = table(["name", "req/s"], [["gateway", 338], ["floor", 963]])
    lines = text.splitlines()
    assert lines[0] == "| name    | req/s |"
    assert lines[1] == "|---------|-------|"
    assert lines[3] == "| floor   | 963   |"


def test_nginx_config_keeps_every_path_in_its_directory_and_checks_auth_on_one_server(tmp_path: Path) -> None:
    config = nginx.render(
        tmp_path, patient_port=4000, auth_port=4005, auth_request_port=5001, plain_port=5002
    )
    assert f"pid {tmp_path}/nginx.pid;" in config
    assert "daemon off;" in config
    assert config.count("auth_request /_validate;") == 1
    assert "proxy_pass http://auth/validate;" in config
    assert "listen 127.0.0.1:5001;" in config and "listen 127.0.0.1:5002;" in config
    assert nginx.command(tmp_path)[-2:] == ["-e", str(tmp_path / "error.log")]


@pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx is not installed (apt-get install -y nginx-light)"
)
def test_nginx_accepts_the_generated_config(tmp_path: Path) -> None:
    (tmp_path / "nginx.conf").write_text(
        nginx.render(tmp_path, patient_port=4000, auth_port=4005, auth_request_port=5001, plain_port=5002)
    )
    checked = subprocess.run([*nginx.command(tmp_path), "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
