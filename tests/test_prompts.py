"""Prompt ids: the tokenizer's own prefix comes first (a BOS where it adds one), then the canonical text."""

from __future__ import annotations

from budgetlab.model_files import load_tokenizer
from budgetlab.prompts import encode_prompt, special_prefix


def _word_tokenizer(single: str):
    """A three-word tokenizer whose post-processor follows `single` (e.g. "<s> $A </s>")."""
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "x": 3, "y": 4}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single=single, special_tokens=[("<s>", 1), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def test_smollm2_prompts_have_no_prefix_because_its_tokenizer_adds_none():
    tok = load_tokenizer("tiny")  # the default tokenizer
    assert special_prefix(tok) == []
    # "Question: Compute 1 + 2\nAnswer: " then "<think>" as three plain tokens "<", "think", ">"
    assert encode_prompt(tok, "Compute 1 + 2") == [17872, 42, 28046, 216, 33, 1232, 216, 34, 198, 21350, 42, 216,
                                                   44, 17400, 46]


def test_special_prefix_keeps_what_comes_before_the_text_and_drops_what_comes_after():
    assert special_prefix(_word_tokenizer("<s> $A </s>")) == [1]
    assert special_prefix(_word_tokenizer("$A </s>")) == []
    assert special_prefix(_word_tokenizer("$A")) == []
