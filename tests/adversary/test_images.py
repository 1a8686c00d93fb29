"""The operator's image allow-list: a job may not run an image the operator keeps for itself
(real Docker engine; the "private" image is a tag of the stack's busybox image)."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from devstack.images import BUSYBOX_IMAGE, ensure_busybox_image
from executor.engines.base import ImageUnavailable
from executor.engines.docker_engine import DockerEngine
from executor.images import ImagePolicy
from protocol.spec import JobSpec

PRIVATE = "operator/secret-tool:1"


@pytest.fixture(scope="module")
def private_image() -> Iterator[str]:
    ensure_busybox_image()
    client = docker.from_env()
    client.images.get(BUSYBOX_IMAGE).tag(PRIVATE)
    try:
        yield str(client.images.get(PRIVATE).id)
    finally:
        client.images.remove(PRIVATE)


def test_an_image_off_the_allow_list_is_refused(private_image: str) -> None:
    engine = DockerEngine(image_policy=ImagePolicy.parse("cod/*"))
    with pytest.raises(ImageUnavailable, match="not allowed on this node"):
        engine.prepare(JobSpec(image=PRIVATE))
    assert engine.prepare(JobSpec(image=BUSYBOX_IMAGE)).startswith("sha256:")


def test_an_image_allowed_by_digest_runs_under_any_name(private_image: str) -> None:
    engine = DockerEngine(image_policy=ImagePolicy.parse(private_image), pull_policy="never")
    assert engine.prepare(JobSpec(image=PRIVATE)) == private_image
    with pytest.raises(ImageUnavailable, match="not available"):
        engine.prepare(JobSpec(image="cod/no-such-image:1"))  # never pulled for a digest rule


def test_without_an_allow_list_any_local_image_runs(private_image: str) -> None:
    assert DockerEngine().prepare(JobSpec(image=PRIVATE)) == private_image


def test_policy_parsing() -> None:
    policy = ImagePolicy.parse(" cod/* , python:3.12*,sha256:abc ")
    assert policy.patterns == ("cod/*", "python:3.12*", "sha256:abc")
    assert policy.allows_name("python:3.12-slim") and not policy.allows_name("pythonx")
    assert policy.allows("other", ["repo@sha256:abc"]) and not policy.allows("other", ["sha256:d"])
