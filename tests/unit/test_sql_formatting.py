"""All SQL in writer/ is constant text, psycopg.sql composition or bound parameters (README "Security and
hygiene"): a static check of every .execute(/.copy( call and of every string formatting in writer/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class _Module:
    """What the SQL check needs to know about one module of writer/: its bindings, imports and functions."""

    cache: dict = {}

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(), str(path))
        self.bound: dict[str, list] = {}  # name -> expressions it is bound to (assignments, for loops)
        self.imported: dict[str, str] = {}  # name -> module of writer/ it comes from
        self.parameters: dict[str, tuple[str, int]] = {}  # parameter -> (function, position without self)
        self.classes = {node.name for node in ast.walk(self.tree) if isinstance(node, ast.ClassDef)}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    self._bind(target, node.value)
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                self._bind(node.target, node.value)
            elif isinstance(node, (ast.For, ast.comprehension)):
                self._bind(node.target, node.iter)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("writer."):
                for alias in node.names:
                    self.imported[alias.asname or alias.name] = node.module.split(".", 1)[1]
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in node.args.args if a.arg not in ("self", "cls")]
                for index, name in enumerate(names):
                    self.parameters[name] = (node.name, index)

    def _bind(self, target, value) -> None:
        if isinstance(target, ast.Name):
            self.bound.setdefault(target.id, []).append(value)
        elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
            for t, v in zip(target.elts, value.elts, strict=True):
                self._bind(t, v)

    @classmethod
    def of(cls, path: Path) -> _Module:
        if path not in cls.cache:
            cls.cache[path] = cls(path)
        return cls.cache[path]

    def calls_of(self, function: str):
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                func = node.func
                if (isinstance(func, ast.Name) and func.id == function) or \
                        (isinstance(func, ast.Attribute) and func.attr == function):
                    yield node

    def safe(self, node: ast.AST, seen: frozenset = frozenset()) -> bool:
        """Constant SQL, psycopg.sql composition, or a name bound only to such; never f-strings, % or str.format."""
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str)
        if isinstance(node, ast.JoinedStr):
            return False
        if isinstance(node, (ast.List, ast.Tuple)):
            return all(self.safe(e, seen) for e in node.elts)
        if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
            return self.safe(node.elt, seen)
        if isinstance(node, ast.BinOp):
            return isinstance(node.op, ast.Add) and self.safe(node.left, seen) and self.safe(node.right, seen)
        if isinstance(node, ast.IfExp):
            return self.safe(node.body, seen) and self.safe(node.orelse, seen)
        if isinstance(node, ast.Call):
            text = ast.unparse(node.func)
            if text in ("sql.SQL", "psycopg.sql.SQL"):
                return all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
            if text.startswith("sql.") and text.split(".")[1] in {"Identifier", "Literal", "Placeholder", "Composed"}:
                return True
            # e.g. Migration(description, up, down)
            if isinstance(node.func, ast.Name) and node.func.id in self.classes:
                return all(self.safe(a, seen) for a in node.args)
            if isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join"):
                return ast.unparse(node.func.value).startswith("sql.") or (
                    node.func.attr == "format" and self.safe(node.func.value, seen)
                    and not isinstance(node.func.value, ast.Constant))  # a composed sql.SQL named elsewhere
            return False
        if isinstance(node, ast.Name):
            name = node.id
            if name in seen:
                return True
            seen = seen | {name}
            if name in self.bound:
                return all(self.safe(value, seen) for value in self.bound[name])
            if name in self.imported:
                other = _Module.of(self.path.parent / f"{self.imported[name]}.py")
                return other.safe(ast.Name(id=name), frozenset())
            if name in self.parameters:
                function, index = self.parameters[name]
                sites = list(self.calls_of(function))
                return bool(sites) and all(len(c.args) > index and self.safe(c.args[index], seen) for c in sites)
            return False
        if isinstance(node, (ast.Subscript, ast.Attribute)):
            return self.safe(node.value, seen)  # an element of a constant table
        return False


def test_sql_is_never_formatted_from_strings():
    """Every .execute(/.copy( in writer/ gets constant SQL, psycopg.sql composition or bound parameters;
    and no f-string, % formatting or str.format anywhere in writer/ builds SQL text."""
    sql_words = re.compile(
        r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE|DROP|ALTER TABLE|TRUNCATE|COPY|COMMENT ON)\b"
    )
    problems = []
    checked = 0
    for path in sorted((ROOT / "writer").rglob("*.py")):
        module = _Module.of(path)
        for node in ast.walk(module.tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("execute", "executemany", "copy") and node.args:
                checked += 1
                if not module.safe(node.args[0]):
                    problems.append(f"{where}: {ast.unparse(node)[:120]}")
            text = None
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) \
                    and isinstance(node.left.value, str):
                text = node.left.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format" \
                    and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str):
                text = node.func.value.value
            if (text is not None and sql_words.search(text)
                    and re.search(r"\b(FROM|INTO|TABLE|DATABASE|SET|ON)\b", text)):
                problems.append(f"{where}: SQL built by string formatting: {text[:80]!r}")
    assert checked >= 10, "the check should find the execute/copy calls of writer/"
    assert not problems, "\n".join(problems)
