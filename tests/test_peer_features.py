"""Peer feature imports: the TFRecord reader, BiAM's HDF5 and LESA's TFRecords into a store.

Files are written here in exactly the peers' layouts (BiAM: one gzip dataset per image and field,
``<image>-features`` float32 [C, P]; LESA: ZLIB TFRecords whose fields are raw little-endian
byte strings, ``feature`` float32 [P × C]) and imported; the store must hold the same features
(to float16), our labels (+1 / -1 / 0, unseen hidden on train rows), ids and splits.
"""

from __future__ import annotations

import io
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from mlzsl.cli import main
from mlzsl.datasets.vocab import nus_label_set, read_open_images_vocabulary
from mlzsl.errors import DataError
from mlzsl.store.feature_store import FeatureStore
from mlzsl.store.peers import import_biam, import_lesa
from mlzsl.store.peers.tfrecord import (
    crc32c,
    encode_example,
    frame_record,
    masked_crc32c,
    parse_example,
    read_examples,
    read_records,
    write_tfrecord,
)
from tests.conftest import SHARED_DATA

NUS_SHARED = SHARED_DATA / "nus_wide"
OI_SHARED = SHARED_DATA / "open_images"
needs_nus = pytest.mark.skipif(
    not (NUS_SHARED / "TagList1k.txt").is_file(),
    reason=f"real NUS-WIDE vocabulary not found in {NUS_SHARED}",
)
needs_oi = pytest.mark.skipif(
    not (OI_SHARED / "unseen_labels.pkl").is_file(),
    reason=f"real Open Images class files not found in {OI_SHARED}",
)

# A made-up NUS-WIDE-shaped vocabulary of real English words (glove50 knows them): 10 tags, 4
# concepts of which 2 are also tags -> 8 seen (tag order), then 4 unseen (concept order).
TAGS = ["dog", "cat", "sky", "car", "tree", "water", "house", "flower", "road", "boat"]
CONCEPTS = ["sky", "water", "bird", "mountain"]
SEEN = [t for t in TAGS if t not in CONCEPTS]
SEEN_IN_TAGS = [TAGS.index(t) for t in SEEN]
C, P = 8, 4  # small feature maps: 8 channels on 2×2 positions


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def nus_vocab(tmp_path: Path) -> Path:
    """TagList1k.txt and Concepts81.txt of the made-up vocabulary (Concepts81 in a subfolder,
    as BiAM's tree has it)."""
    folder = tmp_path / "nus_vocab"
    (folder / "ConceptsList").mkdir(parents=True)
    (folder / "TagList1k.txt").write_text("\n".join(TAGS) + "\n")
    (folder / "ConceptsList" / "Concepts81.txt").write_text("\n".join(CONCEPTS) + "\n")
    return folder


OI_SEEN = {"/m/01": "dog", "/m/02": "cat", "/m/03": "car", "/m/04": "tree", "/m/05": "house"}
OI_CANDIDATES = {"/m/11": "bird", "/m/12": "boat", "/m/13": "road", "/m/14": "flower"}
OI_EVALUATED = [3, 0, 2]  # positions into the candidates, deliberately not sorted


@pytest.fixture
def oi_vocab(tmp_path: Path) -> Path:
    """The four Open Images class files, for 5 seen classes and 4 unseen candidates."""
    folder = tmp_path / "oi_vocab"
    folder.mkdir()
    (folder / "classes-trainable.txt").write_text("\n".join(OI_SEEN) + "\n")
    with (folder / "unseen_labels.pkl").open("wb") as f:
        pickle.dump(np.asarray(list(OI_CANDIDATES), dtype=object), f, protocol=2)
    text = "\n".join(str(p) for p in OI_EVALUATED) + "\n"
    (folder / "top_400_unseen.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    rows = [f"{k},{v}" for k, v in {**OI_SEEN, **OI_CANDIDATES}.items()]
    (folder / "class-descriptions.csv").write_text("\n".join(rows) + "\n")
    return folder


def pm_one(rng: np.random.Generator, n: int) -> np.ndarray:
    """n labels in {-1, +1} with at least one +1 (NUS-WIDE files hold no zeros)."""
    y = np.where(rng.random(n) < 0.3, 1, -1)
    y[rng.integers(n)] = 1
    return y


def write_biam(path: Path, images: dict[str, dict[str, np.ndarray]]) -> Path:
    """An HDF5 file as BiAM writes it: ``<image>-<field>`` gzip datasets, labels int8."""
    with h5py.File(path, "w") as f:
        for image, fields in images.items():
            for field, value in fields.items():
                dtype = np.float32 if field == "features" else np.int8
                f.create_dataset(f"{image}-{field}", data=value, dtype=dtype, compression="gzip")
    return path


def lesa_example(record: dict[str, Any]) -> dict[str, bytes]:
    """A record as LESA writes it: every field one raw byte string (``ndarray.tostring()``)."""
    raw = {k: np.ascontiguousarray(v).tobytes() for k, v in record.items() if k != "img_id"}
    return {"img_id": record["img_id"].encode(), **raw}


def write_lesa(path: Path, records: list[dict[str, Any]], compression: str = "zlib") -> Path:
    """A TFRecord file of LESA's records (ZLIB, as LESA's are)."""
    return write_tfrecord(path, [lesa_example(r) for r in records], compression=compression)


def biam_nus_images(rng: np.random.Generator, n: int, split: str, prefix: str) -> dict:
    """BiAM NUS-WIDE images: train ``labels`` [8], test [12] (seen then unseen)."""
    images = {}
    for i in range(n):
        labels_81 = pm_one(rng, len(CONCEPTS))
        seen = pm_one(rng, len(SEEN))
        labels = seen if split == "train" else np.concatenate([seen, labels_81])
        feats = rng.normal(size=(C, P)).astype(np.float32)
        images[f"{prefix}_{i:04d}.jpg"] = {
            "features": feats,
            "labels": labels,
            "labels_81": labels_81,
        }
    return images


def lesa_nus_records(rng: np.random.Generator, n: int, prefix: str) -> list[dict[str, Any]]:
    """LESA NUS-WIDE records: ``label_1k`` in tag order, concept-named tags zeroed."""
    records = []
    for i in range(n):
        label_1k = pm_one(rng, len(TAGS)).astype(np.float32)
        label_1k[[TAGS.index(c) for c in CONCEPTS if c in TAGS]] = 0
        label_1k[SEEN_IN_TAGS[rng.integers(len(SEEN))]] = 1
        records.append(
            {
                "img_id": f"./data/NUS_WIDE/Flickr/{prefix}/{i:04d}_{i * 7}.jpg",
                "feature": rng.normal(size=(P, C)).astype("<f4"),
                "label_1k": label_1k,
                "label_81": pm_one(rng, len(CONCEPTS)).astype(np.float32),
            }
        )
    return records


def as_chw(features_cp: np.ndarray) -> np.ndarray:
    """[C, P] -> [C, H, W] as float16-rounded float32, what the store holds."""
    c, p = features_cp.shape
    side = int(round(p**0.5))
    return features_cp.reshape(c, side, side).astype(np.float16).astype(np.float32)


# ----------------------------------------------------------------------------- CRC and framing


def test_crc32c_known_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    # RFC 3720 (iSCSI) appendix B.4
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"") == 0


@pytest.mark.parametrize("n", [1023, 1024, 1025, 64 * 17 + 5, 64 * 33, 100_000, 401_408])
def test_crc32c_vectorised_path_matches_byte_by_byte(n: int) -> None:
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    chained = 0
    for start in range(0, n, 100):  # 100-byte pieces take the byte-by-byte path
        chained = crc32c(data[start : start + 100], chained)
    assert crc32c(data) == chained


def test_masked_crc_matches_tensorboard() -> None:
    stub = pytest.importorskip("tensorboard.compat.tensorflow_stub.pywrap_tensorflow")
    for data in (b"", b"hello", os.urandom(5000)):
        assert masked_crc32c(data) == stub.masked_crc32c(data)


# two records, b"hello" and b"", as TensorFlow frames them (bytes from tensorboard's RecordWriter)
HANDMADE = bytes.fromhex(
    "0500000000000000" "eab2043e" "68656c6c6f" "bb1f1c19"
    "0000000000000000" "29039807" "" "d8ea82a2"
)  # fmt: skip


def test_framing_matches_a_known_byte_string(tmp_path: Path) -> None:
    assert frame_record(b"hello") + frame_record(b"") == HANDMADE
    path = tmp_path / "known.tfrecords"
    path.write_bytes(HANDMADE)
    assert list(read_records(path)) == [b"hello", b""]
    path.write_bytes(zlib.compress(HANDMADE))
    assert list(read_records(path)) == [b"hello", b""]


def test_framing_matches_tensorboards_writer(tmp_path: Path) -> None:
    writer_module = pytest.importorskip("tensorboard.summary.writer.record_writer")
    buffer = io.BytesIO()
    records = [os.urandom(n) for n in (0, 1, 300, 70_000)]
    writer = writer_module.RecordWriter(buffer)
    for r in records:
        writer.write(r)
    path = tmp_path / "tb.tfrecords"
    path.write_bytes(buffer.getvalue())
    assert list(read_records(path, compression="none")) == records


@pytest.mark.parametrize("compression", ["zlib", "gzip", "none", None])
def test_records_round_trip_with_auto_detection(tmp_path: Path, compression: str | None) -> None:
    records = [os.urandom(n) for n in (5, 0, 3_000_000, 17)]  # one record spans many chunks
    path = write_tfrecord(tmp_path / "r.tfrecords", records, compression=compression)
    assert list(read_records(path)) == records
    assert list(read_records(path, compression=compression or "none")) == records


def test_zlib_compresses_the_whole_stream_as_tensorflow_does(tmp_path: Path) -> None:
    records = [b"abc", b"defg"]
    path = write_tfrecord(tmp_path / "z.tfrecords", records, compression="zlib")
    assert zlib.decompress(path.read_bytes()) == b"".join(frame_record(r) for r in records)


def test_concatenated_zlib_streams_are_read_as_one(tmp_path: Path) -> None:
    path = tmp_path / "cat.tfrecords"
    path.write_bytes(zlib.compress(frame_record(b"one")) + zlib.compress(frame_record(b"two")))
    assert list(read_records(path)) == [b"one", b"two"]


def test_bad_data_checksum_names_file_and_record(tmp_path: Path) -> None:
    data = bytearray(b"".join(frame_record(r) for r in (b"first", b"second", b"third")))
    data[len(frame_record(b"first")) + 12] ^= 0x01  # a bit of "second"'s data
    path = tmp_path / "bad.tfrecords"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"bad\.tfrecords: record 2: bad data checksum"):
        list(read_records(path))
    assert len(list(read_records(path, verify=False))) == 3  # framing itself is intact


def test_bad_length_checksum_and_truncation(tmp_path: Path) -> None:
    framed = frame_record(b"first") + frame_record(b"second record")
    path = tmp_path / "t.tfrecords"
    path.write_bytes(framed[:-6])
    with pytest.raises(DataError, match=r"t\.tfrecords: record 2: truncated"):
        list(read_records(path, compression="none"))
    path.write_bytes(framed[:-20][:21] + b"\x00")  # cut inside record 2's header
    with pytest.raises(DataError, match="record 2: truncated header"):
        list(read_records(path, compression="none"))
    broken = bytearray(framed)
    broken[len(frame_record(b"first"))] ^= 0xFF  # record 2's length
    path.write_bytes(bytes(broken))
    with pytest.raises(DataError, match="record 2: bad length checksum"):
        list(read_records(path, compression="none"))


def test_truncated_zlib_stream_is_an_error(tmp_path: Path) -> None:
    path = write_tfrecord(tmp_path / "z.tfrecords", [os.urandom(1000)] * 3, compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    with pytest.raises(DataError, match=r"z\.tfrecords: (zlib data ends early|record \d)"):
        list(read_records(path))
    # cut where every record is complete but the stream is not finished: still an error
    z = zlib.compressobj()
    framed = b"".join(frame_record(r) for r in (b"one", b"two"))
    path.write_bytes(z.compress(framed) + z.flush(zlib.Z_SYNC_FLUSH))
    with pytest.raises(DataError, match=r"z\.tfrecords: zlib data ends early"):
        list(read_records(path))


# ----------------------------------------------------------------------------- tf.train.Example


def _example_class(syntax: str) -> Any:
    """``tf.train.Example`` built with protobuf itself: proto3 packs repeated numbers, proto2
    writes them one by one; both must decode."""
    pb = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import descriptor_pool, message_factory

    F = pb.FieldDescriptorProto
    package = f"t{syntax}"
    fdp = pb.FileDescriptorProto(name=f"{package}.proto", package=package, syntax=syntax)

    def message(parent: Any, name: str, *fields: tuple) -> Any:
        m = parent.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            field = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = f".{package}.{type_name}"
        return m

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message(fdp.message_type, "BytesList", ("value", 1, F.TYPE_BYTES, rep, None))
    message(fdp.message_type, "FloatList", ("value", 1, F.TYPE_FLOAT, rep, None))
    message(fdp.message_type, "Int64List", ("value", 1, F.TYPE_INT64, rep, None))
    kinds = [("bytes_list", 1, "BytesList"), ("float_list", 2, "FloatList")]
    kinds.append(("int64_list", 3, "Int64List"))
    feature = message(
        fdp.message_type, "Feature", *[(n, i, F.TYPE_MESSAGE, opt, t) for n, i, t in kinds]
    )
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = message(
        fdp.message_type,
        "Features",
        ("feature", 1, F.TYPE_MESSAGE, rep, "Features.FeatureEntry"),
    )
    entry = message(
        features.nested_type,
        "FeatureEntry",
        ("key", 1, F.TYPE_STRING, opt, None),
        ("value", 2, F.TYPE_MESSAGE, opt, "Feature"),
    )
    entry.options.map_entry = True
    message(fdp.message_type, "Example", ("features", 1, F.TYPE_MESSAGE, opt, "Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Example"))


@pytest.mark.parametrize("syntax", ["proto3", "proto2"])
def test_example_decoder_agrees_with_protobuf(syntax: str) -> None:
    Example = _example_class(syntax)
    msg = Example()
    msg.features.feature["floats"].float_list.value.extend([1.5, -2.25, 3e10])
    msg.features.feature["ints"].int64_list.value.extend([0, 1, -3, 2**40, -(2**63)])
    msg.features.feature["bytes"].bytes_list.value.extend([b"x", b"", bytes(range(256))])
    msg.features.feature["empty"].float_list.SetInParent()
    got = parse_example(msg.SerializeToString())
    assert got["floats"].dtype == np.float32
    np.testing.assert_array_equal(got["floats"], np.float32([1.5, -2.25, 3e10]))
    np.testing.assert_array_equal(got["ints"], np.int64([0, 1, -3, 2**40, -(2**63)]))
    assert got["bytes"] == [b"x", b"", bytes(range(256))]
    assert len(got["empty"]) == 0


@pytest.mark.parametrize("syntax", ["proto3", "proto2"])
def test_example_encoder_is_read_by_protobuf(syntax: str) -> None:
    Example = _example_class(syntax)
    data = encode_example(
        {
            "feature": np.arange(6, dtype=np.float32) / 4,
            "label": np.int64([-1, 0, 1, 7]),
            "img_id": "actor/0001_1.jpg",
        }
    )
    msg = Example.FromString(data)
    assert list(msg.features.feature["feature"].float_list.value) == [0, 0.25, 0.5, 0.75, 1, 1.25]
    assert list(msg.features.feature["label"].int64_list.value) == [-1, 0, 1, 7]
    assert list(msg.features.feature["img_id"].bytes_list.value) == [b"actor/0001_1.jpg"]


def test_example_round_trip_and_malformed_input(tmp_path: Path) -> None:
    record = {"a": b"raw", "b": np.float32([1, 2]), "c": np.int64([-5])}
    path = write_tfrecord(tmp_path / "e.tfrecords", [record, encode_example({})])
    first, second = list(read_examples(path))
    assert first["a"] == [b"raw"] and second == {}
    np.testing.assert_array_equal(first["b"], [1, 2])
    np.testing.assert_array_equal(first["c"], [-5])
    bad = encode_example(record)[:-3]  # a field running past the end
    path = write_tfrecord(tmp_path / "m.tfrecords", [encode_example({}), bad])
    with pytest.raises(DataError, match=r"m\.tfrecords: record 2: malformed tf.train.Example"):
        list(read_examples(path))


# ----------------------------------------------------------------------------- BiAM


def test_biam_nus_round_trip(tmp_path: Path, nus_vocab: Path) -> None:
    rng = np.random.default_rng(0)
    train = biam_nus_images(rng, 6, "train", "actor")
    test = biam_nus_images(rng, 4, "test", "zoos")
    out = import_biam(
        tmp_path / "s.h5",
        train=write_biam(tmp_path / "nus_wide_train.h5", train),
        test=write_biam(tmp_path / "nus_wide_test.h5", test),
        vocabulary=nus_vocab,
        show_progress=False,
    )
    store = FeatureStore(out)
    assert store.label_set == nus_label_set(
        nus_vocab / "TagList1k.txt", nus_vocab / "ConceptsList" / "Concepts81.txt"
    )
    assert list(store.label_set.names) == SEEN + CONCEPTS
    assert store.image_ids == sorted(train) + sorted(test)  # the files' keys, name order
    assert list(store.splits) == ["train"] * 6 + ["test"] * 4
    assert store.header.feature_shape == (C, 2, 2)
    labels = store.labels()
    for row, (_, fields) in enumerate([*sorted(train.items()), *sorted(test.items())]):
        np.testing.assert_array_equal(store.features(row), as_chw(fields["features"]))
        np.testing.assert_array_equal(labels[row, :8], fields["labels"][:8])
        expected_unseen = fields["labels_81"] if row >= 6 else np.zeros(4)  # hidden on train
        np.testing.assert_array_equal(labels[row, 8:], expected_unseen)
    backbone = store.header.backbone
    assert (backbone["name"], backbone["sha256"], backbone["channels"]) == (
        "vgg19",
        "biam-features",
        C,
    )
    assert store.header.dataset is not None and store.header.dataset.name == "NUS-WIDE"
    assert "available subset, 4 of the 107,859" in str(store.test_set_line())


def test_biam_open_images_labels(tmp_path: Path, oi_vocab: Path) -> None:
    rng = np.random.default_rng(1)
    seen = np.int8([[1, 0, -1, 2, 0], [0, -1, 1, 0, -2]])  # 0 = not annotated, ±2 twice-listed
    unseen = np.int8([[1, -1, 0, 1], [-1, 1, 1, 0]])  # over the 4 candidates
    feats = rng.normal(size=(2, C, P)).astype(np.float32)
    test = {
        f"{name}.jpg": {"features": f, "seenlabels": s, "unseenlabels": u}
        for name, f, s, u in zip(["000a", "000b"], feats, seen, unseen, strict=True)
    }
    train = {"100c.jpg": {"features": feats[0], "seenlabels": seen[1]}}  # no unseen field
    chunks = tmp_path / "train_features"
    chunks.mkdir()
    write_biam(chunks / "CHUNK_5_CONV5_4_NO_CENTERCROP.h5", train)
    test_file = write_biam(tmp_path / "OPENIMAGES_TEST.h5", test)
    out = import_biam(
        tmp_path / "oi.h5",
        train=chunks,  # a folder of chunk files
        test=test_file,
        dataset="open-images",
        vocabulary=oi_vocab,
        show_progress=False,
    )
    store = FeatureStore(out)
    vocab = read_open_images_vocabulary(oi_vocab)
    assert store.label_set == vocab.label_set("evaluated")
    assert store.image_ids == ["100c.jpg", "000a.jpg", "000b.jpg"]
    expected = np.zeros((3, 5 + 3), np.int8)
    expected[0, :5] = np.sign(seen[1])
    expected[1:, :5] = np.sign(seen)
    expected[1:, 5:] = unseen[:, OI_EVALUATED]  # top_400 order, not sorted
    np.testing.assert_array_equal(store.labels(), expected)
    assert store.header.dataset is not None and store.header.dataset.evaluation == "open_images"
    everything = import_biam(
        tmp_path / "all.h5",
        test=test_file,
        dataset="open-images",
        vocabulary=oi_vocab,
        unseen="all",
        show_progress=False,
    )
    np.testing.assert_array_equal(FeatureStore(everything).labels()[:, 5:], unseen)


def test_biam_errors_name_file_image_and_field(tmp_path: Path, nus_vocab: Path) -> None:
    rng = np.random.default_rng(2)
    images = biam_nus_images(rng, 2, "test", "a")

    def attempt(name: str, imgs: dict, **kwargs: Any) -> None:
        path = write_biam(tmp_path / f"{name}.h5", imgs)
        options = {"vocabulary": nus_vocab, "show_progress": False, **kwargs}
        import_biam(tmp_path / f"{name}_out.h5", test=path, **options)

    short = {k: {**v, "labels": v["labels"][:7]} for k, v in images.items()}
    with pytest.raises(DataError, match=r"short\.h5: image 'a_0000.jpg'.*'labels' holds 7"):
        attempt("short", short)
    missing = {k: {f: x for f, x in v.items() if f != "labels_81"} for k, v in images.items()}
    with pytest.raises(
        DataError, match=r"missing\.h5: image 'a_0000.jpg' has no field .*labels_81"
    ):
        attempt("missing", missing)
    cube = {k: {**v, "features": v["features"].reshape(2, 4, 4)} for k, v in images.items()}
    with pytest.raises(DataError, match=r"cube\.h5: field 'a_0000.jpg-features' has shape"):
        attempt("cube", cube)
    zero_one = {k: {**v, "labels": (v["labels"] > 0).astype(np.int8)} for k, v in images.items()}
    zero_one = {
        k: {**v, "labels_81": (v["labels_81"] > 0).astype(np.int8)} for k, v in zero_one.items()
    }
    with pytest.raises(DataError, match="look like 0/1 labels"):
        attempt("zero_one", zero_one)
    with pytest.raises(DataError, match="unknown dataset 'coco'"):
        attempt("ok", images, dataset="coco")
    assert not list(tmp_path.glob("*_out.h5*"))  # no store, no partial file


def test_biam_refuses_overwrite_and_train_test_overlap(tmp_path: Path, nus_vocab: Path) -> None:
    rng = np.random.default_rng(3)
    train = write_biam(tmp_path / "train.h5", biam_nus_images(rng, 2, "train", "a"))
    test = write_biam(tmp_path / "test.h5", biam_nus_images(rng, 2, "test", "a"))  # same names
    with pytest.raises(DataError, match="2 images are in both the train and the test files"):
        import_biam(tmp_path / "s.h5", train=train, test=test, vocabulary=nus_vocab)
    out = import_biam(tmp_path / "s.h5", train=train, vocabulary=nus_vocab, show_progress=False)
    with pytest.raises(DataError, match="already exists"):
        import_biam(out, train=train, vocabulary=nus_vocab, show_progress=False)
    import_biam(out, train=train, vocabulary=nus_vocab, show_progress=False, overwrite=True)


# ----------------------------------------------------------------------------- LESA


def test_lesa_nus_round_trip(tmp_path: Path, nus_vocab: Path) -> None:
    rng = np.random.default_rng(4)
    train, test = lesa_nus_records(rng, 5, "actor"), lesa_nus_records(rng, 3, "zoos")
    out = import_lesa(
        tmp_path / "s.h5",
        train=write_lesa(tmp_path / "NUS_WIDE_Train_full_feature_ZLIB.tfrecords", train),
        test=write_lesa(tmp_path / "NUS_WIDE_Test_full_feature_ZLIB.tfrecords", test),
        vocabulary=nus_vocab,
        layout=(P, C),
        show_progress=False,
    )
    store = FeatureStore(out)
    assert list(store.label_set.names) == SEEN + CONCEPTS
    assert store.image_ids[0] == "actor/0000_0.jpg" and store.image_ids[5] == "zoos/0000_0.jpg"
    assert list(store.splits) == ["train"] * 5 + ["test"] * 3
    labels = store.labels()
    for row, record in enumerate(train + test):
        # [P × C] row-major -> [C, P] -> [C, H, W]
        np.testing.assert_array_equal(store.features(row), as_chw(record["feature"].T))
        np.testing.assert_array_equal(labels[row, :8], record["label_1k"][SEEN_IN_TAGS])
        expected_unseen = record["label_81"] if row >= 5 else np.zeros(4)
        np.testing.assert_array_equal(labels[row, 8:], expected_unseen)
    assert store.header.backbone["sha256"] == "lesa-features"
    assert store.header.backbone["std"] == pytest.approx([1 / 255] * 3)


def test_lesa_open_images_and_float_lists(tmp_path: Path, oi_vocab: Path) -> None:
    rng = np.random.default_rng(5)
    seen = np.int32([[1, 0, -1, 0, 1], [-1, 1, 0, 0, 1]])
    unseen = np.int32([[0, 1, -1, 1], [1, 0, 0, -1]])
    feats = rng.normal(size=(3, P, C)).astype("<f4")
    train = [{"img_id": "aa01", "feature": feats[0], "label": seen[0]}]
    test = [
        {"img_id": f"bb0{i}", "feature": feats[i + 1], "seen_label": s, "unseen_label": u}
        for i, (s, u) in enumerate(zip(seen, unseen, strict=True))
    ]
    # one record with numbers as float_list / int64_list instead of raw bytes
    extra = {
        "img_id": b"cc09",
        "feature": feats[0].ravel(),
        "seen_label": seen[1].astype(np.int64),
        "unseen_label": unseen[1].astype(np.int64),
    }
    test_file = tmp_path / "OI_seen_unseen_test_feature_2018_04_ZLIB.tfrecords"
    write_tfrecord(test_file, [*map(lesa_example, test), extra])
    out = import_lesa(
        tmp_path / "oi.h5",
        train=write_lesa(tmp_path / "train_feature_2018_04_ZLIB.tfrecords", train),
        test=test_file,
        dataset="open-images",
        vocabulary=oi_vocab,
        layout=(P, C),
        show_progress=False,
    )
    store = FeatureStore(out)
    assert store.image_ids == ["aa01", "bb00", "bb01", "cc09"]
    labels = store.labels()
    np.testing.assert_array_equal(labels[0], np.r_[seen[0], 0, 0, 0])
    np.testing.assert_array_equal(labels[1:3, :5], seen)
    np.testing.assert_array_equal(labels[1:3, 5:], unseen[:, OI_EVALUATED])
    np.testing.assert_array_equal(labels[3], labels[2])
    np.testing.assert_array_equal(store.features(3), store.features(0))


def test_lesa_errors_name_file_record_and_field(tmp_path: Path, nus_vocab: Path) -> None:
    rng = np.random.default_rng(6)
    records = lesa_nus_records(rng, 3, "a")

    def attempt(name: str, recs: list[dict[str, Any]]) -> None:
        path = write_lesa(tmp_path / f"{name}.tfrecords", recs)
        options = {"vocabulary": nus_vocab, "layout": (P, C), "show_progress": False}
        import_lesa(tmp_path / f"{name}_out.h5", test=path, **options)

    wrong = [*records[:2], {**records[2], "feature": records[2]["feature"][:3]}]
    with pytest.raises(DataError, match=r"wrong\.tfrecords: record 3: field 'feature' holds 24"):
        attempt("wrong", wrong)
    short = [{**r, "label_1k": r["label_1k"][:9]} for r in records]
    with pytest.raises(DataError, match=r"record 1: field 'label_1k' holds 9 labels, expected 10"):
        attempt("short", short)
    missing = [{k: v for k, v in r.items() if k != "label_81"} for r in records]
    with pytest.raises(DataError, match=r"missing\.tfrecords: record 1: no field 'label_81'"):
        attempt("missing", missing)
    assert not list(tmp_path.glob("*_out.h5*"))


@needs_nus
def test_real_nus_vocabulary_and_layouts(tmp_path: Path) -> None:
    """925 seen + 81 unseen from the real files, BiAM's [512, 196] and LESA's [196, 512]."""
    rng = np.random.default_rng(7)
    label_set = nus_label_set(NUS_SHARED / "TagList1k.txt", NUS_SHARED / "Concepts81.txt")
    assert (len(label_set.seen_idx), len(label_set.unseen_idx)) == (925, 81)
    tags = (NUS_SHARED / "TagList1k.txt").read_text().split()
    feats = rng.normal(size=(2, 512, 196)).astype(np.float32)
    biam = {
        "actor_0001_1.jpg": {
            "features": feats[0],
            "labels": pm_one(rng, 1006),
            "labels_81": pm_one(rng, 81),
        },
        "zoos_0002_2.jpg": {
            "features": feats[1],
            "labels": pm_one(rng, 1006),
            "labels_81": pm_one(rng, 81),
        },
    }
    out = import_biam(
        tmp_path / "b.h5",
        test=write_biam(tmp_path / "nus_wide_test.h5", biam),
        vocabulary=NUS_SHARED,
        show_progress=False,
    )
    store = FeatureStore(out)
    assert store.label_set == label_set and store.header.feature_shape == (512, 14, 14)
    np.testing.assert_array_equal(store.features(1), as_chw(feats[1]))
    np.testing.assert_array_equal(store.labels()[0, 925:], biam["actor_0001_1.jpg"]["labels_81"])

    seen_tag = label_set.seen_names[100]
    label_1k = -np.ones(1000, np.float32)
    label_1k[tags.index(seen_tag)] = 1
    record = {
        "img_id": "./data/NUS_WIDE/Flickr/actor/0001_1.jpg",
        "feature": feats[0].T.copy(),  # LESA's [P, C]
        "label_1k": label_1k,
        "label_81": pm_one(rng, 81).astype(np.float32),
    }
    out = import_lesa(
        tmp_path / "l.h5",
        test=write_lesa(tmp_path / "NUS_WIDE_Test_full_feature_ZLIB.tfrecords", [record]),
        vocabulary=NUS_SHARED,
        show_progress=False,
    )
    store = FeatureStore(out)
    row = store.labels()[0]
    assert row[label_set.index(seen_tag)] == 1 and (row[:925] == 1).sum() == 1
    np.testing.assert_array_equal(store.features(0), as_chw(feats[0]))  # same map as BiAM's


@needs_oi
def test_real_open_images_vocabulary(tmp_path: Path) -> None:
    vocab = read_open_images_vocabulary(OI_SHARED)
    unseen = np.zeros(2594, np.int8)
    unseen[vocab.evaluated[0]] = 1
    unseen[vocab.evaluated[1]] = -1
    seen = np.zeros(7186, np.int8)
    seen[[5, 6]] = [1, -1]
    test = {
        "0001.jpg": {"features": np.ones((512, 196)), "seenlabels": seen, "unseenlabels": unseen}
    }
    out = import_biam(
        tmp_path / "oi.h5",
        test=write_biam(tmp_path / "OPENIMAGES_TEST.h5", test),
        dataset="open-images",
        vocabulary=OI_SHARED,
        show_progress=False,
    )
    store = FeatureStore(out)
    assert (len(store.label_set.seen_idx), len(store.label_set.unseen_idx)) == (7186, 400)
    row = store.labels()[0]
    assert list(row[[5, 6, 7186, 7187]]) == [1, -1, 1, -1] and np.abs(row).sum() == 4
    assert "125,436" in str(store.test_set_line())


# ----------------------------------------------------------------------------- CLI and training


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``mlzsl.cli.main`` with progress bars off."""
    monkeypatch.setenv("MLZSL_NO_PROGRESS", "1")
    return main


def test_cli_imports_both_peers(
    tmp_path: Path, nus_vocab: Path, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(8)
    train = write_biam(tmp_path / "train.h5", biam_nus_images(rng, 3, "train", "a"))
    test = write_biam(tmp_path / "test.h5", biam_nus_images(rng, 2, "test", "b"))
    common = ["--vocabulary", str(nus_vocab)]
    args = ["data", "import-biam", "--train", str(train), "--test", str(test), *common]
    assert cli([*args, "--out", str(tmp_path / "b.h5")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(tmp_path / "b.h5")) and "5 images (3 train, 2 test)" in line
    assert "8 seen + 4 unseen" in line and "NUS-WIDE test set" in line

    records = lesa_nus_records(rng, 2, "c")
    for r in records:  # the CLI reads LESA's real layout, [196, 512]
        r["feature"] = rng.normal(size=(196, 512)).astype("<f4")
    lesa = write_lesa(tmp_path / "NUS_WIDE_Test_full_feature_ZLIB.tfrecords", records)
    args = ["data", "import-lesa", "--test", str(lesa), *common, "--out", str(tmp_path / "l.h5")]
    assert cli(args) == 0
    assert "features 512×14×14" in capsys.readouterr().out
    assert cli(args) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    assert cli([*args, "--force"]) == 0


@pytest.mark.parametrize("damage", ["truncated", "bad checksum"])
def test_cli_corrupt_lesa_file_exits_2_and_leaves_no_store(
    tmp_path: Path, nus_vocab: Path, cli: Any, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    records = lesa_nus_records(np.random.default_rng(9), 4, "a")
    for r in records:
        r["feature"] = np.ones((196, 512), "<f4")
    if damage == "truncated":
        path = write_lesa(tmp_path / "in.tfrecords", records)  # zlib
        path.write_bytes(path.read_bytes()[:-50])
    else:  # a flipped bit in record 3's data: found only in the second (feature) pass
        path = write_lesa(tmp_path / "in.tfrecords", records, compression="none")
        data = bytearray(path.read_bytes())
        size = len(data) // 4
        data[2 * size + 1000] ^= 0x10
        path.write_bytes(bytes(data))
    out = tmp_path / "s.h5"
    args = ["data", "import-lesa", "--test", str(path), "--vocabulary", str(nus_vocab)]
    assert cli([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "in.tfrecords" in err
    assert ("record 3: bad data checksum" in err) == (damage == "bad checksum")
    assert not out.exists() and not out.with_name("s.h5.tmp").exists()


def test_a_model_trains_on_an_imported_store(tmp_path: Path, nus_vocab: Path) -> None:
    from mlzsl.config import TrainConfig
    from mlzsl.inference.checkpoint import load_checkpoint
    from mlzsl.training.engine import fit

    rng = np.random.default_rng(10)
    train = write_biam(tmp_path / "train.h5", biam_nus_images(rng, 16, "train", "a"))
    test = write_biam(tmp_path / "test.h5", biam_nus_images(rng, 8, "test", "b"))
    store = import_biam(
        tmp_path / "s.h5", train=train, test=test, vocabulary=nus_vocab, show_progress=False
    )
    config = TrainConfig(model="fast0tag", epochs=1, batch_size=8, embedder="glove50")
    result = fit(config, store, tmp_path / "run", quiet=True)
    assert len(result.history) == 1
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt.backbone["sha256"] == "biam-features"
    assert ckpt.model_args["in_channels"] == C
    assert list(ckpt.vocabulary.names) == SEEN + CONCEPTS
