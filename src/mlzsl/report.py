"""``mlzsl report``: one self-contained HTML page of a run folder, with its pictures beside it.

Read from the run folder (``mlzsl train --out``): ``history.csv`` (loss and ZSL/GZSL mAP per
epoch), ``metrics.json`` (best epoch and its metrics), ``per_label[_<convention>]_{zsl,gzsl}.csv``
(per-label AP), ``scores.npz`` (the test scores of the final evaluation, written by training and
``mlzsl eval --per-label``; needed only for the precision–recall curves) and ``best.pt`` (the
model card, :func:`mlzsl.inference.card.model_card`; the test-set variant line). Nothing is
recomputed with a model.

Written: ``report.html`` (every picture embedded as base64, so the file opens offline and can be
mailed alone) and beside it ``report_curves.png``, ``report_ap_zsl.png``, ``report_ap_gzsl.png``,
``report_pr.png`` and, with a reference table, ``report_reference.png``. A picture whose input is
missing is left out and the page says why.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlzsl.errors import DataError
from mlzsl.files import atomic_path, atomic_write, check_replace, check_writable, has_text

__all__ = ["Report", "precision_recall_curve", "write_report"]

N_PR = 5  # best and worst unseen labels drawn as precision–recall curves
N_NAMED = 10  # labels named per direction against a reference
MAX_TICK_LABELS = 60  # per-label bar charts name their labels up to this many


@dataclass
class Report:
    """What :func:`write_report` wrote.

    Attributes:
        html: the HTML file.
        pictures: the PNGs written beside it, in page order.
        missing: one line per section left out, saying which input was missing.
    """

    html: Path
    pictures: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def precision_recall_curve(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision and recall of one label at every distinct score threshold, highest first.

    Only annotated images (``targets`` ±1) take part, as in the per-label AP of the protocol
    (docs/design.md, "Per-label AP and mAP"); equal scores form one step.

    Args:
        targets: [N] in {+1, −1, 0}.
        scores: [N] finite scores.

    Returns:
        (precision, recall), each [T] for T distinct thresholds; empty when no image is positive.
    """
    keep = targets != 0
    y, s = targets[keep] > 0, scores[keep].astype(np.float64)
    if not y.any():
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    predicted = last + 1
    return tp / predicted, tp / y.sum()


REPORT_MARK = b"<title>mlzsl report:"
"""What an HTML file ``--out`` may replace without ``force`` holds near its start."""


def write_report(
    run_dir: str | Path,
    *,
    reference: str | Path | None = None,
    out: str | Path | None = None,
    force: bool = False,
) -> Report:
    """Write the report of ``run_dir`` (see the module docstring).

    Args:
        run_dir: a folder written by ``mlzsl train`` (or the demo's ``runs/ml2p``).
        reference: a published per-class table (``mlzsl compare``'s layouts) to compare the run's
            per-label AP with.
        out: the HTML file (default ``run_dir/report.html``); the PNGs go beside it.
        force: replace ``out`` even when it is not an mlzsl report (a checkpoint, a store).

    Raises:
        DataError: ``run_dir`` is not a run folder, the reference cannot be read, ``out`` is a
            folder or (without ``force``) a file of another kind, or it cannot be written.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: not a folder")
    if not (run_dir / "history.csv").is_file() and not (run_dir / "metrics.json").is_file():
        raise DataError(f"{run_dir}: not a run folder (no history.csv or metrics.json)")
    html_path = Path(out) if out is not None else run_dir / "report.html"
    check_replace(html_path, what="mlzsl report", own=has_text(REPORT_MARK), force=force)
    check_writable(html_path.parent, "report")
    stem = html_path.with_suffix("")
    report = Report(html_path)
    metrics = _read_json(run_dir / "metrics.json")
    convention = metrics.get("selected_by")
    card = _card(run_dir / "best.pt")
    sections: list[str] = [_header(run_dir, card, metrics)]

    history = _read_history(run_dir / "history.csv")
    if history:
        png = Path(f"{stem}_curves.png")
        _plot_curves(history, convention, metrics.get("best_epoch"), png)
        sections.append(_figure("Training", png, report))
    else:
        report.missing.append("training curves: no history.csv")

    per_label = f"per_label_{convention}" if convention else "per_label"
    zsl = _read_per_label(run_dir / f"{per_label}_zsl.csv")
    gzsl = _read_per_label(run_dir / f"{per_label}_gzsl.csv")
    if zsl is not None:
        png = Path(f"{stem}_ap_zsl.png")
        _plot_ap(zsl, set(zsl[0]), png, "ZSL: per-label AP of the unseen labels")
        sections.append(_figure("Per-label AP, ZSL", png, report))
    else:
        report.missing.append(f"ZSL per-label AP: no {per_label}_zsl.csv")
    if gzsl is not None:
        png = Path(f"{stem}_ap_gzsl.png")
        unseen = set(zsl[0]) if zsl is not None else set()
        _plot_ap(gzsl, unseen, png, "GZSL: per-label AP, seen and unseen labels ranked together")
        sections.append(_figure("Per-label AP, GZSL", png, report))
    else:
        report.missing.append(f"GZSL per-label AP: no {per_label}_gzsl.csv")

    scores = run_dir / "scores.npz"
    if scores.is_file():
        png = Path(f"{stem}_pr.png")
        if _plot_pr(scores, png):
            sections.append(_figure("Precision–recall, best and worst unseen labels", png, report))
        else:
            report.missing.append("precision–recall curves: no unseen label has a positive")
    else:
        report.missing.append("precision–recall curves: no scores.npz (mlzsl eval --per-label)")

    if reference is not None:
        sections.append(_reference(run_dir, per_label, Path(reference), stem, report))
    if report.missing:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in report.missing)
        sections.append(f"<h2>Left out</h2><ul>{items}</ul>")
    if card is not None:
        from mlzsl.inference.card import card_text

        sections.append(f"<h2>Model card</h2><pre>{html.escape(card_text(card))}</pre>")
    title = f"mlzsl report: {html.escape(run_dir.resolve().name)}"
    page = _PAGE.format(title=title, body="\n".join(sections))
    with atomic_write(html_path, what="report") as f:
        f.write(page)
    return report


# ----------------------------------------------------------------------------- reading


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not readable JSON ({e})") from None
    return value if isinstance(value, dict) else {}


def _card(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    from mlzsl.inference.card import model_card
    from mlzsl.inference.checkpoint import load_checkpoint

    return model_card(load_checkpoint(path), path=path)


def _read_history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: _float(v) for k, v in row.items() if k})
    return rows


def _float(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _read_per_label(path: Path) -> tuple[list[str], np.ndarray] | None:
    """(names, AP as fractions) of a ``per_label_*.csv``, or ``None`` when absent."""
    if not path.is_file():
        return None
    from mlzsl.compare import read_per_label_table

    table = read_per_label_table(path)
    names = list(table.names or [f"#{i}" for i in range(len(table))])
    return names, np.asarray(table.ap, dtype=np.float64)


# ----------------------------------------------------------------------------- pictures


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    plt = _pyplot()
    fig.tight_layout()
    try:
        with atomic_path(path, what="picture") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)


def _plot_curves(
    history: list[dict[str, float]], convention: str | None, best: Any, path: Path
) -> None:
    """Loss (left) and ZSL / GZSL mAP (right) per epoch; the best epoch marked."""
    plt = _pyplot()
    prefix = f"{convention}." if convention else ""
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(epochs, [row.get("loss", math.nan) for row in history], marker="o", color="C0")
    left.set(xlabel="epoch", ylabel="training loss", title="loss")
    for split, colour in (("zsl", "C1"), ("gzsl", "C2")):
        pairs = [
            (e, row[f"{prefix}{split}.mAP"])
            for e, row in zip(epochs, history, strict=True)
            if math.isfinite(row.get(f"{prefix}{split}.mAP", math.nan))
        ]
        if pairs:
            x, y = zip(*pairs, strict=True)
            right.plot(x, y, marker="o", color=colour, label=f"{split.upper()} mAP")
    if isinstance(best, (int, float)) and best > 0:
        for ax in (left, right):
            ax.axvline(best, color="grey", linestyle="--", linewidth=1)
        right.annotate(
            f"best epoch {int(best)}",
            (best, 0.02),
            xycoords=("data", "axes fraction"),
            fontsize=8,
            ha="right",
            rotation=90,
        )
    right.set(xlabel="epoch", ylabel="mAP (%)", title="test mAP per epoch")
    if right.lines:
        right.legend(loc="best")
    _save(fig, path)


def _plot_ap(table: tuple[list[str], np.ndarray], unseen: set[str], path: Path, title: str) -> None:
    """Per-label AP bars, highest first; unseen labels orange, seen labels blue."""
    plt = _pyplot()
    names, ap = table
    order = np.argsort(-ap, kind="stable")
    values = 100 * ap[order]
    is_unseen = np.array([names[i] in unseen for i in order], dtype=bool)
    n = len(values)
    fig, ax = plt.subplots(figsize=(min(max(7, 0.16 * n + 2), 11), 4.2))
    colours = np.where(is_unseen, "C1", "C0")
    ax.bar(np.arange(n), values, width=0.85 if n <= MAX_TICK_LABELS else 1.0, color=colours)
    if n <= MAX_TICK_LABELS:
        ax.set_xticks(np.arange(n))
        ax.set_xticklabels([names[i] for i in order], rotation=90, fontsize=7)
    else:
        ax.set_xlabel(f"{n:,} labels, sorted by AP")
    seen_n = int((~is_unseen).sum())
    handles = []
    if is_unseen.any():
        mean = values[is_unseen].mean()
        handles.append(plt.Rectangle((0, 0), 1, 1, color="C1", label=f"unseen (mean {mean:.1f})"))
    if seen_n:
        mean = values[~is_unseen].mean()
        handles.append(plt.Rectangle((0, 0), 1, 1, color="C0", label=f"seen (mean {mean:.1f})"))
    ax.legend(handles=handles, loc="upper right")
    ax.set(ylabel="AP (%)", ylim=(0, 102), xlim=(-1, n), title=f"{title}; mAP {values.mean():.1f}")
    _save(fig, path)


def _plot_pr(scores_path: Path, path: Path) -> bool:
    """PR curves of the N_PR best and N_PR worst unseen labels by AP; False if none drawable."""
    from mlzsl.metrics import average_precision_per_label

    plt = _pyplot()
    try:
        with np.load(scores_path, allow_pickle=False) as data:
            scores = data["scores"].astype(np.float32)
            targets, names, seen = data["targets"], list(data["labels"]), data["seen"]
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{scores_path}: not a readable scores file ({e})") from None
    unseen = np.flatnonzero(~seen.astype(bool))
    unseen = np.array([c for c in unseen if (targets[:, c] > 0).any()], dtype=np.int64)
    if len(unseen) == 0:
        return False
    ap = average_precision_per_label(targets[:, unseen], scores[:, unseen])
    order = np.argsort(-ap, kind="stable")
    best = order[:N_PR]
    worst = [i for i in order[::-1][:N_PR] if i not in set(best)][::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, chosen, title in ((left, best, "best"), (right, worst, "worst")):
        for k, i in enumerate(chosen):
            c = unseen[i]
            precision, recall = precision_recall_curve(targets[:, c], scores[:, c])
            ax.step(
                np.r_[0, recall],
                np.r_[precision[0], precision],
                where="pre",
                color=f"C{k}",
                label=f"{names[c]} (AP {100 * ap[i]:.1f})",
            )
        ax.set(
            xlabel="recall",
            xlim=(0, 1.01),
            ylim=(0, 1.02),
            title=f"{len(chosen)} {title} unseen labels (ZSL scores)",
        )
        ax.legend(loc="lower left" if title == "best" else "upper right", fontsize=8)
    left.set_ylabel("precision")
    _save(fig, path)
    return True


# ----------------------------------------------------------------------------- HTML


def _figure(title: str, png: Path, report: Report) -> str:
    report.pictures.append(png)
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (
        f"<h2>{html.escape(title)}</h2>"
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(title)}">'
        f"<figcaption>{html.escape(png.name)}</figcaption></figure>"
    )


def _header(run_dir: Path, card: dict[str, Any] | None, metrics: dict[str, Any]) -> str:
    """Title, the one-line model description and the ZSL / GZSL table with the test set."""
    parts = [f"<h1>{html.escape(run_dir.resolve().name)}</h1>"]
    if card is not None:
        line = f"{card['model']}"
        if card.get("paper"):
            line += f" — {card['paper']}"
        parts.append(f"<p class=muted>{html.escape(line)}</p>")
        parts.append(f"<p>Trained on {html.escape(card['trained_on'])}.</p>")
    by_convention = metrics.get("by_convention")
    tables = by_convention if isinstance(by_convention, dict) else {"": metrics}
    for convention, values in tables.items():
        if not isinstance(values, dict) or "zsl" not in values:
            continue
        columns = list(values["zsl"])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        rows = ""
        for split in ("zsl", "gzsl"):
            cells = "".join(f"<td>{_cell(values.get(split, {}).get(c))}</td>" for c in columns)
            rows += f"<tr><th>{split.upper()}</th>{cells}</tr>"
        caption = "ZSL / GZSL, percent"
        if convention:
            caption += f", {convention} convention"
            if convention == metrics.get("selected_by"):
                caption += " (selects the checkpoint)"
        if metrics.get("best_epoch"):
            caption += f", best epoch {metrics['best_epoch']}"
        parts.append(
            f"<table><caption>{html.escape(caption)}</caption>"
            f"<tr><th></th>{head}</tr>{rows}</table>"
        )
    test_set = card.get("test_set") if card else None
    if not test_set and card and card.get("store"):
        store = card["store"]
        test_set = (
            f"test set: {store['images']['test']} images of "
            f"{store.get('dataset') or store.get('file')} (no benchmark variant recorded)"
        )
    if test_set:
        parts.append(f"<p class=muted>{html.escape(str(test_set))}</p>")
    return "\n".join(parts)


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.1f}"
    return "–"


def _reference(run_dir: Path, per_label: str, reference: Path, stem: Path, report: Report) -> str:
    """Per-label differences against a published table, via :mod:`mlzsl.compare`."""
    from mlzsl.compare import compare_tables, plot_comparison, read_per_label_table

    ref = read_per_label_table(reference)
    best = None
    for split in ("zsl", "gzsl"):  # the run's table sharing the most labels with the reference
        path = run_dir / f"{per_label}_{split}.csv"
        if not path.is_file():
            continue
        try:
            comparison = compare_tables(read_per_label_table(path), ref)
        except DataError:
            continue
        if best is None or len(comparison.labels) > len(best.labels):
            best = comparison
    if best is None:
        report.missing.append(f"reference: no label of {reference.name} matches the run's tables")
        return ""
    png = Path(f"{stem}_reference.png")
    plot_comparison(best, png)
    summary = best.to_dict(top=N_NAMED)
    counts = (
        f"higher on {summary['higher']}, lower on {summary['lower']}, equal on {summary['equal']}"
    )
    rows = []
    for key, word in (("run_higher", "gains"), ("run_lower", "losses")):
        items = ", ".join(
            f"{html.escape(r['label'])} ({r['difference']:+.1f})" for r in summary[key]
        )
        rows.append(f"<p><b>Largest {word}</b>: {items or 'none'}</p>")
    text = (
        f"<p>{html.escape(best.run_path.name)} against {html.escape(reference.name)}: "
        f"{summary['n_common']} labels matched by {summary['matched_by']}; mean AP "
        f"{summary['mean_ap']['run']:.1f} vs {summary['mean_ap']['reference']:.1f} "
        f"({counts}; AP points).</p>"
    )
    return _figure("Against the reference", png, report) + text + "".join(rows)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; }}
h1 {{ margin-bottom: 0.2em; }} h2 {{ margin-top: 1.6em; border-bottom: 1px solid #ddd; }}
.muted {{ color: #666; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
caption {{ text-align: left; color: #666; padding-bottom: 0.3em; }}
th, td {{ border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }}
figure {{ margin: 0; }} img {{ max-width: 100%; height: auto; }}
figcaption {{ color: #888; font-size: 12px; }}
pre {{ background: #f6f6f6; padding: 0.8em; white-space: pre-wrap; font-size: 13px; }}
</style></head>
<body>
{body}
</body></html>
"""
