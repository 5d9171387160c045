"""The bench's metric computations on known inputs: percentiles, rates, ceilings, efficiency,
cost, the cost estimate, scenario flags and target checks; and reading the engine's outputs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import msgspec
import numpy as np
import pytest

from bench.collect import Context, Measured, SimCounts, build_metrics, read_engine_jobs
from bench.estimate import EstimateError, EstimateInput, StageTokens, estimate, stage_calls
from bench.measure import (
    BATCH_DISCOUNT,
    Ceiling,
    ceiling,
    cost_usd,
    efficiency,
    expected_distinct,
    percentile,
    pick_bin_s,
    rate_series,
    summarize,
)
from bench.prices import PriceTableError, UnknownModel, load_prices, price_for
from bench.procs import read_run_finished
from bench.report import BenchReport, HostInfo, RunMetrics, evaluate, render_markdown
from bench.runner import (
    ScenarioPending,
    check_supported,
    outage_s,
    with_bare_ratios,
    with_fault_free_ratios,
)
from bench.scenarios import (
    SCENARIOS,
    Overrides,
    Target,
    apply_overrides,
    engine_args,
    mean_latency_s,
    sim_args,
)
from engine.prices import Price

GPT_4O = Price(input_per_mtok=2.5, output_per_mtok=10.0)


# -- percentiles -------------------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert percentile([float(i) for i in range(1, 11)], 90) == pytest.approx(9.1)
    assert percentile([7.0], 99) == 7.0


def test_percentile_matches_numpy_linear_method() -> None:
    rng = random.Random(5)
    values = sorted(rng.lognormvariate(0.0, 1.0) for _ in range(1001))
    for q in (1, 50, 90, 99, 99.9):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match="within"):
        percentile([1.0], 101)


def test_summarize_gives_all_percentiles_or_none() -> None:
    assert summarize([]) is None
    p = summarize([4.0, 1.0, 3.0, 2.0, 100.0])
    assert p is not None
    assert (p.count, p.p50_ms, p.max_ms, p.mean_ms) == (5, 3.0, 100.0, 22.0)
    assert p.p90_ms == pytest.approx(61.6)  # rank 3.6 between 4 and 100
    assert p.p99_ms == pytest.approx(96.16)


# -- throughput over time ----------------------------------------------------------------------


def test_rate_series_counts_jobs_and_tokens_per_bin() -> None:
    points = rate_series([0.1, 0.2, 0.6, 1.4], [10, 20, 30, 40], 0.5)
    assert [p.t_s for p in points] == [0.0, 0.5, 1.0]
    assert [p.jobs_per_s for p in points] == [4.0, 2.0, 2.5]  # the last bin is 0.4 s wide
    assert [p.tokens_per_s for p in points] == [60.0, 60.0, 100.0]


def test_rate_series_without_tokens_and_empty() -> None:
    assert rate_series([], None, 1.0) == []
    (point,) = rate_series([0.0, 0.0], None, 1.0)
    assert point.tokens_per_s is None
    assert point.jobs_per_s == 2.0  # a zero-width run is divided by the bin width
    with pytest.raises(ValueError, match="length"):
        rate_series([1.0], [1, 2], 1.0)


def test_pick_bin_s_gives_at_most_fifty_round_bins() -> None:
    assert pick_bin_s(1.0) == 0.05
    assert pick_bin_s(10.0) == 0.2
    assert pick_bin_s(60.0) == 2.0
    assert pick_bin_s(200.0) == 5.0
    assert pick_bin_s(1e6) == 300.0


# -- ceiling, efficiency -----------------------------------------------------------------------


def test_ceiling_is_the_smallest_limit() -> None:
    assert ceiling(64, 0.2) == Ceiling(320.0, "concurrency")
    assert ceiling(64, 0.05, rpm=6000) == Ceiling(100.0, "rpm")
    limited = ceiling(64, 0.05, rpm=60_000, tpm=600_000, tokens_per_job=200)
    assert limited == Ceiling(50.0, "tpm")  # 10,000 tokens/s / 200 per job


def test_ceiling_is_none_when_nothing_bounds_the_rate() -> None:
    assert ceiling(64, 0.0) is None
    assert ceiling(64, 0.0, tpm=1000) is None  # TPM needs the tokens per job


def test_efficiency_is_rate_over_ceiling() -> None:
    assert efficiency(304.0, Ceiling(320.0, "concurrency")) == pytest.approx(0.95)
    assert efficiency(304.0, None) is None


def test_mean_latency_of_the_simulator_distributions() -> None:
    fixed = SCENARIOS["latency-fixed"].sim
    assert mean_latency_s(fixed) == 0.2
    lognormal = SCENARIOS["latency"].sim  # median 500 ms, sigma 0.7
    assert mean_latency_s(lognormal) == pytest.approx(0.5 * math.exp(0.245))


# -- cost --------------------------------------------------------------------------------------


def test_cost_prices_tokens_per_million() -> None:
    assert cost_usd(1_000_000, 1_000_000, GPT_4O) == pytest.approx(12.5)
    assert cost_usd(200_000, 50_000, GPT_4O) == pytest.approx(0.5 + 0.5)
    assert cost_usd(1_000_000, 0, GPT_4O) * BATCH_DISCOUNT == pytest.approx(1.25)


def test_price_table_covers_the_promised_models() -> None:
    table = load_prices()
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4-turbo",
                  "gpt-3.5-turbo", "sim-small"):  # fmt: skip
        price = table[model]
        assert price.input_per_mtok > 0
        assert price.output_per_mtok > price.input_per_mtok
        assert price.source
        assert price.as_of
    mini, sim = table["gpt-4o-mini"], table["sim-small"]
    assert (sim.input_per_mtok, sim.output_per_mtok) == (mini.input_per_mtok, mini.output_per_mtok)


def test_user_price_file_overrides_and_adds(tmp_path: Path) -> None:
    user = tmp_path / "prices.json"
    user.write_text(json.dumps({
        "gpt-4o": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
        "my-model": {"input_per_mtok": 3.0, "output_per_mtok": 4.0, "source": "contract"},
    }))  # fmt: skip
    table = load_prices(user)
    assert price_for(table, "gpt-4o").input_per_mtok == 1.0
    assert price_for(table, "my-model").output_per_mtok == 4.0
    assert price_for(table, "gpt-4.1").input_per_mtok == 2.0  # untouched default


def test_bad_price_file_and_unknown_model_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"gpt-4o": {"input_per_mtok": "cheap"}}))
    with pytest.raises(PriceTableError) as caught:
        load_prices(bad)
    assert caught.value.path == bad
    with pytest.raises(PriceTableError):
        load_prices(tmp_path / "missing.json")
    with pytest.raises(UnknownModel) as unknown:
        price_for(load_prices(), "gpt-9")
    assert "gpt-4o" in unknown.value.known


# -- the estimate ------------------------------------------------------------------------------


def test_expected_distinct_draws() -> None:
    assert expected_distinct(10, 5, 1) == 5.0
    assert expected_distinct(10, 5, 2) == pytest.approx(7.5)
    assert expected_distinct(3000, 150, 1586) == pytest.approx(3000.0)
    assert expected_distinct(100, 10, 10) == pytest.approx(100 * (1 - 0.9**10))
    assert expected_distinct(10, 0, 5) == 0.0
    with pytest.raises(ValueError, match="cannot draw"):
        expected_distinct(5, 6, 1)


def test_stage_calls_for_the_paper_setup() -> None:
    calls = stage_calls(EstimateInput(model="gpt-4o"))
    assert calls["answer"] == pytest.approx(3868.0)  # every prompt of both pools is drawn
    assert calls["critique"] == calls["revise"] == 1586 * 200
    few = stage_calls(EstimateInput(model="gpt-4o", personas=1, prompts_per_persona=10,
                                    heldout_per_persona=2))  # fmt: skip
    assert few["answer"] == pytest.approx(10.0)


def test_estimate_tokens_cost_and_wall_time() -> None:
    inp = EstimateInput(model="gpt-4o", concurrency=64, latency_ms=4000.0, rpm=600.0)
    est = estimate(inp, GPT_4O)
    answer, critique, _ = est.stages
    assert answer.prompt_tokens == pytest.approx(3868 * 60)
    assert critique.completion_tokens == 317_200 * 250
    prompt = 3868 * 60 + 317_200 * 700 + 317_200 * 1000
    completion = 3868 * 350 + 2 * 317_200 * 250
    assert est.prompt_tokens == pytest.approx(prompt)
    assert est.cost_usd == pytest.approx((prompt * 2.5 + completion * 10.0) / 1e6)
    assert est.batch_cost_usd == pytest.approx(est.cost_usd / 2)
    assert (critique.rate_per_s, critique.binding_limit) == (10.0, "rpm")  # 600 RPM < 16/s
    assert est.wall_s == pytest.approx((3868 + 2 * 317_200) / 10.0)


def test_estimate_tpm_bound_and_bad_inputs() -> None:
    tokens = {"answer": StageTokens(50, 50), "critique": StageTokens(900, 100),
              "revise": StageTokens(900, 100)}  # fmt: skip
    inp = EstimateInput(model="m", stage_tokens=tokens, tpm=60_000.0, latency_ms=1.0)
    answer, critique, _ = estimate(inp, GPT_4O).stages
    assert (answer.rate_per_s, answer.binding_limit) == (10.0, "tpm")  # 1,000 tok/s / 100
    assert critique.rate_per_s == 1.0
    with pytest.raises(EstimateError) as caught:
        stage_calls(EstimateInput(model="m", prompts_per_persona=10, heldout_per_persona=20))
    assert caught.value.field == "heldout_per_persona"
    with pytest.raises(EstimateError):
        estimate(EstimateInput(model="m", latency_ms=0.0), GPT_4O)


# -- scenarios and checks ----------------------------------------------------------------------


def test_scenario_flags_for_both_processes() -> None:
    assert sim_args(SCENARIOS["latency-fixed"]) == ["--latency-ms", "200.0", "--seed", "0"]
    limited = SCENARIOS["rate-limited"]
    assert engine_args(limited) == ["--rpm", "6000", "--tpm", "1500000", "--seed", "0"]
    assert "--rpm" in sim_args(limited)


def test_the_outage_scenario_and_its_fault_free_twin() -> None:
    outage = SCENARIOS["outage"]
    faulty = sim_args(outage, "engine")
    assert faulty == [
        "--latency-ms", "100.0", "--error-rate", "0.05", "--outage-for-s", "20.0",
        "--outage-after-requests", "20000", "--seed", "0",
    ]  # fmt: skip
    assert sim_args(outage, "engine-fault-free") == ["--latency-ms", "100.0", "--seed", "0"]
    smaller = apply_overrides(outage, Overrides(jobs=5000))
    assert "2500" in sim_args(smaller, "engine")  # mid-run whatever --jobs says
    timed = apply_overrides(outage, Overrides(sim={"outage_after_s": 3.0}))
    assert "--outage-after-requests" not in sim_args(timed, "engine")  # the flag given wins
    assert "--outage-after-s" in sim_args(timed, "engine")


def test_a_faulty_run_is_timed_against_the_fault_free_one() -> None:
    clean = _run("engine-fault-free", 64, 1.0, elapsed_s=60.0)
    runs = with_fault_free_ratios([clean, _run("engine", 64, 1.0, elapsed_s=86.0)], 20.0)
    assert runs[0].time_vs_fault_free is None
    assert runs[1].time_vs_fault_free == 1.1  # (86 - 20) / 60: exactly the allowance
    target = SCENARIOS["outage"].targets[-1]
    assert [c.status for c in evaluate((target,), runs)] == ["met"]
    late = with_fault_free_ratios([clean, _run("engine", 64, 1.0, elapsed_s=86.1)], 20.0)
    assert [c.status for c in evaluate((target,), late)] == ["not met"]
    alone = with_fault_free_ratios([_run("engine", 64, 1.0)], 20.0)
    assert alone[0].time_vs_fault_free is None
    # only an outage that starts is subtracted
    assert outage_s(SCENARIOS["outage"]) == 20.0
    never = apply_overrides(SCENARIOS["custom"], Overrides(sim={"outage_for_s": 5.0}))
    assert outage_s(never) == 0.0
    timed = apply_overrides(never, Overrides(sim={"outage_after_s": 1.0}))
    assert outage_s(timed) == 5.0


def test_overrides_replace_only_what_is_given() -> None:
    base = SCENARIOS["latency"]
    over = Overrides(jobs=50, concurrency=(8, 16), seed=3, sim={"latency_ms": 10.0, "rpm": None})
    scenario = apply_overrides(base, over)
    assert (scenario.jobs, scenario.concurrency, scenario.seed) == (50, (8, 16), 3)
    assert scenario.sim.latency_ms == 10.0
    assert scenario.sim.latency_dist == "lognormal"  # kept
    assert scenario.variants == base.variants
    with pytest.raises(msgspec.ValidationError):
        apply_overrides(base, Overrides(sim={"latency_dist": "uniform"}))


def test_scenario_is_pending_until_the_engine_has_its_flags() -> None:
    without_limits = frozenset({"--requests", "--run-dir", "--seed", "--personas"})
    with pytest.raises(ScenarioPending) as caught:
        check_supported(SCENARIOS["rate-limited"], without_limits)
    assert caught.value.missing == ["--rpm", "--tpm"]
    check_supported(SCENARIOS["rate-limited"], without_limits | {"--rpm", "--tpm"})
    persona = apply_overrides(SCENARIOS["persona-full"], Overrides(jobs=800))
    with pytest.raises(ScenarioPending) as persona_pending:
        check_supported(persona, frozenset({"--seed"}))
    assert persona_pending.value.missing == ["--personas"]
    with pytest.raises(ScenarioPending):
        check_supported(SCENARIOS["custom"], frozenset())  # every engine run is given --seed
    bare_only = apply_overrides(SCENARIOS["custom"], Overrides(variants=("bare",)))
    check_supported(bare_only, frozenset())  # the bare client needs no engine flag


def test_every_target_names_a_run_metric() -> None:
    fields = set(RunMetrics.__struct_fields__)
    for scenario in SCENARIOS.values():
        for target in scenario.targets:
            assert target.metric in fields, (scenario.name, target.metric)


def _run(variant: str, concurrency: int, rate: float, **extra: object) -> RunMetrics:
    fields: dict[str, object] = {
        "variant": variant, "concurrency": concurrency, "jobs": 100, "done": 100, "failed": 0,
        "elapsed_s": 1.0, "process_wall_s": 2.0, "rate_per_s": rate, "tokens_per_s": 1.0,
        "cpu_s": 1.0, "cpu_ms_per_job": 10.0, "peak_rss_mb": 50.0, "api_latency": None,
        "e2e_latency": None, "retries": 0, "http_429": 0, "rate_429_fraction": 0.0,
        "paid_calls": 100, "duplicate_paid_calls": 0, "prompt_tokens": 1, "completion_tokens": 1,
        "cost_usd": 0.0, "batch_cost_usd": 0.0, "by_status": {}, "bin_s": 1.0, "series": [],
    }  # fmt: skip
    return msgspec.convert(fields | extra, RunMetrics)


def test_ratios_to_the_bare_client_of_the_same_concurrency() -> None:
    runs = with_bare_ratios([_run("bare", 64, 400.0), _run("engine", 64, 300.0)])
    assert [r.rate_vs_bare for r in runs] == [1.0, 0.75]
    alone = with_bare_ratios([_run("engine", 64, 300.0)])
    assert alone[0].rate_vs_bare is None


def test_targets_are_met_not_met_or_pending() -> None:
    half = Target("half of bare", "rate_vs_bare", ">=", 0.5)
    rss = Target("small", "peak_rss_mb", "<", 300.0)
    sdk = Target("sdk", "rate_per_s", ">", 0.0, variant="engine-sdk")
    runs = [_run("engine", 64, 1.0, rate_vs_bare=0.4), _run("engine", 256, 1.0, rate_vs_bare=0.6)]
    runs.append(_run("engine", 512, 1.0))  # no bare run: no ratio
    checks = evaluate((half, rss, sdk), runs)
    by_conc = {(c.label, c.concurrency): c.status for c in checks}
    assert by_conc[("half of bare", 64)] == "not met"
    assert by_conc[("half of bare", 256)] == "met"
    assert by_conc[("half of bare", 512)] == "pending"
    assert by_conc[("small", 64)] == "met"
    assert by_conc[("sdk", None)] == "pending"


def test_checks_use_the_median_of_repeated_rounds() -> None:
    half = Target("half of bare", "rate_vs_bare", ">=", 0.5)
    rounds = [
        _run("engine", 64, 1.0, rate_vs_bare=v, round=i) for i, v in enumerate((0.4, 0.7, 0.6))
    ]
    (check,) = evaluate((half,), rounds)
    assert (check.measured, check.status) == (0.6, "met")
    assert check.note == "median of 3: 0.4, 0.7, 0.6"
    second = _run("engine", 64, 1.0, rate_vs_bare=0.45, round=1)
    (low,) = evaluate((half,), [rounds[0], second])
    assert (low.measured, low.status) == (0.425, "not met")


def test_markdown_report_shows_runs_and_checks() -> None:
    scenario = SCENARIOS["overhead"]
    runs = with_bare_ratios([_run("bare", 64, 400.0), _run("engine", 64, 100.0)])
    report = BenchReport(
        scenario=scenario, command="python -m bench run overhead", started_at="t0",
        finished_at="t1", host=HostInfo(2, 0.5, "3.11", "linux"), price_model="sim-small",
        price=GPT_4O, runs=runs, checks=evaluate(scenario.targets, runs),
    )  # fmt: skip
    text = render_markdown(report)
    assert "`python -m bench run overhead`" in text
    assert "| engine | 64 | 100 | 0 | 100.0 | 0.25 |" in text
    assert "| not met |" in text


# -- from raw inputs to metrics ----------------------------------------------------------------


def test_build_metrics_from_known_inputs() -> None:
    measured = Measured("engine", 64, 100, 100, 0, 7, 2.0, 3.0, 0.5, 80.0, startup_cpu_s=0.1)
    sim = SimCounts(
        requests_received=110, completions_served=101, duplicate_completions=1,
        by_status={"200": 101, "429": 9}, prompt_tokens=10_100, completion_tokens=5_050,
    )  # fmt: skip
    ctx = Context(mean_latency_s=0.2, rpm=1200, tpm=None, max_tokens=64, price=GPT_4O)
    m = build_metrics(measured, sim, ctx, ([10.0, 20.0], [10.0, 30.0]), ([0.5, 1.5], [5, 5]))
    assert m.rate_per_s == 50.0
    assert (m.ceiling_per_s, m.binding_limit, m.efficiency) == (20.0, "rpm", 2.5)
    assert m.http_429 == 9
    assert m.rate_429_fraction == pytest.approx(9 / 110, abs=1e-6)
    assert (m.paid_calls, m.duplicate_paid_calls, m.retries) == (101, 1, 7)
    assert m.cost_usd == pytest.approx((10_100 * 2.5 + 5_050 * 10.0) / 1e6)
    assert m.batch_cost_usd == pytest.approx(m.cost_usd / 2)
    assert m.cpu_ms_per_job == 5.0
    assert m.cpu_ms_per_job_net == pytest.approx(4.0)  # (0.5 - 0.1) s / 100 jobs
    assert m.tokens_per_s == pytest.approx(15_150 / 2.0)
    assert m.api_latency is not None
    assert m.api_latency.p50_ms == 15.0
    assert m.e2e_latency is not None
    assert m.e2e_latency.max_ms == 30.0


def test_read_engine_outputs_and_summary(tmp_path: Path) -> None:
    meta = {"attempts": 3, "latency_ms": 12.5, "elapsed_ms": 2500.0, "finished_at": 1000.0,
            "prompt_tokens": 10, "completion_tokens": 5}  # fmt: skip
    ok = {"id": "b1", "custom_id": "a", "response": {"body": {"x": 1}}, "error": None,
          "engine": meta}  # fmt: skip
    failed = {"id": "b2", "custom_id": "b", "response": None, "error": {"code": "X"},
              "engine": {"attempts": 5, "elapsed_ms": 100.0, "finished_at": 1001.0}}  # fmt: skip
    (tmp_path / "results.jsonl").write_text(json.dumps(ok) + "\n")
    (tmp_path / "errors.jsonl").write_text(json.dumps(failed) + "\n")
    jobs = read_engine_jobs(tmp_path)
    assert (jobs.done, jobs.failed, jobs.retries) == (1, 1, 6)
    assert jobs.api_ms == [12.5]
    assert jobs.e2e_ms == [2500.0, 100.0]
    assert jobs.started_at == [997.5, 1000.9]
    assert jobs.tokens == [15, 0]
    log = tmp_path / "engine.stderr.log"
    summary = {"event": "run.finished", "elapsed_s": 2.0, "cpu_s": 1.5, "peak_rss_mb": 70.0}
    log.write_text("not json\n" + json.dumps({"event": "progress"}) + "\n" + json.dumps(summary))
    finished = read_run_finished(log)
    assert finished is not None
    assert (finished.elapsed_s, finished.cpu_s, finished.peak_rss_mb) == (2.0, 1.5, 70.0)
    log.write_text(json.dumps({"event": "run.interrupted", "elapsed_s": 1.0}) + "\n")
    assert read_run_finished(log) is None
