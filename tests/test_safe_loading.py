"""Loading what people share never runs code: crafted checkpoints and pickles are refused.

Each crafted file carries an object whose ``__reduce__`` would create a marker file when
unpickled. Every command must answer in one line with exit status 2 and leave no marker.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mlzsl.cli import main
from mlzsl.config import load_config
from mlzsl.embeddings import create_embedder
from mlzsl.errors import DataError
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.safe_pickle import load_pickle
from mlzsl.training.engine import fit
from tests.test_embeddings import _write_nus
from tests.test_open_images import _convert_args, make_release


class _Payload:
    """Unpickling this creates ``marker``: the stand-in for any command an attacker chooses."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def run(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genuine one-epoch fast0tag run folder."""
    out = tmp_path_factory.mktemp("safe") / "run"
    fit(
        load_config(None, ["model=fast0tag", "epochs=1", "batch_size=8"]),
        tiny_store,
        out,
        quiet=True,
    )
    return out


def _craft(genuine: Path, target: Path, marker: Path) -> Path:
    """``genuine`` checkpoint with the payload under an extra key (it evaluated, exit 0, before)."""
    payload = torch.load(genuine, map_location="cpu", weights_only=True)
    payload["notes"] = _Payload(marker)
    torch.save(payload, target)
    return target


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], marker: Path, name: Path) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(name) in err and "refused" in err, err
    assert not marker.exists(), "the crafted file ran code"
    return err


def test_a_genuine_checkpoint_loads_with_weights_only(run: Path) -> None:
    for name in ("best.pt", "last.pt"):
        torch.load(run / name, map_location="cpu", weights_only=True)  # no unsafe global
        assert load_checkpoint(run / name).model == "fast0tag"


def test_eval_refuses_a_crafted_checkpoint(
    run: Path, tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    ckpt = _craft(run / "best.pt", tmp_path / "shared.pt", marker)
    argv = ["eval", "--checkpoint", str(ckpt), "--store", str(tiny_store)]
    _refused(capsys, argv, marker, ckpt)


def test_tag_refuses_a_crafted_checkpoint(
    run: Path, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    ckpt = _craft(run / "best.pt", tmp_path / "shared.pt", marker)
    image = next((image_folder / "images").glob("*.png"))
    argv = ["tag", str(image), "--labels", "red star", "--checkpoint", str(ckpt)]
    _refused(capsys, argv, marker, ckpt)


def test_train_refuses_to_resume_from_a_crafted_last_pt(
    run: Path, tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    out = tmp_path / "run"
    out.mkdir()
    _craft(run / "last.pt", out / "last.pt", marker)
    argv = ["train", "--store", str(tiny_store), "--out", str(out), "--model", "fast0tag"]
    _refused(capsys, [*argv, "--threads", "1", "epochs=1", "batch_size=8"], marker, out / "last.pt")
    assert not (out / "best.pt").exists() and not (out / "metrics.json").exists()


def test_a_plain_pickle_inside_a_checkpoint_is_refused_too(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "plain.pt"
    with path.open("wb") as f:  # torch.load reads a bare pickle too (the legacy format)
        pickle.dump({"format": "mlzsl-checkpoint-1", "x": _Payload(marker)}, f, protocol=2)
    with pytest.raises(DataError, match="plain.pt") as info:
        load_checkpoint(path)
    assert len(str(info.value).splitlines()) == 1 and not marker.exists()


def test_the_nus_embedder_refuses_a_crafted_pickle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], run: Path, image_folder: Path
) -> None:
    marker = tmp_path / "marker"
    path = _write_nus(tmp_path)
    rows = [np.zeros((4, 6), np.float32), np.zeros((2, 6), np.float32)]
    with path.open("wb") as f:
        pickle.dump([rows[0], rows[1], _Payload(marker)], f, protocol=2)
    with pytest.raises(DataError, match="refused") as info:
        create_embedder(f"nus:{path}").embed(["sky"])
    assert len(str(info.value).splitlines()) == 1 and not marker.exists()
    image = next((image_folder / "images").glob("*.png"))
    ckpt = ["--checkpoint", str(run / "best.pt"), "--embedder", f"nus:{path}"]
    _refused(capsys, ["tag", str(image), "--labels", "sky", *ckpt], marker, path)


def test_the_open_images_importer_refuses_a_crafted_pickle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLZSL_NO_PROGRESS", "1")
    marker = tmp_path / "marker"
    root = tmp_path / "release"
    make_release(root)
    pkl = root / "classes" / "unseen_labels.pkl"
    ids = list(pickle.loads(pkl.read_bytes()))
    with pkl.open("wb") as f:
        pickle.dump(np.array([*ids, _Payload(marker)], dtype=object), f, protocol=2)
    _refused(capsys, _convert_args(root, tmp_path / "out"), marker, pkl)
    assert not (tmp_path / "out" / "labels.csv").exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_numpy_pickles_of_every_protocol_load(tmp_path: Path, protocol: int) -> None:
    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.array(["a", "b"], dtype=object)]
    data = {"arrays": arrays, "names": ("x", b"y"), "set": {1, 2}, "scalar": np.float64(2.5)}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    back = load_pickle(path)
    assert isinstance(back, dict)
    np.testing.assert_array_equal(back["arrays"][0], arrays[0])
    assert list(back["arrays"][1]) == ["a", "b"] and back["set"] == {1, 2}
    assert back["scalar"] == 2.5


@pytest.mark.parametrize(
    "payload",
    [
        b"cos\nsystem\n(S'true'\ntR.",  # the classic: os.system
        b"cbuiltins\neval\n(S'1'\ntR.",
        b"cnumpy\nload\n(S'x'\ntR.",  # a numpy function outside the array-rebuilding ones
        b"csubprocess\ncall\n(S'true'\ntR.",
    ],
)
def test_handwritten_pickles_naming_other_globals_are_refused(
    tmp_path: Path, payload: bytes
) -> None:
    path = tmp_path / "bad.pkl"
    path.write_bytes(payload)
    with pytest.raises(DataError, match="refused") as info:
        load_pickle(path)
    assert len(str(info.value).splitlines()) == 1


def test_garbage_and_missing_pickles_are_one_line_data_errors(tmp_path: Path) -> None:
    for data in (b"", b"\x80\x05garbage", os.urandom(64)):
        path = tmp_path / "g.pkl"
        path.write_bytes(data)
        with pytest.raises(DataError) as info:
            load_pickle(path)
        assert len(str(info.value).splitlines()) == 1
    with pytest.raises(DataError, match="cannot read"):
        load_pickle(tmp_path / "absent.pkl")


def test_the_payload_does_run_when_loaded_unsafely(tmp_path: Path) -> None:
    """The control: the crafted objects above are live, so their refusal is what saves us."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(_Payload(marker), protocol=2))
    assert marker.exists()


def test_a_last_pt_holding_numpy_rng_state_from_before_still_resumes(
    run: Path, tiny_store: Path, tmp_path: Path
) -> None:
    """numpy's array rebuilders are admitted (they run no code): older last.pt files resume."""
    from mlzsl.training.engine import Trainer

    out = tmp_path / "run"
    out.mkdir()
    payload = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    state = np.random.RandomState(7).get_state()
    payload["train_state"]["rng"]["numpy"] = state  # the tuple form, with its uint32 array
    payload["train_state"]["rng"]["py"] = tuple(payload["train_state"]["rng"]["py"])
    torch.save(payload, out / "last.pt")
    config = load_config(None, ["model=fast0tag", "epochs=1", "batch_size=8"])
    assert Trainer(config, tiny_store, out, quiet=True).try_resume() == 1
    np.testing.assert_array_equal(np.random.get_state()[1], state[1])
