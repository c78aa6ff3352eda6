"""SageMaker Clarify's online explainer on a release's endpoint config (`ExplainerConfig`), built from
the model's manifest and training baseline and checked before anything is sent.

Clarify's Kernel SHAP perturbs a record's CSV columns towards a baseline and reads one score from each
answer of the container; so the model must take numeric CSV rows (`input.kind` "numeric" in
model.json), the baseline must be rows of that width, and the container must answer CSV with AWS's
`probability` (P(positive class)) at a known column: SAGEMAKER_INFERENCE_OUTPUT's key order gives it,
and the deploy sets `predicted_label,probability` when the release's environment does not. Our
default CSV answer (`label,probability`) carries the confidence in the returned label instead, which
Clarify would explain as if it were a score.

Ranges (botocore's sagemaker-2017-07-24 model and the API reference): EnableExplanations 1..64
characters, a JMESPath expression; ShapBaseline 1..4096 characters (ShapBaselineUri `(https|s3)://`, at
most 1024); NumberOfSamples at least 1; Seed and the counts 32-bit integers; MaxPayloadInMB 1..25;
FeatureHeaders and LabelHeaders 1..256 and 1..16 names of 1..64 characters. Clarify serves real-time
endpoints only, and its config covers every variant of the endpoint config."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.tarball import MANIFEST, read_json, read_text

MIME = "text/csv"  # what Clarify sends the container, and the baseline's format
OUTPUT_VARIABLE = "SAGEMAKER_INFERENCE_OUTPUT"
DEFAULT_OUTPUT = ("predicted_label", "probability")  # set when the release's environment has none
EXPRESSION_MAX = 64  # ClarifyEnableExplanations
BASELINE_MAX = 4096  # ClarifyShapBaseline
BASELINE_URI = re.compile(r"(https|s3)://[^/].*")
BASELINE_URI_MAX = 1024  # Url
HEADER_MAX, FEATURE_HEADERS_MAX = 64, 256  # ClarifyHeader, ClarifyFeatureHeaders
INT32 = (-(2**31), 2**31 - 1)
PAYLOAD_MB = (1, 25)  # ClarifyMaxPayloadInMB; the container refuses bodies above its own limit (6 MB)
# Records per synthetic-data request: the container predicts batches, and 1000 numeric rows stay far
# under its 6 MB body limit and its 60 s timeout; MaxPayloadInMB caps wider rows.
MAX_RECORD_COUNT = 1000
SMOKE_EXPRESSION = "`true`"  # the smoke test asks for every record's explanation


@dataclass(frozen=True)
class ClarifyOptions:
    """The operator's choices (--clarify-*); the rest comes from the model and the environment."""

    explanations: str  # EnableExplanations: a JMESPath boolean over each record's answer
    baseline_file: Path | None = None  # CSV rows instead of the model's explainer baseline
    baseline_uri: str | None = None  # ShapBaselineUri instead of an inline baseline
    samples: int | None = None  # NumberOfSamples
    use_logit: bool = False  # UseLogit
    seed: int | None = None  # Seed


def _integer(option: str, value: int | None, low: int, field: str) -> list[str]:
    if value is None or low <= value <= INT32[1]:
        return []
    return [f"{option} {value} is outside {low}..{INT32[1]} ({field})"]


def problems(clarify: ClarifyOptions | None, *, serverless: bool = False, asynchronous: bool = False,
             ab_split: bool = False) -> list[str]:
    """What is wrong with the options themselves (the model's side is checked by `plan`)."""
    if clarify is None:
        return []
    found: list[str] = []
    expression = clarify.explanations
    if not 1 <= len(expression) <= EXPRESSION_MAX:
        found.append(f"--clarify-explanations has {len(expression)} characters, not 1..{EXPRESSION_MAX} "
                     "(ClarifyExplainerConfig.EnableExplanations)")
    else:
        import jmespath
        from jmespath.exceptions import JMESPathError

        try:
            jmespath.compile(expression)
        except JMESPathError as exc:
            reason = " ".join(str(exc).split())
            found.append(f"--clarify-explanations {expression!r} is not a JMESPath expression ({reason}); "
                         "literals go in backticks, e.g. '`true`' or '[1]>`0.5`'")
    found += _integer("--clarify-samples", clarify.samples, 1, "ClarifyShapConfig.NumberOfSamples")
    found += _integer("--clarify-seed", clarify.seed, INT32[0], "ClarifyShapConfig.Seed")
    if clarify.baseline_file is not None and clarify.baseline_uri is not None:
        found.append("--clarify-baseline and --clarify-baseline-uri exclude each other (ShapBaselineConfig "
                     "takes ShapBaseline or ShapBaselineUri)")
    uri = clarify.baseline_uri
    if uri is not None and not (BASELINE_URI.fullmatch(uri) and len(uri) <= BASELINE_URI_MAX):
        found.append(f"--clarify-baseline-uri {uri!r} is not an s3:// (or https://) URI of at most "
                     f"{BASELINE_URI_MAX} characters (ShapBaselineConfig.ShapBaselineUri)")
    hosting = [option for option, used in (("--serverless-memory-mb", serverless),
                                           ("--async-output-s3-uri", asynchronous)) if used]
    if hosting:
        found.append(f"--clarify-explanations needs a real-time endpoint on instances: Clarify's online "
                     f"explainer does not serve with {' or '.join(hosting)}")
    if ab_split:
        found.append("--clarify-explanations with --ab-weight: the explainer covers every variant of the "
                     "endpoint config, and the serving model (Champion) would be explained with the new "
                     "model's baseline and answer columns")
    return found


@dataclass(frozen=True)
class Explainer:
    """What a release with Clarify sends: the endpoint config's ExplainerConfig, what the model's
    Environment gains, and the model's input columns (the smoke test writes CSV rows in their order)."""

    config: dict[str, Any]
    environment: dict[str, str]
    baseline_source: str
    columns: list[str]

    def describe(self) -> str:
        """The deploy's progress line."""
        clarify = self.config["ClarifyExplainerConfig"]
        added = ", ".join(f"{k}={v}" for k, v in self.environment.items())
        return (f"explanations: SageMaker Clarify's online explainer is attached (EnableExplanations "
                f"{clarify['EnableExplanations']!r}, the score at CSV column "
                f"{clarify['InferenceConfig']['ProbabilityIndex']}), baseline from {self.baseline_source}"
                + (f"; the model's environment gains {added}" if added else ""))

    def summary(self) -> dict[str, Any]:
        """The JSON summary's `explainer`."""
        clarify = self.config["ClarifyExplainerConfig"]
        return {"enable_explanations": clarify["EnableExplanations"], "baseline": self.baseline_source,
                "probability_index": clarify["InferenceConfig"]["ProbabilityIndex"],
                "environment": self.environment}


def _refuse(why: str) -> DeployError:
    return DeployError(f"--clarify-explanations: {why}; nothing was changed")


def _manifest(tar_path: Path) -> dict[str, Any]:
    try:
        manifest = read_json(tar_path, MANIFEST)
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise _refuse(f"{tar_path}'s {MANIFEST} cannot be read ({exc})") from exc
    if not isinstance(manifest, dict):
        raise _refuse(f"{tar_path} holds no {MANIFEST}: not a model directory made by `train`")
    return manifest


def _columns(manifest: dict[str, Any]) -> list[str]:
    described = manifest.get("input")
    model_input: dict[str, Any] = described if isinstance(described, dict) else {}
    kind = model_input.get("kind")
    if kind == "device_records":
        raise _refuse("the model takes device records (JSON with list fields such as installed_apps), and "
                      "Clarify's explainer perturbs CSV columns; for device records use the image's own "
                      "explanations instead: send X-Amzn-SageMaker-Enable-Explanations (InvokeEndpoint's "
                      "EnableExplanations) to an endpoint without --clarify-explanations "
                      "(README, Explanations)")
    columns = model_input.get("columns")
    if kind != "numeric" or not isinstance(columns, list) or not columns:
        raise _refuse(f"the model's input is {kind or 'not described'} (model.json input.kind), and "
                      "Clarify's explainer needs numeric CSV rows with named columns (input.kind 'numeric')")
    return [str(c) for c in columns]


def _check_rows(text: str, width: int, source: str) -> str:
    """The baseline as Clarify takes it: header-less CSV rows of `width` numbers, one a line."""
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if not rows:
        raise _refuse(f"the baseline ({source}) has no rows")
    for n, row in enumerate(rows, 1):
        if len(row) != width:
            raise _refuse(f"the baseline ({source}) row {n} has {len(row)} values, the model takes {width} "
                          "columns (model.json input.columns)")
        for cell in row:
            try:
                float(cell)
            except ValueError:
                raise _refuse(f"the baseline ({source}) row {n} holds {cell!r}, not a number (a header line? "
                              "the baseline is header-less CSV)") from None
    inline = "\n".join(",".join(c.strip() for c in row) for row in rows)
    if len(inline) > BASELINE_MAX:
        raise _refuse(f"the baseline ({source}) is {len(inline)} characters, and ShapBaseline takes at most "
                      f"{BASELINE_MAX}: give fewer rows (or numbers with fewer digits) with "
                      "--clarify-baseline FILE, or put the rows in S3 and pass --clarify-baseline-uri")
    return inline


def _baseline(clarify: ClarifyOptions, manifest: dict[str, Any], tar_path: Path,
              width: int) -> tuple[dict[str, str], str]:
    """ShapBaselineConfig and a phrase saying where its rows come from."""
    if clarify.baseline_uri is not None:
        return {"MimeType": MIME, "ShapBaselineUri": clarify.baseline_uri}, clarify.baseline_uri
    if clarify.baseline_file is not None:
        source = f"--clarify-baseline {clarify.baseline_file}"
        try:
            text = clarify.baseline_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _refuse(f"{source} cannot be read ({exc})") from exc
    else:
        name = manifest.get("explainer_baseline")
        found = read_text(tar_path, name) if isinstance(name, str) and name else None
        if found is None:
            raise _refuse(f"{tar_path} carries no explainer baseline (model.json explainer_baseline: "
                          f"{name!r}); pass --clarify-baseline FILE (header-less CSV rows, {width} columns) "
                          "or --clarify-baseline-uri S3")
        text, source = found, f"model.tar.gz {name} (training means)"
    return {"MimeType": MIME, "ShapBaseline": _check_rows(text, width, source)}, source


def _answer_columns(environment: Mapping[str, str]) -> tuple[int, dict[str, str]]:
    """ProbabilityIndex in the container's CSV answer, and what the model's Environment gains."""
    from container.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(environment)
    except SettingsError as exc:
        raise _refuse(f"--environment {exc}") from exc
    keys, added = settings.inference_output, {}
    if not keys:
        keys, added = DEFAULT_OUTPUT, {OUTPUT_VARIABLE: ",".join(DEFAULT_OUTPUT)}
    if "probability" not in keys:
        raise _refuse(f"{OUTPUT_VARIABLE}={environment[OUTPUT_VARIABLE]!r} has no 'probability' key, the "
                      "P(positive class) Clarify explains (ClarifyInferenceConfig.ProbabilityIndex); add it, "
                      f"or leave {OUTPUT_VARIABLE} unset and the deploy sets {','.join(DEFAULT_OUTPUT)}")
    return keys.index("probability"), added


def _payload_mb(environment: Mapping[str, str]) -> int:
    """MaxPayloadInMB: what the container accepts (SAGEMAKER_MAX_PAYLOAD_IN_MB, 6 MB unset), up to 25."""
    from container.settings import Settings

    limit = Settings.from_env(environment).max_payload_mb
    if limit < PAYLOAD_MB[0]:
        raise _refuse(f"SAGEMAKER_MAX_PAYLOAD_IN_MB={limit:g}: the container refuses bodies above it, and "
                      "Clarify's requests may be as large as MaxPayloadInMB "
                      f"({PAYLOAD_MB[0]}..{PAYLOAD_MB[1]})")
    return min(PAYLOAD_MB[1], math.floor(limit))


def plan(clarify: ClarifyOptions, tar_path: Path, environment: Mapping[str, str]) -> Explainer:
    """The explainer a release carries, from the local model.tar.gz: refused with a DeployError when the
    model cannot be explained by Clarify or the baseline does not fit it. Sends nothing."""
    manifest = _manifest(tar_path)
    columns = _columns(manifest)
    shap_baseline, source = _baseline(clarify, manifest, tar_path, len(columns))
    probability_index, added = _answer_columns(environment)
    inference: dict[str, Any] = {"MaxRecordCount": MAX_RECORD_COUNT,
                                 "MaxPayloadInMB": _payload_mb({**environment, **added}),
                                 "ProbabilityIndex": probability_index}
    positive = manifest.get("positive_class")
    if positive is not None and 1 <= len(str(positive)) <= HEADER_MAX:
        # the score is P(positive class) on every record: its one label header, as the image's own
        # explanations name it (label_headers), not each record's predicted label
        inference["LabelHeaders"] = [str(positive)]
    if len(columns) <= FEATURE_HEADERS_MAX and all(1 <= len(c) <= HEADER_MAX for c in columns):
        inference["FeatureHeaders"] = columns
    else:
        source += (f"; FeatureHeaders left out ({len(columns)} columns: the API takes at most "
                   f"{FEATURE_HEADERS_MAX} names of at most {HEADER_MAX} characters)")
    shap: dict[str, Any] = {"ShapBaselineConfig": shap_baseline}
    if clarify.samples is not None:
        shap["NumberOfSamples"] = clarify.samples
    shap["UseLogit"] = clarify.use_logit
    if clarify.seed is not None:
        shap["Seed"] = clarify.seed
    config = {"ClarifyExplainerConfig": {"EnableExplanations": clarify.explanations,
                                         "InferenceConfig": inference, "ShapConfig": shap}}
    return Explainer(config, added, source, columns)


def _cell(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def smoke(runtime: Any, endpoint: str, examples: list[dict[str, Any]], columns: list[str]) -> str | None:
    """None if the explainer answered every warm-up example with a prediction and an explanation.
    Behind an ExplainerConfig every InvokeEndpoint goes through Clarify, which takes only CSV or JSON
    Lines and answers in its own JSON; the plain smoke test's JSON request would be refused."""
    rows = "\n".join(",".join(_cell(record.get(c)) for c in columns) for record in examples)
    try:
        out = runtime.invoke_endpoint(EndpointName=endpoint, ContentType=MIME, Accept=MIME, Body=rows,
                                      EnableExplanations=SMOKE_EXPRESSION)
        body = out["Body"].read()
    except Exception as exc:  # any failure to get an answer is a failed smoke test
        return f"InvokeEndpoint with explanations failed: {exc}"
    try:
        answer = json.loads(body)
        data, explained = answer["predictions"]["data"], answer["explanations"]["kernel_shap"]
    except (ValueError, KeyError, TypeError):
        return f"the answer is not Clarify's {{\"predictions\", \"explanations\"}}: {body[:200]!r}"
    lines = [line for line in str(data).splitlines() if line.strip()]
    if len(lines) != len(examples):
        return f"{len(examples)} examples sent, {len(lines)} predictions back from the explainer"
    if not isinstance(explained, list) or len(explained) != len(examples) or not all(explained):
        return f"{len(examples)} examples sent, not every one explained: {str(explained)[:200]}"
    return None
