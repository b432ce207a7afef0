"""Output helpers shared by the subcommands: tables and ``--json``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any


def print_json(obj: Any) -> None:
    """One JSON object on stdout (NaN written as null)."""
    print(json.dumps(_clean(obj), sort_keys=False))


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; floats with one decimal (metrics are in percent)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "—" if math.isnan(v) else f"{v:.1f}"
        return str(v)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in text:
        lines.append(
            "  ".join(
                v.rjust(w) if i else v.ljust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def results_table(
    results: Mapping[str, Mapping[str, Mapping[str, float]]], ks: Sequence[int]
) -> str:
    """Rows of models, columns of ZSL and GZSL mAP and F1@K (percent)."""
    headers = ["model"]
    for split in ("zsl", "gzsl"):
        headers += [f"{split.upper()} mAP"] + [f"{split.upper()} F1@{k}" for k in ks]
    rows = []
    for name, res in results.items():
        row: list[Any] = [name]
        for split in ("zsl", "gzsl"):
            row += [res[split]["mAP"]] + [res[split][f"F1@{k}"] for k in ks]
        rows.append(row)
    return format_table(headers, rows)
