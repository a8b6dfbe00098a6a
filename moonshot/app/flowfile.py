"""Edits of the user's flow file that keep it theirs: the file is read and written with
tomlkit, so comments, key order and formatting survive every tool that writes it
(`flow calibrate`, `flow record`), and every save says what it changed, in a short
diff-like list. Validation stays with `flow.load`; no screen and no database here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from moonshot.app.flow import FlowError

# The arrays of named steps a flow file may hold (`[[step]]`, and the recovery sequences).
STEP_ARRAYS = ("step", "reset", "interrupt")


class FlowFile:
    """One flow file as a tomlkit document. `put`/`drop` change keys in place (a changed
    value keeps its line and its comment; a new key goes after the table's last key,
    before the comments that lead into the next table); `save` writes atomically and
    returns what changed."""

    def __init__(self, path: Path, text: str, original: str | None = None):
        self.path = Path(path)
        try:
            self.doc = tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as exc:
            raise FlowError(f"{self.path}: not valid TOML ({exc})") from None
        self.original = text if original is None else original

    @classmethod
    def open(cls, path: Path) -> FlowFile:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FlowError(f"flow file {path} not found") from None
        return cls(path, text)

    @classmethod
    def new(cls, path: Path, doc: tomlkit.TOMLDocument, previous: str = "") -> FlowFile:
        """A document built in memory (by the recorder), to be saved over `previous`."""
        out = cls(path, "", previous)
        out.doc = doc
        return out

    # -- reading --------------------------------------------------------------------------
    def tables(self) -> list[tuple[str, Table]]:
        """Every named step, with the array it is in ("step", "reset", ...), in file order."""
        out = []
        for array in STEP_ARRAYS:
            value = self.doc.get(array)
            if isinstance(value, AoT | list):
                out += [(array, t) for t in value if isinstance(t, Table | dict)]
        return out

    def find(self, name: str) -> Table | None:
        return next((t for _, t in self.tables() if t.get("name") == name), None)

    def table(self, name: str) -> Table:
        """A top-level table such as [flow] or [calibration], created when missing."""
        if name not in self.doc:
            self.doc.add(name, tomlkit.table())
        return self.doc[name]

    # -- editing --------------------------------------------------------------------------
    @staticmethod
    def put(table: Table, key: str, value: Any) -> None:
        if key in table:
            old = table.item(key)
            table[key] = value
            comment = getattr(old.trivia, "comment", "")
            if comment:  # tomlkit keeps the comment of a replaced value only sometimes
                table.item(key).trivia.comment = comment
                table.item(key).trivia.comment_ws = old.trivia.comment_ws or "  "
            return
        body = table.value.body
        last = max((i for i, (k, _) in enumerate(body) if k is not None), default=-1)
        if last + 1 < len(body):
            # tomlkit's public add() appends after the blank lines and comments that
            # belong visually to the next table; its own insert keeps the layout.
            table.value._insert_at(last + 1, key, value)
        else:
            table.add(key, value)

    @classmethod
    def swap(cls, table: Table, old: str, key: str, value: Any) -> None:
        """Set `key` in the place (and with the comment) of `old`, which goes: a click
        that moves from `at` to `image` keeps its line and what the user wrote after it."""
        if old not in table or old == key:
            cls.put(table, key, value)
            return
        trivia = table.item(old).trivia
        index = next(
            i for i, (k, _) in enumerate(table.value.body) if k is not None and k.key == old
        )
        cls.drop(table, key)
        table.remove(old)
        table.value._insert_at(index, key, value)  # see put(): keeps the layout
        if trivia.comment:
            table.item(key).trivia.comment = trivia.comment
            table.item(key).trivia.comment_ws = trivia.comment_ws

    @staticmethod
    def drop(table: Table, key: str) -> None:
        if key in table:
            table.remove(key)

    # -- writing --------------------------------------------------------------------------
    def text(self) -> str:
        return tomlkit.dumps(self.doc)

    def changes(self) -> list[str]:
        """What differs from the file as it was read, one line per change."""
        try:
            before = _flat(tomlkit.parse(self.original).unwrap()) if self.original else {}
        except tomlkit.exceptions.ParseError:
            before = {}
        after = _flat(self.doc.unwrap())
        lines = []
        gone_steps = {k[0] for k in before if k[0] not in {a[0] for a in after}}
        new_steps = {k[0] for k in after if k[0] not in {b[0] for b in before}}
        for where in _ordered(before, after):
            if where in gone_steps or where in new_steps:
                continue
            keys = sorted(
                {k[1] for k in before if k[0] == where} | {k[1] for k in after if k[0] == where}
            )
            for key in keys:
                a, b = before.get((where, key), _MISSING), after.get((where, key), _MISSING)
                if a == b:
                    continue
                if a is _MISSING:
                    lines.append(f"+ {where}: {key} = {_show(b)}")
                elif b is _MISSING:
                    lines.append(f"- {where}: {key} (was {_show(a)})")
                else:
                    lines.append(f"~ {where}: {key} {_show(a)} -> {_show(b)}")
        lines += [f"+ {w} (new)" for w in _ordered({}, after) if w in new_steps]
        lines += [f"- {w} (removed)" for w in _ordered(before, {}) if w in gone_steps]
        return lines

    def save(self) -> list[str]:
        """Write atomically (a crash leaves the old file or the new one, never half);
        returns `changes()` as they were before the write."""
        changed = self.changes()
        text = self.text()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        part = self.path.with_name(self.path.name + ".part")
        with open(part, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, self.path)
        self.original = text
        return changed


_MISSING = object()


def _flat(data: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """{(where, key): value}: where is a table name or "step 'NAME'" for named steps."""
    out: dict[tuple[str, str], Any] = {}
    for top, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, t in enumerate(value, 1):
                where = f"{top} {t['name']!r}" if isinstance(t.get("name"), str) else f"{top} {i}"
                out.update({(where, k): v for k, v in t.items()})
        elif isinstance(value, dict):
            out.update({(top, k): v for k, v in value.items()})
        else:
            out[("(top)", top)] = value
    return out


def _ordered(*flats: dict[tuple[str, str], Any]) -> list[str]:
    seen: dict[str, None] = {}
    for flat in flats:
        for where, _ in flat:
            seen.setdefault(where, None)
    return list(seen)


def _show(value: Any) -> str:
    text = tomlkit.item(value).as_string() if value is not None else "none"
    return text if len(text) <= 60 else text[:57] + "..."
