"""YouTube-8M TFRecords without TensorFlow: CRC-32C, framing, protobuf wire format, examples."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segtag.datasets.yt8m import (
    TFRecordError,
    YT8MDataset,
    crc32c,
    dequantize,
    encode_sequence_example,
    masked_crc32c,
    parse_sequence_example,
    quantize,
    read_tfrecords,
    tfrecord_files,
    to_example,
    write_sequence_examples,
    write_tfrecords,
)


def test_crc32c_known_vectors() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    # RFC 3720 (iSCSI) appendix B.4 test vectors
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


def test_masked_crc_is_rotate_plus_delta() -> None:
    c = crc32c(b"abc")
    assert masked_crc32c(b"abc") == ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def test_tfrecord_framing_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "x.tfrecord"
    write_tfrecords(path, [b"abc", b""])
    length = struct.pack("<Q", 3)
    first = length + struct.pack("<I", masked_crc32c(length)) + b"abc" + struct.pack("<I", masked_crc32c(b"abc"))
    raw = path.read_bytes()
    assert raw[: len(first)] == first
    assert len(raw) == len(first) + 16
    assert list(read_tfrecords(path)) == [b"abc", b""]


def test_corruption_and_truncation_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "x.tfrecord"
    write_tfrecords(path, [b"hello world"])
    raw = bytearray(path.read_bytes())
    raw[14] ^= 0x01  # flip a data bit
    path.write_bytes(bytes(raw))
    with pytest.raises(TFRecordError, match="crc mismatch"):
        list(read_tfrecords(path))
    unchecked = list(read_tfrecords(path, verify=False))  # without verification the damage goes unnoticed
    assert len(unchecked) == 1 and unchecked[0] != b"hello world"
    raw[14] ^= 0x01
    raw[0] ^= 0x01  # corrupt the length
    path.write_bytes(bytes(raw))
    with pytest.raises(TFRecordError, match="record length"):
        list(read_tfrecords(path))
    raw[0] ^= 0x01
    path.write_bytes(bytes(raw[:-3]))
    with pytest.raises(TFRecordError, match="truncated"):
        list(read_tfrecords(path))


def test_sequence_example_wire_bytes_by_hand() -> None:
    # context {"labels": int64_list [1]}:
    # Int64List{value: packed [1]} = 0A 01 01; Feature{int64_list = 3} = 1A 03 ...;
    # map entry {key = 1: "labels", value = 2: Feature} = 0A 06 "labels" 12 05 ...; Features = 0A 0F ...;
    # SequenceExample{context = 1} = 0A 11 ...
    expected = bytes.fromhex("0a110a0f0a066c6162656c7312051a030a0101")
    assert encode_sequence_example({"labels": [1]}, {}) == expected
    assert parse_sequence_example(expected) == ({"labels": [1]}, {})


def test_protobuf_round_trip_of_all_list_kinds() -> None:
    context: dict[str, list[Any]] = {"id": [b"abc"], "labels": [0, 5, 300, -2], "score": [0.5, -1.25]}
    lists = {"rgb": [[b"\x00\x01"], [b"\xff\x10"]]}
    ctx, fl = parse_sequence_example(encode_sequence_example(context, lists))
    assert ctx == context
    assert fl == lists


def test_dequantize_matches_the_starter_formula() -> None:
    q = np.array([0, 128, 255], np.uint8)
    expected = q / 255 * 4 - 2 + 4 / 512
    np.testing.assert_allclose(dequantize(q), expected, atol=1e-6)
    x = np.array([-1.5, 0.0, 1.0])
    np.testing.assert_allclose(dequantize(quantize(x)), x, atol=4 / 255)


def _examples(rng: np.random.Generator) -> list[dict[str, object]]:
    return [
        {
            "id": "vid0",
            "labels": [3, 7],
            "rgb": rng.integers(0, 256, (12, 1024), dtype=np.uint8),
            "audio": rng.integers(0, 256, (12, 128), dtype=np.uint8),
        },
        {  # 2019 segment-rated record: segment start times are frame indices, segments are 5 frames
            "id": "vid1",
            "labels": [7],
            "rgb": rng.integers(0, 256, (20, 1024), dtype=np.uint8),
            "audio": rng.integers(0, 256, (20, 128), dtype=np.uint8),
            "segment_start_times": [5, 10, 15],
            "segment_end_times": [10, 15, 20],
            "segment_labels": [7, 7, 3],
            "segment_scores": [1.0, 0.0, 1.0],
        },
    ]


def test_frame_level_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    exs = _examples(rng)
    path = tmp_path / "train0000.tfrecord"
    assert write_sequence_examples(path, exs) == 2
    ds = YT8MDataset(tfrecord_files(tmp_path))
    assert len(ds) == 2 and ds.video_ids == ["vid0", "vid1"]
    assert ds.num_classes == 8 and ds.vocabulary[-1] == "7"
    e0, e1 = ds[0], ds[1]
    np.testing.assert_array_equal(e0.rgb, dequantize(exs[0]["rgb"]))  # type: ignore[arg-type]
    np.testing.assert_array_equal(e1.audio, dequantize(exs[1]["audio"]))  # type: ignore[arg-type]
    assert e0.rgb.shape == (12, 1024) and e0.audio_mask.all() and not e0.title_mask
    assert np.flatnonzero(e0.labels).tolist() == [3, 7]
    assert e0.segments == []
    starts = [(s, e) for s, e, _, _ in e1.segments]
    assert starts == [(5, 10), (10, 15), (15, 20)]
    (_, _, y0, r0), (_, _, y1, r1), (_, _, y2, r2) = e1.segments
    assert np.flatnonzero(r0).tolist() == [7] and y0[7] == 1.0 and y0.sum() == 1
    assert np.flatnonzero(r1).tolist() == [7] and y1.sum() == 0  # rated negative
    assert np.flatnonzero(r2).tolist() == [3] and y2[3] == 1.0


def test_dataset_reports_corruption(tmp_path: Path) -> None:
    path = tmp_path / "a.tfrecord"
    write_sequence_examples(path, _examples(np.random.default_rng(0))[:1])
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the frames: the index scan passes, reading the record fails
    path.write_bytes(bytes(raw))
    ds = YT8MDataset([path])
    with pytest.raises(TFRecordError, match="crc mismatch"):
        ds[0]


def test_video_level_example_becomes_one_frame() -> None:
    context: dict[str, list[Any]] = {"id": [b"v"], "labels": [1], "mean_rgb": [0.5] * 1024, "mean_audio": [0.25] * 128}
    buf = encode_sequence_example(context, {})
    ex = to_example(buf, num_classes=4)
    assert ex.rgb.shape == (1, 1024) and ex.audio.shape == (1, 128)
    assert ex.labels.tolist() == [0, 1, 0, 0]
    with pytest.raises(TFRecordError, match="no rgb"):
        to_example(encode_sequence_example({"id": [b"x"]}, {}))
