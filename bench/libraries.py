"""Issue 26, point 4: well-kept libraries against what the project writes by hand, measured in process.

    python -m bench.libraries [--repeats 41] [--no-callgrind] [--out bench/libraries.md]

Four comparisons, each against the project's own path:

1. JSON answers: ``inference.codecs._json_predictions`` (and ``codecs.encode``) vs orjson and msgspec
   (and json.dumps, what MLSHIP_FAST=false writes), for the gender answer of 1, 8, 64 and 1,000 rows.
2. Access lines: ``inference.fast.lines.InfoLines.timed`` (held, as the worker holds it) vs a line
   built from the same dict by orjson / msgspec / json.dumps, and logging's own path.
3. CSV batches: the C parse of ``modelformat/_forest.c`` (``Forest.csv_matrix``) vs pyarrow's
   ``csv.read_csv`` (float32 columns, no header) to a float32 matrix vs pandas ``read_csv(engine="c")``,
   1,000 rows of 6 and of 228 features.
4. Small-batch tree walks: ``Forest.predict`` / ``Forest.score_rows`` (the compiled walk) vs XGBoost's
   ``inplace_predict`` vs a tl2cgen-compiled library (gcc) vs treelite's GTIL vs ONNX Runtime (via
   onnxmltools), 1 and 128 rows of a 228-feature, 200-tree, depth-6 booster; predictions compared.

Candidate libraries are imported from the interpreter's path and then from ``MLSHIP_BENCH_LIBS``
(default /tmp/libs, appended last so the project's own numpy/xgboost win), e.g. installed with
``pip install --target /tmp/libs orjson msgspec treelite tl2cgen onnxruntime onnxmltools``; one that
does not import is skipped, saying why. Nothing here changes the project's requirements.

Times are medians over ``--repeats`` interleaved rounds (each round a loop of about 5 ms per way),
since a CI run may share the CPU. Instruction counts come from one run of this module under
``valgrind --tool=callgrind``: each way's loop is bracketed by ``os.getppid()`` calls, and
``--dump-before=getppid`` dumps the counters there, so each loop's count is read on its own, less an
empty loop's count per call. Those counts are repeatable under load.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LIBS = Path(os.environ.get("MLSHIP_BENCH_LIBS", "/tmp/libs"))
WORK = Path(os.environ.get("MLSHIP_BENCH_WORK", "/tmp/mlship-bench-libraries"))
if LIBS.is_dir() and str(LIBS) not in sys.path:
    sys.path.append(str(LIBS))

SKIPPED: dict[str, str] = {}  # library -> why it was skipped
N_FEATURES = 228
N_TREES = 200
DEPTH = 6


def optional(name: str) -> ModuleType | None:
    try:
        return __import__(name, fromlist=["_"])
    except Exception as exc:  # ImportError, or a broken binary wheel
        SKIPPED[name.split(".")[0]] = f"{type(exc).__name__}: {exc}"
        return None


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


@dataclass
class Case:
    section: str
    group: str  # the size compared within (e.g. "1 row")
    way: str
    fn: Callable[[], Any]
    ref: bool = False  # the project's path: the others are compared with it
    note: str = ""
    reset: Callable[[], None] | None = None  # run before each timed loop (empty a held list)
    median_us: float | None = None
    instr: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.section} | {self.group} | {self.way}"


# --------------------------------------------------------------------------- data and models
def gender_like(n: int, seed: int) -> np.ndarray:
    """Rows shaped like the gender features: 20 dense standardised values (2% missing) and 208
    one-hot / count columns, mostly 0."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, N_FEATURES), dtype=np.float32)
    x[:, :20] = rng.normal(size=(n, 20))
    x[:, :20][rng.random((n, 20)) < 0.02] = np.nan
    x[:, 20:] = (rng.random((n, N_FEATURES - 20)) < 0.06).astype(np.float32)
    return x


def label_of(x: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1] * x[:, 2]) + x[:, 20:40].sum(axis=1) * 0.5 \
        - x[:, 40:60].sum(axis=1) * 0.5 + rng.normal(size=x.shape[0])
    return (z > 0).astype(np.float32)


def prepare(work: Path) -> None:
    """Train the boosters, compile tl2cgen's library and convert to ONNX once, in the parent (the
    callgrind run loads these files)."""
    import xgboost as xgb

    work.mkdir(parents=True, exist_ok=True)
    x = gender_like(6000, 1)
    params = {"objective": "binary:logistic", "max_depth": DEPTH, "eta": 0.1, "nthread": 2,
              "tree_method": "hist", "seed": 0}
    booster = xgb.train(params, xgb.DMatrix(x, label=label_of(x, 2)), N_TREES)
    booster.save_model(str(work / "gender228.ubj"))
    rng = np.random.default_rng(3)
    x6 = rng.normal(size=(2000, 6)).astype(np.float32)
    small = xgb.train({**params, "max_depth": 3}, xgb.DMatrix(x6, label=(x6.sum(axis=1) > 0).astype(int)), 20)
    small.save_model(str(work / "numeric6.ubj"))

    (work / "tl2cgen.so").unlink(missing_ok=True)
    treelite, tl2cgen = optional("treelite"), optional("tl2cgen")
    if treelite is not None and tl2cgen is not None:
        try:
            started = time.perf_counter()
            model = treelite.frontend.from_xgboost(booster)
            tl2cgen.export_lib(model, toolchain="gcc", libpath=str(work / "tl2cgen.so"),
                               params={"parallel_comp": 1}, nthread=1, verbose=False)
            (work / "tl2cgen.seconds").write_text(f"{time.perf_counter() - started:.1f}")
        except Exception as exc:
            SKIPPED["tl2cgen"] = f"compile failed: {type(exc).__name__}: {exc}"
    (work / "model.onnx").unlink(missing_ok=True)
    onnxmltools = optional("onnxmltools")
    if onnxmltools is not None:
        try:
            from onnxmltools.convert.common.data_types import FloatTensorType

            onnx_model = onnxmltools.convert_xgboost(
                booster, initial_types=[("x", FloatTensorType([None, N_FEATURES]))], target_opset=15)
            (work / "model.onnx").write_bytes(onnx_model.SerializeToString())
        except Exception as exc:
            SKIPPED["onnxmltools"] = f"conversion failed: {type(exc).__name__}: {exc}"
    (work / "skipped.json").write_text(json.dumps(SKIPPED))


def csv_body(x: np.ndarray) -> bytes:
    """Plain numeric CSV: values to 6 places (Python's repr of the rounded float), 0/1 as integers."""
    lines = []
    for row in np.round(x.astype(np.float64), 6).tolist():
        lines.append(",".join(str(int(v)) if v.is_integer() else repr(v) for v in row))
    return ("\n".join(lines) + "\n").encode()


# --------------------------------------------------------------------------- 1. JSON answers
def gender_columns(n: int) -> dict[str, list[Any]]:
    if n == 1:
        return {"device_id": ["3581888242583532973"], "label": ["M"], "probability": [0.638274],
                "probability_M": [0.638274]}
    rng = np.random.default_rng(n)
    p = np.round(rng.random(n), 6)
    return {"device_id": [str(v) for v in rng.integers(10 ** 17, 10 ** 19, size=n, dtype=np.uint64).tolist()],
            "label": ["M" if v >= 0.5 else "F" for v in p.tolist()],
            "probability": np.round(np.where(p >= 0.5, p, 1 - p), 6).tolist(),
            "probability_M": p.tolist()}


def json_cases() -> list[Case]:
    from inference import codecs
    from inference.codecs import JSON, Outputs

    # The hand writer and the pandas path were the project's until it adopted orjson (this bench's
    # finding); measured where the checkout still has them.
    _json_predictions = getattr(codecs, "_json_predictions", None)

    orjson, msgspec = optional("orjson"), optional("msgspec.json")
    cases = []
    for n in (1, 8, 64, 1000):
        group = f"{n:,} row" + ("s" if n > 1 else "")
        cols = gender_columns(n)
        out = Outputs(columns=cols, csv_columns=["label", "probability"])
        rows = out.rows
        reference = json.dumps({"predictions": rows()}, ensure_ascii=False).encode()
        compact = json.dumps({"predictions": rows()}, ensure_ascii=False, separators=(",", ":")).encode()

        def same(body: bytes, reference: bytes = reference, compact: bytes = compact) -> str:
            if body == reference:
                return "= json.dumps"
            if body == compact:
                return "= json.dumps(separators=(',', ':')) (no spaces)"
            if json.loads(body) == json.loads(reference):
                return "same JSON value, other spacing"
            return "DIFFERENT VALUE"

        if _json_predictions is not None and n < getattr(codecs, "_MANY_JSON_ROWS", 0):
            cases.append(Case("JSON answer", group, "hand: _json_predictions(columns).encode()",
                              lambda cols=cols: _json_predictions(cols).encode(), ref=True,  # type: ignore[union-attr]
                              note=same(_json_predictions(cols).encode())))  # type: ignore[union-attr]
        else:
            def frame(cols: dict[str, list[Any]] = cols) -> bytes:
                import pandas as pd
                table = pd.DataFrame(cols).to_json(orient="records", force_ascii=False, double_precision=15)
                return ('{"predictions": ' + table + "}").encode()
            cases.append(Case("JSON answer", group, "pandas DataFrame.to_json (the project's >=64 rows before orjson)",
                              frame, ref=True, note=same(frame())))
        cases.append(Case("JSON answer", group, "json.dumps(rows) (MLSHIP_FAST=false)",
                          lambda rows=rows: json.dumps({"predictions": rows()}, ensure_ascii=False).encode(),
                          note=same(reference)))
        if orjson is not None:
            dumps = orjson.dumps
            cases.append(Case("JSON answer", group, "orjson.dumps(rows)",
                              lambda rows=rows, dumps=dumps: dumps({"predictions": rows()}),
                              note=same(dumps({"predictions": rows()}))))
            built = {"predictions": rows()}
            cases.append(Case("JSON answer", group, "orjson.dumps (rows prebuilt: encoder alone)",
                              lambda built=built, dumps=dumps: dumps(built), note="as above"))
        if msgspec is not None:
            encode = msgspec.Encoder().encode
            cases.append(Case("JSON answer", group, "msgspec.json.Encoder().encode(rows)",
                              lambda rows=rows, encode=encode: encode({"predictions": rows()}),
                              note=same(encode({"predictions": rows()}))))
        # The whole codec each way.
        cases.append(Case("codecs.encode", group, "codecs.encode(outputs, JSON) (this checkout)",
                          lambda out=out: codecs.encode(out, JSON), ref=True,
                          note=same(codecs.encode(out, JSON)[0])))
        if orjson is not None:
            def encode_orjson(outputs: Outputs, media_type: str, dumps: Any = orjson.dumps) -> tuple[bytes, str]:
                """codecs.encode's JSON answer as it would be with orjson (sketch: CSV unchanged)."""
                if media_type != JSON:
                    return codecs.encode(outputs, media_type)
                return dumps({"predictions": outputs.rows()}), JSON
            cases.append(Case("codecs.encode", group, "encode with orjson (sketch of the JSON branch)",
                              lambda out=out, f=encode_orjson: f(out, JSON), note=same(encode_orjson(out, JSON)[0])))
        if msgspec is not None:
            def encode_msgspec(outputs: Outputs, media_type: str,
                               enc: Any = msgspec.Encoder().encode) -> tuple[bytes, str]:
                if media_type != JSON:
                    return codecs.encode(outputs, media_type)
                return enc({"predictions": outputs.rows()}), JSON
            cases.append(Case("codecs.encode", group, "encode with msgspec (sketch of the JSON branch)",
                              lambda out=out, f=encode_msgspec: f(out, JSON), note=same(encode_msgspec(out, JSON)[0])))
    return cases


# --------------------------------------------------------------------------- 2. access lines
def line_cases() -> list[Case]:
    from container import logs
    from inference.fast.lines import InfoLines

    orjson, msgspec = optional("orjson"), optional("msgspec.json")
    sink = io.StringIO()
    logs.configure("INFO", sink)
    logger = logging.getLogger("inference.access")
    lines = InfoLines(logger)
    logs.request_id_var.set("8f14e45fceea167a5a36dedd4bea2543")  # a uuid4 hex, as exchange.request_id makes
    msg, fields, seconds = "POST /invocations 200", {"status": 200}, 0.000412
    assert lines.hold()
    held = lines._held
    assert held is not None
    lines.timed(msg, fields, seconds)
    project_line = held[-1][0]

    def empty() -> None:
        held.clear()
        sink.seek(0)
        sink.truncate()

    stamps = logs._Stamps()
    name = logger.name
    out: list[Any] = []

    def payload() -> dict[str, Any]:
        """What JsonFormatter builds for the line (container/logs.py), with the time now."""
        now = time.time()
        d = logs._payload(stamps(now, (now - int(now)) * 1000), "INFO", name, msg)
        for key, value in fields.items():
            d.setdefault(key, value)
        d["ms"] = round(seconds * 1000, 3)
        return d

    def compare(line: str | bytes) -> str:
        text = line.decode() if isinstance(line, bytes) else line
        if text.rstrip("\n")[33:] == project_line.rstrip("\n")[33:]:  # past the time stamp
            return "= the project's line (but the time)"
        a, b = json.loads(text), json.loads(project_line)
        a["ts"] = b["ts"] = ""
        if a == b and list(a) == list(b):
            return "same keys, order and values; no spaces after ':' and ','" \
                if ": " not in text else "same JSON, other text"
        return "DIFFERENT"

    timed = lines.timed
    cases = [Case("access line", "1 line", "hand: InfoLines.timed (held, the project's)",
                  lambda: timed(msg, fields, seconds), ref=True, reset=empty,
                  note="what JsonFormatter writes (tests/unit/test_info_lines.py)")]
    info = logger.info
    extra = {**fields, "ms": round(seconds * 1000, 3)}
    cases.append(Case("access line", "1 line", "logging: logger.info + JsonFormatter (MLSHIP_FAST=false)",
                      lambda: info("%s", msg, extra=extra), reset=empty, note="the line itself, written"))
    dumps_std = json.dumps
    cases.append(Case("access line", "1 line", "json.dumps(payload dict)",
                      lambda: out.append(dumps_std(payload(), default=str, ensure_ascii=False) + "\n"),
                      reset=out.clear, note=compare(dumps_std(payload(), default=str, ensure_ascii=False))))
    if orjson is not None:
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        cases.append(Case("access line", "1 line", "orjson.dumps(payload dict) -> bytes",
                          lambda: out.append(dumps(payload(), option=newline)), reset=out.clear,
                          note=compare(dumps(payload()))))
        cases.append(Case("access line", "1 line", "orjson.dumps(payload dict).decode() -> str",
                          lambda: out.append(dumps(payload(), option=newline).decode()), reset=out.clear,
                          note="as above (the log stream is text)"))
    if msgspec is not None:
        enc = msgspec.Encoder().encode
        cases.append(Case("access line", "1 line", "msgspec encode(payload dict) -> bytes",
                          lambda: out.append(enc(payload()) + b"\n"), reset=out.clear,
                          note=compare(enc(payload()))))
    cases.append(Case("access line", "1 line", "payload dict alone (no encoding)",
                      lambda: out.append(payload()), reset=out.clear, note="what any library's line starts from"))
    return cases


# --------------------------------------------------------------------------- 3. CSV batches
def csv_cases(work: Path) -> list[Case]:
    import pandas as pd
    import xgboost as xgb

    from modelformat.forest import compile_booster

    pa = optional("pyarrow")
    pacsv = optional("pyarrow.csv")
    cases = []
    for n_features, model in ((6, "numeric6.ubj"), (N_FEATURES, "gender228.ubj")):
        forest = compile_booster(xgb.Booster(model_file=str(work / model)))
        assert forest is not None and forest.n_features == n_features
        rng = np.random.default_rng(n_features)
        x = rng.normal(size=(1000, n_features)).astype(np.float32) if n_features == 6 else gender_like(1000, 7)
        x = np.nan_to_num(x)  # plain numeric: every field a number
        body = csv_body(x)
        group = f"1,000 x {n_features} ({len(body) // 1024} KiB)"
        ours = forest.csv_matrix(body, 1 << 30)
        assert ours is not None and ours.shape == (1000, n_features), "the C parse refused the body"

        def agree(m: np.ndarray, ours: np.ndarray = ours) -> str:
            if m.dtype != np.float32 or m.shape != ours.shape:
                return f"shape/dtype {m.shape} {m.dtype}"
            diff = int((m.view(np.uint32) != ours.view(np.uint32)).sum())
            return "bit-equal to the C parse" if diff == 0 else f"{diff} cells differ from the C parse"

        cases.append(Case("CSV batch", group, "C parse: Forest.csv_matrix (the project's)",
                          lambda body=body, f=forest: f.csv_matrix(body, 1 << 30), ref=True,
                          note="float32 matrix, C order"))
        if pa is not None and pacsv is not None:
            names = [f"f{i}" for i in range(n_features)]
            convert = pacsv.ConvertOptions(column_types={c: pa.float32() for c in names})
            for threads in (False, True):
                read = pacsv.ReadOptions(column_names=names, use_threads=threads)

                def arrow_stack(body: bytes = body, read: Any = read, convert: Any = convert) -> np.ndarray:
                    table = pacsv.read_csv(pa.py_buffer(body), read_options=read, convert_options=convert)
                    return np.column_stack([c.to_numpy() for c in table.columns])

                def arrow_tensor(body: bytes = body, read: Any = read, convert: Any = convert) -> np.ndarray:
                    table = pacsv.read_csv(pa.py_buffer(body), read_options=read, convert_options=convert)
                    batch = table.combine_chunks().to_batches()[0]
                    return np.asarray(batch.to_tensor(row_major=True))

                label = "threads" if threads else "one thread"
                cases.append(Case("CSV batch", group, f"pyarrow read_csv ({label}) + np.column_stack",
                                  arrow_stack, note=agree(arrow_stack())))
                cases.append(Case("CSV batch", group, f"pyarrow read_csv ({label}) + RecordBatch.to_tensor",
                                  arrow_tensor, note=agree(arrow_tensor())))
                table = pacsv.read_csv(pa.py_buffer(body), read_options=read, convert_options=convert)
                cases.append(Case("CSV batch", group, f"pyarrow read_csv ({label}) alone (Arrow table)",
                                  lambda body=body, read=read, convert=convert: pacsv.read_csv(
                                      pa.py_buffer(body), read_options=read, convert_options=convert),
                                  note=f"{table.num_rows} rows, {table.column(0).num_chunks} chunk(s)"))

        def pandas_c(body: bytes = body) -> np.ndarray:
            return pd.read_csv(io.BytesIO(body), header=None, dtype=np.float32, engine="c").to_numpy()

        cases.append(Case("CSV batch", group, "pandas read_csv(engine='c', dtype=float32).to_numpy()",
                          pandas_c, note=agree(pandas_c())))
        if pa is not None:
            def pandas_arrow(body: bytes = body) -> np.ndarray:
                return pd.read_csv(io.BytesIO(body), header=None, dtype=np.float32,
                                   engine="pyarrow").to_numpy()
            cases.append(Case("CSV batch", group, "pandas read_csv(engine='pyarrow', dtype=float32).to_numpy()",
                              pandas_arrow, note=agree(pandas_arrow())))
    return cases


# --------------------------------------------------------------------------- 4. tree walks
def walk_cases(work: Path) -> list[Case]:
    import xgboost as xgb

    from modelformat.forest import compile_booster, probe_rows

    booster = xgb.Booster(model_file=str(work / "gender228.ubj"))
    booster.set_param({"nthread": 1})
    forest = compile_booster(booster)
    assert forest is not None, "the booster did not compile to the C walk"
    probe = np.concatenate([probe_rows(forest, 512), gender_like(512, 11)])
    truth = np.asarray(booster.inplace_predict(probe, validate_features=False), dtype=np.float32)

    def agree(p: Any) -> str:
        p = np.asarray(p, dtype=np.float32).reshape(-1)
        equal = int((p.view(np.uint32) == truth.view(np.uint32)).sum())
        return f"{equal}/{truth.size} bit-equal to XGBoost, max |diff| {float(np.abs(p - truth).max()):.1e}"

    ways: list[tuple[str, Callable[[np.ndarray], Any], bool, str]] = []
    ways.append(("compiled walk: Forest.predict (NumPy rows)", forest.predict, True, agree(forest.predict(probe))))

    def buffered(x: np.ndarray) -> Callable[[], Any]:
        rows, n = array("f", x.tobytes()), x.shape[0]
        return lambda: forest.score_rows(rows, n)

    ways.append(("compiled walk: Forest.score_rows (array('f'))", buffered, False,
                 agree(forest.score_rows(array("f", probe.tobytes()), probe.shape[0]))))
    ways.append(("XGBoost inplace_predict (nthread=1)",
                 lambda x: booster.inplace_predict(x, validate_features=False), False, "reference"))

    tl2cgen = optional("tl2cgen")
    if tl2cgen is not None and (work / "tl2cgen.so").exists():
        predictor = tl2cgen.Predictor(str(work / "tl2cgen.so"), nthread=1, verbose=False)
        dmatrix = tl2cgen.DMatrix

        def tl(x: np.ndarray) -> Any:
            return predictor.predict(dmatrix(x, dtype="float32"))

        seconds = (work / "tl2cgen.seconds").read_text() if (work / "tl2cgen.seconds").exists() else "?"
        ways.append(("tl2cgen compiled .so (gcc; DMatrix + predict)", tl, False,
                     agree(tl(probe)) + f"; compile {seconds} s"))
    elif tl2cgen is not None:
        SKIPPED.setdefault("tl2cgen", "no compiled library (see prepare)")
    treelite = optional("treelite")
    if treelite is not None:
        model = treelite.frontend.from_xgboost(booster)

        def gtil(x: np.ndarray) -> Any:
            return treelite.gtil.predict(model, x, nthread=1)

        ways.append(("treelite GTIL predict (nthread=1)", gtil, False, agree(gtil(probe))))
    ort = optional("onnxruntime")
    if ort is not None and (work / "model.onnx").exists():
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(work / "model.onnx"), options, providers=["CPUExecutionProvider"])
        run = session.run

        def onnx(x: np.ndarray) -> Any:
            return run(["probabilities"], {"x": x})[0][:, 1]

        ways.append(("ONNX Runtime session.run (1 thread)", onnx, False, agree(onnx(probe))))
    elif ort is not None:
        SKIPPED.setdefault("onnxruntime", "no ONNX model (onnxmltools missing or conversion failed)")

    cases = []
    for n in (1, 128):
        x = np.ascontiguousarray(gender_like(n, 100 + n))
        for way, fn, ref, note in ways:
            call = fn(x) if way.startswith("compiled walk: Forest.score_rows") else (lambda fn=fn, x=x: fn(x))
            cases.append(Case("tree walk", f"{n} row" + ("s" if n > 1 else ""), way, call, ref=ref, note=note))
    return cases


def all_cases(work: Path) -> list[Case]:
    cases = [Case("-", "-", "empty loop", lambda: None)]
    for build in (json_cases, line_cases, lambda: csv_cases(work), lambda: walk_cases(work)):
        cases += build()
    return cases


# --------------------------------------------------------------------------- measuring
def time_cases(cases: list[Case], repeats: int, target: float = 0.005) -> None:
    perf = time.perf_counter
    loops: list[int] = []
    for case in cases:  # calibrate: a loop of about ``target`` seconds
        if case.reset:
            case.reset()
        case.fn()
        n, spent = 1, 0.0
        while True:
            started = perf()
            for _ in range(n):
                case.fn()
            spent = perf() - started
            if spent >= target / 4 or n >= 1 << 16:
                break
            n *= 4
        loops.append(max(1, int(n * target / max(spent, 1e-9))))
    samples: list[list[float]] = [[] for _ in cases]
    for _ in range(repeats):  # interleaved, so that a busy moment hits every way alike
        for i, case in enumerate(cases):
            if case.reset:
                case.reset()
            fn, n = case.fn, loops[i]
            started = perf()
            for _ in range(n):
                fn()
            samples[i].append((perf() - started) / n)
    for case, got in zip(cases, samples, strict=True):
        case.median_us = statistics.median(got) * 1e6
        if len(got) > 3:
            quartiles = statistics.quantiles(got, n=4)
            case.extra["spread"] = (quartiles[2] - quartiles[0]) * 1e6


def callgrind_child(work: Path) -> None:
    """Under callgrind: each case's loop between two os.getppid() calls (each one a dump)."""
    medians = json.loads((work / "medians.json").read_text())
    cases = all_cases(work)
    order = []
    getppid = os.getppid
    for case in cases:
        n = max(3, min(300, int(2e-3 / max(medians.get(case.key, 1.0) * 1e-6, 1e-7))))
        if case.reset:
            case.reset()
        for _ in range(3):
            case.fn()
        fn = case.fn
        getppid()  # dump: everything since the last loop
        for _ in range(n):
            fn()
        getppid()  # dump: this loop
        order.append((case.key, n))
    (work / "callgrind-order.json").write_text(json.dumps(order))


def run_callgrind(work: Path, cases: list[Case]) -> str:
    if shutil.which("valgrind") is None:
        return "valgrind not installed: no instruction counts"
    (work / "medians.json").write_text(json.dumps({c.key: c.median_us for c in cases}))
    out_dir = work / "callgrind"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    started = time.perf_counter()
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--dump-before=getppid",
         f"--callgrind-out-file={out_dir}/cg.%p", sys.executable, "-m", "bench.libraries",
         "--callgrind-child"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "MLSHIP_BENCH_WORK": str(work), "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        return f"callgrind run failed ({proc.returncode}): {proc.stderr[-800:]}"
    order = json.loads((work / "callgrind-order.json").read_text())
    dumps = sorted((p for p in out_dir.iterdir() if p.name.count(".") == 2),
                   key=lambda p: int(p.name.rsplit(".", 1)[1]))
    if len(dumps) != 2 * len(order):
        return f"callgrind: {len(dumps)} dumps for {len(order)} loops (something else called getppid)"
    counts = {}
    for i, (key, n) in enumerate(order):
        text = dumps[2 * i + 1].read_text(errors="replace")
        total = next(int(line.split()[1]) for line in text.splitlines() if line.startswith("summary:"))
        counts[key] = total / n
    empty = counts.get("- | - | empty loop", 0.0)
    for case in cases:
        if case.key in counts:
            case.instr = counts[case.key] - empty
    return f"callgrind run: {time.perf_counter() - started:.0f} s; empty loop {empty:.0f} instructions a call, subtracted"


# --------------------------------------------------------------------------- report
def fmt_us(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"


def fmt_instr(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1e6:,.2f} M" if v >= 1e6 else f"{v:,.0f}"


def report(cases: list[Case], repeats: int, cg_note: str) -> str:
    out = ["# Libraries vs the hand-written paths (issue 26, point 4)", "",
           f"`python -m bench.libraries`, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; "
           f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs (shared with a CI run). "
           f"Times: median of {repeats} interleaved rounds, per call, in microseconds (IQR beside it). "
           "Instructions: callgrind, per call (repeatable under load). "
           "x project: this way's cost over the project's path in the same group (>1 = slower).", ""]
    libs = ["orjson", "msgspec", "pyarrow", "pandas", "xgboost-cpu", "treelite", "tl2cgen", "onnxruntime",
            "onnxmltools", "onnx", "numpy"]
    out.append("Versions: " + ", ".join(f"{d} {version(d)}" for d in libs))
    out.append("")
    for lib, why in sorted(SKIPPED.items()):
        out.append(f"- SKIPPED {lib}: {why}")
    out += ["", f"_{cg_note}_", ""]
    sections: dict[str, list[Case]] = {}
    for case in cases:
        if case.section != "-":
            sections.setdefault(case.section, []).append(case)
    for section, members in sections.items():
        out += [f"## {section}", "",
                "| size | way | median us (IQR) | x project | instructions | x project | bytes / agreement |",
                "|---|---|---:|---:|---:|---:|---|"]
        refs = {c.group: c for c in members if c.ref}
        for case in members:
            ref = refs.get(case.group)
            t_ratio = f"{case.median_us / ref.median_us:.2f}" if ref and case.median_us and ref.median_us else "-"
            i_ratio = f"{case.instr / ref.instr:.2f}" if ref and case.instr and ref.instr else "-"
            way = f"**{case.way}**" if case.ref else case.way
            out.append(f"| {case.group} | {way} | {fmt_us(case.median_us)} ({fmt_us(case.extra.get('spread'))}) "
                       f"| {t_ratio} | {fmt_instr(case.instr)} | {i_ratio} | {case.note} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--no-callgrind", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    parser.add_argument("--callgrind-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.callgrind_child:
        SKIPPED.update(json.loads((WORK / "skipped.json").read_text()))
        callgrind_child(WORK)
        return
    print("preparing models ...", file=sys.stderr)
    prepare(WORK)
    cases = all_cases(WORK)
    print(f"timing {len(cases)} ways x {args.repeats} rounds ...", file=sys.stderr)
    time_cases(cases, args.repeats)
    cg_note = "callgrind skipped (--no-callgrind)"
    if not args.no_callgrind:
        print("counting instructions under callgrind ...", file=sys.stderr)
        cg_note = run_callgrind(WORK, cases)
    text = report(cases, args.repeats, cg_note)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
