"""Prompts: word lists and templates (data) and learnable prompt modules."""

from anomed.prompts.cache import TextCache
from anomed.prompts.learnable import (
    PromptLearner,
    PromptSet,
    class_means,
    encode_fixed_prompts,
)
from anomed.prompts.words import MEDICLIP_ABNORMAL, MEDICLIP_NORMAL, ORGAN_WORDS, organ_word

__all__ = [
    "MEDICLIP_ABNORMAL",
    "MEDICLIP_NORMAL",
    "ORGAN_WORDS",
    "PromptLearner",
    "PromptSet",
    "TextCache",
    "class_means",
    "encode_fixed_prompts",
    "organ_word",
]
