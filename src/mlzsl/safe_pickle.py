"""Unpickling that never runs code: the peers' pickles hold numpy arrays and strings, nothing else.

Python's ``pickle`` calls whatever global a file names, so a pickle someone shares can run any
command while it loads. The pickles mlzsl reads — the NUS-WIDE label vectors (a list of two float
arrays) and Open Images' ``unseen_labels.pkl`` (a numpy object array of class-id strings), both
Python 2 pickles — need only numpy's array reconstruction, dtypes and builtin containers and
strings. :func:`load_pickle` admits exactly those globals and refuses a file naming any other in
one line (docs/design.md, "Errors"). Python 2's module names (``__builtin__``, ``copy_reg``) are
accepted as the same modules.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from mlzsl.errors import DataError

_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")

# (module, name) of every global a numpy-and-strings pickle needs
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [(m, "_reconstruct") for m in _NUMPY_CORE]
    + [(m, "scalar") for m in _NUMPY_CORE]
    + [(m, "_frombuffer") for m in _NUMPY_NUMERIC]
    + [("numpy", "ndarray"), ("numpy", "dtype")]
    + [("numpy.dtypes", n) for n in ("Float32DType", "Float64DType", "Float16DType", "ObjectDType")]
    + [("numpy.dtypes", n) for n in ("Int8DType", "Int16DType", "Int32DType", "Int64DType")]
    + [("numpy.dtypes", n) for n in ("UInt8DType", "BoolDType", "StrDType", "BytesDType")]
    + [("_codecs", "encode")]  # bytes pickled by Python 3 under protocol 2
    + [
        (m, n)
        for m in ("builtins", "__builtin__")
        for n in ("list", "dict", "tuple", "set", "frozenset", "bytearray", "str", "bytes")
        + ("int", "float", "complex", "bool", "unicode", "long")
    ]
)


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in ALLOWED:
            raise _Refused(f"{module}.{name}")
        return super().find_class(module, name)


class _Refused(Exception):
    """A global outside :data:`ALLOWED`; carries its dotted name."""


def load_pickle(path: str | Path, *, what: str = "pickle") -> object:
    """Unpickle ``path`` admitting only numpy arrays, dtypes, builtin containers and strings.

    Python 2 pickles are read with ``encoding='latin1'`` when ASCII does not decode them (latin1
    restores numpy's raw bytes). Every failure is a :class:`DataError` naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    for encoding in ("ASCII", "latin1"):
        try:
            return _Restricted(io.BytesIO(data), encoding=encoding).load()
        except UnicodeDecodeError:
            continue  # a Python 2 pickle of numpy arrays
        except _Refused as e:
            raise DataError(
                f"{path}: refused: the {what} names {e}, which could run code when loaded "
                "(only numpy arrays, builtin containers and strings are read)"
            ) from None
        except Exception as e:  # unpickling garbage raises almost anything
            detail = (str(e).splitlines() or [""])[0][:200]
            raise DataError(
                f"{path}: not a readable {what} ({type(e).__name__}: {detail})"
            ) from None
    raise DataError(f"{path}: cannot decode the {what}'s strings, even as latin1")
