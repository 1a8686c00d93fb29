"""Translation of job files (pure functions: no stack)."""

from __future__ import annotations

import pytest

from cod.cli.run import parse_input
from cod.jobfile import JobFileError, finish, parse_job_document, parse_template_vars
from cod.jobs import parse_fee

BACALHAU = """
Name: full
Type: batch
Count: 1
Tasks:
  - Name: t
    Engine:
      Type: docker
      Params:
        Image: ubuntu:24.04
        Entrypoint: [/bin/bash]
        Parameters: ["-c", "ls /in"]
        EnvironmentVariables: ["A=1"]
        WorkingDirectory: /work
    Env: {B: "2"}
    InputSources:
      - Target: /in
        Source: {Type: ipfs, Params: {CID: bafkqaaa}}
      - Target: /web/data.csv
        Source: {Type: urlDownload, Params: {URL: "https://example.org/data.csv"}}
    ResultPaths: [{Name: out, Path: /out}]
    Resources: {CPU: "250m", Memory: 1Gb, Disk: 2gb, GPU: "1"}
    Network: {Type: Full}
    Timeouts: {ExecutionTimeout: 120, QueueTimeout: 30}
"""


def test_a_bacalhau_job_translates_field_by_field() -> None:
    draft = parse_job_document(BACALHAU)
    spec = finish(draft)
    assert draft.kind == "bacalhau"
    assert spec.image == "ubuntu:24.04"
    assert spec.entrypoint == ["/bin/bash", "-c", "ls /in"]
    assert spec.env == {"A": "1", "B": "2"} and spec.workdir == "/work"
    assert [(i.source, i.target) for i in spec.inputs] == [
        ("ipfs://bafkqaaa", "/in"),
        ("https://example.org/data.csv", "/web/data.csv")]
    assert [(o.name, o.path) for o in spec.outputs] == [("out", "/out")]
    assert (spec.resources.cpu, spec.resources.memory, spec.resources.disk,
            spec.resources.gpu) == (0.25, "1Gb", "2gb", 1)
    assert spec.network == "full" and spec.timeout == 120
    assert any("QueueTimeout" in note for note in draft.notes)
    assert any("Name" in note for note in draft.notes)


def test_a_wasm_job_uses_its_entry_module() -> None:
    spec = finish(parse_job_document("""
Type: batch
Tasks:
  - Engine:
      Type: wasm
      Params:
        EntryModule: {Source: {Type: ipfs, Params: {CID: bafkqaaa}}}
        Parameters: [x]
"""))
    assert (spec.engine, spec.image, spec.entrypoint) == (
        "wasm", "ipfs://bafkqaaa", ["x"])


@pytest.mark.parametrize(("text", "message"), [
    ("Type: service\nTasks: []", "Type: service"),
    ("Type: batch\nCount: 8\nTasks: []", "Count: 8: the replicas of a job are a whole number 1..7"),
    ("Type: batch\nTasks: []", "exactly one task"),
    ("Type: batch\nConstraints: [{Key: a}]\nTasks: []", "Constraints"),
    ("Type: batch\nTasks: [{Engine: {Type: python}}]", "Engine.Type: 'python'"),
    ("Type: batch\nTasks: [{Engine: {Type: docker, Params: {}}}]", "Params.Image is required"),
    ("Type: batch\nTasks: [{Engine: {Type: docker, Params: {Image: x}}, Network: {Type: HTTP}}]",
     "Network.Type: HTTP"),
    ("Type: batch\nTasks: [{Engine: {Type: docker, Params: {Image: x}}, "
     "Network: {Type: Full, Domains: [a.org]}}]", "Domains"),
    ("Type: batch\nTasks: [{Engine: {Type: docker, Params: {Image: x}}, "
     "Publisher: {Type: s3}}]", "Publisher.Type: s3"),
    ("Type: batch\nTasks: [{Engine: {Type: docker, Params: {Image: x}}, "
     "InputSources: [{Target: /i, Source: {Type: localDirectory}}]}]", "localDirectory"),
    ("Type: batch\nTasks: [{Engine: {Type: docker, Params: {Image: x}}, Bogus: 1}]",
     "unknown field(s) Bogus"),
    ("Type: batch\nTasks: [{Engine: {Type: docker, Params: {Image: x}}, "
     "Resources: {CPU: lots}}]", "Resources.CPU"),
    ("APIVersion: V1beta1\nSpec: {}", "Bacalhau v0"),
    ("- a list", "must hold a mapping"),
])
def test_what_does_not_map_is_refused(text: str, message: str) -> None:
    with pytest.raises(JobFileError, match=None) as caught:
        parse_job_document(text)
    assert message in str(caught.value)


def test_our_own_format_passes_through_and_keeps_local_inputs() -> None:
    draft = parse_job_document('{"image": "x", "inputs": [{"source": "data.txt", '
                               '"target": "/inputs/d"}, {"source": "ipfs://bafkqaaa", '
                               '"target": "/inputs/e"}]}')
    assert draft.kind == "cod" and draft.local_inputs() == [0]


def test_template_variables() -> None:
    assert parse_template_vars(["a=1,b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    draft = parse_job_document("image: '{{ .img }}'\nenv: {N: '{{.n}}'}",
                               {"img": "busybox", "n": "3"})
    assert draft.fields == {"image": "busybox", "env": {"N": "3"}}
    with pytest.raises(JobFileError, match="'missing' has no value"):
        parse_job_document("image: {{.missing}}", {})


@pytest.mark.parametrize(("text", "expected"), [
    ("ipfs://bafyx", ("ipfs://bafyx", None)),
    ("ipfs://bafyx:/data", ("ipfs://bafyx", "/data")),
    ("https://host:8443/a.csv", ("https://host:8443/a.csv", None)),
    ("https://host/a.csv:/in/a.csv", ("https://host/a.csv", "/in/a.csv")),
    ("./local.txt:/inputs/l", ("./local.txt", "/inputs/l")),
    ("src=ipfs://bafyx,dst=/in", ("ipfs://bafyx", "/in")),
])
def test_input_flag_syntax(text: str, expected: tuple[str, str | None]) -> None:
    assert parse_input(text) == expected


@pytest.mark.parametrize(("text", "wei"), [
    ("1000", 1000), ("1e15", 10**15), ("0.001ether", 10**15), ("0.5 gwei", 5 * 10**8),
    ("2ETH", 2 * 10**18),
])
def test_fee_units(text: str, wei: int) -> None:
    assert parse_fee(text) == wei
