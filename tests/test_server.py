"""``mlzsl serve`` over real HTTP: the CLI's uvicorn in a subprocess, apps in uvicorn threads.

A small untrained fast0tag checkpoint (EfficientNet-Lite0 at 64 px, GloVe-50 labels) stands in for
any model: what is tested is the HTTP layer — answers equal to the in-process Tagger's, every
limit and bad input refused with a one-line JSON 4xx, the token, concurrency, a busy model not
blocking health checks. The browser test (tests/test_browser.py) uses the real-photo model.
"""

from __future__ import annotations

import http.client
import io
import json
import math
import re
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mlzsl.cli import main
from mlzsl.errors import ConfigError
from mlzsl.images import ImageTooLarge, load_image
from mlzsl.inference.tagger import Tagger
from mlzsl.server.app import LOOPBACK_HOSTS, create_app
from mlzsl.server.client import encode_multipart, get_json, request_json, tag
from mlzsl.server.service import Limits, TagService, clean_name
from tests.conftest import TINY_VOCABULARY, save_tiny_fast0tag
from tests.serving import serve_subprocess, serve_thread

pytestmark = pytest.mark.server

LABELS = "red circle, blue square, green star"
VOCABULARY = TINY_VOCABULARY
# the subprocess server's limits, set by flags (small, so each is cheap to cross)
FLAGS = [
    "--max-files", "3", "--max-file-mb", "1", "--max-request-mb", "2", "--max-pixels", "1000000",
    "--max-labels", "20", "--max-label-chars", "30", "--threads", "1", "--log-level", "warning",
]  # fmt: skip
MB = 1024 * 1024


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained fast0tag checkpoint with stored metrics (one of them NaN)."""
    metrics = {"mAP": 12.5, "P@3": 10.0, "R@3": 20.0, "F1@3": 13.3}
    return save_tiny_fast0tag(
        tmp_path_factory.mktemp("serve") / "tiny.pt",
        config={"model": "fast0tag", "loss": "bce", "epochs": 2},
        metrics={"zsl": metrics, "gzsl": {**metrics, "F1@3": math.nan}},
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three small images: two PNGs and a JPEG."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for i, suffix in enumerate([".png", ".png", ".jpg"]):
        pixels = rng.integers(0, 256, size=(48 + 8 * i, 64, 3), dtype=np.uint8)
        paths.append(folder / f"photo_{i}{suffix}")
        Image.fromarray(pixels).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def server(ckpt: Path, tmp_path_factory: pytest.TempPathFactory):
    """``mlzsl serve --checkpoint tiny.pt`` with small limits, in a subprocess."""
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    with serve_subprocess(["--checkpoint", str(ckpt), *FLAGS], log) as url:
        yield url


@pytest.fixture(scope="module")
def service(ckpt: Path) -> TagService:
    """The same checkpoint loaded in this process, for apps served from threads."""
    torch.set_num_threads(1)
    return TagService.from_checkpoint(ckpt, limits=Limits())


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` pixels with (almost) no data: a bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _refused(answer: tuple[int, Any], status: int, pattern: str) -> None:
    """A JSON ``{"error": one line}`` with ``status`` whose text matches ``pattern``."""
    got, body = answer
    assert got == status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert "\n" not in body["error"] and len(body["error"]) < 300
    assert re.search(pattern, body["error"]), body["error"]


# -- the API through the CLI's server


def test_health_model_card_and_page(server: str) -> None:
    status, health = get_json(f"{server}/api/health")
    assert status == 200 and health["status"] == "ok" and health["token_required"] is False
    status, card = get_json(f"{server}/api/model")
    assert status == 200
    assert card["model"] == "fast0tag" and card["name"] == "tiny.pt"
    assert card["backbone"] == {
        "name": "efficientnet_lite0",
        "weights": card["backbone"]["weights"],
        "image_size": 64,
    }
    assert card["embedder"] == "glove50"
    assert card["vocabulary"] == {"labels": 6, "seen": 4, "unseen": 2}
    assert "4 seen" in card["trained_on"] and "2 epoch" in card["trained_on"]
    assert card["metrics"]["zsl"]["mAP"] == 12.5 and card["metrics"]["gzsl"]["F1@3"] is None
    assert "Fast Zero-Shot Image Tagging" in card["paper"]
    assert card["limits"]["max_files"] == 3 and card["limits"]["max_file_bytes"] == MB
    assert card["limits"]["max_pixels"] == 1_000_000 and card["limits"]["max_labels"] == 20

    connection = http.client.HTTPConnection("127.0.0.1", int(server.rsplit(":", 1)[1]), timeout=10)
    connection.request("GET", "/")
    response = connection.getresponse()
    page = response.read().decode()
    assert response.status == 200 and response.getheader("content-type").startswith("text/html")
    assert "default-src 'self'" in response.getheader("content-security-policy")
    assert "<title>mlzsl" in page and 'id="labels"' in page and 'id="tag"' in page
    # one self-contained file: nothing loaded from another host
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_tag_answers_as_the_tagger_and_mlzsl_tag_json(
    server: str, ckpt: Path, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, body = tag(server, photos, LABELS, top_k=2)
    assert status == 200, body
    assert body["labels"] == ["red circle", "blue square", "green star"]
    assert body["files"] == [p.name for p in photos] and body["skipped"] == []
    assert set(body["timing"]) == {"queue_ms", "labels_ms", "decode_ms", "score_ms", "total_ms"}
    assert body["checkpoint"] == "tiny.pt"

    expected = Tagger.from_checkpoint(ckpt).tag(photos, LABELS, top_k=2)
    for path, tags in zip(photos, expected, strict=True):
        got = body["images"][path.name]
        assert [t["label"] for t in got] == [t.label for t in tags]
        assert [t["score"] for t in got] == pytest.approx([t.score for t in tags], abs=1e-5)

    # the same JSON shape as `mlzsl tag --json` (plus files and timing)
    assert (
        main(["tag", str(photos[0]), "--labels", LABELS, "--checkpoint", str(ckpt), "--json"]) == 0
    )
    cli = json.loads(capsys.readouterr().out)
    assert set(cli) <= set(body) and set(cli["images"][str(photos[0])][0]) == {"label", "score"}

    # labels by line as well as by comma; top_k capped at the number of labels; default 5
    status, body = tag(server, photos[:1], "red circle\nblue square", top_k=9)
    assert status == 200 and len(body["images"][photos[0].name]) == 2
    status, body = tag(server, photos[:1], VOCABULARY)
    assert status == 200 and len(body["images"][photos[0].name]) == 5


def test_files_that_are_not_images_are_skipped_or_refused(server: str, photos: list[Path]) -> None:
    notes = ("notes.txt", b"not an image at all")
    status, body = tag(server, [photos[0], notes, notes], LABELS)
    assert status == 200 and list(body["images"]) == [photos[0].name]
    assert body["files"] == [photos[0].name, "notes.txt", "notes.txt (2)"]
    assert [s["image"] for s in body["skipped"]] == ["notes.txt", "notes.txt (2)"]
    assert "not a readable image" in body["skipped"][0]["reason"]
    _refused(tag(server, [notes], LABELS), 400, r"no readable image among 1 file.*notes\.txt")
    truncated = ("cut.png", photos[0].read_bytes()[:200])
    _refused(tag(server, [truncated], LABELS), 400, r"cut\.png: not a readable image")


def test_every_limit_is_a_one_line_4xx(server: str, photos: list[Path]) -> None:
    small = ("a.png", _png(32, 32))
    _refused(tag(server, [small] * 4, LABELS), 413, r"too many files: 4 \(at most 3")
    big = ("big.png", small[1] + b"\0" * (MB + 10))
    _refused(tag(server, [big], LABELS), 413, r"big\.png: file too big: 1\.0 MB \(at most 1 MB")
    nearly = ("n.png", small[1] + b"\0" * (MB - len(small[1]) - 100))
    _refused(tag(server, [nearly] * 3, LABELS), 413, r"request too big: over 2 MB")
    _refused(tag(server, [("wide.png", _png(1001, 1000))], LABELS), 413, r"1001×1000 pixels")
    bomb = ("bomb.png", _png_header_only(100_000, 100_000))
    _refused(tag(server, [bomb], LABELS), 413, r"bomb\.png: .*decompression-bomb guard")
    many = ", ".join(f"label{i}" for i in range(21))
    _refused(tag(server, [small], many), 400, r"too many labels: 21 \(at most 20\)")
    _refused(tag(server, [small], "a" * 31), 400, r"label too long: .* 31 characters")
    # the server is still serving
    assert tag(server, [small], LABELS)[0] == 200


def test_every_bad_input_is_a_one_line_4xx(server: str, photos: list[Path]) -> None:
    small = [("a.png", _png(32, 32))]
    _refused(tag(server, small, " , ,"), 400, r"no labels given")
    _refused(tag(server, [], LABELS), 400, r"no image file")
    _refused(tag(server, small, LABELS, top_k=0), 400, r"top_k must be at least 1")
    body, content_type = encode_multipart(
        {"labels": LABELS, "top_k": "five"}, [("files", "a.png", small[0][1])]
    )
    headers = {"Content-Type": content_type}
    url = f"{server}/api/tag"
    _refused(request_json("POST", url, body=body, headers=headers), 400, r"top_k must be a whole")
    # a word GloVe does not know: the embedder's message, one line
    _refused(tag(server, small, "red circle, qwxzvbn"), 400, r"qwxzvbn")
    json_body = json.dumps({"labels": LABELS}).encode()
    json_headers = {"Content-Type": "application/json"}
    _refused(request_json("POST", url, body=json_body, headers=json_headers), 415, r"multipart")
    garbled = {"Content-Type": "multipart/form-data; boundary=xyz"}
    status, answer = request_json("POST", url, body=b"--xyz\r\nnonsense", headers=garbled)
    assert 400 <= status < 500 and set(answer) == {"error"}
    _refused(get_json(f"{server}/api/nothing"), 404, r"not found: /api/nothing")
    _refused(request_json("GET", url), 405, r"method GET not allowed")
    assert get_json(f"{server}/api/health")[0] == 200


def test_concurrent_requests_all_succeed_and_agree(server: str, photos: list[Path]) -> None:
    def client(i: int) -> list[tuple[int, Any]]:
        return [tag(server, [photos[(i + j) % 3]], LABELS, top_k=3) for j in range(3)]

    with ThreadPoolExecutor(8) as pool:
        answers = [a for batch in pool.map(client, range(8)) for a in batch]
    assert [status for status, _ in answers] == [200] * 24
    by_photo: dict[str, list[Any]] = {}
    for _, body in answers:
        (name,) = body["images"]
        by_photo.setdefault(name, []).append(body["images"][name])
    assert len(by_photo) == 3
    for results in by_photo.values():
        assert all(r == results[0] for r in results)  # the same answer under load
    assert get_json(f"{server}/api/health")[1]["requests_in_progress"] == 0


# -- apps served from threads: token, a busy model, the queue, host names


def test_token_guards_the_api_but_not_health_or_page(
    service: TagService, photos: list[Path]
) -> None:
    with serve_thread(create_app(service, token="s3cret")) as url:
        status, health = get_json(f"{url}/api/health")
        assert status == 200 and health["token_required"] is True
        _refused(get_json(f"{url}/api/model"), 401, r"missing bearer token")
        _refused(get_json(f"{url}/api/model", token="wrong"), 401, r"wrong bearer token")
        _refused(tag(url, photos[:1], LABELS), 401, r"missing bearer token")
        assert get_json(f"{url}/api/model", token="s3cret")[0] == 200
        status, body = tag(url, photos[:1], LABELS, token="s3cret")
        assert status == 200 and photos[0].name in body["images"]
        page = request_json("GET", f"{url}/")
        assert page[0] == 200 and "<title>mlzsl" in page[1]
    with serve_thread(create_app(service)) as url:  # no token: no header needed
        assert get_json(f"{url}/api/model")[0] == 200


def test_token_comes_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlzsl.cli.serve import resolve_token

    monkeypatch.delenv("MLZSL_TOKEN", raising=False)
    assert resolve_token(None) is None and resolve_token("abc") == "abc"
    monkeypatch.setenv("MLZSL_TOKEN", " from-env ")
    assert resolve_token(None) == "from-env" and resolve_token("flag") == "flag"
    monkeypatch.setenv("MLZSL_TOKEN", "  ")
    assert resolve_token(None) is None


class SlowService(TagService):
    """The same model, one second slower per request: a busy model."""

    def tag(self, uploads, labels, top_k):  # type: ignore[no-untyped-def]
        time.sleep(1.0)
        return super().tag(uploads, labels, top_k)


def _slow(service: TagService, **limits: int) -> SlowService:
    return SlowService(
        service.tagger, checkpoint=service.checkpoint, card=service.card, limits=Limits(**limits)
    )


def test_a_busy_model_never_blocks_health(service: TagService, photos: list[Path]) -> None:
    with serve_thread(create_app(_slow(service))) as url:
        answers: list[tuple[int, Any]] = []
        worker = threading.Thread(target=lambda: answers.append(tag(url, photos, LABELS)))
        worker.start()
        time.sleep(0.3)
        started = time.perf_counter()
        status, health = get_json(f"{url}/api/health")
        waited = time.perf_counter() - started
        assert status == 200 and health["requests_in_progress"] == 1
        assert waited < 0.5, f"/api/health took {waited:.2f} s while the model worked"
        assert get_json(f"{url}/api/model")[0] == 200
        worker.join(timeout=30)
        assert answers[0][0] == 200 and len(answers[0][1]["images"]) == 3


def test_a_full_queue_answers_503_and_recovers(service: TagService, photos: list[Path]) -> None:
    with serve_thread(create_app(_slow(service, max_queue=1))) as url:
        answers: list[tuple[int, Any]] = []
        worker = threading.Thread(target=lambda: answers.append(tag(url, photos[:1], LABELS)))
        worker.start()
        time.sleep(0.3)
        _refused(tag(url, photos[:1], LABELS), 503, r"server busy: 1 request")
        worker.join(timeout=30)
        assert answers[0][0] == 200
        assert tag(url, photos[:1], LABELS)[0] == 200


def test_a_loopback_server_answers_loopback_host_names_only(service: TagService) -> None:
    with serve_thread(create_app(service, allowed_hosts=LOOPBACK_HOSTS)) as url:
        port = int(url.rsplit(":", 1)[1])
        for host, expected in [(f"127.0.0.1:{port}", 200), (f"localhost:{port}", 200),
                               ("evil.example", 400), (f"attacker.test:{port}", 400)]:  # fmt: skip
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/api/model", headers={"Host": host})
            response = connection.getresponse()
            body = json.loads(response.read())
            assert response.status == expected, (host, body)
            if expected == 400:
                assert "loopback only" in body["error"]


# -- the pieces


def test_load_image_takes_a_file_object_and_a_pixel_limit(photos: list[Path]) -> None:
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.5, np.float32)
    from_path = load_image(photos[2], 32, mean, std)
    from_bytes = load_image(io.BytesIO(photos[2].read_bytes()), 32, mean, std)
    np.testing.assert_array_equal(from_path, from_bytes)
    assert load_image(photos[2], 32, mean, std, max_pixels=64 * 64).shape == (3, 32, 32)
    with pytest.raises(ImageTooLarge, match="64×64 pixels is over the limit of 4,095"):
        load_image(photos[2], 32, mean, std, max_pixels=4095)


def test_upload_names_are_cleaned_and_unique() -> None:
    taken: set[str] = set()
    names = ["../../etc/passwd", "C:\\photos\\cat.jpg", "cat.jpg", "", "x\x00y.png", "a" * 300]
    cleaned = [clean_name(n, i + 1, taken) for i, n in enumerate(names)]
    assert cleaned == ["passwd", "cat.jpg", "cat.jpg (2)", "image-4", "xy.png", "a" * 100]


def test_limits_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_files=0"):
        Limits(max_files=0)


def test_label_vectors_stay_in_memory_with_the_checkpoint_prompt(
    service: TagService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLZSL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(service.tagger, "label_prompt", "{} photo")  # as a ready model's
    card = service.card
    prompted = TagService(service.tagger, checkpoint=service.checkpoint, card=card, label_cache=2)
    vectors = prompted.label_vectors(["red circle", "blue star"])
    expected = service.tagger.embedder.embed(["red circle photo", "blue star photo"])
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    assert prompted.label_vectors(["red circle", "blue star"]) is vectors  # cached
    prompted.label_vectors(["green ring"])
    prompted.label_vectors(["red square"])
    assert len(prompted._vectors) == 2 and ("red circle", "blue star") not in prompted._vectors
    assert not (tmp_path / "cache").exists()  # what clients send never reaches the disk
