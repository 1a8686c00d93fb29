"""The engine and source registries: the spec side (`protocol.engines`, `protocol.sources`) and
the node side (`executor.engines`, `executor.storage`) are keyed by the same names, each entry
validates its own part of a spec, and an engine registered here is accepted and run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import executor.engines
import executor.storage
from executor.config import WorkerSettings
from executor.engines.base import RunOutcome, RunRequest
from executor.runner import JobRunner, NodePolicy
from executor.storage import InputUnavailable, StorageRegistry, build_storage, resolve
from protocol import engines, sources
from protocol.capacity import Capacity
from protocol.ipfs import KuboClient
from protocol.outcome import OutcomeStatus
from protocol.spec import JobSpec, SpecError, parse_spec

CID = "bafkqaaa"  # the identity CID of no bytes
# Per registered scheme: a source it accepts, and one of its prefixes it refuses (None: none).
SOURCES = {
    "ipfs": (f"ipfs://{CID}/a/b", "ipfs://not-a-cid"),
    "url": ("https://example.org/data.csv", None),
    "inline": ("data:;base64,aGk=", "data:no-comma"),
}
# Per registered engine: an image it accepts and one it refuses, with the refusal's message.
IMAGES = {
    "docker": ("cod/busybox:latest", f"ipfs://{CID}", "a docker image reference"),
    "wasm": (f"ipfs://{CID}", "cod/busybox", "the wasm module: unsupported source"),
}


def spec_text(**fields: object) -> str:
    return json.dumps({"image": "cod/busybox", **fields})


def test_both_sides_register_the_same_names() -> None:
    assert set(SOURCES) == set(sources.SCHEMES) == set(executor.storage.PROVIDERS)
    assert set(IMAGES) == set(engines.ENGINES) == set(executor.engines.ENGINES)


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_scheme_validates_its_sources(name: str) -> None:
    good, bad = SOURCES[name]
    assert sources.scheme_of(good) == name
    spec = parse_spec(spec_text(inputs=[{"source": good, "target": "/inputs"}]))
    assert spec.inputs[0].source == good
    if bad is not None:
        assert sources.scheme_of(bad) == name
        with pytest.raises(SpecError, match=r"field 'inputs\.0\.source'"):
            parse_spec(spec_text(inputs=[{"source": bad, "target": "/inputs"}]))


def test_inline_sources_keep_their_size_cap() -> None:
    big = "data:," + "a" * (sources.MAX_INLINE_BYTES * 2)
    with pytest.raises(SpecError, match="inline data is limited to 65536 bytes"):
        parse_spec(spec_text(inputs=[{"source": big, "target": "/inputs"}]))


@pytest.mark.parametrize("name", list(IMAGES))
def test_every_engine_validates_its_part_of_the_spec(name: str) -> None:
    good, bad, message = IMAGES[name]
    assert parse_spec(spec_text(engine=name, image=good)).engine == name
    with pytest.raises(SpecError, match=message):
        parse_spec(spec_text(engine=name, image=bad))


@pytest.mark.parametrize("engine", ["k8s", "Docker", 5, None, ["docker"]])
def test_an_unknown_engine_is_refused_naming_the_field_and_the_engines(engine: object) -> None:
    with pytest.raises(SpecError, match=r"field 'engine'") as refused:
        parse_spec(spec_text(engine=engine))
    assert all(f"'{name}'" in str(refused.value) for name in engines.ENGINES)


def test_an_unknown_scheme_is_refused_naming_the_field_and_the_schemes() -> None:
    with pytest.raises(SpecError, match=r"field 'inputs\.0\.source'") as refused:
        parse_spec(spec_text(inputs=[{"source": "ftp://host/file", "target": "/inputs"}]))
    assert str(refused.value).endswith(
        "unsupported source 'ftp://host/file': use ipfs://CID, https://URL or data:,…")


def test_the_json_schema_lists_the_engines() -> None:
    assert JobSpec.model_json_schema()["properties"]["engine"]["enum"] == list(engines.ENGINES)


def test_every_node_side_factory_resolves() -> None:
    for factory in [*executor.storage.PROVIDERS.values(), *executor.engines.ENGINES.values()]:
        assert callable(resolve(factory))


def test_the_storage_registry_picks_the_provider_of_the_scheme(tmp_path: Path) -> None:
    storage = build_storage(WorkerSettings(work_dir=tmp_path), KuboClient("http://127.0.0.1:1"))
    assert storage.names == list(sources.SCHEMES)
    assert type(storage.for_source(f"ipfs://{CID}")).__name__ == "IpfsStorage"
    assert type(storage.for_source("http://example.org/")).__name__ == "UrlStorage"
    assert type(storage.for_source("data:,hi")).__name__ == "InlineStorage"
    with pytest.raises(InputUnavailable, match="this node supports ipfs://, https://, http://, data:"):
        storage.for_source("ftp://host/file")


class FakeEngine:
    """An engine that "runs" a job by writing its image name to stdout and to its output."""

    def __init__(self) -> None:
        self.ran: list[RunRequest] = []

    def prepare(self, spec: JobSpec, job_dir: Path) -> str:
        return "sha256:fake"

    def run(self, request: RunRequest) -> RunOutcome:
        self.ran.append(request)
        request.stdout.write_text(request.spec.image)
        request.stderr.write_text("")
        output = next(m for m in request.mounts if not m.read_only)
        (output.host / "image").write_text(request.spec.image)
        return RunOutcome(exit_code=0)


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[dict[str, str]] = []

    def publish(self, result_dir: Path) -> str:
        self.published.append({str(p.relative_to(result_dir)): p.read_text()
                               for p in result_dir.rglob("*") if p.is_file()})
        return "bafyfakeresult"

    def is_available(self, cid: str) -> bool:
        return True


def _fake_engine_part(spec: JobSpec) -> None:
    if not spec.image.startswith("fake:"):
        raise ValueError("image: a fake engine's image starts with fake:")


def test_a_registered_engine_is_accepted_by_the_spec_and_run_by_the_node(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEngine()
    monkeypatch.setitem(engines.ENGINES, "fake", _fake_engine_part)  # the spec side's one line
    monkeypatch.setitem(executor.engines.ENGINES, "fake", lambda settings, storage: fake)  # node's
    for real in ("docker", "wasm"):  # not started by a unit test (Docker daemon, wasmtime)
        monkeypatch.delitem(executor.engines.ENGINES, real)

    text = spec_text(engine="fake", image="fake:hello")
    assert parse_spec(text).engine == "fake"
    with pytest.raises(SpecError, match="image: a fake engine's image starts with fake:"):
        parse_spec(spec_text(engine="fake", image="hello"))
    with pytest.raises(SpecError, match=r"field 'engine': Input should be 'docker', 'wasm' or 'fake'"):
        parse_spec(spec_text(engine="fakes", image="fake:hello"))

    settings = WorkerSettings(work_dir=tmp_path)
    built = executor.engines.build_engines(settings, StorageRegistry({}))
    assert built == {"fake": fake}
    publisher = FakePublisher()
    runner = JobRunner(built, StorageRegistry({}), publisher,
                       NodePolicy("node-a", Capacity(cpus=4, memory=8 * 1024**3)),
                       tmp_path / "work")
    outcome = runner.run("job-1", text)
    assert (outcome.status, outcome.result_cid, outcome.exit_code) == (
        OutcomeStatus.COMPLETED, "bafyfakeresult", 0)
    assert [r.spec.image for r in fake.ran] == ["fake:hello"]
    assert publisher.published == [{"stdout": "fake:hello", "stderr": "", "exitCode": "0\n",
                                     "outputs/image": "fake:hello"}]

    refused = runner.run("job-2", spec_text(engine="wasm", image=f"ipfs://{CID}"))
    assert (refused.status, refused.reason) == (
        OutcomeStatus.FAILED, "engine 'wasm' is not available on this node (it runs: fake)")
