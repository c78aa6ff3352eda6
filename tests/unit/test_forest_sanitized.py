"""modelformat/_forest.c built with AddressSanitizer and UndefinedBehaviorSanitizer, then called by
a child Python with random and hostile arguments (Hypothesis): an out-of-bounds access, a signed
overflow, a misaligned read or a shift past its width aborts the child with a report, and the test
fails on it. Every answer of the sanitized build is also compared with the normal build's, and the
walk's with the NumPy walk's.

The child is this file run as a script (``python test_forest_sanitized.py <sanitized .so>``), with
the ASan runtime preloaded (Python itself is not built with it) and PYTHONMALLOC=malloc, so that
bytes, lists and arrays live in ASan's guarded allocations rather than in pymalloc's arenas, where a
read past an object would land in its neighbour unseen.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "modelformat" / "_forest.c"
REPORTS = ("Sanitizer", "runtime error:")  # "ERROR: AddressSanitizer: ...", UBSan's "file:line: runtime error: ..."
EXAMPLES = 150  # per property: the child takes ~20 s on one core

pytestmark = pytest.mark.slow


def _toolchain() -> tuple[str, str]:
    """gcc and the ASan runtime it links against (the child preloads it), or a skip."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc to build the sanitized extension with")
    libasan = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(libasan):
        pytest.skip("gcc has no libasan.so (Debian: libasan8)")
    return gcc, libasan


def build_sanitized(source: Path, folder: Path, name: str = "_forest") -> Path:
    """``source`` compiled with ASan and UBSan, every finding fatal, into ``folder``."""
    so = folder / f"{name}.so"
    include = sysconfig.get_paths()["include"]
    subprocess.run([_toolchain()[0], "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer", "-fno-fast-math",
                    "-fsanitize=address,undefined", "-fno-sanitize-recover=all", f"-I{include}",
                    str(source), "-o", str(so), "-lm"], check=True, capture_output=True, text=True)
    return so


def run_child(so: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """This file as a script under the sanitizers, checking the build at ``so``."""
    env = {**os.environ, "LD_PRELOAD": _toolchain()[1], "PYTHONMALLOC": "malloc",
           # Python's own allocations outlive it on purpose; the checks want errors, not leaks.
           "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    return subprocess.run([sys.executable, __file__, str(so), *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _sanitizer_report(result: subprocess.CompletedProcess[str]) -> str | None:
    if result.returncode != 0 or any(marker in result.stderr for marker in REPORTS):
        return f"exit {result.returncode}\n{result.stderr[-6000:]}"
    return None


def test_the_sanitized_build_survives_random_and_hostile_calls(tmp_path: Path) -> None:
    if importlib.util.find_spec("modelformat._forest") is None:
        pytest.skip("modelformat._forest was not built: nothing to compare with")
    result = run_child(build_sanitized(SOURCE, tmp_path), str(EXAMPLES))
    report = _sanitizer_report(result)
    assert report is None, report
    assert "checked" in result.stdout, result.stdout  # the properties did run


CANARY = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
/* One byte read past the end of a buffer: what the harness must catch. */
static PyObject *past_end(PyObject *self, PyObject *args) {
    Py_buffer b;
    if (!PyArg_ParseTuple(args, "y*", &b)) return NULL;
    int v = ((const char *)b.buf)[b.len + 1];
    PyBuffer_Release(&b);
    return PyLong_FromLong(v);
}
static PyMethodDef methods[] = {{"past_end", past_end, METH_VARARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_forest", NULL, -1, methods};
PyMODINIT_FUNC PyInit__forest(void) { return PyModule_Create(&module); }
"""


def test_the_harness_reports_a_read_past_a_buffer(tmp_path: Path) -> None:
    """A read one byte past a bytes object, the kind of bug the checks above hunt, fails the child:
    so a passing run of them means the sanitizers were watching."""
    source = tmp_path / "canary.c"
    source.write_text(CANARY)
    result = run_child(build_sanitized(source, tmp_path), "canary")
    assert result.returncode != 0 and "heap-buffer-overflow" in result.stderr, result.stderr[-3000:]


# --- the child -------------------------------------------------------------------------------
def _load(so: str) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader("_forest", so)
    spec = importlib.util.spec_from_file_location("_forest", so, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _outcome(call: Callable[..., Any], *args: Any) -> Any:
    """A call's result, or the type and message of what it raised."""
    try:
        return ("returned", call(*args))
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        return (type(exc).__name__, str(exc))


def _properties(sanitized: ModuleType, normal: ModuleType, examples: int) -> list[Callable[[], None]]:
    import numpy as np
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from modelformat.forest import Forest

    checked = settings(max_examples=examples, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))
    builds = (sanitized, normal)
    # Py_ssize_t and int arguments: small ones, any, and those next to the limits, where a sum wraps
    wide = st.integers(-3, 16) | st.integers(-(2**63), 2**63 - 1) | st.integers(0, 20).map(lambda k: 2**63 - 1 - k) \
        | st.integers(0, 20).map(lambda k: k - 2**63) | st.integers(-2, 2).map(lambda k: 2**62 + k)
    int32 = st.integers(-3, 70) | st.integers(-(2**31), 2**31 - 1) | st.integers(0, 3).map(lambda k: 2**31 - 1 - k) \
        | st.integers(0, 3).map(lambda k: k - 2**31)

    def exact(data: bytes, offset: int = 0) -> np.ndarray:
        """The bytes in an allocation that ends where they do (ASan's red zone right after), starting
        ``offset`` bytes past an aligned address."""
        buf = np.zeros(len(data) + offset, dtype=np.uint8)[offset:]
        buf[:] = np.frombuffer(data, dtype=np.uint8)
        return buf

    # numbers as clients write them (some past the one-pass read), and what is not one
    number = st.from_regex(r"[-+]?[0-9]{1,8}(\.[0-9]{0,8})?([eE][-+]?[0-9])?", fullmatch=True) \
        | st.sampled_from(["0", "000", "-0", "1", "-1.5", "1e3", "+.5", "5.", "0.000", "1" * 20, "0." + "1" * 30])
    junk = st.sampled_from([".", "nan", "1e39", "9" * 70, "-", "", " 1", "0x1", "1_0", "\u0663", "1e", "e5",
                            "\n", ",,"])

    @checked
    @given(data=st.data(), width=st.integers(1, 6), end=st.sampled_from(["\n"] * 4 + ["\r\n"] * 3 + ["\r", ",\n"]),
           trailing=st.sampled_from(["", "\n", "\r\n\n"]), off_by=st.sampled_from([0] * 8 + [-1, 1, -3]),
           spare_rows=st.sampled_from([0, 0, 1, 5, -1]))
    def csv_rows(data: st.DataObject, width: int, end: str, trailing: str, off_by: int, spare_rows: int) -> None:
        """Rows of plain numbers read with about as many features as they have, now and then a row
        longer than the others or a field that is not a number."""
        rows = data.draw(st.lists(st.lists(number, min_size=width, max_size=width + (off_by == 1)), max_size=12))
        if rows and data.draw(st.integers(0, 3)) == 0:
            row = data.draw(st.sampled_from(rows))
            row[data.draw(st.integers(0, len(row) - 1))] = data.draw(junk)
        n_features, max_rows = width + off_by, len(rows) + spare_rows
        text = (end.join(",".join(r) for r in rows) + trailing).encode()
        for cut in range(max(len(text) - 40, 0), len(text) + 1):  # the body ending anywhere in its last row
            body = exact(text[:cut])
            got, want = (_outcome(m.csv_rows, body, n_features, max_rows) for m in builds)
            assert got == want, (body.tobytes(), got, want)

    @checked
    @given(body=st.binary(max_size=200) | st.sampled_from([b"a\n" * 300, b"1\n" * 300, b"\n" * 300]),
           n_features=st.integers(1, 5) | st.sampled_from([228, 45_000, 2**31 - 1]), max_rows=int32)
    def csv_bytes(body: bytes, n_features: int, max_rows: int) -> None:
        got, want = (_outcome(m.csv_rows, exact(body), n_features, max_rows) for m in builds)
        assert got == want, (body, got, want)

    @checked
    @given(seed=st.integers(0, 2**32 - 1), depth=st.integers(1, 7), n_trees=st.integers(1, 20),
           n_features=st.integers(1, 9), n_rows=st.integers(0, 6), sigmoid=st.booleans())
    def walks(seed: int, depth: int, n_trees: int, n_features: int, n_rows: int, sigmoid: bool) -> None:
        """Random forests walked over random rows (NaN among them), and over the same rows as CSV."""
        rng = np.random.default_rng(seed)
        inner = (1 << depth) - 1
        forest = Forest.build(
            feature=rng.integers(0, n_features, n_trees * inner), threshold=rng.normal(size=n_trees * inner)
            .astype(np.float32), default_right=rng.random(n_trees * inner) < 0.5,
            leaf=rng.normal(size=n_trees << depth).astype(np.float32), depth=depth,
            base_margin=np.float32(rng.normal()), link="sigmoid" if sigmoid else "identity",
            n_features=n_features, n_trees=n_trees)
        x = rng.normal(size=(n_rows, n_features)).astype(np.float32)
        x[rng.random(x.shape) < 0.2] = np.nan
        args = (forest.nodes, forest.leaf, depth, n_trees, n_features, float(forest.base_margin), sigmoid)
        outs = []
        for module in builds:
            out = np.empty(n_rows, dtype=np.float32)
            module.margin(x, *args[:6], sigmoid, out)
            outs.append(out.tobytes())
        assert outs[0] == outs[1]
        if n_rows and not sigmoid:
            assert np.array_equal(np.frombuffer(outs[0], np.float32), forest.margin_numpy(x), equal_nan=True)
        finite = np.nan_to_num(x, nan=0.5)
        body = exact("".join(",".join(repr(float(v)) for v in row) + "\n" for row in finite).encode())
        scores = [_outcome(m.score_csv, body, *args, 8) for m in builds]
        assert scores[0] == scores[1]
        if n_rows:
            out = np.empty(n_rows, dtype=np.float32)
            normal.margin(finite, *args[:6], sigmoid, out)
            assert scores[0] == ("returned", out.astype(np.float64).tolist())
        for which in range(4 if n_rows else 0):  # one buffer a byte off its alignment: refused, never read
            moved = [x, forest.nodes, forest.leaf, np.empty(n_rows, dtype=np.float32)]
            moved[which] = exact(moved[which].tobytes(), 1)
            refused = [_outcome(m.margin, moved[0], *moved[1:3], *args[2:6], sigmoid, moved[3]) for m in builds]
            if which in (1, 2):
                refused += [_outcome(m.score_csv, body, *moved[1:3], *args[2:], 8) for m in builds]
            assert {outcome[0] for outcome in refused} == {"ValueError"}, refused

    @checked
    @given(depth=int32, n_trees=int32, n_features=int32, sizes=st.tuples(*[st.integers(0, 300)] * 4),
           offsets=st.tuples(*[st.integers(0, 3)] * 4), max_rows=int32, body=st.sampled_from(
               [b"0\n", b"0,0\n0,0", b"1,2,3\n" * 5, b"", b"a\n" * 40]))
    def hostile_shapes(depth: int, n_trees: int, n_features: int, sizes: tuple[int, ...],
                       offsets: tuple[int, ...], max_rows: int, body: bytes) -> None:
        """Depths, counts and lengths that do not fit, buffers at odd addresses: refused alike. (Nodes
        are zeros, so a call whose lengths do fit reads feature 0, which every row has.)"""
        x, nodes, leaf, out = (exact(bytes(size), offset) for size, offset in zip(sizes, offsets, strict=True))
        shape = (depth, n_trees, n_features, 0.0, True)
        for call in (lambda m: m.margin(x, nodes, leaf, *shape, out) or out.tobytes(),
                     lambda m: m.score_csv(exact(body), nodes, leaf, *shape, max_rows)):
            got, want = (_outcome(call, m) for m in builds)
            assert got == want, (got, want)

    @checked
    @given(size=st.integers(0, 12), start=wide, raw=st.lists(st.floats(width=64), max_size=8),
           longer=st.integers(-1, 1), seed=st.integers(0, 2**32 - 1))
    def put_dense(size: int, start: int, raw: list[float], longer: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        mean = rng.normal(size=max(len(raw) + longer, 0))
        std = rng.choice([0.5, 1.0, 3.0], size=mean.size)
        outs = []
        for module in builds:
            out = np.zeros(size, dtype=np.float32)
            outs.append((_outcome(module.put_dense, out, start, raw, mean, std), out.tobytes()))
        assert outs[0] == outs[1]
        if outs[0][0] == ("returned", None):
            values = np.asarray(raw, dtype=np.float64)
            scaled = ((np.where(np.isnan(values), mean, values) - mean) / std).astype(np.float32)
            expected = np.zeros(size, dtype=np.float32)
            expected[start:start + len(raw)] = np.where(scaled == 0, np.nan, scaled)
            assert np.array_equal(np.frombuffer(outs[0][1], np.float32), expected, equal_nan=True)

    @checked
    @given(size=st.integers(0, 12), start=wide, positions=st.dictionaries(st.sampled_from("abcd"), wide),
           values=st.lists(st.sampled_from(["a", "b", "c", "d", "z", 1, 2.5, None]), max_size=8))
    def mark(size: int, start: int, positions: dict[str, int], values: list[Any]) -> None:
        outs = []
        for module in builds:
            out = np.zeros(size, dtype=np.float32)
            outs.append((_outcome(module.mark, out, start, positions, values), out.tobytes()))
        assert outs[0] == outs[1]

    return [csv_rows, csv_bytes, walks, hostile_shapes, put_dense, mark]


def main(so: str, what: str) -> None:
    sys.path.insert(0, str(ROOT))
    sanitized = _load(so)
    if what == "canary":
        print(sanitized.past_end(b"x" * 40))
        return
    from modelformat import _forest as normal

    checks = _properties(sanitized, normal, int(what))
    for check in checks:
        check()
    print(f"checked {len(checks)} properties")


if __name__ == "__main__":
    main(*sys.argv[1:3])
