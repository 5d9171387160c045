"""`study report`: how far the raters agree with each other and with each model.

    python -m engine study report STUDY [--model NAME=RUN/verify/verify.labels.jsonl ...]
        [--out-dir STUDY] [--seed 0]

Written to the out dir: report.json, report.md, report.png. Fleiss' kappa among the raters
(items with two answers or more; "can't tell" is one of the three answers), with a percentile
bootstrap interval over items; per model, Cohen's kappa between the human majority and the
model's `verify` labels on the items they share, with `agree`'s paired bootstrap interval (the
paper reports 0.6-0.8); the human majority's preference rate for the revision; ties, "can't
tell" and unanswered items counted, never dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from engine.errors import InputError
from engine.evaluation import agree, stats
from engine.study import store, tally


class ModelAgreement(msgspec.Struct, frozen=True):
    name: str
    path: str
    common: int  # items with a human majority that the model labelled
    agreement: stats.Agreement


class StudyReport(msgspec.Struct, frozen=True):
    source: str
    personas: int
    questions: int
    raters_per_persona: int
    answers: int
    expected_answers: int
    raters_finished: int
    items: int
    majority: int
    unanimous: int
    ties: int
    cant_tell: int
    unanswered: int
    revision_preferred: stats.Estimate | None  # share of majority labels that are "revision"
    fleiss: tally.FleissKappa | None
    models: list[ModelAgreement]


def build(
    study: store.Study, answers: list[store.Answer], models: list[tuple[str, Path]], seed: int
) -> StudyReport:
    counted = tally.tally(study, answers)
    human = {m.id: m.label for m in counted.majority}
    compared = []
    for name, path in models:
        labels = agree.read_labels(path)
        common = [key for key in human if key in labels]
        if not common:
            why = "" if human else " (no item of the study has a majority yet)"
            raise InputError(path, None, f"no item in common with the study's majority labels{why}")
        result = stats.agreement([human[k] for k in common], [labels[k] for k in common], seed)
        compared.append(ModelAgreement(name, str(path), len(common), result))
    per_seat: dict[str, int] = {}
    for answer in answers:
        per_seat[answer.seat_id] = per_seat.get(answer.seat_id, 0) + 1
    s = study.settings
    revision = [int(m.label == tally.REVISION) for m in counted.majority]
    ties = sum(u.outcome == "tie" for u in counted.unresolved)
    return StudyReport(
        source=s.source,
        personas=s.personas,
        questions=s.questions,
        raters_per_persona=s.raters_per_persona,
        answers=len(answers),
        expected_answers=len(study.seats) * s.questions,
        raters_finished=sum(n == s.questions for n in per_seat.values()),
        items=sum(len(items) for items in study.items.values()),
        majority=len(counted.majority),
        unanimous=sum(m.unanimous for m in counted.majority),
        ties=ties,
        cant_tell=len(counted.unresolved) - ties,
        unanswered=len(counted.unanswered),
        revision_preferred=stats.accuracy(revision, seed) if revision else None,
        fleiss=tally.fleiss_kappa(list(counted.votes.values()), seed),
        models=compared,
    )


def render(r: StudyReport) -> str:
    lines = [
        "# Human verification study",
        "",
        f"- {r.personas} personas x {r.questions} questions x {r.raters_per_persona} raters, "
        f"pairs from `{r.source}`",
        f"- answers: {r.answers} of {r.expected_answers}; raters finished: {r.raters_finished}"
        f" of {r.personas * r.raters_per_persona}",
        f"- items: {r.items}; with a majority: {r.majority} ({r.unanimous} unanimous); "
        f"ties: {r.ties}; every rater said can't tell: {r.cant_tell}; "
        f"not answered yet: {r.unanswered}",
    ]
    if r.revision_preferred is not None:
        p = r.revision_preferred
        lines.append(
            f"- the human majority prefers the revision on {100 * p.value:.1f} % of items "
            f"[95 % bootstrap {100 * p.low:.1f}, {100 * p.high:.1f}]"
        )
    if r.fleiss is not None:
        f = r.fleiss
        lines.append(
            f"- Fleiss' kappa among raters: {f.kappa:.3f} [95 % bootstrap {f.low:.3f}, "
            f"{f.high:.3f}] over {f.items} items with two answers or more ({f.answers} answers; "
            "categories original, revision, can't tell)"
        )
    else:
        lines.append("- Fleiss' kappa among raters: no item has two answers yet")
    lines += ["", "## Each model against the human majority (Cohen's kappa)", ""]
    if not r.models:
        lines.append("No model labels given (`--model NAME=verify.labels.jsonl`).")
    else:
        lines += [
            "| model | items | agreement | kappa | 95 % bootstrap interval | labels file |",
            "|---|---:|---:|---:|---|---|",
        ]
        for m in r.models:
            a = m.agreement
            lines.append(
                f"| {m.name} | {m.common} | {a.agreement:.3f} | {a.kappa:.3f} | "
                f"[{a.kappa_low:.3f}, {a.kappa_high:.3f}] | `{m.path}` |"
            )
        lines += ["", "The paper reports Cohen's kappa of 0.6-0.8 between humans and models."]
    return "\n".join(lines) + "\n"


def _kappas(ax: Axes, r: StudyReport) -> None:
    names, values, lows, highs = [], [], [], []
    if r.fleiss is not None:
        names.append("raters (Fleiss)")
        values.append(r.fleiss.kappa)
        lows.append(r.fleiss.low)
        highs.append(r.fleiss.high)
    for m in r.models:
        names.append(f"{m.name} vs majority")
        values.append(m.agreement.kappa)
        lows.append(m.agreement.kappa_low)
        highs.append(m.agreement.kappa_high)
    if not names:
        ax.text(0.5, 0.5, "no item has two answers yet", ha="center", transform=ax.transAxes)
    ys = list(range(len(names)))
    errors = [[v - lo for v, lo in zip(values, lows, strict=True)],
              [hi - v for v, hi in zip(values, highs, strict=True)]]  # fmt: skip
    colours = ["C1" if n.startswith("raters") else "C0" for n in names]
    ax.barh(ys, values, xerr=errors, capsize=5, color=colours)
    ax.scatter(values, ys, color="black", s=16, zorder=3)  # a kappa of 0 has no bar to see
    ax.set_yticks(ys, names)
    ax.invert_yaxis()
    ax.axvspan(0.6, 0.8, color="C2", alpha=0.15, label="paper, models vs humans: 0.6-0.8")
    ax.set_xlim(-1, 1)
    ax.set_xlabel("kappa (95 % bootstrap interval)")
    ax.set_title("agreement")
    ax.legend(loc="lower left")


def _outcomes(ax: Axes, r: StudyReport) -> None:
    names = ["unanimous", "split majority", "tie", "can't tell", "unanswered"]
    counts = [r.unanimous, r.majority - r.unanimous, r.ties, r.cant_tell, r.unanswered]
    ax.bar(range(len(names)), counts, color=["C2", "C0", "C3", "C7", "C8"])
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylabel("items")
    ax.set_title(f"outcome per item ({r.items} items)")


def write(r: StudyReport, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"report.{ext}" for ext in ("json", "md", "png")]
    paths[0].write_bytes(msgspec.json.format(msgspec.json.encode(r)))
    paths[1].write_text(render(r))
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    kappas, outcomes = figure.subplots(1, 2, width_ratios=[3, 2])
    _kappas(kappas, r)
    _outcomes(outcomes, r)
    figure.suptitle(
        f"Human verification study: {r.answers} of {r.expected_answers} answers, "
        f"{r.personas} personas x {r.questions} questions x {r.raters_per_persona} raters"
    )
    figure.savefig(paths[2], dpi=100)
    return paths
