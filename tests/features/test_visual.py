"""EfficientNet-Lite0: the shipped ImageNet weights load strictly and recognise real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from segtag.features.efficientnet import EfficientNetLite
from segtag.features.visual import NUM_CONCEPTS, VISUAL_DIM, VisualEncoder, imagenet_classes, lite0_weights_path

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
COFFEE_CLASSES = {"espresso", "cup", "coffee mug"}


def _top5(logits: np.ndarray) -> list[str]:
    names = imagenet_classes()
    return [names[i] for i in np.argsort(-logits)[:5]]


def test_class_names() -> None:
    names = imagenet_classes()
    assert len(names) == 1000 and len(set(names)) >= 998
    assert names[0] == "tench" and names[281] == "tabby" and names[967] == "espresso"


def test_checkpoint_keys_match_the_architecture_exactly() -> None:
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite()
    assert set(state) == set(model.state_dict())
    assert all(state[k].shape == v.shape for k, v in model.state_dict().items())
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.65e6, rel=0.01)  # Lite0: 4.65 M


def test_photos_are_recognised(visual_encoder: VisualEncoder) -> None:
    # Any size goes in; the encoder resizes to 224x224.
    feats, logits = visual_encoder.encode(np.stack([data.chelsea()[:300, :300], data.coffee()[:300, 100:400]]))
    assert feats.shape == (2, VISUAL_DIM) and logits.shape == (2, NUM_CONCEPTS)
    assert feats.dtype == np.float32 and logits.dtype == np.float32
    cat, coffee = _top5(logits[0]), _top5(logits[1])
    assert cat[0] in CAT_CLASSES, cat
    assert COFFEE_CLASSES & set(coffee), coffee
    probs = torch.from_numpy(logits).softmax(-1).numpy()  # (2, 1000)
    names = imagenet_classes()
    # Confident, not lucky: with the lite scaling (x - 127) / 128 the right classes take most of the mass.
    assert sum(probs[0, names.index(c)] for c in CAT_CLASSES) > 0.8
    assert sum(probs[1, names.index(c)] for c in COFFEE_CLASSES) > 0.8
    assert (feats >= 0).all() and (feats <= 6).all()  # mean of ReLU6 activations


def test_batching_does_not_change_results(visual_encoder: VisualEncoder) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(5, 224, 224, 3), dtype=np.uint8)
    f_big, l_big = visual_encoder.encode(frames)  # one batch of 8
    visual_encoder.batch_size = 2
    try:
        f_small, l_small = visual_encoder.encode(frames)  # batches of 2, 2, 1
    finally:
        visual_encoder.batch_size = 8
    np.testing.assert_allclose(f_small, f_big, atol=1e-4)
    np.testing.assert_allclose(l_small, l_big, atol=1e-3)
    empty_f, empty_l = visual_encoder.encode(np.zeros((0, 224, 224, 3), dtype=np.uint8))
    assert empty_f.shape == (0, VISUAL_DIM) and empty_l.shape == (0, NUM_CONCEPTS)


def test_bad_input_and_device(visual_encoder: VisualEncoder) -> None:
    with pytest.raises(ValueError, match="uint8"):
        visual_encoder.encode(np.zeros((1, 224, 224, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        visual_encoder.encode(np.zeros((224, 224, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="device"):
        VisualEncoder(device="tpu")
    assert VisualEncoder(device="auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
