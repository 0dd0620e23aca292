"""Bad input of every kind gets one sentence and exit 2 from `python -m budgetlab.pipeline`, before any work,
and leaves the run directory as it found it: absent for a new run, unchanged for a resumed one.

One table: parameters, budgets, profile YAML, data rows and files, model folders, and resumed run
directories whose adapters were made from something else (another base model, say)."""

import json
import re
from pathlib import Path

import pytest
import yaml

from budgetlab import params as params_mod
from budgetlab import pipeline

GOOD_ROWS = [{"id": f"q{i}", "question": f"What is {i}+1?", "answer": str(i + 1), "level": 1 + i % 2} for i in range(8)]


def jsonl(tmp, lines, name="data.jsonl"):
    """A data file from rows (dicts, dumped) and raw strings (written as they are)."""
    path = tmp / name
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    return path


def data_case(lines, *extra, name="data.jsonl"):
    """argv for a JSONL task on the given lines (levels 1 and 2, 2 eval problems) plus extra -p values."""
    def build(tmp):
        path = jsonl(tmp, lines, name)
        return ["-p", "TASK=jsonl", "-p", f"DATA_PATH={path}", "-p", "LEVELS=[1, 2]", "-p", "N_EVAL=2", *extra]
    return build


def p(*pairs):
    """argv of -p KEY=VALUE pairs."""
    return lambda tmp: [a for kv in pairs for a in ("-p", kv)]


def profile_file(text):
    """Use a profile called 'bad' whose file holds `text`."""
    def build(tmp):
        (tmp / "params").mkdir(exist_ok=True)
        for src in params_mod.PARAMS_DIR.glob("*.yaml"):
            (tmp / "params" / src.name).write_text(src.read_text())
        (tmp / "params" / "bad.yaml").write_text(text)
        return ["--profile", "bad"]
    return build


def model_folder(files):
    def build(tmp):
        folder = tmp / "model"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("{}")
        return ["-p", f"MODEL={folder}"]
    return build


def resumed(made_with, *extra):
    """A run directory made by an earlier run (config.json, an adapter), resumed with the -p values `extra`."""
    def build(tmp):
        run = tmp / "run"
        (run / "adapters" / "warmstart").mkdir(parents=True)
        (run / "adapters" / "warmstart" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
        (run / "config.json").write_text(json.dumps({**pipeline.load_params("smoke"), **made_with}))
        return ["--resume", *extra]
    return build


SMOKE = yaml.safe_load((params_mod.PARAMS_DIR / "smoke.yaml").read_text())
CASES = [
    # --- parameters ---
    ("unknown method", p("METHODS=[grpo, ppo]"), "method='ppo' is not accepted"),
    ("method twice", p("METHODS=[grpo, grpo]"), "names a method twice"),
    ("no methods", p("METHODS=[]"), "METHODS=[] must be a non-empty list"),
    ("unknown key", p("NOT_A_KEY=1"), "parameter 'NOT_A_KEY' is not known"),
    ("negative steps", p("RL_STEPS=-1"), "RL_STEPS=-1 must be an integer >= 1"),
    ("steps as text", p("RL_STEPS=two"), "RL_STEPS='two' must be an integer"),
    ("negative SFT steps", p("SFT_STEPS=-1"), "SFT_STEPS=-1 must be an integer >= 0"),
    ("zero eval samples", p("EVAL_SAMPLES=0"), "EVAL_SAMPLES=0 must be an integer >= 1"),
    ("one generation for grpo", p("GENERATIONS=1"), "GENERATIONS=1 gives"),
    ("quota above 1", p("QUOTA=1.5"), "QUOTA=1.5 must be a number in"),
    ("negative beta", p("BETA=-1"), "BETA=-1 must be 0"),
    ("zero learning rate", p("LR=0"), "LR=0 must be a positive number"),
    ("zero temperature", p("TEMPERATURE=0"), "TEMPERATURE=0 must be a positive number"),
    ("unknown prior", p("PRIOR=cosine"), "cosine"),
    ("unknown normaliser", p("NORMALISER=foo"), "NORMALISER='foo'"),
    ("unknown precision", p("PRECISION=fp16"), "PRECISION='fp16' is not accepted"),
    ("unknown adapter", p("ADAPTER=ia3"), "ADAPTER='ia3'"),
    ("unknown task", p("TASK=mmlu"), "TASK='mmlu' is not accepted"),
    ("unknown SelfBudgeter reward", p("SB_REWARD=lazy"), "SB_REWARD='lazy' is not accepted"),
    ("unknown answer rule", p("ANSWER_RULE=first"), "ANSWER_RULE='first' is not accepted"),
    ("unknown prompt style", p("PROMPT=alpaca"), "PROMPT='alpaca' is not accepted"),
    ("unknown tracker", p("REPORT_TO=wandb"), "REPORT_TO='wandb' is not accepted"),
    ("zero L1 alpha", p("L1_ALPHA=0"), "L1_ALPHA=0 must be null"),
    ("one seed in SEEDS", p("SEEDS=[3]"), "SEEDS=[3] must be a list of at least 2"),
    ("selfbudgeter without labels", p("SB_PROBLEMS=0"), "SB_PROBLEMS=0 labels no questions"),
    ("LoRA on no layers", p("LORA_LAYERS=0"), "LORA_LAYERS=0"),
    ("duplicate levels", p("LEVELS=[1, 1]"), "LEVELS=[1, 1] is not accepted"),
    ("zero eval problems", p("N_EVAL=0"), "N_EVAL=0 must be an integer >= 1"),
    ("missing real data", p("REAL_DATA=/no/such.jsonl"), "REAL_DATA='/no/such.jsonl' does not exist"),
    ("malformed -p", lambda tmp: ["-p", "RL_STEPS"], "-p 'RL_STEPS' must look like KEY=VALUE"),
    ("unknown stage for --until", lambda tmp: ["--until", "05_extra"], "until='05_extra' is not accepted"),
    ("unknown profile", lambda tmp: ["--profile", "huge"], "profile='huge' is not accepted"),
    # --- budgets ---
    ("unsorted train budgets", p("TRAIN_BUDGETS=[8, 4]"), "TRAIN_BUDGETS=[8, 4] is not strictly increasing"),
    ("zero eval budget", p("EVAL_BUDGETS=[0, 4]"), "budget 0 in EVAL_BUDGETS=[0, 4] is not positive"),
    ("negative budget", p("TRAIN_BUDGETS=[-4, 8]"), "budget -4 in TRAIN_BUDGETS=[-4, 8] is not positive"),
    ("repeated budget", p("EVAL_BUDGETS=[4, 4, 8]"), "EVAL_BUDGETS=[4, 4, 8] is not strictly increasing"),
    ("empty budget grid", p("TRAIN_BUDGETS=[]"), "TRAIN_BUDGETS=[] is empty"),
    ("fractional budget", p("EVAL_BUDGETS=[4.5, 8]"), "budget 4.5 in EVAL_BUDGETS=[4.5, 8] is not an int"),
    # --- profile YAML ---
    ("profile not YAML", profile_file("MODEL: tiny\nMETHODS: [grpo\n"), re.compile(r"bad.yaml:\d+: not valid YAML")),
    ("profile a list", profile_file("- MODEL\n- tiny\n"), "bad.yaml holds a list; a profile is a mapping"),
    ("profile with a typo", profile_file(yaml.safe_dump({**SMOKE, "RL_STEP": 3})), "key 'RL_STEP' is not a parameter"),
    ("profile sets RUN_DIR", profile_file(yaml.safe_dump({**SMOKE, "RUN_DIR": "x"})), "key 'RUN_DIR' is not a parameter"),
    # --- data rows and files ---
    ("line not JSON", data_case([GOOD_ROWS[0], "{not json", *GOOD_ROWS[1:]]), re.compile(r"data.jsonl:2: not valid JSON")),
    ("line not an object", data_case([GOOD_ROWS[0], "[1, 2]"]), re.compile(r"data.jsonl:2: expected a JSON object, got list")),
    ("missing question", data_case([*GOOD_ROWS[:3], {"id": "x", "answer": "1"}]), re.compile(r"data.jsonl:4: missing column 'question'")),
    ("empty answer", data_case([*GOOD_ROWS[:2], {"id": "x", "question": "Q?", "answer": ""}]), re.compile(r"data.jsonl:3: empty answer")),
    ("empty file", data_case([]), re.compile(r"data.jsonl' holds no rows")),
    ("duplicate id", data_case([*GOOD_ROWS, {**GOOD_ROWS[1], "question": "again?"}]), re.compile(r"data.jsonl:9: id 'q1' repeats .*data.jsonl:2")),
    ("level outside LEVELS", data_case(GOOD_ROWS, "-p", "LEVELS=[1, 3]"), re.compile(r"LEVELS=\[1, 3\] asks for level 3, but .* has no row")),
    ("too few rows for N_EVAL", data_case(GOOD_ROWS, "-p", "N_EVAL=8"), re.compile(r"has 8 rows at LEVELS=\[1, 2\]; N_EVAL=8 needs at least 9")),
    ("level text not a level", data_case([{**GOOD_ROWS[0], "level": "Level 2 or 3"}]), re.compile(r"data.jsonl:1: level 'Level 2 or 3'")),
    ("data path not a file", p("TASK=jsonl", "DATA_PATH=/no/such.jsonl"), "DATA_PATH='/no/such.jsonl' is neither"),
    ("gsm8k row without ####", data_case([{"question": "Q?", "answer": "42"}], "-p", "TASK=gsm8k"), re.compile(r"data.jsonl:1: GSM8K answer has no final")),
    ("hub dataset unreachable", p("TASK=math", "DATA_PATH=nobody-xyz/no-such-dataset"),
     "DATA_PATH='nobody-xyz/no-such-dataset' is a hub id, but the hub did not answer for it"),
    # --- evaluation benchmarks (EVAL_SETS) ---
    ("eval set without a task", p("EVAL_SETS=[bench.jsonl]"), "EVAL_SETS entry 'bench.jsonl' is not accepted"),
    ("eval set of a generated task", p("EVAL_SETS=['testbed:x.jsonl']"), "EVAL_SETS entry 'testbed:x.jsonl' is not accepted"),
    ("eval set missing", p("EVAL_SETS=['math:/no/such.jsonl']"), "EVAL_SETS entry 'such': '/no/such.jsonl' does not exist"),
    ("eval set names repeat", lambda tmp: ["-p", f"EVAL_SETS=['jsonl:{jsonl(tmp, GOOD_ROWS)}', 'jsonl:{jsonl(tmp, GOOD_ROWS)}']"],
     "names ['data', 'data'] repeat"),
    ("eval set is training data", lambda tmp: data_case(GOOD_ROWS)(tmp) + ["-p", f"EVAL_SETS=['mine=jsonl:{tmp / 'data.jsonl'}']"],
     re.compile(r"evaluation set 'mine' shares 8 question\(s\) with the training data \(normalised text\), e.g. 'What is 0\+1\?'")),
    ("eval set shares one question", lambda tmp: data_case(GOOD_ROWS)(tmp) + ["-p", "EVAL_SETS=['jsonl:" + str(jsonl(
        tmp, [{"id": "b1", "question": "  what IS 3+1? ", "answer": "4"}, {"id": "b2", "question": "Other?", "answer": "1"}],
        "bench.jsonl")) + "']"], "evaluation set 'bench' shares 1 question(s)"),
    ("eval set row not JSON", lambda tmp: ["-p", "EVAL_SETS=['jsonl:" + str(jsonl(tmp, [GOOD_ROWS[0], "{oops"], "bench.jsonl")) + "']"],
     re.compile(r"bench.jsonl:2: not valid JSON")),
    # --- model folders ---
    ("model folder without config", model_folder(["weights.bin"]), "is not a model folder (no config.json in it)"),
    ("model path missing", p("MODEL=./no/such/model"), "MODEL='./no/such/model' does not exist"),
    # --- resumed run directories ---
    ("resume with another base model", resumed({"MODEL": "default"}), re.compile(r"was made with MODEL='default'; --resume must keep it \(got 'tiny'\)")),
    ("resume with another adapter kind", resumed({"ADAPTER": "qlora"}), "was made with ADAPTER='qlora'"),
    ("resume with another LoRA rank", resumed({"LORA_R": 8}), "was made with LORA_R=8"),
    ("resume with another seed", resumed({"SEED": 3}), "was made with SEED=3"),
    ("resume on other data", resumed({"TASK": "synthetic"}), "was made with TASK='synthetic'"),
]


def snapshot(folder: Path) -> dict:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()} \
        if folder.exists() else None


@pytest.mark.parametrize("build, sentence", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_sentence_and_leaves_the_run_directory_as_it_was(tmp_path, monkeypatch, capsys,
                                                                                     build, sentence):
    argv = build(tmp_path)
    if (tmp_path / "params").exists():  # a profile_file case: profiles come from its folder
        monkeypatch.setattr(params_mod, "PARAMS_DIR", tmp_path / "params")
    run = tmp_path / "run"
    before = snapshot(run)
    if "--profile" not in argv:
        argv = ["--profile", "smoke", *argv]
    assert pipeline.main([*argv, "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("budgetlab: "), err
    assert (sentence.search(err) if isinstance(sentence, re.Pattern) else sentence in err), err
    assert snapshot(run) == before  # a new run left no folder; a resumed one is unchanged


def test_the_table_holds_at_least_forty_cases_of_every_kind():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
