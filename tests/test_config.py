"""``mlzsl.config``: YAML files, ``key=value`` overrides, ``${ENV}``, packaged configs, saving."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from mlzsl.config import (
    TrainConfig,
    config_from_dict,
    list_packaged_configs,
    load_config,
    model_default_config,
    packaged_config,
    parse_override,
    save_config,
)
from mlzsl.errors import ConfigError, MlzslError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _one_line_naming(error: pytest.ExceptionInfo[ConfigError], path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    assert message.startswith(str(path)), message
    return message


# ----------------------------------------------------------------------------- YAML files


def test_no_file_no_overrides_is_the_dataclass_defaults() -> None:
    assert load_config() == TrainConfig()
    assert load_config(None, []) == TrainConfig()


def test_yaml_file_sets_its_keys_and_leaves_the_rest_at_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "run.yaml",
        "model: fast0tag\nmodel_args: {hidden: 64}\nlr: 1\nepochs: 2\nks: [3, 5]\n"
        "optimizer: rmsprop\noptimizer_args: {momentum: 0.9}\n",
    )
    config = load_config(path)
    assert config.model == "fast0tag" and config.model_args == {"hidden": 64}
    assert config.lr == 1.0 and isinstance(config.lr, float)  # an int where a float goes
    assert config.epochs == 2 and config.ks == [3, 5]
    assert config.optimizer == "rmsprop" and config.optimizer_args == {"momentum": 0.9}
    assert config.batch_size == TrainConfig().batch_size and config.seed == TrainConfig().seed
    assert load_config(str(path)) == config  # a str path works the same


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_yaml_file_is_the_defaults(tmp_path: Path, text: str) -> None:
    assert load_config(_write(tmp_path / "empty.yaml", text)) == TrainConfig()


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfepochs: 2\n")
    assert load_config(path).epochs == 2


@pytest.mark.parametrize("text", ["- model: ml2p\n", "just a string\n", "42\n"])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path / "list.yaml", text)
    with pytest.raises(ConfigError, match="expected a mapping of settings") as error:
        load_config(path)
    _one_line_naming(error, path)


@pytest.mark.parametrize(
    "text, line",
    [
        ("model: ml2p\n  lr: [0.1\n", 2),
        ("model: ml2p\nepochs: 3\n\tlr: 2\n", 3),  # a tab in the indentation
        ("model: [ml2p\n", 2),  # unclosed flow sequence: reported where the scanner gives up
    ],
)
def test_malformed_yaml_is_one_line_naming_file_and_line(
    tmp_path: Path, text: str, line: int
) -> None:
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match="malformed YAML") as error:
        load_config(path)
    message = _one_line_naming(error, path)
    assert message == f"{path}:{line}: malformed YAML"


def test_missing_file_and_folder_are_one_line_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="config not found") as error:
        load_config(missing)
    _one_line_naming(error, missing)
    with pytest.raises(ConfigError, match="a folder, not a config") as error:
        load_config(tmp_path)  # a folder
    _one_line_naming(error, tmp_path)


def test_non_utf8_file_is_one_line_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    _one_line_naming(error, path)


def test_unknown_key_in_a_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "typo.yaml", "model: ml2p\nlearning_rate: 0.1\nzeta: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'") as error:
        load_config(path)
    message = _one_line_naming(error, path)
    assert "known: model, model_args" in message  # lists the real keys


def test_wrong_type_in_a_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "types.yaml", "epochs: ten\n")
    with pytest.raises(ConfigError, match="epochs must be int, got 'ten'") as error:
        load_config(path)
    _one_line_naming(error, path)


@pytest.mark.parametrize(
    "text, key, line, first",
    [
        ("epochs: 1\nlr: 0.1\nepochs: 50\n", "epochs", 3, 1),
        ("model_args:\n  groups: 2\n  groups: 4\n", "groups", 3, 2),
        ("lr: 1\nlr: 1\n", "lr", 2, 1),  # even the same value: one of them is a slip
    ],
)
def test_yaml_duplicate_key_is_rejected_naming_key_and_line(
    tmp_path: Path, text: str, key: str, line: int, first: int
) -> None:
    path = _write(tmp_path / "dup.yaml", text)
    with pytest.raises(ConfigError, match=f"duplicated key '{key}'") as e:
        load_config(path)
    message = _one_line_naming(e, path)
    assert message.startswith(f"{path}:{line}:") and f"first at line {first}" in message


def test_an_override_error_blames_the_override_not_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "ok.yaml", "epochs: 3\nmodel_args: {groups: 2}\n")
    for override, key in (("epochs=ten", "epochs"), ("model_args=3", "model_args")):
        with pytest.raises(ConfigError, match=key) as e:
            load_config(path, [override])
        assert str(e.value).startswith(f"override {override!r}: "), e.value
        assert str(path) not in str(e.value)
    with pytest.raises(ConfigError) as e:  # the file's own error still names the file
        load_config(_write(tmp_path / "bad.yaml", "epochs: ten\n"), ["lr=0.1"])
    assert str(e.value).startswith(str(tmp_path / "bad.yaml"))


# ----------------------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    "text, keys, value",
    [
        ("lr=3.0e-4", ["lr"], 3e-4),
        ("epochs=5", ["epochs"], 5),
        ("model_args.groups=4", ["model_args", "groups"], 4),
        ("ks=[10, 20]", ["ks"], [10, 20]),
        (" model = lesa ", ["model"], "lesa"),  # key and value stripped
        ("embedder=glove:/a=b.txt", ["embedder"], "glove:/a=b.txt"),  # split at the first '='
        ("embedder=", ["embedder"], ""),
        ("ks=null", ["ks"], None),
    ],
)
def test_parse_override_reads_the_value_as_yaml(text: str, keys: list[str], value: object) -> None:
    assert parse_override(text) == (keys, value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("lr", "expected key=value"),
        ("=3", "expected key=value"),
        (" =3", "expected key=value"),
        ("lr=[1", "value is not valid YAML"),
    ],
)
def test_malformed_override_is_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        load_config(None, [text])
    assert str(error.value).startswith(f"override {text!r}")


def test_overrides_apply_in_order_over_the_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "base.yaml",
        "model: fast0tag\nmodel_args: {hidden: 64}\noptimizer: rmsprop\n"
        "optimizer_args: {momentum: 0.9}\nlr: 0.5\n",
    )
    config = load_config(
        path,
        [
            "lr=0.1",
            "lr=0.2",  # the later one wins
            "model_args.dropout=0.1",  # merged into the file's mapping
            "model_args.hidden=32",  # replaces the file's value
            "optimizer_args.alpha=0.95",
        ],
    )
    assert config.lr == 0.2
    assert config.model_args == {"hidden": 32, "dropout": 0.1}
    assert config.optimizer_args == {"momentum": 0.9, "alpha": 0.95}
    # a whole mapping replaces the file's
    assert load_config(path, ["model_args={groups: 2}"]).model_args == {"groups": 2}
    # nested keys of a mapping the file lacks start a new one
    assert load_config(None, ["model_args.groups=2"]).model_args == {"groups": 2}


def test_only_model_and_optimizer_args_may_be_nested() -> None:
    for text in ("model_args.a.b=1", "lr.x=1", "seed.value=3"):
        with pytest.raises(ConfigError, match="only model_args.KEY and optimizer_args.KEY"):
            load_config(None, [text])


def test_nested_override_onto_a_non_mapping_is_a_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "scalar.yaml", "model_args: 5\n")
    with pytest.raises(ConfigError, match="model_args"):
        load_config(path, ["model_args.groups=2"])


# ----------------------------------------------------------------------------- type checks


@pytest.mark.parametrize(
    "override, message",
    [
        ("epochs=ten", "epochs must be int, got 'ten'"),
        ("epochs=2.0", "epochs must be int, got 2.0"),  # no silent truncation
        ("epochs=true", "epochs must be int, got True"),  # bool is not an int here
        ("lr=true", "lr must be float, got True"),
        ("lr=fast", "lr must be float"),
        ("model=3", "model must be str, got 3"),
        ("model_args=3", "model_args must be a mapping, got 3"),
        ("optimizer_args=[1]", "optimizer_args must be a mapping"),
        ("ks=5", "ks must be list"),
        ("ks=[3, a]", "ks must be list"),
        ("ks=[3, true]", "ks must be list"),
        ("optimizer=sgd", "optimizer must be one of"),
        ("loss=hinge", "loss must be one of"),
        ("schedule=linear", "schedule must be one of"),
        ("batch_size=0", "batch_size must be at least 1"),
        ("epochs=0", "epochs must be at least 1"),
        ("eval_every=-1", "eval_every must be at least 1"),
        ("lr_reference_dim=0", "lr_reference_dim must be at least 1"),
        ("lr_reference_dim=1.5", "lr_reference_dim must be"),
        ("lr=0", "lr must be > 0"),
        ("lr=-0.001", "lr must be > 0"),
        ("warmup_epochs=-0.5", "warmup_epochs and workers"),
        ("workers=-1", "warmup_epochs and workers"),
    ],
)
def test_bad_values_are_named_with_key_and_value(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as error:
        load_config(None, [override])
    assert str(error.value).startswith(f"override {override!r}: ")  # the override is named
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("value", ["3e-4", "1e-3", "1E5"])
def test_scientific_notation_without_a_dot_is_a_float(tmp_path: Path, value: str) -> None:
    assert load_config(None, [f"lr={value}"]).lr == float(value)
    assert load_config(_write(tmp_path / "e.yaml", f"lr: {value}\n")).lr == float(value)


def test_values_are_converted_to_the_fields_types() -> None:
    config = load_config(None, ["lr=1", "warmup_epochs=0", "grad_clip=2", "ks=null", "seed=7"])
    assert (config.lr, config.warmup_epochs, config.grad_clip) == (1.0, 0.0, 2.0)
    assert all(isinstance(v, float) for v in (config.lr, config.warmup_epochs, config.grad_clip))
    assert config.ks is None and config.seed == 7
    assert load_config(None, ["ks=[1, 2, 3]"]).ks == [1, 2, 3]


@pytest.mark.parametrize(
    "reference, embed_dim, factor",
    [(None, 384, 1.0), (50, 50, 1.0), (50, 32, 1.0), (50, 400, 0.125)],
)
def test_lr_reference_dim_divides_the_lr_for_larger_label_vectors(
    reference: int | None, embed_dim: int, factor: float
) -> None:
    import torch

    from mlzsl.training.engine import make_optimizer, peak_lr

    config = load_config(None, ["lr=0.004", f"lr_reference_dim={reference or 'null'}"])
    assert peak_lr(config, embed_dim) == pytest.approx(0.004 * factor)
    optimizer = make_optimizer(config, iter([torch.nn.Parameter(torch.zeros(1))]), embed_dim)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.004 * factor)


def test_nan_learning_rate_is_refused() -> None:
    assert math.isnan(float(yaml.safe_load(".nan")))
    with pytest.raises(ConfigError, match="lr"):
        load_config(None, ["lr=.nan"])


def test_config_from_dict_validates_like_a_file() -> None:
    assert config_from_dict({}) == TrainConfig()
    assert config_from_dict({"epochs": 3}, where="here").epochs == 3
    with pytest.raises(ConfigError, match="^here: expected a mapping"):
        config_from_dict([1], where="here")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="^here: unknown key 'nope'"):
        config_from_dict({"nope": 1, "epochs": 2}, where="here")
    assert issubclass(ConfigError, MlzslError)  # the CLI's one-line, exit-2 path


def test_every_field_is_accepted_with_its_default_value() -> None:
    defaults = TrainConfig().to_dict()
    assert set(defaults) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert config_from_dict(defaults) == TrainConfig()


# ----------------------------------------------------------------------------- ${ENV}


def test_env_references_expand_in_embedder_and_model_args(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLZSL_TEST_VECTORS", "/data/vec.pkl")
    monkeypatch.setenv("MLZSL_TEST_WEIGHTS", "/w/vgg.pth")
    path = _write(
        tmp_path / "env.yaml",
        "embedder: nus:${MLZSL_TEST_VECTORS}\n"
        "model_args: {weights: '${MLZSL_TEST_WEIGHTS}', both: '${MLZSL_TEST_WEIGHTS}+x', n: 3}\n",
    )
    config = load_config(path)
    assert config.embedder == "nus:/data/vec.pkl"
    assert config.model_args == {"weights": "/w/vgg.pth", "both": "/w/vgg.pth+x", "n": 3}
    # overrides are expanded too
    assert load_config(None, ["embedder=glove:${MLZSL_TEST_VECTORS}"]).embedder == (
        "glove:/data/vec.pkl"
    )


def test_only_braced_names_in_embedder_and_model_args_are_expanded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLZSL_TEST_X", "expanded")
    assert load_config(None, ["embedder=glove:$MLZSL_TEST_X"]).embedder == "glove:$MLZSL_TEST_X"
    # other string fields are taken literally (the module docstring: embedder and model_args)
    assert load_config(None, ["select_metric=${MLZSL_TEST_X}"]).select_metric == "${MLZSL_TEST_X}"
    assert load_config(None, ["optimizer_args.tag=${MLZSL_TEST_X}"]).optimizer_args == {
        "tag": "${MLZSL_TEST_X}"
    }


def test_unset_env_reference_names_the_variable_the_key_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLZSL_TEST_UNSET", raising=False)
    path = _write(tmp_path / "unset.yaml", "model_args: {weights: '${MLZSL_TEST_UNSET}'}\n")
    with pytest.raises(ConfigError, match=r"model_args.weights uses \$\{MLZSL_TEST_UNSET\}") as e:
        load_config(path)
    message = _one_line_naming(e, path)
    assert "not set" in message and "export MLZSL_TEST_UNSET" in message
    with pytest.raises(ConfigError, match=r"^override .*: embedder uses \$\{MLZSL_TEST_UNSET\}"):
        load_config(None, ["embedder=glove:${MLZSL_TEST_UNSET}"])
    # overriding the key that names the variable removes the need for it
    path2 = _write(tmp_path / "unset2.yaml", "embedder: nus:${MLZSL_TEST_UNSET}\n")
    assert load_config(path2, ["embedder=glove50"]).embedder == "glove50"


# ----------------------------------------------------------------------------- packaged configs


def test_packaged_configs_are_listed_and_loadable_by_name() -> None:
    names = list_packaged_configs()
    assert names == sorted(names) and len(names) == len(set(names))
    assert {"scenes/fast0tag", "scenes/ml2p", "default/lesa", "nus_wide/lesa"} <= set(names)
    for name in names:
        group, model = name.split("/")
        path = packaged_config(group, model)
        assert path.is_file() and path.suffix == ".yaml" and path.parent.name == group
    by_name = load_config("scenes/fast0tag", ["epochs=2"])
    assert by_name == load_config(packaged_config("scenes", "fast0tag"), ["epochs=2"])
    assert by_name.model == "fast0tag" and by_name.epochs == 2
    assert not packaged_config("scenes", "no_such_model").exists()


def test_unknown_packaged_name_lists_the_packaged_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no such config file or packaged config") as error:
        load_config("scenes/no_such_model")
    message = str(error.value)
    assert message.startswith("scenes/no_such_model:") and "scenes/fast0tag" in message
    # a name with a suffix or another depth is a plain path: the plain not-found error
    for name in ("scenes/no_such_model.yaml", "a/b/c", "lesa"):
        with pytest.raises(ConfigError, match="config not found"):
            load_config(name)


def test_a_local_file_wins_over_the_packaged_config_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenes").mkdir()
    _write(tmp_path / "scenes" / "fast0tag", "model: fast0tag\nepochs: 2\n")
    assert load_config("scenes/fast0tag").epochs == 2
    assert load_config(packaged_config("scenes", "fast0tag")).epochs != 2


def test_model_default_config_is_the_papers_settings_or_plain_defaults() -> None:
    lesa = model_default_config("lesa", ["epochs=3"])
    assert lesa == load_config("default/lesa", ["model=lesa", "epochs=3"])
    assert lesa.model == "lesa" and lesa.epochs == 3
    assert lesa != TrainConfig(model="lesa", epochs=3)  # the paper's settings differ somewhere
    assert model_default_config("no_such_model") == TrainConfig(model="no_such_model")


# ----------------------------------------------------------------------------- save / load


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    config = TrainConfig(
        model="lesa",
        model_args={"groups": 4, "note": "ünïcode ✓", "weights": None, "flag": True},
        embedder="glove:/some where/vec.txt",
        loss="bce",
        optimizer="adamw",
        optimizer_args={"betas": [0.9, 0.99], "eps": 1e-7},
        lr=3e-4,
        weight_decay=0.05,
        batch_size=16,
        epochs=7,
        warmup_epochs=0.5,
        schedule="constant",
        seed=11,
        select_metric="gzsl.F1@3",
        eval_every=2,
        grad_clip=1.5,
        workers=2,
        ks=[10, 20],
    )
    path = tmp_path / "saved.yaml"
    save_config(config, path)
    assert load_config(path) == config
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert list(data) == [f.name for f in dataclasses.fields(TrainConfig)]  # field order kept
    save_config(TrainConfig(), path)  # overwrites
    assert load_config(path) == TrainConfig()


def test_save_writes_the_expanded_env_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLZSL_TEST_VECTORS", "/data/vec.pkl")
    config = load_config(None, ["embedder=nus:${MLZSL_TEST_VECTORS}"])
    save_config(config, tmp_path / "c.yaml")
    monkeypatch.delenv("MLZSL_TEST_VECTORS")
    assert load_config(tmp_path / "c.yaml") == config  # no longer needs the variable


def test_a_setting_name_that_is_not_a_word_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text("?\n")  # YAML: a mapping whose one key is null
    with pytest.raises(ConfigError, match="setting names must be words"):
        load_config(path)
