"""The AWS clients of every SageMaker command, built in one place for --region and --endpoint-url."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from deploy.errors import DeployError


def _drop_empty(parsed: Any, **_: Any) -> None:
    """botocore after-call hook: some implementations (moto) return `{}` for absent structures,
    which the SDK's pydantic shapes reject; AWS itself omits them."""
    if isinstance(parsed, dict):
        for key in [k for k, v in parsed.items() if v == {}]:
            del parsed[key]
        for value in parsed.values():
            _drop_empty(value)
    elif isinstance(parsed, list):
        for value in parsed:
            _drop_empty(value)


@dataclass
class Aws:
    """The clients a deploy talks through; tests build it from moto-backed or stubbed clients."""

    session: Any  # boto3.Session: the SDK's resources make their own clients from it
    region: str
    sm: Any
    runtime: Any
    s3: Any
    cloudwatch: Any
    autoscaling: Any

    @classmethod
    def connect(cls, region: str | None, endpoint_url: str | None = None) -> Aws:
        """The one place a deploy's clients are built, each for `region` (None: the environment's,
        AWS_REGION or ~/.aws/config) and `endpoint_url`."""
        from botocore.config import Config

        session = _session(region, endpoint_url)
        region = region or session.region_name
        if not region:
            raise DeployError("no AWS region: pass --region or set AWS_REGION; nothing was changed")
        session.events.register("after-call.sagemaker", _drop_empty)
        config = Config(retries={"max_attempts": 3, "mode": "standard"})

        def client(name: str) -> Any:
            return session.client(name, region_name=region, endpoint_url=endpoint_url, config=config)

        return cls(session, region, client("sagemaker"), client("sagemaker-runtime"), client("s3"),
                   client("cloudwatch"), client("application-autoscaling"))

    def sdk_session(self) -> Any:
        """The sagemaker SDK's Session (what ModelTrainer takes) over these clients and this session:
        the clients it makes itself (S3, feature store, metrics, STS, IAM, logs) come from `session`."""
        from sagemaker.core.helper.session_helper import Session

        return Session(boto_session=self.session, sagemaker_client=self.sm,
                       sagemaker_runtime_client=self.runtime)

    @contextlib.contextmanager
    def sdk_logs(self) -> Iterator[None]:
        """While it lasts, the SDK reads a training job's logs through a client of this session: it
        keeps a process-wide CloudWatchLogsClient, made from boto3's default session otherwise (the
        environment's region, and AWS_ENDPOINT_URL alone for the endpoint)."""
        from botocore.config import Config
        from sagemaker.core.utils.logs import CloudWatchLogsClient
        from sagemaker.core.utils.utils import SingletonMeta

        ours = object.__new__(CloudWatchLogsClient)
        ours.client = self.session.client("logs", region_name=self.region,
                                          config=Config(retries={"max_attempts": 10, "mode": "standard"}))
        instances: dict[type, Any] = SingletonMeta._instances
        before = instances.get(CloudWatchLogsClient)
        instances[CloudWatchLogsClient] = ours
        try:
            yield
        finally:
            if before is None:
                instances.pop(CloudWatchLogsClient, None)
            else:
                instances[CloudWatchLogsClient] = before


def _session(region: str | None, endpoint_url: str | None) -> Any:
    """A boto3 session whose every client goes to endpoint_url: the SDK's resources make their own
    clients from it (`session.client("sagemaker", region)`), and boto3 has no session-wide endpoint
    setting but the environment (AWS_ENDPOINT_URL), which an operator's --endpoint-url is not. The
    operator's URL wins over one the SDK names itself (it asks for STS at sts.REGION.amazonaws.com)."""
    import boto3

    class Session(boto3.Session):
        def client(self, *args: Any, **kwargs: Any) -> Any:
            if endpoint_url is not None or kwargs.get("endpoint_url") is None:
                kwargs["endpoint_url"] = endpoint_url
            return super().client(*args, **kwargs)

    return Session(region_name=region)
