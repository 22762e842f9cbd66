"""Formula KPIs ("revenue / interaction_frequency"): a whitelist over Python's expression grammar.

Nothing is ever passed to eval(); the parsed tree is walked and only arithmetic on
KPI names, numbers and min/max/abs is allowed.
"""
from __future__ import annotations

import ast
import operator

import numpy as np

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_CALLS = {"min": np.fmin, "max": np.fmax, "abs": np.abs}


class Formula:
    def __init__(self, text: str):
        try:
            self.tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ValueError(f"cannot parse formula near column {exc.offset}: {exc.msg}") from None
        self.names: set[str] = set()
        self._check(self.tree)

    def _check(self, node) -> None:
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            self._check(node.left), self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            self._check(node.operand)
        elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            pass
        elif isinstance(node, ast.Name):
            self.names.add(node.id)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS
              and node.args and not node.keywords):
            for arg in node.args:
                self._check(arg)
        else:
            raise ValueError(
                f"unsupported expression {ast.unparse(node)!r}: use KPI ids, numbers, + - * / and min, max, abs"
            )

    def evaluate(self, values: dict):
        """values maps each KPI id to a number or numpy/pandas array; division by zero gives NaN."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._eval(self.tree, values)

    def _eval(self, node, values):
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, values), self._eval(node.right, values)
            if isinstance(node.op, ast.Div):
                return np.divide(np.asarray(left, float), np.where(np.asarray(right, float) == 0, np.nan, right))
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, values))
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return values[node.id]
        args = [self._eval(a, values) for a in node.args]
        func = _CALLS[node.func.id]
        if func is np.abs:
            return np.abs(args[0])
        result = args[0]
        for arg in args[1:]:
            result = func(result, arg)
        return result
