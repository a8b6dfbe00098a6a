"""Logging: one rotating file `logs/moonshot.log` plus stderr, a coin id on every
line (`coin=-` when none), text or JSON lines. Never pass a secret to a logger."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time

from moonshot.config import Config

LOGGER = "moonshot"


class _CoinField(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "coin"):
            record.coin = "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "coin": getattr(record, "coin", "-"),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


TEXT = "%(asctime)s %(levelname)-7s coin=%(coin)s %(message)s"


class _LogFile(logging.handlers.RotatingFileHandler):
    """logs/moonshot.log that a full disk cannot turn into tracebacks on stderr (logging's
    default handleError prints one per record): one line, once, until it works again."""

    failing = False  # the last record could not be written

    def emit(self, record: logging.LogRecord) -> None:
        self._wrote = True
        super().emit(record)  # calls handleError on failure
        if self._wrote:
            self.failing = False

    def handleError(self, record: logging.LogRecord) -> None:
        self._wrote = False
        if not self.failing:
            self.failing = True
            err = sys.exc_info()[1]
            sys.stderr.write(
                f"moonshot: cannot write {self.baseFilename} ({err}); logging to stderr only\n"
            )


def setup(cfg: Config, fmt: str | None = None, stderr: bool = True) -> logging.Logger:
    fmt = fmt or cfg.log.format
    log = logging.getLogger(LOGGER)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    log.setLevel(cfg.log.level.upper())
    log.propagate = False
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT)
    cfg.logs_dir.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [
        _LogFile(
            cfg.logs_dir / "moonshot.log",
            maxBytes=cfg.log.max_bytes,
            backupCount=cfg.log.backups,
            encoding="utf-8",
        )
    ]
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(formatter)
        h.addFilter(_CoinField())
        log.addHandler(h)
    return log


def get() -> logging.Logger:
    log = logging.getLogger(LOGGER)
    if not any(isinstance(f, _CoinField) for f in log.filters):
        log.addFilter(_CoinField())
    return log
