from __future__ import annotations

import pytest

from protocol.spec import JobSpec, SpecError, parse_size, parse_spec


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec('{"image": "cod/busybox"}')
    assert spec.engine == "docker"
    assert spec.network == "none"
    assert [(o.name, o.path) for o in spec.outputs] == [("outputs", "/outputs")]
    assert spec.resources.memory_bytes == 512 * 1024**2
    assert spec.timeout == 600


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"image": "x", "resources": {"memory": "lots"}}', "resources.memory"),
        ('{"image": "x", "inputs": [{"source": "ftp://a", "target": "/inputs"}]}',
         "inputs.0.source"),
        ('{"image": "x", "inputs": [{"source": "ipfs://bafkqaaa", "target": "rel"}]}',
         "inputs.0.target"),
        ('{"image": "x", "timeout": 0}', "timeout"),
        ('{"image": "x", "network": "host"}', "network"),
        ('{"image": "x", "surprise": 1}', "surprise"),
        ('{"entrypoint": ["true"]}', "image"),
        ('{"image": "x", "outputs": [{"name": "stdout", "path": "/o"}]}', "outputs.0.name"),
        ('{"image": "x", "env": {"1BAD": "v"}}', "env"),
    ],
)
def test_invalid_specs_name_the_field(text: str, field: str) -> None:
    with pytest.raises(SpecError, match=rf"field '{field}'"):
        parse_spec(text)


def test_not_json_and_not_an_object_are_refused() -> None:
    with pytest.raises(SpecError, match="not valid JSON"):
        parse_spec("{oops")
    with pytest.raises(SpecError, match="expected a JSON object"):
        parse_spec("[1, 2]")


def test_to_json_round_trips() -> None:
    spec = JobSpec(image="cod/busybox", entrypoint=["sh", "-c", "echo 'hi'"], env={"A": "1"})
    assert parse_spec(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("text", "size"),
    [("512Mi", 512 * 1024**2), ("1G", 10**9), ("2GiB", 2 * 1024**3), ("100", 100),
     ("1.5Ki", 1536)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size
