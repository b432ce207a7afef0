"""Per-label AP of a run against a published per-class table: differences, means and a plot.

Two CSV layouts are read, told apart by their header:

- ours, from :meth:`mlzsl.protocol.SplitResult.write_csv`: ``label,ap,n_positive``;
- the per-class files of the official (ML)²P and LESA releases, written by pandas: an unnamed
  index column, then ``classes,F1_3,P_3,R_3,F1_5,P_5,R_5,ap`` for ZSL (the overall P/R/F1@K
  repeated on every row) or ``,F1_3,...,ap`` / ``,g_F1_3,...,aP`` with empty metric cells and no
  class names for GZSL.

AP is a fraction in every layout. A table without names is matched to the other by row
position. The releases' GZSL files do not share one row order: (ML)²P's lists the 925 seen tags
then the 81 concepts (the order of :func:`mlzsl.datasets.vocab.nus_label_set`, so it lines up with
our own ``per_label_gzsl.csv``), LESA's lists the 81 concepts first, then the 925 seen tags
(found by matching its rows to its ZSL file's AP, equal to 2e-6). Name LESA's rows with a labels
file in that order.

Everything is a fraction inside; :meth:`Comparison.to_dict` reports percent, as the CLI does.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlzsl.errors import ConfigError, DataError
from mlzsl.labels import LabelSet, read_vocabulary

NAME_COLUMNS = ("label", "classes", "class", "name")
"""Header names (case-insensitive) of the column that names the labels, in order of preference."""

AP_COLUMN = "ap"
"""Header name (case-insensitive) of the per-label AP column."""

TOLERANCE = 1e-9
"""Two APs closer than this (fraction units) count as equal."""

# overall metric columns of the official files: F1_3, P_5, g_R_3, ... -> "F1@3", "P@5", "R@3"
_OVERALL = re.compile(r"^(?:g_)?(F1|P|R)_(\d+)$", re.IGNORECASE)


@dataclass(frozen=True, eq=False)
class PerLabelTable:
    """The per-label AP of one CSV file.

    Attributes:
        path: the file read.
        names: the L label names in row order, or ``None`` when the file has none.
        ap: float64 [L] per-label AP as fractions.
        overall: overall metrics found in the file ("F1@3", "P@3", ...) as fractions.
    """

    path: Path
    names: tuple[str, ...] | None
    ap: np.ndarray
    overall: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ap)


def read_per_label_table(path: str | Path, labels: Sequence[str] | None = None) -> PerLabelTable:
    """Read a per-label AP CSV in our layout or an official release's (module docstring).

    Args:
        path: the CSV file.
        labels: names for the rows, in row order, for a file that has no name column.

    Returns:
        The table; ``names`` is ``labels`` when given.

    Raises:
        DataError: the file is missing or unreadable, has no AP column, a non-numeric AP or
            one outside [0, 1], duplicate or empty names, an overall metric that differs between
            rows, or ``labels`` is given for a file with names or has the wrong length.
    """
    path = Path(path)
    header, rows = _read_csv(path)
    columns = [h.strip() for h in header]
    ap_column = _find_column(columns, (AP_COLUMN,))
    if ap_column is None:
        raise DataError(f"{path}: no AP column; expected 'ap' in the header {','.join(header)!r}")
    ap = _ap_values(path, [r[ap_column] for r in rows], ap_column + 1)
    names = _names(path, columns, rows, labels)
    return PerLabelTable(path, names, ap, _overall(path, columns, rows))


def read_labels_file(path: str | Path) -> list[str]:
    """Label names from a one-name-per-line file or a ``vocabulary.csv`` (``label,split``).

    Raises:
        DataError: the file cannot be read or is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: labels file not found")
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        first = f.readline().strip().lower().replace(" ", "")
    if first == "label,split":
        return list(LabelSet.from_csv(path).names)
    return read_vocabulary(path)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV file with at least one data row, every row as long as the header."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read as CSV ({e})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header and at least one row of per-label AP")
    header = rows[0]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: {len(row)} cells, the header has {len(header)}")
    return header, rows[1:]


def _find_column(columns: Sequence[str], candidates: Sequence[str]) -> int | None:
    """Index of the first of ``candidates`` found among ``columns`` (case-insensitive)."""
    lower = [c.lower() for c in columns]
    return next((lower.index(c) for c in candidates if c in lower), None)


def _names(
    path: Path, columns: list[str], rows: list[list[str]], labels: Sequence[str] | None
) -> tuple[str, ...] | None:
    """The row names: the file's name column, else ``labels``, else ``None``; checked."""
    column = _find_column(columns, NAME_COLUMNS)
    if column is not None and labels is not None:
        raise DataError(
            f"{path}: the file names its labels (column {columns[column]!r}); "
            "a labels list is only for files without names"
        )
    if column is not None:
        names = tuple(r[column].strip() for r in rows)
    elif labels is not None:
        names = _check_labels(path, labels, len(rows))
    else:
        return None
    _check_names(path, names)
    return names


def _ap_values(path: Path, cells: list[str], column: int) -> np.ndarray:
    """float64 [L] AP fractions from the AP column's cells (``column`` is 1-based, for messages)."""
    ap = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        try:
            ap[i] = float(cell)
        except ValueError:
            raise DataError(
                f"{path}:{i + 2}: AP (column {column}) is not a number: {cell!r}"
            ) from None
        if not 0.0 <= ap[i] <= 1.0:  # also catches NaN
            raise DataError(
                f"{path}:{i + 2}: AP {cell!r} is not a fraction in [0, 1] (percent is not read)"
            )
    return ap


def _check_labels(path: Path, labels: Sequence[str], n_rows: int) -> tuple[str, ...]:
    """``labels`` as a stripped tuple, one per row of ``path``."""
    if len(labels) != n_rows:
        raise DataError(f"{path}: {n_rows} rows but {len(labels)} label names were given for them")
    return tuple(str(n).strip() for n in labels)


def _check_names(path: Path, names: Sequence[str]) -> None:
    """Raise when a name is empty or two names are equal up to case and spacing."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        key = normalize_name(name)
        if not key:
            raise DataError(f"{path}: label {i} has an empty name")
        if key in seen:
            raise DataError(
                f"{path}: duplicate label name {name!r} (rows {seen[key] + 1} and {i + 1})"
            )
        seen[key] = i


def _overall(path: Path, columns: list[str], rows: list[list[str]]) -> dict[str, float]:
    """Overall metrics ("F1@3", ...) from columns repeated on every row; empty columns skipped."""
    out = {}
    for j, column in enumerate(columns):
        match = _OVERALL.match(column)
        if match is None:
            continue
        cells = {r[j].strip() for r in rows} - {""}
        if not cells:
            continue
        values = {_number(path, column, c) for c in cells}
        if len(values) > 1:
            raise DataError(f"{path}: column {column} differs between rows; expected one value")
        out[f"{match[1].upper()}@{match[2]}"] = values.pop()
    return out


def _number(path: Path, column: str, cell: str) -> float:
    """``cell`` as a float, or DataError naming the column."""
    try:
        return float(cell)
    except ValueError:
        raise DataError(f"{path}: column {column} has a non-numeric value {cell!r}") from None


def normalize_name(name: str) -> str:
    """The key names are matched on: case-folded, inner spacing collapsed, ends stripped."""
    return " ".join(name.split()).casefold()


# ----------------------------------------------------------------------------- comparison


@dataclass(frozen=True, eq=False)
class Comparison:
    """Per-label AP of a run and a reference over their common labels (fractions).

    Attributes:
        run_path: the run's file.
        reference_path: the reference's file.
        matched_by: ``"name"`` or ``"position"``.
        labels: the L common labels, in the run's order (``"#i"`` for row i when neither
            table names its rows).
        run_ap: float64 [L] the run's AP.
        reference_ap: float64 [L] the reference's AP.
        only_in_run: labels of the run missing from the reference.
        only_in_reference: labels of the reference missing from the run.
        overall: metric -> (run, reference), for overall metrics present in both files.
        tolerance: differences with absolute value ≤ this count as equal.
    """

    run_path: Path
    reference_path: Path
    matched_by: str
    labels: tuple[str, ...]
    run_ap: np.ndarray
    reference_ap: np.ndarray
    only_in_run: tuple[str, ...] = ()
    only_in_reference: tuple[str, ...] = ()
    overall: dict[str, tuple[float, float]] = field(default_factory=dict)
    tolerance: float = TOLERANCE

    @property
    def difference(self) -> np.ndarray:
        """float64 [L] run − reference per label."""
        return self.run_ap - self.reference_ap

    def counts(self) -> dict[str, int]:
        """How many labels the run scores higher, lower and equal (within the tolerance)."""
        d = self.difference
        return {
            "higher": int(np.count_nonzero(d > self.tolerance)),
            "lower": int(np.count_nonzero(d < -self.tolerance)),
            "equal": int(np.count_nonzero(np.abs(d) <= self.tolerance)),
        }

    def largest(self, n: int, direction: str) -> list[tuple[str, float, float, float]]:
        """Up to ``n`` labels the run scores most ``"higher"`` or ``"lower"`` than the reference.

        Returns:
            (label, run AP, reference AP, difference) tuples, largest absolute difference
            first, only for labels beyond the tolerance; ties keep the run's order.
        """
        if direction not in ("higher", "lower"):
            raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}")
        sign = 1.0 if direction == "higher" else -1.0
        d = sign * self.difference
        order = [i for i in np.argsort(-d, kind="stable")[:n] if d[i] > self.tolerance]
        return [
            (self.labels[i], float(self.run_ap[i]), float(self.reference_ap[i]), float(sign * d[i]))
            for i in order
        ]

    def to_dict(self, top: int = 10, percent: bool = True) -> dict[str, Any]:
        """Everything the CLI prints, as one JSON-ready dict (AP values in percent by default).

        Args:
            top: how many labels to list in each direction.
            percent: scale AP values and the tolerance to 0–100 rather than fractions.
        """
        s = 100.0 if percent else 1.0

        def triple(run: float, ref: float) -> dict[str, float]:
            return {"run": run * s, "reference": ref * s, "difference": (run - ref) * s}

        def rows(direction: str) -> list[dict[str, Any]]:
            return [
                {"label": name, **triple(run, ref)}
                for name, run, ref, _ in self.largest(top, direction)
            ]

        return {
            "run": str(self.run_path),
            "reference": str(self.reference_path),
            "unit": "percent" if percent else "fraction",
            "matched_by": self.matched_by,
            "n_common": len(self.labels),
            "only_in_run": list(self.only_in_run),
            "only_in_reference": list(self.only_in_reference),
            "mean_ap": triple(float(self.run_ap.mean()), float(self.reference_ap.mean())),
            "mean_abs_difference": float(np.abs(self.difference).mean()) * s,
            "tolerance": self.tolerance * s,
            **self.counts(),
            "overall": {k: triple(*v) for k, v in self.overall.items()},
            "run_higher": rows("higher"),
            "run_lower": rows("lower"),
        }


def compare_tables(
    run: PerLabelTable, reference: PerLabelTable, *, tolerance: float = TOLERANCE
) -> Comparison:
    """Match the labels of two tables and pair their AP.

    Labels are matched by name (case- and spacing-insensitive) when both tables have names;
    otherwise by row position, which needs equal row counts.

    Args:
        run: the table under test.
        reference: the table it is compared with.
        tolerance: |run − reference| ≤ this (fraction units) counts as equal.

    Returns:
        The :class:`Comparison` over the common labels.

    Raises:
        DataError: no label in common, or row counts differ when matching by position.
        ConfigError: ``tolerance`` is negative or NaN.
    """
    if not tolerance >= 0:  # also NaN
        raise ConfigError(f"tolerance must be >= 0, got {tolerance}")
    if run.names is not None and reference.names is not None:
        fields = _match_by_name(run, reference)
    else:
        fields = _match_by_position(run, reference)
    overall = {
        k: (v, reference.overall[k]) for k, v in run.overall.items() if k in reference.overall
    }
    return Comparison(
        run_path=run.path,
        reference_path=reference.path,
        overall=overall,
        tolerance=tolerance,
        **fields,
    )


def _match_by_name(run: PerLabelTable, reference: PerLabelTable) -> dict[str, Any]:
    """Comparison fields for two named tables: common labels in the run's order."""
    assert run.names is not None and reference.names is not None
    ref_index = {normalize_name(n): i for i, n in enumerate(reference.names)}
    run_keys = {normalize_name(n) for n in run.names}
    pairs = [
        (i, ref_index[k]) for i, n in enumerate(run.names) if (k := normalize_name(n)) in ref_index
    ]
    if not pairs:
        raise DataError(
            f"{run.path} and {reference.path} have no label name in common "
            f"(e.g. {run.names[0]!r} and {reference.names[0]!r})"
        )
    run_rows, ref_rows = (np.array(p, dtype=np.int64) for p in zip(*pairs, strict=True))
    return {
        "matched_by": "name",
        "labels": tuple(run.names[i] for i in run_rows),
        "run_ap": run.ap[run_rows],
        "reference_ap": reference.ap[ref_rows],
        "only_in_run": tuple(n for n in run.names if normalize_name(n) not in ref_index),
        "only_in_reference": tuple(n for n in reference.names if normalize_name(n) not in run_keys),
    }


def _match_by_position(run: PerLabelTable, reference: PerLabelTable) -> dict[str, Any]:
    """Comparison fields when a table has no names: row i of one is row i of the other."""
    if len(run) != len(reference):
        unnamed = run.path if run.names is None else reference.path
        raise DataError(
            f"{unnamed}: no label names, so rows are matched by position, but {run.path} has "
            f"{len(run)} rows and {reference.path} has {len(reference)}"
        )
    names = run.names or reference.names or tuple(f"#{i}" for i in range(len(run)))
    return {
        "matched_by": "position",
        "labels": tuple(names),
        "run_ap": run.ap,
        "reference_ap": reference.ap,
    }


# ----------------------------------------------------------------------------- plot


def plot_comparison(comparison: Comparison, path: str | Path) -> Path:
    """Write a PNG: reference vs run AP per label with y = x, and the sorted differences.

    Args:
        comparison: from :func:`compare_tables`.
        path: the PNG to write (its folder is created if missing); without a suffix ``.png``
            is added, as matplotlib would.

    Returns:
        The path written.

    Raises:
        DataError: ``path`` is a folder, has a suffix matplotlib cannot write, or the file
            cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; name the plot file, e.g. {path / 'compare.png'}")
    if not path.suffix:
        path = path.with_name(f"{path.name}.png")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_name, ref_name = comparison.run_path.name, comparison.reference_path.name
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
    _scatter(left, comparison)
    _difference_bars(right, 100 * comparison.difference)
    fig.suptitle(f"{run_name} (run) vs {ref_name} (reference)")
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise DataError(f"{path}: cannot write the plot ({e.strerror or e})") from None
    except ValueError as e:  # a suffix matplotlib has no writer for
        raise DataError(f"{path}: cannot write the plot ({e})") from None
    finally:
        plt.close(fig)
    return path


def _scatter(ax: Any, comparison: Comparison, n_named: int = 3) -> None:
    """Reference AP (x) against run AP (y) in percent, the y = x line, the farthest labels named."""
    run, ref = 100 * comparison.run_ap, 100 * comparison.reference_ap  # [L] percent
    ax.scatter(ref, run, s=10, alpha=0.6)
    ax.plot([0, 100], [0, 100], color="grey", linewidth=1, label="y = x")
    for i in np.argsort(-np.abs(run - ref), kind="stable")[:n_named]:
        if abs(run[i] - ref[i]) > 100 * comparison.tolerance:
            ax.annotate(comparison.labels[i], (ref[i], run[i]), fontsize=8)
    ax.set(xlim=(-2, 102), ylim=(-2, 102), aspect="equal")
    ax.set_xlabel(f"reference AP (%): {comparison.reference_path.name}")
    ax.set_ylabel(f"run AP (%): {comparison.run_path.name}")
    ax.set_title(f"per-label AP, {len(run)} labels matched by {comparison.matched_by}")
    ax.legend(loc="upper left")


def _difference_bars(ax: Any, difference: np.ndarray) -> None:
    """Bars of the per-label differences (percentage points [L]), largest first."""
    d = np.sort(difference)[::-1]  # [L]
    ax.bar(np.arange(len(d)), d, width=1.0, color=np.where(d >= 0, "C2", "C3"))
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xlabel("labels, sorted by difference")
    ax.set_ylabel("run − reference AP (percentage points)")
    ax.set_title(f"mean difference {d.mean():+.2f} points")
