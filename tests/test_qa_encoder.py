"""The all-mpnet-base-v2 forward pass (NumPy embeddings, ONNX Runtime layers with 8-bit weights)
against sentence-transformers' own output.

``tests/data/mpnet_reference.json`` holds vectors computed once with sentence-transformers on PyTorch
(which the project does not install) for a few texts: short, one token, punctuation and accents,
and one of 242 tokens, long enough for relative positions beyond MPNet's 128-token bucket range.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bot.core.onboarding import encoder, mpnet_graph
from bot.core.onboarding.encoder import MPNetEncoder

REFERENCE = json.loads((Path(__file__).parent / "data" / "mpnet_reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model() -> MPNetEncoder:
    loaded = encoder.shared_encoder()
    assert loaded is not None, "the all-mpnet-base-v2 packages should be installed with the project"
    return loaded


def test_embeddings_match_sentence_transformers(model: MPNetEncoder) -> None:
    texts = [case["text"] for case in REFERENCE["cases"]]
    expected = np.array([case["vector"] for case in REFERENCE["cases"]], dtype=np.float32)
    for batch in (1, 16):  # alone, and padded together with texts of other lengths
        vectors = model.encode(texts, batch=batch)
        assert vectors.shape == (len(texts), encoder.DIMENSION)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        cosines = (vectors * expected).sum(axis=1)
        # the weights are 8-bit (mpnet_graph): 0.9996 at worst here; float32 weights gave 0.99999
        assert cosines.min() > 0.9995, cosines
        np.testing.assert_allclose(vectors, expected, atol=5e-3)


def test_tokenizer_matches_the_reference_token_counts(model: MPNetEncoder) -> None:
    for case in REFERENCE["cases"]:
        assert len(model._tokenizer.encode(case["text"]).ids) == case["tokens"], case["text"][:40]


def test_relative_position_buckets_follow_mpnet() -> None:
    buckets = encoder.relative_position_buckets(300)
    assert buckets[0, 0] == 0
    assert buckets[5, 4] == 1 and buckets[4, 5] == 17  # one step back / forward: separate halves
    assert buckets[0, 7] == 16 + 7  # exact up to 8 positions
    assert buckets[0, 299] == buckets[0, 200] == 31  # beyond max_distance: the last bucket
    assert buckets[299, 0] == 15
    assert buckets.min() == 0 and buckets.max() == 31


def test_cached_encoding_equals_encoding_and_is_bounded(model: MPNetEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["where is the price list", "how do I register a deal", "where is the price list"]
    direct = model.encode(texts)
    np.testing.assert_allclose(model.encode_cached(texts), direct, atol=1e-6)
    np.testing.assert_allclose(model.encode_cached(texts[::-1]), direct[::-1], atol=1e-6)  # from the cache
    monkeypatch.setattr(encoder, "_CACHE_SIZE", 2)
    model.encode_cached(["one", "two", "three"])
    assert len(model._cache) == 2 and "one" not in model._cache


def test_split_archive_reads_across_part_boundaries(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("m/model.safetensors", payload)
        archive.writestr("m/tokenizer.json", b"{}")
    data = buffer.getvalue()
    cuts = [0, 7, 100, len(data) // 2, len(data)]
    paths = []
    for n, (start, end) in enumerate(itertools.pairwise(cuts)):
        path = tmp_path / f"a.zip.{n:03d}"
        path.write_bytes(data[start:end])
        paths.append(path)
    with encoder._SplitFile(paths) as raw, zipfile.ZipFile(io.BufferedReader(raw, 64)) as archive:
        assert bytes(encoder._read_member(archive, "m/model.safetensors")) == payload
        assert bytes(encoder._read_member(archive, "m/tokenizer.json")) == b"{}"


def test_safetensors_arrays_view_the_buffer() -> None:
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                         "p": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]}}).encode()
    blob = bytearray(len(header).to_bytes(8, "little") + header
                     + np.arange(6, dtype=np.float32).tobytes() + np.array([7, 9], dtype=np.int64).tobytes())
    arrays = encoder.safetensors_arrays(blob)
    np.testing.assert_array_equal(arrays["w"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(arrays["p"], [7, 9])
    assert set(arrays) == {"w", "p"} and not arrays["w"].flags.owndata  # a view, not a copy


def test_missing_model_packages_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder, "_PART_DISTRIBUTIONS", ("herald-no-such-model-part",) * 5)
    with pytest.raises(FileNotFoundError, match="herald-no-such-model-part package"):
        encoder.part_paths()


def test_vector_store_serves_a_restarted_process(model: MPNetEncoder, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["how long is the warranty", "where are the wiring diagrams", "how long is the warranty"]
    first = model.encode_cached(texts, tmp_path)
    (stored,) = tmp_path.glob("*.npy")
    model._cache.clear()  # as after a restart: only the file is left

    def no_model(*_: object, **__: object) -> np.ndarray:
        raise AssertionError("the stored vectors should have been used")

    monkeypatch.setattr(model, "encode", no_model)
    np.testing.assert_array_equal(model.encode_cached(texts, tmp_path), first)
    assert "where are the wiring diagrams" in model._cache  # and they are in memory again
    monkeypatch.undo()
    other = model.encode_cached(texts[:2], tmp_path)  # another list of texts: another file
    assert len(list(tmp_path.glob("*.npy"))) == 2
    np.testing.assert_allclose(other, first[:2], atol=1e-6)
    assert stored.is_file()


def test_damaged_vector_store_is_rebuilt(model: MPNetEncoder, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    texts = ["how do I open a support case", "what does the SLA promise"]
    expected = model.encode(texts)
    model.encode_cached(texts, tmp_path)
    (stored,) = tmp_path.glob("*.npy")
    stored.write_bytes(b"not a numpy file")
    np.testing.assert_allclose(model.encode_cached(texts, tmp_path), expected, atol=1e-6)
    assert "ignoring unreadable vector cache" in caplog.text
    np.save(stored, np.zeros((5, 3), dtype=np.float32))  # readable, but not these texts' vectors
    np.testing.assert_allclose(model.encode_cached(texts, tmp_path), expected, atol=1e-6)
    np.testing.assert_allclose(np.load(stored), expected, atol=1e-6)  # written again, whole
    assert not list(tmp_path.glob(".*.tmp"))


def test_unwritable_vector_store_only_costs_time(model: MPNetEncoder, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    vectors = model.encode_cached(["where is the price list"], blocker / "vectors")
    assert vectors.shape == (1, encoder.DIMENSION)
    assert "could not store vectors" in caplog.text


def test_model_files_must_match_their_pinned_digests(model: MPNetEncoder) -> None:
    assert encoder._ERROR is None  # the installed files passed the check when the model loaded
    with pytest.raises(ValueError, match=r"tokenizer\.json has SHA-256 .* not the pinned .*reinstall"):
        encoder.check_digest(encoder._TOKENIZER_MEMBER, b'{"tampered": true}')
    with pytest.raises(ValueError, match=r"model\.safetensors has SHA-256"):
        encoder.check_digest(encoder._WEIGHTS_MEMBER, b"")


def test_weights_are_quantised_per_block_of_their_input() -> None:
    rng = np.random.default_rng(3)
    weight = rng.normal(0, 0.05, size=(6, 3 * mpnet_graph.BLOCK)).astype(np.float32)
    weight[1, :mpnet_graph.BLOCK] = 0  # an all-zero block
    weight[2, 5] = 4.0  # an outlier: only its own block's scale grows
    quantized, scales = mpnet_graph.quantize_blocks(weight)
    assert quantized.shape == (6, 3, mpnet_graph.BLOCK) and quantized.dtype == np.uint8
    scales = scales.reshape(6, 3)
    restored = (quantized.astype(np.float32) - 128) * scales[..., None]
    error = np.abs(restored.reshape(weight.shape) - weight)
    assert (error <= np.repeat(scales, mpnet_graph.BLOCK, axis=1) / 2 + 1e-7).all()
    assert (quantized[1, 0] == 128).all() and scales[1, 0] == 1
    assert scales[2, 0] == pytest.approx(4.0 / 127) and scales[2, 1] < 0.01
    assert quantized[2, 0, 5] == 255 and quantized.min() >= 1  # symmetric: -127..127 around 128


def test_the_layers_use_the_threads_they_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what the index-build child sets
    assert mpnet_graph.threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert 1 <= mpnet_graph.threads() <= 4
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert mpnet_graph.threads() == min(4, len(os.sched_getaffinity(0)))
