"""``mlzsl.runtime``: the torch thread setting and mlzsl's cache folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mlzsl.errors import ConfigError
from mlzsl.runtime import cache_home, set_threads


@pytest.fixture
def restore_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Put torch's thread count and OMP_NUM_THREADS back after the test."""
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # recorded by monkeypatch, restored after
    yield
    torch.set_num_threads(before)


def test_set_threads_sets_torch_and_the_environment_for_workers(restore_threads: None) -> None:
    assert set_threads(2) == 2
    assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
    assert set_threads(1) == 1
    assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"


def test_set_threads_none_keeps_the_current_setting(restore_threads: None) -> None:
    torch.set_num_threads(2)
    os.environ["OMP_NUM_THREADS"] = "7"
    assert set_threads(None) == 2
    assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "7"  # untouched


@pytest.mark.parametrize("threads", [0, -1])
def test_set_threads_below_one_is_a_config_error_changing_nothing(
    restore_threads: None, threads: int
) -> None:
    torch.set_num_threads(1)
    with pytest.raises(ConfigError, match=f"--threads must be at least 1, got {threads}"):
        set_threads(threads)
    assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"


def test_cache_home_is_mlzsl_cache_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLZSL_CACHE", str(tmp_path / "cache"))
    assert cache_home() == tmp_path / "cache"
    assert not (tmp_path / "cache").exists()  # only names the folder, never creates it
    monkeypatch.setenv("MLZSL_CACHE", "relative/cache")
    assert cache_home() == Path("relative/cache")


def test_cache_home_expands_a_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MLZSL_CACHE", "~/elsewhere")
    assert cache_home() == tmp_path / "elsewhere"


@pytest.mark.parametrize("value", [None, ""])
def test_cache_home_defaults_to_the_users_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    if value is None:
        monkeypatch.delenv("MLZSL_CACHE", raising=False)
    else:
        monkeypatch.setenv("MLZSL_CACHE", value)  # empty counts as unset
    assert cache_home() == tmp_path / ".cache" / "mlzsl"
    assert not (tmp_path / ".cache").exists()


def test_cache_home_is_read_at_each_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLZSL_CACHE", str(tmp_path / "a"))
    first = cache_home()
    monkeypatch.setenv("MLZSL_CACHE", str(tmp_path / "b"))
    assert (first, cache_home()) == (tmp_path / "a", tmp_path / "b")
