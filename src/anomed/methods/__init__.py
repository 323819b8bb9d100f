"""Methods: one short file each, composing backbone, prompts, adapters, synthesis and losses."""

from anomed.methods.base import (
    METHODS,
    AnomalyMethod,
    AnomalyOutput,
    MethodConfig,
    create_method,
    method_config_dict,
)
from anomed.methods.condprompt import CondPrompt, CondPromptConfig
from anomed.methods.madclip import MadCLIP, MadCLIPConfig
from anomed.methods.mediclip import MediCLIP, MediCLIPConfig
from anomed.methods.memorybank import MemoryBankConfig, MemoryBankMethod
from anomed.methods.mlalp import MLALP, MLALPConfig
from anomed.methods.mvfa import MVFA, MVFAConfig
from anomed.methods.ppad import PPAD, PPADConfig
from anomed.methods.winclip import WinCLIP, WinCLIPConfig, WinCLIPPlus

__all__ = [
    "METHODS",
    "AnomalyMethod",
    "AnomalyOutput",
    "CondPrompt",
    "CondPromptConfig",
    "MadCLIP",
    "MadCLIPConfig",
    "MediCLIP",
    "MediCLIPConfig",
    "MLALP",
    "MLALPConfig",
    "MVFA",
    "MVFAConfig",
    "MemoryBankConfig",
    "MemoryBankMethod",
    "MethodConfig",
    "PPAD",
    "PPADConfig",
    "WinCLIP",
    "WinCLIPConfig",
    "WinCLIPPlus",
    "create_method",
    "method_config_dict",
]
