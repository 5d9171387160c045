"""`python -m bench estimate`: calls, tokens, cost and wall time of a real PERSONA run (pure).

Calls per stage:
- answer: one per distinct prompt drawn. Each persona draws `train_draws` distinct prompts from
  the `train_prompts` pool and `heldout_draws` from the `heldout_prompts` pool, independently,
  so the expected number of distinct prompts drawn is
  `pool * (1 - (1 - draws / pool) ** personas)` for each pool.
- critique, revise: one per (persona, prompt) pair: `personas * (train_draws + heldout_draws)`.

Tokens per call are ASSUMPTIONS (override with `--stage-tokens STAGE=PROMPT:COMPLETION`):
answer 60 prompt / 350 completion (a short question, a full answer), critique 700 / 250
(persona description + question + answer, critique out), revise 1,000 / 250 (the same plus
the critique, revised answer out).

Wall time per stage = calls / rate, rate = min(concurrency / latency, RPM / 60,
TPM / 60 / tokens per call); the stages share the limits, so the total is the sum. TPM is
counted here with the expected completion; a provider that counts `max_tokens` instead
lowers the TPM-bound rate accordingly.
"""

from __future__ import annotations

import msgspec

from bench.measure import BATCH_DISCOUNT, ceiling, cost_usd, expected_distinct
from engine.prices import Price


class StageTokens(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    prompt_tokens: int
    completion_tokens: int


DEFAULT_STAGE_TOKENS: dict[str, StageTokens] = {
    "answer": StageTokens(60, 350),
    "critique": StageTokens(700, 250),
    "revise": StageTokens(1000, 250),
}
STAGES = tuple(DEFAULT_STAGE_TOKENS)


class EstimateInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str
    personas: int = 1586
    prompts_per_persona: int = 200
    heldout_per_persona: int = 50
    train_prompts: int = 3000
    heldout_prompts: int = 868
    stage_tokens: dict[str, StageTokens] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_STAGE_TOKENS)
    )
    concurrency: int = 64
    latency_ms: float = 4000.0  # ASSUMPTION: a 250-350-token completion at ~80 tokens/s
    rpm: float | None = None
    tpm: float | None = None


class StageEstimate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    stage: str
    calls: float
    prompt_tokens: float
    completion_tokens: float
    cost_usd: float
    batch_cost_usd: float
    rate_per_s: float
    binding_limit: str
    wall_s: float


class Estimate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    inputs: EstimateInput
    price: Price
    stages: list[StageEstimate]
    calls: float
    prompt_tokens: float
    completion_tokens: float
    cost_usd: float
    batch_cost_usd: float
    wall_s: float


class EstimateError(ValueError):
    """Inputs that describe no possible run (`field`, `detail`)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def stage_calls(inp: EstimateInput) -> dict[str, float]:
    """Expected calls per stage."""
    train_draws = inp.prompts_per_persona - inp.heldout_per_persona
    if train_draws < 0:
        raise EstimateError("heldout_per_persona", "more than prompts_per_persona")
    if train_draws > inp.train_prompts or inp.heldout_per_persona > inp.heldout_prompts:
        raise EstimateError("prompts_per_persona", "more draws than prompts in a pool")
    answers = expected_distinct(inp.train_prompts, train_draws, inp.personas)
    answers += expected_distinct(inp.heldout_prompts, inp.heldout_per_persona, inp.personas)
    pairs = float(inp.personas * inp.prompts_per_persona)
    return {"answer": answers, "critique": pairs, "revise": pairs}


def estimate(inp: EstimateInput, price: Price) -> Estimate:
    missing = [s for s in STAGES if s not in inp.stage_tokens]
    if missing:
        raise EstimateError("stage_tokens", f"no token counts for {', '.join(missing)}")
    stages: list[StageEstimate] = []
    for stage, calls in stage_calls(inp).items():
        tokens = inp.stage_tokens[stage]
        prompt = calls * tokens.prompt_tokens
        completion = calls * tokens.completion_tokens
        per_call = tokens.prompt_tokens + tokens.completion_tokens
        limit = ceiling(inp.concurrency, inp.latency_ms / 1000.0, inp.rpm, inp.tpm, per_call)
        if limit is None:
            raise EstimateError("latency_ms", "must be > 0 when no RPM/TPM limit is given")
        cost = cost_usd(prompt, completion, price)
        stages.append(
            StageEstimate(
                stage,
                calls,
                prompt,
                completion,
                cost,
                cost * BATCH_DISCOUNT,
                limit.per_s,
                limit.binding,
                calls / limit.per_s,
            )
        )
    return Estimate(
        inputs=inp,
        price=price,
        stages=stages,
        calls=sum(s.calls for s in stages),
        prompt_tokens=sum(s.prompt_tokens for s in stages),
        completion_tokens=sum(s.completion_tokens for s in stages),
        cost_usd=sum(s.cost_usd for s in stages),
        batch_cost_usd=sum(s.batch_cost_usd for s in stages),
        wall_s=sum(s.wall_s for s in stages),
    )


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    text = f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{days}d{text}" if days else text


def render_estimate(est: Estimate) -> str:
    inp = est.inputs
    limits = ", ".join(
        f"{name} {value:,.0f}" for name, value in (("RPM", inp.rpm), ("TPM", inp.tpm)) if value
    )
    lines = [
        f"model {inp.model}: ${est.price.input_per_mtok}/${est.price.output_per_mtok} per M "
        f"tokens in/out (as of {est.price.as_of}); Batch API = -50 %",
        f"{inp.personas:,} personas x {inp.prompts_per_persona} prompts "
        f"({inp.prompts_per_persona - inp.heldout_per_persona} of {inp.train_prompts:,} train, "
        f"{inp.heldout_per_persona} of {inp.heldout_prompts:,} held-out)",
        f"limits: concurrency {inp.concurrency}, latency {inp.latency_ms:g} ms"
        + (f", {limits}" if limits else " (no RPM/TPM limit given)"),
        "",
        f"{'stage':<9}{'calls':>12}{'prompt tok':>16}{'compl. tok':>16}{'cost $':>12}"
        f"{'batch $':>12}{'rate/s':>10}  {'bound by':<12}{'wall':>12}",
    ]
    rows = [(s.stage, s) for s in est.stages]
    for name, s in rows:
        lines.append(
            f"{name:<9}{s.calls:>12,.0f}{s.prompt_tokens:>16,.0f}{s.completion_tokens:>16,.0f}"
            f"{s.cost_usd:>12,.2f}{s.batch_cost_usd:>12,.2f}{s.rate_per_s:>10,.1f}  "
            f"{s.binding_limit:<12}{format_duration(s.wall_s):>12}"
        )
    lines.append(
        f"{'total':<9}{est.calls:>12,.0f}{est.prompt_tokens:>16,.0f}{est.completion_tokens:>16,.0f}"
        f"{est.cost_usd:>12,.2f}{est.batch_cost_usd:>12,.2f}{'':>10}  {'':<12}"
        f"{format_duration(est.wall_s):>12}"
    )
    tokens = ", ".join(
        f"{k} {v.prompt_tokens}/{v.completion_tokens}" for k, v in inp.stage_tokens.items()
    )
    lines += ["", f"tokens per call (prompt/completion, assumed; --stage-tokens): {tokens}"]
    return "\n".join(lines)
