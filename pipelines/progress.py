"""A Dagster logger that prints one line per step, for `gutsignal run` in a terminal."""

import logging
import sys
import time

import dagster as dg


class _StepLineHandler(logging.Handler):
    """Turns Dagster's event stream into `[3/14] diet_daily ... done (0.4 s)` lines."""

    def __init__(self, total_steps: int) -> None:
        super().__init__()
        self.total = total_steps
        self.done = 0
        self.started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None and record.levelno >= logging.WARNING:
            # e.g. "another gutsignal run is in progress; waiting for it to finish"
            sys.stderr.write(f"  note: {meta.get('orig_message', record.getMessage())}\n")
            return
        if event is None or not event.step_key:
            return
        step = event.step_key
        kind = event.event_type_value
        if kind == "STEP_START":
            self.started[step] = time.monotonic()
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            self.done += 1
            elapsed = time.monotonic() - self.started.get(step, time.monotonic())
            word = "done" if kind == "STEP_SUCCESS" else "FAILED"
            sys.stderr.write(f"  [{self.done}/{self.total}] {step} {word} ({elapsed:.1f} s)\n")
        sys.stderr.flush()


@dg.logger(
    config_schema={"total_steps": dg.Field(int, default_value=0)},
    description="One line per step on stderr.",
)
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.getLogger("gutsignal.progress")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(_StepLineHandler(init_context.logger_config["total_steps"]))
    return logger
