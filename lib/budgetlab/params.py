"""A run's parameters: the profiles in params/, -p values read as YAML, and every check made before any model work.

Each check fails with one sentence naming the key the user typed and what it accepts.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import yaml

from budgetlab.config import PROJECT_ROOT, check_choice

PARAMS_DIR = PROJECT_ROOT / "params"


def profiles() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def scientific_as_float(value):
    """YAML 1.1 (PyYAML) reads 5e-4 as a string; a researcher means the number. Lists are walked."""
    if isinstance(value, str) and SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [scientific_as_float(v) for v in value]
    return value


def parse_value(text: str):
    """A -p value as YAML (numbers, 5e-4 included, lists, null, booleans), else the plain string."""
    try:
        return scientific_as_float(yaml.safe_load(text))
    except yaml.YAMLError:
        return text


def load_params(profile: str, overrides: dict | None = None) -> dict:
    """The profile's parameters with overrides applied and validated (one sentence on the first problem)."""
    check_choice("profile", profile, profiles())
    path = PARAMS_DIR / f"{profile}.yaml"
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ValueError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e}).") from None
    if not isinstance(params, dict):
        raise ValueError(f"{path} holds a {type(params).__name__}; a profile is a mapping of KEY: value lines.")
    known = (notebook_parameters() - PIPELINE_SETS) | OPTIONAL_KEYS
    unknown = sorted(k for k in params if k not in known)
    if unknown:
        raise ValueError(f"{path}: key {unknown[0]!r} is not a parameter a profile sets; use one of {sorted(known)}.")
    params = {k: scientific_as_float(v) for k, v in params.items()}
    for key, value in (overrides or {}).items():
        key = key.upper()
        if key not in params and key not in OPTIONAL_KEYS:
            raise ValueError(f"parameter {key!r} is not known; use one of {sorted(set(params) | OPTIONAL_KEYS)}.")
        params[key] = value
    params["PROFILE"] = profile
    validate_params(params)
    return params


@functools.lru_cache(maxsize=1)
def notebook_parameters() -> frozenset[str]:
    """Every name a notebook's `parameters` cell declares (what a profile may set)."""
    import papermill as pm

    return frozenset(name for nb in sorted((PROJECT_ROOT / "notebooks").glob("[0-9]*.ipynb"))
                     for name in pm.inspect_notebook(str(nb)))


PIPELINE_SETS = {"RUN_DIR", "RESUME", "METHOD"}  # notebook parameters the pipeline fills in, never a profile
OPTIONAL_KEYS = {"PRECISION", "SEED", "DATA_PATH", "PRIOR", "QUOTA", "ALPHA_START", "ALPHA_END", "BETA", "NORMALISER", "LR",
                 "SFT_LR", "PROFILE", "SC_SAMPLES", "PREFILL_POINTS", "REAL_DATA", "REAL_TASK", "REAL_N",
                 "CHECKPOINT_EVERY", "SB_SAMPLES", "SB_LENGTH_WHEN_WRONG", "PROBE_EVERY", "PROBE_SIZE", "PROBE_SAMPLES",
                 "TEMPERATURE", "L1_ALPHA", "SB_REWARD", "SEEDS", "REPORT_TO", "EVAL_SETS", "DATA_SPLIT",
                 "ANSWER_RULE", "PROMPT", "ALL_BUDGETS"}


# integer parameters and the least value each accepts (0 means "off" or "none" where it is accepted)
INT_AT_LEAST = {"N_TRAIN": 1, "N_EVAL": 1, "SEED": 0, "LORA_R": 1, "SFT_STEPS": 0, "SFT_BATCH": 1, "SB_PROBLEMS": 0,
                "SB_SFT_STEPS": 0, "SB_SAMPLES": 1, "RL_STEPS": 1, "PROMPTS_PER_STEP": 1, "GENERATIONS": 1,
                "MAX_SUMMARY": 1, "CHECKPOINT_EVERY": 1, "PROBE_EVERY": 0, "PROBE_SIZE": 1, "PROBE_SAMPLES": 1,
                "EVAL_SAMPLES": 1, "EVAL_MAX_SUMMARY": 1, "SC_SAMPLES": 0, "PREFILL_POINTS": 1, "REAL_N": 1}
POSITIVE = ("SFT_LR", "LR", "ALPHA_START", "ALPHA_END", "TEMPERATURE")  # numbers that must be > 0
NEEDS_A_GROUP = ("grpo", "drgrpo", "selfbudgeter", "l1")  # advantages relative to the group: zero when G = 1


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_params(p: dict) -> None:
    """Cheap checks of everything a stage would otherwise discover late, naming the key the user typed."""
    from budgetlab.budgets import prior_weights, validate_budgets
    from budgetlab.data import check_data_params
    from budgetlab.grading import ANSWER_RULES
    from budgetlab.loaders import SOURCES, looks_like_hub_id
    from budgetlab.losses import NORMALISERS
    from budgetlab.methods import METHODS
    from budgetlab.precision import PRECISIONS
    from budgetlab.prompts import PROMPT_STYLES
    from budgetlab.selfbudget import SB_REWARDS
    from budgetlab.tracking import REPORT_TO

    methods = p.get("METHODS", [])
    if not isinstance(methods, list) or not methods:
        raise ValueError(f"METHODS={methods!r} must be a non-empty list drawn from {sorted(METHODS)}.")
    for m in methods:
        check_choice("method", m, sorted(METHODS))
    if len(set(methods)) != len(methods):
        raise ValueError(f"METHODS={methods!r} names a method twice; each method trains once per run.")
    for key, low in INT_AT_LEAST.items():
        if key in p and not (_is_int(p[key]) and p[key] >= low):
            raise ValueError(f"{key}={p[key]!r} must be an integer >= {low}.")
    for key in POSITIVE:
        if key in p and not (_is_number(p[key]) and p[key] > 0):
            raise ValueError(f"{key}={p[key]!r} must be a positive number.")
    if "BETA" in p and not (_is_number(p["BETA"]) and p["BETA"] >= 0):
        raise ValueError(f"BETA={p['BETA']!r} must be 0 (no KL term) or a positive number.")
    if p.get("LORA_LAYERS") is not None and not (_is_int(p["LORA_LAYERS"]) and p["LORA_LAYERS"] >= 1):
        raise ValueError(f"LORA_LAYERS={p['LORA_LAYERS']!r} must be null (every layer) or an integer >= 1.")
    if p.get("GENERATIONS", 2) == 1 and set(methods) & set(NEEDS_A_GROUP):
        raise ValueError(f"GENERATIONS=1 gives {sorted(set(methods) & set(NEEDS_A_GROUP))} zero advantages "
                         "(one trace per prompt has no group to compare with); use GENERATIONS >= 2.")
    check_data_params(p.get("TASK", "synthetic"), p.get("DATA_PATH", ""), p.get("N_TRAIN"), p.get("N_EVAL"),
                      p.get("LEVELS", [1]), p.get("SEED", 0))
    validate_budgets(p["TRAIN_BUDGETS"], "TRAIN_BUDGETS")
    validate_budgets(p["EVAL_BUDGETS"], "EVAL_BUDGETS")
    prior_weights(p.get("PRIOR", "uniform"), p["TRAIN_BUDGETS"])
    check_choice("NORMALISER", p.get("NORMALISER", "sequence"), NORMALISERS)
    check_choice("PRECISION", p.get("PRECISION", "auto"), PRECISIONS)
    # the notebooks train adapters: a full fine-tune (models' adapter='none') has no saved adapter for 02 to load
    check_choice("ADAPTER", p.get("ADAPTER", "lora"), ["lora", "qlora"])
    check_choice("TASK", p.get("TASK", "synthetic"), list(SOURCES))
    from budgetlab.eval_sets import parse_eval_sets

    if p.get("DATA_SPLIT") is not None and not (isinstance(p["DATA_SPLIT"], str) and p["DATA_SPLIT"]):
        raise ValueError(f"DATA_SPLIT={p['DATA_SPLIT']!r} must be null (the loader's default split) or a split name "
                         "such as 'train'.")

    for s in parse_eval_sets(p.get("EVAL_SETS")):
        if not Path(s["path"]).exists() and not looks_like_hub_id(s["path"]):
            raise ValueError(f"EVAL_SETS entry {s['name']!r}: {s['path']!r} does not exist; use a .jsonl file or a "
                             "hub id org/name.")
    if p.get("REAL_DATA"):
        check_choice("REAL_TASK", p.get("REAL_TASK", "gsm8k"), [s for s in SOURCES if s != "synthetic"])
        real = str(p["REAL_DATA"])
        if not Path(real).exists() and not looks_like_hub_id(real):
            raise ValueError(f"REAL_DATA={real!r} does not exist; use a .jsonl file or a hub id org/name.")
    if "selfbudgeter" in methods and p.get("SB_PROBLEMS", 1) == 0:  # an integer >= 0 by now
        raise ValueError(f"SB_PROBLEMS={p['SB_PROBLEMS']!r} labels no questions, but METHODS includes 'selfbudgeter', "
                         "whose phase 2 needs those labels; set SB_PROBLEMS >= 1 or drop selfbudgeter.")
    for flag in ("SB_LENGTH_WHEN_WRONG", "ALL_BUDGETS"):
        if flag in p and not isinstance(p[flag], bool):
            raise ValueError(f"{flag}={p[flag]!r} must be true or false.")
    seeds = p.get("SEEDS")
    if seeds is not None and not (isinstance(seeds, list) and len(seeds) >= 2 and all(_is_int(s) and s >= 0 for s in seeds)
                                  and len(set(seeds)) == len(seeds)):
        raise ValueError(f"SEEDS={seeds!r} must be a list of at least 2 distinct integers >= 0 (a study pools them).")
    check_choice("REPORT_TO", p.get("REPORT_TO", "none"), list(REPORT_TO))
    check_choice("SB_REWARD", p.get("SB_REWARD", "paper"), list(SB_REWARDS))
    check_choice("ANSWER_RULE", p.get("ANSWER_RULE", "last_boxed"), list(ANSWER_RULES))
    check_choice("PROMPT", p.get("PROMPT", "plain"), list(PROMPT_STYLES))
    if p.get("L1_ALPHA") is not None and not (_is_number(p["L1_ALPHA"]) and p["L1_ALPHA"] > 0):
        raise ValueError(f"L1_ALPHA={p['L1_ALPHA']!r} must be null (1 / the largest training budget) or a positive number.")
    if "QUOTA" in p and not (_is_number(p["QUOTA"]) and 0 <= p["QUOTA"] <= 1):
        raise ValueError(f"QUOTA={p['QUOTA']!r} must be a number in [0, 1].")
    from budgetlab.model_files import BUILT_IN_MODELS

    model, names = str(p.get("MODEL", "default")), ", ".join(repr(n) for n in BUILT_IN_MODELS)
    if model not in BUILT_IN_MODELS and not Path(model).exists() and not looks_like_hub_id(model):
        raise ValueError(f"MODEL={model!r} does not exist; use {names}, a local folder or a hub id org/name.")
    if model not in BUILT_IN_MODELS and Path(model).exists() and not (Path(model) / "config.json").is_file():
        raise ValueError(f"MODEL={model!r} is not a model folder (no config.json in it); give a folder written by "
                         f"save_pretrained, {names} or a hub id org/name.")
