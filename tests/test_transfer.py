"""Knowledge transfer from a ready model (issue 20): distillation on seen labels only, the
teacher's initialisation, and score fusion carried by the checkpoint through tag and export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mlzsl.config import load_config
from mlzsl.errors import ConfigError
from mlzsl.inference.card import model_card
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.inference.evaluation import evaluate_checkpoint, label_vectors, predict_scores
from mlzsl.inference.tagger import Tagger
from mlzsl.store.feature_store import FeatureStore
from mlzsl.training.engine import Trainer, fit
from mlzsl.training.losses import distillation_loss
from tests.conftest import make_image_folder

# photo-glove: the ready model over EfficientNet-Lite2 with GloVe-50 vectors and no prompt (quick)
TRANSFER = ["model=fast0tag", "embedder=glove50", "teacher=photo-glove", "loss=bce"]


@pytest.fixture(scope="module")
def lite2_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 random images as EfficientNet-Lite2 maps at 64 px: the maps ``photo-glove`` reads."""
    from mlzsl.store.extract import extract_features

    root = make_image_folder(tmp_path_factory.mktemp("lite2") / "data", 36, size=64)
    out = root.parent / "lite2.h5"
    extract_features(
        root, out, backbone="efficientnet_lite2", image_size=64, workers=0, show_progress=False
    )
    return out


def test_distillation_is_scale_free_and_teaches_only_the_student() -> None:
    teacher = torch.randn(4, 6)
    student = (3 * teacher + 1).requires_grad_(True)  # the same ranking on another scale
    assert float(distillation_loss(student, teacher).detach()) < 1e-8
    other = torch.randn(4, 6, requires_grad=True)
    teacher.requires_grad_(True)
    loss = distillation_loss(other, teacher)
    loss.backward()
    assert float(loss.detach()) > 0.1 and other.grad is not None and teacher.grad is None
    with pytest.raises(ConfigError, match="L ≥ 2"):
        distillation_loss(torch.zeros(2, 1), torch.zeros(2, 1))


def test_no_unseen_label_or_vector_reaches_training(lite2_store: Path, tmp_path: Path) -> None:
    """Unseen labels' vectors are NaN here: were any to enter a loss, a teacher score used in
    training or the fusion constants, the weights or the constants would turn NaN."""
    config = load_config(
        None,
        [
            *TRANSFER,
            "distill_weight=1",
            "teacher_init_epochs=1",
            "fusion_weight=0.5",
            "adapter_weight=0.5",
        ],
    )
    trainer = Trainer(config, lite2_store, tmp_path / "run", quiet=True)
    unseen = FeatureStore(lite2_store).label_set.unseen_idx
    assert len(unseen) == 2
    trainer.vectors[unseen] = math.nan
    for epoch in (1, 2):  # distillation alone, then BCE + distillation
        assert math.isfinite(trainer.train_epoch(epoch))
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    fusion = trainer._fusion()
    assert fusion is not None
    assert all(math.isfinite(v) for v in (*fusion.student_stats, *fusion.teacher_stats))
    assert fusion.adapter is not None  # the adapter: seen labels' vectors and columns only
    assert fusion.adapter["vectors"].shape[0] == len(trainer.seen)
    assert all(torch.isfinite(t).all() for t in fusion.adapter.values())
    # and the guard is real: an unseen vector among the training labels does turn NaN
    trainer.seen = torch.cat([trainer.seen, torch.from_numpy(unseen[:1])])
    trainer.train_epoch(3)
    assert not all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_fusion_is_stored_and_every_surface_scores_with_it(
    lite2_store: Path, tmp_path: Path
) -> None:
    config = load_config(
        None,
        [*TRANSFER, "epochs=2", "fusion_weight=0.7", "distill_weight=0.5", "adapter_weight=0.5"],
    )
    fit(config, lite2_store, tmp_path / "run", quiet=True)
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt.fusion is not None and ckpt.fusion.weight == 0.7
    assert ckpt.fusion.teacher == "photo-glove" and ckpt.fusion.teacher_model == "imagenet_conse"
    assert ckpt.fusion.adapter_weight == 0.5 and ckpt.fusion.adapter is not None
    card = model_card(ckpt)
    fused_card = {"teacher": "photo-glove", "weight": 0.7, "adapter_weight": 0.5}
    assert card["fusion"] == {**fused_card, "adapter_labels": 4}
    # the metrics the checkpoint reports are those of the model it rebuilds (same constants)
    again = evaluate_checkpoint(tmp_path / "run" / "best.pt", lite2_store)[1].primary.to_dict()
    assert ckpt.metrics is not None
    for split in ("zsl", "gzsl"):
        assert again[split]["mAP"] == pytest.approx(ckpt.metrics[split]["mAP"], abs=1e-6)

    # the fused score, by hand: (1 - w) z(student) + w z(teacher), constants from the checkpoint
    store = FeatureStore(lite2_store)
    rows = store.indices("test")
    vectors = label_vectors("glove50", store.label_set)
    fused = predict_scores(ckpt.build_model(), store, rows, vectors)
    ckpt.fusion = None
    head = predict_scores(ckpt.build_model(), store, rows, vectors)
    from mlzsl.inference.pretrained import real_photo_checkpoint

    teacher = predict_scores(
        load_checkpoint(real_photo_checkpoint("photo-glove")).build_model(), store, rows, vectors
    )
    fusion = load_checkpoint(tmp_path / "run" / "best.pt").fusion
    assert fusion is not None
    (ms, ss), (mt, st) = fusion.student_stats, fusion.teacher_stats
    by_hand = 0.3 * (head - ms) / ss + 0.7 * (teacher - mt) / st
    # + 0.5 × the adapter, on the seen labels only: each one's classifier on the pooled maps
    assert fusion.adapter is not None
    a = {key: value.double().numpy() for key, value in fusion.adapter.items()}
    pooled = store.features(rows).mean(axis=(2, 3))
    probe = ((pooled - a["feature_stats"][0]) / a["feature_stats"][1]) @ a["weight"].T + a["bias"]
    seen = store.label_set.seen_idx
    by_hand[:, seen] += 0.5 * (probe - a["score_stats"][0]) / a["score_stats"][1]
    np.testing.assert_allclose(fused, by_hand, rtol=1e-4, atol=1e-4)
    assert not np.allclose(fused, head, atol=1e-3)  # the teacher does take part

    # tag and export carry it: the tagger's scores on image files are the fused ones
    tagger = Tagger.from_checkpoint(tmp_path / "run" / "best.pt")
    images = [lite2_store.parent / "data" / store.image_ids[r] for r in rows[:3]]
    names = list(store.label_set.names)
    pytest.importorskip("onnxruntime")
    from mlzsl.inference.export import export_checkpoint
    from mlzsl.inference.onnx_runtime import OnnxTagger

    export_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "fused.onnx")
    onnx = OnnxTagger(tmp_path / "fused.onnx")
    assert onnx.card["fusion"] == card["fusion"]
    np.testing.assert_allclose(
        onnx.scores(images, names), tagger.scores(images, names), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["fusion_weight=0.5"], "needs a teacher"),
        (["teacher=photo-glove", "embedder=minilm"], "embeds labels with embedder=glove50"),
        (["teacher=nope"], "teacher must be a ready model"),
    ],
)
def test_a_teacher_that_does_not_fit_the_run_is_one_line(
    lite2_store: Path, tmp_path: Path, overrides: list[str], message: str
) -> None:
    config = load_config(None, ["model=fast0tag", "embedder=glove50", *overrides])
    with pytest.raises(ConfigError, match=message):
        Trainer(config, lite2_store, tmp_path / "run", quiet=True)


def test_a_teacher_over_other_maps_is_refused(tiny_store: Path, tmp_path: Path) -> None:
    config = load_config(None, TRANSFER)
    with pytest.raises(ConfigError, match="reads efficientnet_lite2 maps"):
        Trainer(config, tiny_store, tmp_path / "run", quiet=True)


@pytest.mark.parametrize(
    "override, message",
    [
        ("fusion_weight=1.5", "fusion_weight between 0 and 1"),
        ("distill_weight=-1", "must be ≥ 0"),
        ("adapter_c=0", "adapter_c > 0"),
        ("adapter_weight=0.5", "set fusion_weight > 0"),
        ("label_prompt=no placeholder", "exactly one"),
    ],
)
def test_transfer_settings_are_checked(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_the_adapter_fits_scikit_learns_logistic_regression(lite2_store: Path) -> None:
    """Each training label's classifier is scikit-learn's L2 logistic regression (the oracle),
    and only that label's vector reaches it: any other label gets (almost) nothing."""
    from sklearn.linear_model import LogisticRegression

    from mlzsl.models._fusion import LabelAdapter
    from mlzsl.training.transfer import fit_adapter

    store = FeatureStore(lite2_store)
    rows, seen = store.indices("train"), store.label_set.seen_idx
    vectors = label_vectors("glove50", store.label_set)
    tensors = fit_adapter(store, rows, seen, vectors[seen], c=0.05)
    pooled = store.features(rows).mean(axis=(2, 3)).astype(np.float64)
    spread = pooled.std(0)
    x = (pooled - pooled.mean(0)) / np.where(spread > 0, spread, 1.0)  # dead channels: as is
    truth = store.labels(rows)[:, seen] > 0
    for k in range(len(seen)):
        if truth[:, k].all() or not truth[:, k].any():
            assert float(tensors["weight"][k].abs().sum()) == 0.0
            continue
        oracle = LogisticRegression(C=0.05, max_iter=10_000, tol=1e-10).fit(x, truth[:, k])
        ours = x @ tensors["weight"][k].double().numpy() + float(tensors["bias"][k])
        np.testing.assert_allclose(ours, oracle.decision_function(x), atol=1e-4)

    stats = tensors["score_stats"]
    adapter = LabelAdapter(
        tensors["vectors"],
        tensors["weight"],
        tensors["bias"],
        tensors["feature_stats"],
        (float(stats[0]), float(stats[1])),
    )
    feats = torch.from_numpy(store.features(rows[:5]))
    out = adapter(feats, vectors)  # every label of the store, seen and unseen
    own = adapter.classify(feats)
    torch.testing.assert_close(out[:, seen], own, rtol=1e-4, atol=1e-4)
    unseen = store.label_set.unseen_idx
    assert float(out[:, unseen].abs().max()) < 1e-3 * float(own.abs().max())


def test_the_logistic_fit_matches_scikit_learn_with_more_images_than_channels() -> None:
    """The other side of the row-span reduction (N > C), unannotated rows left out, a column
    with no positive left constant."""
    from sklearn.linear_model import LogisticRegression

    from mlzsl.training.transfer import _logistic

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 20))
    y = (x[:, :3] + rng.standard_normal((300, 3)) > 1).astype(np.float64)
    y[:, 2] = 0.0  # no positive
    known = (rng.random((300, 3)) > 0.2).astype(np.float64)
    weight, bias = _logistic(*(torch.from_numpy(a) for a in (x, y, known)), 0.3)
    for k in range(2):
        rows = known[:, k] > 0
        oracle = LogisticRegression(C=0.3, max_iter=10_000, tol=1e-10).fit(x[rows], y[rows, k])
        np.testing.assert_allclose(weight[k].numpy(), oracle.coef_[0], atol=1e-4)
        assert float(bias[k]) == pytest.approx(float(oracle.intercept_[0]), abs=1e-4)
    assert float(weight[2].abs().sum()) == 0.0 and float(bias[2]) == 0.0
