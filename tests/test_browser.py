"""The page of ``mlzsl serve`` in a real browser: headless Chromium (Debian's ``chromium``) driven
by Playwright, against ``mlzsl serve`` with the default real-photo model.

It opens the page, uploads a real photo (COCO 2017 ``000000000450.jpg``, a pizza with cups,
from ``../shared/data/real_photos_dev``), types labels, clicks Tag and reads the ranked labels the
page draws; it also checks the error shown in the page, a phone-width layout and that the page
loads nothing from another host, and saves a screenshot. Skipped when the photo, Chromium or
Playwright is missing — except in CI (``CI=true``), where ``.ci/run`` installs Chromium and a
missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.serving import serve_subprocess

pytestmark = [pytest.mark.browser, pytest.mark.server]

PHOTO = SHARED_DATA / "real_photos_dev" / "images" / "000000000450.jpg"  # COCO: pizza, cup, ...
LABELS = "pizza, bicycle, car, door, tree, dog, person, bird"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls to the outside, which this machine refuses
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str) -> None:
    """Skip on a developer machine; fail in CI, which is meant to have everything."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (in CI, .ci/run installs it)")
    pytest.skip(reason)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        _missing("no chromium on this machine: apt-get install chromium")
    return str(found)


@pytest.fixture(scope="module")
def photo_server(tmp_path_factory: pytest.TempPathFactory):
    """``mlzsl serve`` with the default model (the real-photo one), in a subprocess."""
    if not PHOTO.is_file():
        pytest.skip(f"{PHOTO} absent: the shared real-photo data is not beside this repository")
    try:
        import mlzsl.inference.pretrained  # noqa: F401
    except ImportError as e:
        pytest.skip(f"the real-photo model is not available ({e})")
    log = tmp_path_factory.mktemp("browser") / "server.log"
    # the first run builds the real-photo checkpoint (a few seconds), hence the timeout
    with serve_subprocess(["--threads", "1", "--log-level", "warning"], log, timeout=180) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def test_a_real_photo_gets_ranked_labels_in_the_page(
    browser, photo_server: str, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(photo_server + "/")
    page.wait_for_selector(
        "#card-title:text-is('Model: photo')"
    )  # no eval: the page's CSP forbids it
    assert "imagenet_conse" in page.inner_text("#card")

    # Tag with no photo: the error is shown in the page, not as raw JSON
    page.click("#tag")
    assert page.is_visible("#error") and "at least one photo" in page.inner_text("#error")

    page.set_input_files("#files", str(PHOTO))
    page.fill("#labels", LABELS)
    page.click("#tag")
    page.wait_for_selector("ol.tags li", timeout=60_000)
    labels = page.locator("ol.tags li .label").all_inner_texts()
    scores = [float(s) for s in page.locator("ol.tags li .score").all_inner_texts()]
    assert labels[0] == "pizza", labels
    assert len(labels) == 5 and scores == sorted(scores, reverse=True)
    widths = page.locator("ol.tags li .bar span").evaluate_all(
        "spans => spans.map(s => s.getBoundingClientRect().width)"
    )
    assert widths[0] == max(widths) > widths[-1] > 0  # bars drawn in score order
    assert page.is_hidden("#error")
    assert "1 photo(s) tagged" in page.inner_text("#status")
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000

    # an error from the server is shown in the page: a label over the length limit
    page.fill("#labels", "x" * 150)
    page.click("#tag")
    page.wait_for_selector("#error:not([hidden])")
    assert "label too long" in page.inner_text("#error")

    # the labels typed are remembered by this browser
    page.fill("#labels", "motorcycle, bicycle")
    page.dispatch_event("#labels", "input")
    page.reload()
    assert page.input_value("#labels") == "motorcycle, bicycle"

    # nothing is fetched from another host
    outside = [u for u in requested if not u.startswith((photo_server, "blob:", "data:"))]
    assert outside == []
    page.close()


def test_the_page_fits_a_phone_width_window(browser, photo_server: str) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(photo_server + "/")
    page.wait_for_selector(
        "#card-title:text-is('Model: photo')"
    )  # no eval: the page's CSP forbids it
    page.set_input_files("#files", str(PHOTO))
    page.fill("#labels", LABELS)
    page.click("#tag")
    page.wait_for_selector("ol.tags li", timeout=60_000)
    assert page.locator("ol.tags li .label").first.inner_text() == "pizza"
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a 390 px window"
    page.close()
