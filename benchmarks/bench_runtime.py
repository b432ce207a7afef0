"""The default engine of ``tag``, ``eval --data``, ``serve`` and ``extract`` against the ONNX path,
torch, the backbone alone and the matmul peak; quiet, and with a second job running.

    python benchmarks/bench_runtime.py [--photos DIR] [--data DIR] [--loads quiet loaded]
                                       [--checkpoints photo photo-fast RUN/best.pt] [--clients 8]

Every figure is images/s of the real CLI in a fresh process (``python -m mlzsl ...``), exports
already cached (the first use of a checkpoint exports it once: its seconds are printed apart):

- ``tag PHOTOS`` with no engine flag (the default), with ``--onnx FILE`` (``mlzsl export``'s file,
  the path the issue compares against) and with ``--runtime torch``; the rate is the command's own
  (images over the seconds it reports: decoding and scoring, not the process start);
- ``eval --data DATA`` (its test split) on the default engine and on torch;
- ``serve`` on the default engine: ``--clients`` threads sending one photo a request (the code of
  ``bench_serve.py``), images/s over all requests;
- whole ``tag`` processes, start-up included (median of 3): the folder and one photo, default
  against ``--onnx``;
- ``extract DATA`` at the checkpoint's backbone and input side (squashed, as stores are): the
  default engine on DATA with every image listed ``--copies`` times (1,344 images for the dev
  set: a real extraction's fixed costs weigh little), best of 2; torch on DATA once;
- the backbone alone: onnxruntime on pre-decoded pixels, one image a call on every core, as the
  default engine runs it; every rate above is also given as a share of it, and the backbone's
  GFLOP/s (torch's FLOP counter × images/s) as a share of the matmul peak (an n = 1024 float32
  matrix product on every core).

``loaded`` runs the same commands while a second process spins on one core (``while True: pass``:
a laptop's browser, another request): the case where torch's thread pool used to collapse.
Targets (issue 23): default ``tag`` time within 1.15x of the ``--onnx`` path's, quiet and loaded;
``extract`` at least 0.85 of the backbone alone. Prints a table and one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import load_round, start_server  # noqa: E402

from mlzsl.backbones import create_backbone  # noqa: E402
from mlzsl.backbones.onnx import backbone_onnx, backbone_session  # noqa: E402
from mlzsl.bench import count_flops, matmul_peak  # noqa: E402
from mlzsl.inference.checkpoint import load_checkpoint  # noqa: E402
from mlzsl.inference.tagger import resolve_checkpoint  # noqa: E402
from mlzsl.runtime import cpu_threads, ordered_map  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LABELS = "person, dog, cat, car, bicycle, pizza, chair, cup, bus, train, bird, boat, clock, book"
ENV = {**os.environ, "MLZSL_NO_PROGRESS": "1"}


def mlzsl(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "mlzsl", *args], capture_output=True, text=True, env=ENV
    )
    if done.returncode:
        raise SystemExit(f"mlzsl {' '.join(args)}: {done.stderr.strip()[-500:]}")
    return done


def tag_rate(photos: Path, *flags: str) -> float:
    out = json.loads(mlzsl("tag", str(photos), "--labels", LABELS, "--json", *flags).stdout)
    return len(out["images"]) / out["seconds"]


def wall_seconds(*args: str, repeat: int = 3) -> float:
    """Median wall seconds of a whole ``mlzsl`` process: start-up included."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        mlzsl(*args)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def eval_rate(data: Path, *flags: str) -> float:
    out = json.loads(mlzsl("eval", "--data", str(data), "--json", *flags).stdout)
    return out["images"] / out["seconds"]


def extract_rate(data: Path, backbone: str, size: int, *flags: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        args = ["extract", str(data), "--out", f"{tmp}/s.h5", "--backbone", backbone]
        line = mlzsl(*args, "--image-size", str(size), *flags).stdout
    return float(re.search(r"\(([\d.]+) img/s\)", line).group(1))  # type: ignore[union-attr]


@contextmanager
def tiled(data: Path, copies: int) -> Iterator[Path]:
    """``data`` with every image listed ``copies`` times (hard links, else copies, in a temporary
    folder): an extraction long enough that its fixed costs (loading the backbone, assembling
    the store) weigh as little as in a real one of thousands of photos."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copy(data / "vocabulary.csv", root / "vocabulary.csv")
        with (data / "labels.csv").open(newline="") as f:
            rows = list(csv.reader(f))
        with (root / "labels.csv").open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(rows[0])
            for k in range(copies):
                for row in rows[1:]:
                    image = root / f"copy{k}" / row[0]
                    image.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(data / row[0], image)
                    except OSError:
                        shutil.copy(data / row[0], image)
                    out.writerow([f"copy{k}/{row[0]}", *row[1:]])
        yield root


def serve_rate(checkpoint: str, photos: list[Path], clients: int, requests: int) -> float:
    server, url = start_server(checkpoint, cpu_threads())
    try:
        labels = [name.strip() for name in LABELS.split(",")]
        load_round(url, (photos[0].name, photos[0].read_bytes()), labels, 1, 1)  # warm-up
        round_ = load_round(
            url, (photos[1].name, photos[1].read_bytes()), labels, clients, requests
        )
        if round_["errors"]:
            raise SystemExit(f"serve: {round_['errors']} failed requests")
        return float(round_["requests_per_s"])
    finally:
        server.terminate()
        server.wait(timeout=30)


def backbone_alone(backbone: str, size: int, height: int, width: int, n: int = 48) -> float:
    """Images/s of the backbone on onnxruntime (the graph extraction runs, from decoded bytes),
    one image a call on every core."""
    session = backbone_session(create_backbone(backbone, image_size=size).eval())
    rgb = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    session.run(None, {"rgb": rgb})
    started = time.perf_counter()
    for _ in ordered_map(lambda _: session.run(None, {"rgb": rgb}), range(n), cpu_threads()):
        pass
    return n / (time.perf_counter() - started)


def settings_sweep(backbone: str, size: int, n: int = 48) -> dict[str, float]:
    """Images/s of the squashed backbone on onnxruntime by (calls side by side, threads inside a
    call, images a call, spinning): how the default engine's settings were chosen."""
    import onnxruntime

    net = create_backbone(backbone, image_size=size).eval()
    path = str(backbone_onnx(net))
    pixels = np.random.default_rng(0).integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    rates = {}
    for workers, intra, batch, spin in (
        (1, 2, 8, "1"), (1, 2, 1, "1"), (1, 2, 1, "0"), (2, 1, 1, "0"), (2, 1, 4, "0"),
        (2, 1, 8, "0"), (2, 1, 16, "0"),
    ):  # fmt: skip
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = intra, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        chunk = pixels[:batch]
        session.run(None, {"rgb": chunk})
        started = time.perf_counter()

        def call(_: int, session: Any = session, chunk: np.ndarray = chunk) -> None:
            session.run(None, {"rgb": chunk})

        for _ in ordered_map(call, range(-(-n // batch)), workers):
            pass
        key = f"{workers} side by side x {intra} threads, batch {batch}, spinning {spin}"
        rates[key] = -(-n // batch) * batch / (time.perf_counter() - started)
    return rates


def backbone_gflop(backbone: str, size: int, height: int, width: int) -> float:
    net = create_backbone(backbone, image_size=size).eval()
    with torch.no_grad():
        return count_flops(lambda: net(torch.zeros(1, 3, height, width))) / 1e9


@contextmanager
def load(kind: str) -> Iterator[None]:
    """Nothing else running (``quiet``), or a second process spinning on one core (``loaded``)."""
    if kind == "quiet":
        yield
        return
    job = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        yield
    finally:
        job.kill()
        job.wait()


def measure(args: argparse.Namespace, kind: str, checkpoint: str, onnx: Path) -> dict[str, Any]:
    ckpt = load_checkpoint(resolve_checkpoint(checkpoint))
    name, size = str(ckpt.backbone["name"]), ckpt.preprocess.image_size
    # a 4:3 COCO photo at the model's size: 384 x 512 when the aspect is kept, else S x S
    height, width = (size, size * 4 // 3) if ckpt.preprocess.resize == "shorter" else (size, size)
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    with_ckpt = ("--checkpoint", checkpoint)
    tag_args = ("--labels", LABELS, *with_ckpt)
    with load(kind), tiled(args.data, args.copies) as long_data:
        extract, alone_squashed = 0.0, 0.0
        for _ in range(2):  # alternating, the best kept: a shared machine only slows a run down
            extract = max(extract, extract_rate(long_data, name, size))
            alone_squashed = max(alone_squashed, backbone_alone(name, size, size, size, n=96))
        rates = {
            "tag": tag_rate(args.photos, *with_ckpt),
            "tag --onnx": tag_rate(args.photos, "--onnx", str(onnx)),
            "tag --runtime torch": tag_rate(args.photos, *with_ckpt, "--runtime", "torch"),
            "eval --data": eval_rate(args.data, *with_ckpt),
            "eval --data --runtime torch": eval_rate(args.data, *with_ckpt, "--runtime", "torch"),
            f"serve ({args.clients} clients)": serve_rate(checkpoint, photos, args.clients, 6),
            "extract": extract,
            "extract --runtime torch": extract_rate(args.data, name, size, "--runtime", "torch"),
            "backbone alone": backbone_alone(name, size, height, width),
            "backbone alone, squashed": alone_squashed,
        }
        sweep = settings_sweep(name, size)
        one = str(photos[0])
        wall = {  # whole processes, start-up included: the default engine imports no torch
            f"tag {len(photos)} photos": wall_seconds("tag", str(args.photos), *tag_args),
            f"tag {len(photos)} photos --onnx": wall_seconds(
                "tag", str(args.photos), "--labels", LABELS, "--onnx", str(onnx)
            ),
            "tag 1 photo": wall_seconds("tag", one, *tag_args),
            "tag 1 photo --onnx": wall_seconds("tag", one, "--labels", LABELS, "--onnx", str(onnx)),
        }
    return {
        "backbone": f"{name} {height}x{width}",
        "squashed": size,
        "rates": rates,
        "settings": sweep,
        "wall_seconds": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, default=SHARED / "real_photos_dev" / "images")
    parser.add_argument("--data", type=Path, default=SHARED / "coco_zsl_dev")
    parser.add_argument("--checkpoints", nargs="+", default=["photo", "photo-fast"])
    parser.add_argument("--loads", nargs="+", default=["quiet", "loaded"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--copies", type=int, default=4, help="extract --data with each image listed this often"
    )
    args = parser.parse_args()
    torch.set_num_threads(cpu_threads())
    peak = matmul_peak()
    report: dict[str, Any] = {"cpu": cpu_name(), "threads": cpu_threads(), "peak_gflops": peak}
    with tempfile.TemporaryDirectory() as tmp:
        exports = {}
        for checkpoint in args.checkpoints:  # first uses, timed apart: export and backbone
            started = time.perf_counter()
            mlzsl("tag", str(args.photos), "--labels", "dog", "--checkpoint", checkpoint)
            exports[checkpoint] = Path(tmp) / f"{len(exports)}.onnx"
            mlzsl("export", "--checkpoint", checkpoint, "--out", str(exports[checkpoint]))
            report[f"first use of {checkpoint} (export + one tag run), s"] = round(
                time.perf_counter() - started, 1
            )
        for kind in args.loads:
            for checkpoint in args.checkpoints:
                row = measure(args, kind, checkpoint, exports[checkpoint])
                name, size = row["backbone"].split()[0], row["squashed"]
                h, w = map(int, row["backbone"].split()[1].split("x"))
                row["gflop_per_image"] = backbone_gflop(name, size, h, w)
                row["gflop_per_image_squashed"] = backbone_gflop(name, size, size, size)
                report[f"{kind} {checkpoint}"] = row
                print_row(kind, checkpoint, row, peak)
    print(json.dumps(report, indent=1))


def print_row(kind: str, checkpoint: str, row: dict[str, Any], peak: float) -> None:
    rates = row["rates"]
    alone, squashed = rates["backbone alone"], rates["backbone alone, squashed"]
    print(f"\n{kind}, {checkpoint} ({row['backbone']}; stores {row['squashed']} px squashed)")
    print(f"{'command':32} {'img/s':>7} {'x backbone':>11} {'% peak':>7}")
    for command, rate in rates.items():
        squash = command.startswith("extract") or command.endswith("squashed")
        base = squashed if squash else alone
        flop = row["gflop_per_image_squashed" if squash else "gflop_per_image"]
        share = 100 * rate * flop / peak
        print(f"{command:32} {rate:7.1f} {rate / base:11.2f} {share:6.0f}%")
    for command, seconds in row["wall_seconds"].items():
        print(f"  whole process, {command}: {seconds:.2f} s")
    for setting, rate in row["settings"].items():
        print(f"  backbone alone squashed, {setting}: {rate:.1f} img/s")
    print(
        f"default tag time / --onnx tag time: {rates['tag --onnx'] / rates['tag']:.2f} "
        f"(target ≤ 1.15); extract / backbone alone: {rates['extract'] / squashed:.2f} "
        "(target ≥ 0.85)"
    )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
