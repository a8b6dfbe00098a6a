"""A Supabase-shaped HTTP stand-in for tests: PostgREST v12's REST and RPC subset that
supabase-py sends, backed by a real PostgreSQL database, plus Storage objects in memory,
with Supabase's error shapes and switchable faults. Test code only; never ships."""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

MAX_ROWS = 1000  # hosted Supabase's db-max-rows
OPS = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "LIKE",
    "ilike": "ILIKE",
}
KONG_401 = {
    "message": "Invalid API key",
    "hint": "Double check your Supabase `anon` or `service_role` API key.",
}
JWT_401 = {
    "code": "PGRST301",
    "details": None,
    "hint": None,
    "message": "JWSError JWSInvalidSignature",
}


class ApiError(Exception):
    """An error reply: HTTP status and the JSON body PostgREST (or Storage) would send."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(body.get("message"))
        self.status = status
        self.body = body


def pgrst(status: int, code: str, message: str, details: Any = None, hint: Any = None) -> ApiError:
    return ApiError(status, {"code": code, "details": details, "hint": hint, "message": message})


def storage_error(status_code: int, error: str, message: str) -> ApiError:
    # Supabase Storage answers HTTP 400 and puts the real status in the body.
    return ApiError(400, {"statusCode": str(status_code), "error": error, "message": message})


# PostgREST's SQLSTATE -> HTTP status table (the part that matters here).
def _status_for_sqlstate(state: str) -> int:
    if state in ("23505", "23503", "40001"):
        return 409
    if state == "42501":
        return 403
    if state in ("42P01", "42883"):
        return 404
    if state.startswith(("08", "53")):
        return 503
    if state == "57014":
        return 500
    return 400


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Fault:
    kind: str  # status | drop | drop_reply | delay
    times: int = 1
    path: str = ""  # prefix of the request path, e.g. "/rest/v1/rpc/moonshot_claim"
    method: str | None = None
    status: int = 503
    body: dict[str, Any] | None = None
    delay: float = 0.0
    hits: int = 0


@dataclass
class Faults:
    """Faults for the next matching requests; `times=-1` means until cleared."""

    rules: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, **kw: Any) -> Fault:
        if kind not in ("status", "drop", "drop_reply", "delay"):
            raise ValueError(f"unknown fault {kind!r}")
        rule = Fault(kind, **kw)
        with self.lock:
            self.rules.append(rule)
        return rule

    def outage(self, status: int = 503) -> Fault:
        """Every request fails as an unreachable database does behind PostgREST."""
        body = {
            "code": "PGRST001",
            "details": "connection refused",
            "hint": None,
            "message": "Database client error. Retrying the connection.",
        }
        return self.add("status", times=-1, status=status, body=body)

    def take(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for rule in self.rules:
                if rule.times == 0 or not path.startswith(rule.path):
                    continue
                if rule.method and rule.method != method:
                    continue
                rule.hits += 1
                if rule.times > 0:
                    rule.times -= 1
                return rule
        return None

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()


# -- PostgREST query grammar ---------------------------------------------------------
def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses and double quotes."""
    parts, depth, quoted, cur = [], 0, False, []
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p != ""]


def _unquote_item(item: str) -> str:
    item = item.strip()
    if len(item) >= 2 and item[0] == item[-1] == '"':
        return re.sub(r"\\(.)", r"\1", item[1:-1])
    return item


class Query:
    """Turns PostgREST filters into SQL over a table whose columns are known."""

    def __init__(self, table: str, columns: list[str]):
        self.table = table
        self.columns = columns

    def col(self, name: str) -> sql.Identifier:
        if name not in self.columns:
            raise pgrst(400, "42703", f"column {self.table}.{name} does not exist")
        return sql.Identifier(name)

    def condition(self, column: str, expr: str) -> tuple[sql.Composable, list[Any]]:
        negate = False
        if expr.startswith("not."):
            negate, expr = True, expr[4:]
        op, dot, value = expr.partition(".")
        if not dot:
            raise pgrst(
                400,
                "PGRST100",
                f'"failed to parse filter ({expr})" (line 1, column 1)',
                details="unexpected end of input",
            )
        ident = self.col(column)
        params: list[Any] = []
        if op in OPS:
            cond = sql.SQL("{} {} %s").format(ident, sql.SQL(OPS[op]))
            params.append(value.replace("*", "%") if op in ("like", "ilike") else value)
        elif op == "is":
            words = {"null": "NULL", "true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}
            if value.lower() not in words:
                raise pgrst(
                    400,
                    "PGRST100",
                    f'"failed to parse filter (is.{value})" (line 1, column 4)',
                    details='unexpected "' + value[:1] + '" expecting null or trilean value',
                )
            cond = sql.SQL("{} IS {}").format(ident, sql.SQL(words[value.lower()]))
        elif op == "in":
            if not (value.startswith("(") and value.endswith(")")):
                raise pgrst(
                    400, "PGRST100", f'"failed to parse filter (in.{value})" (line 1, column 4)'
                )
            items = [_unquote_item(i) for i in _split_top(value[1:-1])]
            if not items:
                cond = sql.SQL("FALSE")
            else:
                cond = sql.SQL("{} IN ({})").format(
                    ident, sql.SQL(", ").join(sql.Placeholder() * len(items))
                )
                params.extend(items)
        else:
            raise pgrst(
                400,
                "PGRST100",
                f'"failed to parse filter ({expr})" (line 1, column 1)',
                details=f"unknown operator {op}",
            )
        if negate:
            cond = sql.SQL("NOT ({})").format(cond)
        return cond, params

    def logic(self, op: str, body: str) -> tuple[sql.Composable, list[Any]]:
        """`or=(a.eq.1,and(b.is.null,c.lt.2))` and `and=(...)`."""
        if not (body.startswith("(") and body.endswith(")")):
            raise pgrst(
                400, "PGRST100", f'"failed to parse logic tree ({body})" (line 1, column 1)'
            )
        parts, params = [], []
        for item in _split_top(body[1:-1]):
            m = re.match(r"^(not\.)?(or|and)(\(.*\))$", item)
            if m:
                cond, p = self.logic(m.group(2), m.group(3))
                if m.group(1):
                    cond = sql.SQL("NOT ({})").format(cond)
            else:
                column, dot, expr = item.partition(".")
                if not dot:
                    raise pgrst(
                        400, "PGRST100", f'"failed to parse logic tree ({body})" (line 1, column 1)'
                    )
                cond, p = self.condition(column, expr)
            parts.append(cond)
            params.extend(p)
        joiner = sql.SQL(" OR " if op == "or" else " AND ")
        return sql.SQL("({})").format(joiner.join(parts)), params

    def where(
        self, filters: list[tuple[str, str]]
    ) -> tuple[sql.Composable, list[Any], sql.Composable, list[Any]]:
        """(plain filters, their params, logic filters, their params); each TRUE when empty."""
        plain, pp, logic, lp = [], [], [], []
        for key, value in filters:
            if key in ("or", "and", "not.or", "not.and"):
                cond, p = self.logic(key.rsplit(".", 1)[-1], value)
                if key.startswith("not."):
                    cond = sql.SQL("NOT ({})").format(cond)
                logic.append(cond)
                lp.extend(p)
            else:
                cond, p = self.condition(key, value)
                plain.append(cond)
                pp.extend(p)

        def join(conds):
            return sql.SQL(" AND ").join(conds) if conds else sql.SQL("TRUE")

        return join(plain), pp, join(logic), lp

    def select_list(self, select: str | None) -> sql.Composable:
        if not select or select.strip() == "*":
            return sql.SQL("*")
        cols = [_unquote_item(c) for c in _split_top(select)]
        return sql.SQL(", ").join(self.col(c) for c in cols)

    def order_by(self, order: str | None) -> sql.Composable:
        if not order:
            return sql.SQL("")
        terms = []
        for term in _split_top(order):
            bits = term.split(".")
            name, rest = bits[0], bits[1:]
            t = sql.SQL("{}").format(self.col(name))
            for bit in rest:
                words = {
                    "asc": "ASC",
                    "desc": "DESC",
                    "nullsfirst": "NULLS FIRST",
                    "nullslast": "NULLS LAST",
                }
                if bit not in words:
                    raise pgrst(
                        400, "PGRST100", f'"failed to parse order ({order})" (line 1, column 1)'
                    )
                t = sql.SQL("{} {}").format(t, sql.SQL(words[bit]))
            terms.append(t)
        return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(terms)


def _param(value: Any) -> Any:
    if isinstance(value, dict):
        return Jsonb(value)
    return value


def _prefer(headers) -> dict[str, str]:
    out = {}
    for raw in headers.get_all("Prefer") or []:
        for item in raw.split(","):
            k, _, v = item.strip().partition("=")
            if k:
                out[k] = v
    return out


class Standin:
    """Start with `start()`; `url` is what SUPABASE_URL would be; `key` the service key."""

    def __init__(self, dsn: str, key: str = "standin-service-role-key", schema: str = "public"):
        self.dsn = dsn
        self.key = key
        self.schema = schema
        self.faults = Faults()
        self.requests: list[Recorded] = []
        self.buckets: dict[str, dict[str, Any]] = {}
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Standin:
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="supabase-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        self.faults.clear()
        with self.lock:
            self.requests.clear()
            self.buckets.clear()
            self.objects.clear()

    def recorded(self, prefix: str = "/") -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    # -- storage helpers for tests ---------------------------------------------------
    def put_object(
        self,
        bucket: str,
        path: str,
        data: bytes,
        content_type: str = "image/jpeg",
        public: bool = True,
    ) -> str:
        """Seed an object; returns its public URL."""
        with self.lock:
            self.buckets.setdefault(bucket, {"id": bucket, "name": bucket, "public": public})
            self.objects[(bucket, path)] = (data, content_type)
        return f"{self.url}/storage/v1/object/public/{bucket}/{path}"

    # -- REST ------------------------------------------------------------------------
    def columns(self, conn: psycopg.Connection, table: str) -> list[str]:
        rows = conn.execute(
            "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped"
            " AND c.relkind IN ('r', 'v', 'p') ORDER BY a.attnum",
            (self.schema, table),
        ).fetchall()
        if not rows:
            raise pgrst(404, "42P01", f'relation "{self.schema}.{table}" does not exist')
        return [r[0] for r in rows]

    def rest(self, method: str, name: str, params: list[tuple[str, str]], headers, body: bytes):
        prefer = _prefer(headers)
        try:
            with psycopg.connect(self.dsn, connect_timeout=5) as conn:
                if name.startswith("rpc/"):
                    return self._rpc(conn, method, name[4:], params, headers, body)
                return self._table(conn, method, name, params, headers, body, prefer)
        except psycopg.OperationalError as exc:
            if getattr(exc, "sqlstate", None):
                raise _pg_error(exc) from None
            raise pgrst(
                503, "PGRST000", "Database connection error. Retrying the connection.", str(exc)
            ) from None
        except psycopg.Error as exc:
            raise _pg_error(exc) from None

    def _table(self, conn, method, table, params, headers, body, prefer):
        q = Query(table, self.columns(conn, table))
        reserved = {"select", "order", "limit", "offset", "on_conflict", "columns"}
        opts = {k: v for k, v in params if k in reserved}
        filters = [(k, v) for k, v in params if k not in reserved]
        plain, pp, logic, lp = q.where(filters)
        tbl = sql.Identifier(self.schema, table)
        shape = sql.SQL("SELECT {} FROM pgrst_source WHERE {}").format(
            q.select_list(opts.get("select")), logic
        )
        status = 200
        if method == "GET":
            offset, limit = int(opts.get("offset", 0)), opts.get("limit")
            rng = headers.get("Range")
            if rng and limit is None:
                m = re.match(r"^\s*(\d+)-(\d*)\s*$", rng)
                if m:
                    offset = int(m.group(1))
                    if m.group(2):
                        limit = int(m.group(2)) - offset + 1
            limit = min(int(limit), MAX_ROWS) if limit is not None else MAX_ROWS
            source = sql.SQL("SELECT * FROM {} WHERE {} AND {}").format(tbl, plain, logic)
            query = sql.SQL(
                "WITH pgrst_source AS ({}) SELECT coalesce(json_agg(_r), '[]'::json) FROM ("
                "SELECT {} FROM pgrst_source{} LIMIT {} OFFSET {}) _r"
            ).format(
                source,
                q.select_list(opts.get("select")),
                q.order_by(opts.get("order")),
                sql.Literal(limit),
                sql.Literal(offset),
            )
            rows = conn.execute(query, [*pp, *lp]).fetchone()[0]
            total = "*"
            if prefer.get("count") == "exact":
                total = str(
                    conn.execute(
                        sql.SQL("SELECT count(*) FROM {} WHERE {} AND {}").format(
                            tbl, plain, logic
                        ),
                        [*pp, *lp],
                    ).fetchone()[0]
                )
            extra = {
                "Content-Range": f"{offset}-{offset + len(rows) - 1}/{total}"
                if rows
                else f"*/{total}"
            }
            return status, rows, extra
        data = json.loads(body or b"null") if method in ("POST", "PATCH") else None
        if method == "PATCH":
            if not isinstance(data, dict):
                raise pgrst(400, "PGRST102", "Empty or invalid json")
            for k in data:
                if k not in q.columns:
                    raise pgrst(
                        400,
                        "PGRST204",
                        f"Could not find the '{k}' column of '{table}' in the schema cache",
                    )
            sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in data)
            # PostgREST v12 applies or=/and= filters again to the rows the UPDATE returns
            # (PostgREST #3707): a row whose new values fail them is updated yet not returned.
            source = sql.SQL("UPDATE {} SET {} WHERE {} AND {} RETURNING *").format(
                tbl, sets, plain, logic
            )
            args = [*(_param(v) for v in data.values()), *pp, *lp, *lp]
        elif method == "DELETE":
            source = sql.SQL("DELETE FROM {} WHERE {} AND {} RETURNING *").format(tbl, plain, logic)
            args = [*pp, *lp, *lp]
        elif method == "POST":
            rows_in = data if isinstance(data, list) else [data]
            if not rows_in or not all(isinstance(r, dict) for r in rows_in):
                raise pgrst(400, "PGRST102", "Empty or invalid json")
            cols = list(dict.fromkeys(k for r in rows_in for k in r))
            for k in cols:
                if k not in q.columns:
                    raise pgrst(
                        400,
                        "PGRST204",
                        f"Could not find the '{k}' column of '{table}' in the schema cache",
                    )
            values, args = [], []
            for r in rows_in:
                cells = []
                for k in cols:
                    if k in r:
                        cells.append(sql.Placeholder())
                        args.append(_param(r[k]))
                    else:
                        cells.append(sql.SQL("DEFAULT"))
                values.append(sql.SQL("({})").format(sql.SQL(", ").join(cells)))
            conflict = sql.SQL("")
            resolution = prefer.get("resolution")
            if resolution:
                target = [c.strip() for c in (opts.get("on_conflict") or "id").split(",")]
                if resolution == "ignore-duplicates":
                    conflict = sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(
                        sql.SQL(", ").join(q.col(c) for c in target)
                    )
                else:
                    conflict = sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
                        sql.SQL(", ").join(q.col(c) for c in target),
                        sql.SQL(", ").join(
                            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in cols
                        ),
                    )
            source = sql.SQL("INSERT INTO {} ({}) VALUES {}{} RETURNING *").format(
                tbl,
                sql.SQL(", ").join(sql.Identifier(c) for c in cols),
                sql.SQL(", ").join(values),
                conflict,
            )
            args = [*args, *lp]
            status = 201
        else:
            raise pgrst(405, "PGRST117", f"Unsupported HTTP method: {method}")
        query = sql.SQL(
            "WITH pgrst_source AS ({}) SELECT coalesce(json_agg(_r), '[]'::json) FROM ({}) _r"
        ).format(source, shape)
        rows = conn.execute(query, args).fetchone()[0]
        if prefer.get("return") != "representation":
            return (204 if status == 200 else status), None, {}
        return status, rows, {}

    def _rpc(self, conn, method, fn, params, headers, body):
        args = json.loads(body or b"{}") if method == "POST" else dict(params)
        if not isinstance(args, dict):
            raise pgrst(400, "PGRST102", "Empty or invalid json")
        found = conn.execute(
            "SELECT p.proretset, t.typtype, coalesce(p.proargnames, '{}'), p.pronargdefaults, p.pronargs"
            " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_type t ON t.oid = p.prorettype"
            " WHERE n.nspname = %s AND p.proname = %s",
            (self.schema, fn),
        ).fetchall()

        def fits(row) -> bool:
            names, ndefaults, nargs = list(row[2])[: row[4]], row[3], row[4]
            return set(args) <= set(names) and set(names[: nargs - ndefaults]) <= set(args)

        match = next((row for row in found if fits(row)), None)
        if match is None:
            sig = ", ".join(sorted(args))
            raise pgrst(
                404,
                "PGRST202",
                f"Could not find the function {self.schema}.{fn}({sig}) in the schema cache",
                details=f"Searched for the function {self.schema}.{fn} with parameters {sig} or with a single"
                " unnamed json/jsonb parameter, but no matches were found in the schema cache.",
            )
        retset, typtype = match[0], match[1]
        call = sql.SQL("{}({})").format(
            sql.Identifier(self.schema, fn),
            sql.SQL(", ").join(sql.SQL("{} => %s").format(sql.Identifier(k)) for k in args),
        )
        values = [_param(v) for v in args.values()]
        if retset and typtype == "c":
            result = conn.execute(
                sql.SQL("SELECT coalesce(json_agg(_r), '[]'::json) FROM {} _r").format(call), values
            ).fetchone()[0]
        elif retset:
            result = conn.execute(
                sql.SQL("SELECT coalesce(json_agg(_r), '[]'::json) FROM {} _r(v)").format(call),
                values,
            ).fetchone()[0]
            result = [r["v"] for r in result]
        else:
            result = conn.execute(sql.SQL("SELECT to_json({})").format(call), values).fetchone()[0]
        return 200, result, {}

    # -- Storage ---------------------------------------------------------------------
    def storage(self, method: str, path: str, headers, body: bytes, authed: bool):
        parts = [unquote(p) for p in path.split("/") if p]
        if parts[:1] == ["bucket"]:
            if not authed:
                raise storage_error(403, "Unauthorized", "invalid signature")
            return self._buckets(method, parts[1:], body)
        if parts[:1] != ["object"] or len(parts) < 2:
            raise storage_error(404, "not_found", "Route not found")
        rest = parts[1:]
        public = rest[0] == "public"
        if rest[0] in ("public", "authenticated"):
            rest = rest[1:]
        if not public and not authed:
            raise storage_error(403, "Unauthorized", "invalid signature")
        if len(rest) < 2 and method != "DELETE":
            raise storage_error(400, "InvalidKey", "Invalid key")
        bucket, key = rest[0], "/".join(rest[1:])
        with self.lock:
            meta = self.buckets.get(bucket)
            if meta is None:
                raise storage_error(404, "Bucket not found", "Bucket not found")
            if method in ("GET", "HEAD"):
                obj = self.objects.get((bucket, key))
                if obj is None or (public and not meta["public"]):
                    raise storage_error(404, "not_found", "Object not found")
                return 200, obj[0], {"Content-Type": obj[1]}
            if method == "DELETE":
                names = json.loads(body or b"{}").get("prefixes", [])
                gone = [n for n in names if self.objects.pop((bucket, n), None) is not None]
                return 200, [{"name": n, "bucket_id": bucket} for n in gone], {}
            data, ctype = _upload_body(headers, body)
            exists = (bucket, key) in self.objects
            if method == "POST" and exists and headers.get("x-upsert", "").lower() != "true":
                raise storage_error(409, "Duplicate", "The resource already exists")
            if method == "PUT" and not exists:
                raise storage_error(404, "not_found", "Object not found")
            if method not in ("POST", "PUT"):
                raise storage_error(405, "invalid_method", f"Method {method} not allowed")
            self.objects[(bucket, key)] = (data, ctype)
        return 200, {"Key": f"{bucket}/{key}", "Id": str(uuid.uuid4())}, {}

    def _buckets(self, method, parts, body):
        with self.lock:
            if method == "GET" and not parts:
                return 200, list(self.buckets.values()), {}
            if method == "GET":
                if parts[0] not in self.buckets:
                    raise storage_error(404, "Bucket not found", "Bucket not found")
                return 200, self.buckets[parts[0]], {}
            if method == "POST" and not parts:
                data = json.loads(body or b"{}")
                bid = data.get("id") or data.get("name")
                if not bid:
                    raise storage_error(
                        400, "InvalidRequest", "body must have required property 'name'"
                    )
                if bid in self.buckets:
                    raise storage_error(409, "Duplicate", "The resource already exists")
                self.buckets[bid] = {
                    "id": bid,
                    "name": data.get("name") or bid,
                    "public": bool(data.get("public")),
                }
                return 200, {"name": bid}, {}
        raise storage_error(405, "invalid_method", f"Method {method} not allowed")


def _upload_body(headers, body: bytes) -> tuple[bytes, str]:
    ctype = headers.get("Content-Type", "application/octet-stream")
    if not ctype.startswith("multipart/form-data"):
        return body, ctype
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body
    )
    for part in msg.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True), part.get_content_type()
    raise storage_error(400, "InvalidRequest", "no file in the form")


def _pg_error(exc: psycopg.Error) -> ApiError:
    diag = exc.diag
    state = exc.sqlstate or "XX000"
    return pgrst(
        _status_for_sqlstate(state),
        state,
        diag.message_primary or str(exc),
        diag.message_detail,
        diag.message_hint,
    )


class _Handler(BaseHTTPRequestHandler):
    owner: Standin
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
        return

    def _reply(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        extra = dict(extra or {})
        if isinstance(payload, bytes):
            data = payload
            extra.setdefault("Content-Type", "application/octet-stream")
        elif payload is None:
            data = b""
        else:
            data = json.dumps(payload).encode()
            extra.setdefault("Content-Type", "application/json; charset=utf-8")
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _handle(self) -> None:
        owner = self.owner
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with owner.lock:
            owner.requests.append(
                Recorded(
                    self.command,
                    split.path,
                    split.query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
        fault = owner.faults.take(self.command, split.path)
        if fault and fault.kind == "delay":
            time.sleep(fault.delay)
        if fault and fault.kind == "drop":
            return self._drop()
        if fault and fault.kind == "status":
            return self._reply(
                fault.status, fault.body if fault.body is not None else {"message": "injected"}
            )
        apikey_ok = self.headers.get("apikey") == owner.key
        bearer_ok = self.headers.get("Authorization") == f"Bearer {owner.key}"
        try:
            if split.path.startswith("/rest/v1/"):
                if not apikey_ok:
                    raise ApiError(401, KONG_401)
                if not bearer_ok:
                    raise ApiError(401, JWT_401)
                name = unquote(split.path[len("/rest/v1/") :])
                params = parse_qsl(split.query, keep_blank_values=True)
                result = owner.rest(self.command, name, params, self.headers, body)
            elif split.path.startswith("/storage/v1/"):
                result = owner.storage(
                    self.command,
                    split.path[len("/storage/v1/") :],
                    self.headers,
                    body,
                    authed=apikey_ok and bearer_ok,
                )
            else:
                raise ApiError(404, {"message": "no Route matched with those values"})
        except ApiError as err:
            result = (err.status, err.body, {})
        if fault and fault.kind == "drop_reply":
            return self._drop()  # the work is committed, the reply is lost
        status, payload, extra = result
        self._reply(status, payload, extra)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _handle
