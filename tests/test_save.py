"""model.save / backprop_derived.load: exact round trips for every layer, atomic writes,
and clear errors for files that do not fit."""

import json
import os
import zipfile

import numpy as np
import pytest

import backprop_derived
from backprop_derived import Network, load
from backprop_derived.layers import (
    GRU,
    LSTM,
    RNN,
    Activation,
    AvgPool1d,
    AvgPool2d,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Embedding,
    GroupNorm,
    LayerNorm,
    MaxPool1d,
    MaxPool2d,
    MultiHeadAttention,
    Residual,
    RMSNorm,
    SelfAttention,
    Sequential,
)
from backprop_derived.layers import _WHERE as LAYER_CLASSES
from backprop_derived.serialization import FORMAT_VERSION

rng = np.random.default_rng(0)


def models():
    """(name, model, X, Y) covering every layer class and both model classes."""
    X2 = rng.normal(size=(12, 3))
    labels = rng.integers(0, 3, size=12)
    ids = rng.integers(0, 7, size=(4, 5))
    seq_labels = rng.integers(0, 3, size=(4, 5))
    X1 = rng.normal(size=(3, 2, 9))
    Xc = rng.normal(size=(3, 2, 6, 6))
    return [
        ("network", Network([3, 5, 3], ["relu", "softmax"], l2=0.3), X2, labels),
        ("network-float32", Network([3, 4, 1], ["tanh", "sigmoid"], loss="binary_cross_entropy",
                                    dtype=np.float32), X2, (labels == 1).astype(float)),
        ("dense-stack", Sequential([
            Dense(3, 6), Activation("swish"), BatchNorm(6, eps=1e-3, momentum=0.2),
            Dropout(0.3, seed=1), Residual(Dense(6, 6), Activation("tanh")), LayerNorm(6), RMSNorm(6, eps=1e-5),
            Dense(6, 3), Activation("softmax")]), X2, labels),
        ("sequence", Sequential([
            Embedding(7, 4), SelfAttention(4, 3, causal=True), RNN(4, 5), Dense(5, 3),
            Activation("softmax")]), ids, seq_labels),
        ("multi-head", Sequential([
            Embedding(7, 4), MultiHeadAttention(4, 2, causal=True, seed=3), Dense(4, 3),
            Activation("softmax")]), ids, seq_labels),
        ("conv1d", Sequential([Conv1d(2, 3, 3), GroupNorm(3, 3), Activation("relu"), Conv1d(3, 2, 2)],
                              loss="squared_error"), X1, rng.normal(size=(3, 2, 6))),
        ("conv2d-float32", Sequential([Conv2d(2, 3, 3, 2, dtype=np.float32), Activation("tanh")],
                                      loss="squared_error"), Xc.astype(np.float32),
         rng.normal(size=(3, 3, 4, 5))),
        ("gated", Sequential([GRU(3, 4), LSTM(4, 3), Dense(3, 2)],
                             loss="squared_error"), rng.normal(size=(3, 4, 3)),
         rng.normal(size=(3, 4, 2))),
        ("pooling", Sequential([Conv1d(2, 3, 2, padding=1), MaxPool1d(2), AvgPool1d(2, stride=1)],
                               loss="squared_error"), X1, rng.normal(size=(3, 3, 4))),
        ("pooling2d", Sequential([Conv2d(2, 2, 1, 1, stride=2), AvgPool2d(1), MaxPool2d(2, stride=1)],
                                 loss="squared_error"), Xc, rng.normal(size=(3, 2, 2, 2))),
    ]


CASES = models()


def test_the_cases_cover_every_layer_class():
    used = {type(layer).__name__ for _, model, _, _ in CASES if isinstance(model, Sequential)
            for layer in model.layers}
    used |= {"Dense", "Activation"}  # inside the Residual block
    assert used | {"Sequential"} == set(LAYER_CLASSES)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0] for c in CASES])
def test_round_trip_is_bit_identical(case, tmp_path):
    _, model, X, Y = CASES[case]
    # train a little, so that the parameters and the running statistics are not the initial ones
    model.fit(X, Y, optimizer="adam", lr=0.01, epochs=2, batch_size=4, seed=0, progress=False)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = load(path)
    assert type(loaded) is type(model) and loaded.dtype == model.dtype
    np.testing.assert_array_equal(loaded.forward(X), model.forward(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.loss(X, Y) == model.loss(X, Y)
    if isinstance(model, Sequential):
        for a, b in zip(model.params, loaded.params, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert a[key].dtype == b[key].dtype
                np.testing.assert_array_equal(a[key], b[key])
    # the file is an .npz of plain arrays with a JSON manifest: readable without pickle
    with np.load(path, allow_pickle=False) as archive:
        manifest = json.loads(archive["manifest.json"].tobytes())
    assert manifest["version"] == FORMAT_VERSION and manifest["class"] == type(model).__name__


def test_batchnorm_statistics_and_dropout_generator_are_saved(tmp_path):
    _, model, X, Y = CASES[2]
    model.fit(X, Y, epochs=1, lr=0.05, progress=False)
    model.save(tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    bn, bn2 = model.layers[2], loaded.layers[2]
    np.testing.assert_array_equal(bn.running_var, bn2.running_var)
    assert not np.array_equal(bn.running_var, np.ones(6))
    # the same masks from here on: training continues identically
    np.testing.assert_array_equal(model.layers[3].rng.random(5), loaded.layers[3].rng.random(5))


def test_load_parameters_into_the_same_architecture(tmp_path):
    trained = Network([3, 5, 3], ["relu", "softmax"], seed=1)
    trained.save(tmp_path / "m.npz")
    fresh = Network([3, 5, 3], ["relu", "softmax"], seed=2)
    fresh.load_parameters(tmp_path / "m.npz")
    for a, b in zip([*trained.weights, *trained.biases], [*fresh.weights, *fresh.biases],
                    strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("other, message", [
    (lambda: Network([3, 6, 3], ["relu", "softmax"]), r"layer_sizes is \[3, 5, 3\] in the file"),
    (lambda: Network([3, 5, 3], ["tanh", "softmax"]), "activations"),
    (lambda: Sequential([Dense(3, 5), Activation("relu"), Dense(5, 3), Activation("softmax")]),
     "a Network, not a Sequential"),
    (lambda: Network([3, 5, 3], ["relu", "softmax"], dtype=np.float32), "float64"),
])
def test_another_architecture_is_named_and_nothing_changes(tmp_path, other, message):
    Network([3, 5, 3], ["relu", "softmax"], seed=1).save(tmp_path / "m.npz")
    model = other()
    before = model._saved_state()[1]
    before = {k: v.copy() for k, v in before.items()}
    with pytest.raises(ValueError, match=message):
        model.load_parameters(tmp_path / "m.npz")
    for key, value in model._saved_state()[1].items():
        np.testing.assert_array_equal(value, before[key])


def test_another_layer_stack_is_named(tmp_path):
    Sequential([Dense(3, 5), Activation("relu"), Dense(5, 3), Activation("softmax")]).save(
        tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"layer 1 \(Activation\) name is 'relu' in the file"):
        Sequential([Dense(3, 5), Activation("tanh"), Dense(5, 3), Activation("softmax")]
                   ).load_parameters(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="layer 2 is Dense in the file, LayerNorm here"):
        Sequential([Dense(3, 5), Activation("relu"), LayerNorm(5), Activation("softmax")],
                   loss="cross_entropy").load_parameters(tmp_path / "m.npz")


def test_truncated_file(tmp_path):
    path = tmp_path / "m.npz"
    Network([3, 5, 3], ["relu", "softmax"]).save(path)
    data = path.read_bytes()
    for keep in (len(data) // 2, len(data) - 10, 30):
        path.write_bytes(data[:keep])
        with pytest.raises(ValueError, match="truncated or corrupt"):
            load(path)


def test_not_a_model_file(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a backprop-derived model file"):
        load(tmp_path / "plain.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load(tmp_path / "text.npz")


def rewrite_manifest(path, change):
    with np.load(path, allow_pickle=False) as archive:
        contents = {name: archive[name] for name in archive.files}
    manifest = json.loads(contents["manifest.json"].tobytes())
    change(manifest)
    contents["manifest.json"] = np.frombuffer(json.dumps(manifest).encode(), np.uint8)
    np.savez(path, **contents)


def test_newer_format_is_refused_with_the_versions(tmp_path):
    path = tmp_path / "m.npz"
    Network([3, 5, 3], ["relu", "softmax"]).save(path)
    rewrite_manifest(path, lambda m: m.update(version=FORMAT_VERSION + 1))
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1} by a newer"):
        load(path)


def test_a_missing_array_is_named(tmp_path):
    path = tmp_path / "m.npz"
    Network([3, 5, 3], ["relu", "softmax"]).save(path)
    with np.load(path, allow_pickle=False) as archive:
        contents = {name: archive[name] for name in archive.files if name != "biases.1"}
    np.savez(path, **contents)
    with pytest.raises(ValueError, match="biases.1"):
        load(path)


def test_a_crash_mid_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    old = Network([3, 5, 3], ["relu", "softmax"], seed=1)
    old.save(path)
    saved = path.read_bytes()

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(backprop_derived.serialization.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        Network([3, 5, 3], ["relu", "softmax"], seed=2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == saved
    assert os.listdir(tmp_path) == ["m.npz"]  # no temporary file left behind
    np.testing.assert_array_equal(load(path).weights[0], old.weights[0])


def test_the_file_is_a_zip_of_npy_arrays(tmp_path):
    path = tmp_path / "m.npz"
    Network([2, 2], ["softmax"]).save(path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["biases.0.npy", "manifest.json.npy",
                                              "weights.0.npy"]
