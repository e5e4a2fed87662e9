"""The cold conversion of the embedded GGUF parses the file once: one reader shared while converting."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from engine.embedded import _one_gguf_parse


def _tiny_gguf(path: Path) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    writer.add_tensor("w", np.arange(6, dtype=np.float32).reshape(2, 3))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_readers_are_shared_inside_and_restored_after(tmp_path: Path) -> None:
    path = _tiny_gguf(tmp_path / "tiny.gguf")
    original = gguf.GGUFReader
    with _one_gguf_parse():
        first, again = gguf.GGUFReader(path), gguf.GGUFReader(str(path))
        assert first is again
        assert [bytes(p).decode() for p in [first.fields["tokenizer.ggml.tokens"].parts[i]
                                            for i in first.fields["tokenizer.ggml.tokens"].data]] == ["a", "b", "c"]
        assert gguf.GGUFReader(path, "c") is not first     # a writable view is never shared
    assert gguf.GGUFReader is original
    assert gguf.GGUFReader(path) is not first
