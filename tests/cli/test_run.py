"""`cod docker run`, `cod job run` (our files and Bacalhau's) against the real stack."""

from __future__ import annotations

import json
import re
from pathlib import Path

from devstack.images import BUSYBOX_IMAGE
from tests.cli.conftest import Cod
from tests.e2e.client import Requester


def next_job_id(requester: Requester) -> int:
    return int(requester.manager.functions.nextJobId().call())


def test_docker_run_adds_a_local_input_waits_and_downloads(cod: Cod, tmp_path: Path,
                                                           requester: Requester) -> None:
    (tmp_path / "data.txt").write_text("alpha beta gamma\n")
    ran = cod("docker", "run", "-i", "data.txt:/inputs/data.txt", "--memory", "64Mi", "-f",
              "--download", "--output-dir", "result", BUSYBOX_IMAGE, "--",
              "sh", "-c", "sleep 1; wc -w < /inputs/data.txt > /outputs/count; echo done")
    ran.ok()
    cid = re.search(r"added .*data.txt to IPFS: (\w+)", ran.stderr)
    assert cid, ran.stderr
    assert requester.kubo.cat(cid.group(1)) == b"alpha beta gamma\n"
    stages = [line.split()[0] for line in ran.stderr.splitlines() if line.startswith("  ")]
    assert stages == ["requested", "queued", "running", "published", "fulfilled"], ran.stderr
    job_id = int(re.findall(r"Job (\d+) requested", ran.stdout)[0])
    spec = requester.events("JobRequested", job_id)[0]["args"]["spec"]
    assert f"ipfs://{cid.group(1)}" in spec
    assert re.search(r"Result CID: bafy\w+", ran.stdout) and "Exit code:  0" in ran.stdout
    assert "done\n" in ran.stdout  # -f: the job's stdout
    assert (tmp_path / "result" / "outputs" / "count").read_text().strip() == "3"
    assert (tmp_path / "result" / "exitCode").read_text().strip() == "0"


def test_dry_run_prints_the_spec_and_requests_nothing(cod: Cod, requester: Requester) -> None:
    before = next_job_id(requester)
    ran = cod("docker", "run", "--dry-run", "-e", "A=1", "--cpu", "0.5", "--memory", "128Mi",
              "--network", "full", "--timeout", "30", "-w", "/tmp", "--entrypoint", "/bin/sh",
              "-o", "res:/res", "-i", "ipfs://bafkreidvkskpsgfvnp5qdoeschlih3sd4xx2apdawiyjrawhrf4f46njoi",
              BUSYBOX_IMAGE, "-c", "true").ok()
    assert json.loads(ran.stdout) == {
        "image": BUSYBOX_IMAGE, "entrypoint": ["/bin/sh", "-c", "true"], "env": {"A": "1"},
        "workdir": "/tmp",
        "inputs": [{"source": "ipfs://bafkreidvkskpsgfvnp5qdoeschlih3sd4xx2apdawiyjrawhrf4f46njoi",
                    "target": "/inputs"}],
        "outputs": [{"name": "res", "path": "/res"}],
        "resources": {"cpu": 0.5, "memory": "128Mi"}, "network": "full", "timeout": 30,
    }
    assert next_job_id(requester) == before


def test_job_run_our_yaml_with_a_local_input_and_template_vars(cod: Cod, tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "names.txt").write_text("ada\ngrace\n")
    (tmp_path / "jobs" / "job.yaml").write_text(f"""
image: {BUSYBOX_IMAGE}
entrypoint: ["sh", "-c", "sed 's/^/{{{{.greeting}}}} /' /inputs/names.txt"]
inputs:
  - source: names.txt        # relative to this file; added to IPFS
    target: /inputs/names.txt
resources: {{memory: 64Mi}}
timeout: 60
""")
    ran = cod("job", "run", "jobs/job.yaml", "--template-vars", "greeting=hello", "-f").ok()
    assert "hello ada\nhello grace\n" in ran.stdout


def test_job_run_a_bacalhau_v1_job(cod: Cod, tmp_path: Path, requester: Requester) -> None:
    cid = requester.kubo.add_bytes(b"3\n1\n2\n", "numbers.txt")
    (tmp_path / "bacalhau.yaml").write_text(f"""
Name: sort numbers
Type: batch
Count: 1
Labels: {{team: data}}
Tasks:
  - Name: main
    Engine:
      Type: docker
      Params:
        Image: {BUSYBOX_IMAGE}
        Entrypoint: ["/bin/sh"]
        Parameters: ["-c", "sort -n /inputs/numbers.txt > /results/sorted.txt; echo $ORDER"]
        EnvironmentVariables: ["ORDER={{{{.order}}}}"]
    InputSources:
      - Target: /inputs/numbers.txt
        Source:
          Type: ipfs
          Params:
            CID: {cid}
    ResultPaths:
      - Name: results
        Path: /results
    Resources:
      CPU: 500m
      Memory: 64mb
    Network:
      Type: None
    Timeouts:
      ExecutionTimeout: 60
    Publisher:
      Type: local
""")
    ran = cod("job", "run", "bacalhau.yaml", "--template-vars", "order=ascending", "--download",
              "--output-dir", "out").ok()
    assert "note: ignored (informational): Labels, Name" in ran.stderr
    assert (tmp_path / "out" / "results" / "sorted.txt").read_text() == "1\n2\n3\n"
    assert (tmp_path / "out" / "stdout").read_text() == "ascending\n"
    job_id = int(re.findall(r"Job (\d+) requested", ran.stdout)[0])
    spec = json.loads(requester.events("JobRequested", job_id)[0]["args"]["spec"])
    assert spec["resources"] == {"cpu": 0.5, "memory": "64mb"}
    assert spec["timeout"] == 60 and spec["outputs"] == [{"name": "results", "path": "/results"}]


def test_job_run_reads_stdin_json(cod: Cod) -> None:
    spec = json.dumps({"image": BUSYBOX_IMAGE, "entrypoint": ["echo", "from stdin"]})
    ran = cod("job", "run", "-", "--id-only", "-f", stdin=spec).ok()
    lines = ran.stdout.splitlines()
    assert lines[0].isdigit() and lines[1] == "from stdin"


def test_a_failing_job_exits_1_with_its_reason(cod: Cod) -> None:
    ran = cod("docker", "run", "cod/no-such-image:1", "--", "true")
    assert ran.code == 1
    assert "Job failed: image not available: cod/no-such-image:1" in ran.stdout


def test_a_nonzero_exit_code_exits_1(cod: Cod) -> None:
    ran = cod("docker", "run", BUSYBOX_IMAGE, "--", "sh", "-c", "exit 3")
    assert ran.code == 1 and "Exit code:  3" in ran.stdout


def test_wasm_run_builds_a_wasm_spec(cod: Cod, tmp_path: Path, requester: Requester) -> None:
    module = tmp_path / "hello.wasm"
    module.write_bytes(b"\0asm\1\0\0\0")
    ran = cod("wasm", "run", "--dry-run", str(module), "--", "a", "b").ok()
    cid = requester.kubo.add_bytes(module.read_bytes(), "hello.wasm")
    assert json.loads(ran.stdout) == {"engine": "wasm", "image": f"ipfs://{cid}",
                                      "entrypoint": ["a", "b"]}
    ran = cod("wasm", "run", "--dry-run", cid).ok()
    assert json.loads(ran.stdout)["image"] == f"ipfs://{cid}"
