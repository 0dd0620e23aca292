"""Experiment tracking as TRL users know it (`report_to`): every per-step metric of SFT and RL, offline.

REPORT_TO = "none" (default) logs nothing beyond the metrics CSVs; "tensorboard" also writes event files
under the stage's folder (`sft/<name>/tensorboard`, `rl/<method>/tensorboard`), viewed with
`tensorboard --logdir RUN_DIR`. Nothing is sent anywhere.
"""

from __future__ import annotations

import math
from pathlib import Path

from budgetlab.config import check_choice

REPORT_TO = ("none", "tensorboard")


class Tracker:
    """log(row) writes each finite number of a metrics row at the row's "step"; close() flushes."""

    def __init__(self, report_to: str, log_dir: str | Path):
        check_choice("report_to", report_to, REPORT_TO)
        self.writer = None
        if report_to == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # torch's writer needs the tensorboard package
                raise ValueError("report_to='tensorboard' needs the tensorboard package; "
                                 "pip install 'budgetlab[track]' (make setup installs it).") from e
            self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, row: dict) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(key, value, int(row["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
