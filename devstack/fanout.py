"""Spec templates for the `FanOutConsumer` example contract (N map jobs, then one combine job).

The contract never builds JSON from caller text: it splices checked CIDs between fragments rendered
here, off-chain, from `JobSpec` objects.

- map spec:     `map_prefix + cid + map_suffix` (`cod.templates.split_template`);
- combine spec: `combine_prefix + entries + combine_suffix`, where `entries` is, for map result i in
  input order, `{"source":"ipfs://<cid_i>","target":"/inputs/<i>"}`, joined with `,`.

So the combine prefix must end with `"inputs":[` and the suffix start with `]`: the combine spec's own
`inputs` are replaced by the map results, mounted at `/inputs/0`, `/inputs/1`, … Each map result is
a result directory (`stdout`, `exitCode`, `outputs/…`), so the combine job reads e.g.
`/inputs/0/outputs/count`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cod.templates import CID_MARK, SAMPLE_CID, split_template
from devstack.images import BUSYBOX_IMAGE
from protocol.spec import InputSource, JobSpec, OutputPath, Resources, parse_spec

MAX_INPUTS = 16  # FanOutConsumer.MAX_INPUTS


@dataclass(frozen=True)
class FanOutTemplates:
    """The four constructor strings of `FanOutConsumer`."""

    map_prefix: str
    map_suffix: str
    combine_prefix: str
    combine_suffix: str

    def map_spec(self, cid: str) -> str:
        """The map spec the contract requests for input `cid`."""
        return self.map_prefix + cid + self.map_suffix

    def combine_spec(self, cids: list[str]) -> str:
        """The combine spec the contract requests over the map result `cids` (in input order)."""
        return self.combine_prefix + combine_entries(cids) + self.combine_suffix


def combine_input(cid: str, index: int) -> InputSource:
    """The input the contract adds to the combine spec for map result `index`."""
    return InputSource(source=f"ipfs://{cid}", target=f"/inputs/{index}")


def combine_entries(cids: list[str]) -> str:
    """The `entries` text exactly as `FanOutConsumer._requestCombine` builds it."""
    return ",".join(f'{{"source":"ipfs://{cid}","target":"/inputs/{i}"}}' for i, cid in enumerate(cids))


def combine_template(spec: JobSpec) -> tuple[str, str]:
    """Render a combine spec into the (prefix, suffix) around the contract's generated entries.

    `spec.inputs` must be empty: the contract supplies every input of the combine job.
    """
    if spec.inputs:
        raise ValueError("a combine spec's inputs come from the map results: leave `inputs` empty")
    entry = combine_entries([CID_MARK])
    text = spec.model_copy(update={"inputs": [combine_input(CID_MARK, 0)]}).to_json()
    if text.count(entry) != 1 or text.count(CID_MARK) != 1:
        raise ValueError("the combine spec must not contain the CID placeholder")
    prefix, suffix = text.split(entry)
    if not prefix.endswith('"inputs":[') or not suffix.startswith("]"):
        raise ValueError("could not isolate the combine spec's inputs list")
    for n in (1, MAX_INPUTS):  # still a valid spec with the fewest and the most entries
        parse_spec(prefix + combine_entries([SAMPLE_CID] * n) + suffix)
    return prefix, suffix


def fanout_templates(map_spec: JobSpec, combine_spec: JobSpec) -> FanOutTemplates:
    """Templates for `FanOutConsumer` from a map spec (one `CID_MARK` input) and a combine spec."""
    map_prefix, map_suffix = split_template(map_spec)
    combine_prefix, combine_suffix = combine_template(combine_spec)
    return FanOutTemplates(map_prefix, map_suffix, combine_prefix, combine_suffix)


def word_count_map_spec(input_cid: str = CID_MARK) -> JobSpec:
    """Example map job: the number of words of /inputs/text.txt, in /outputs/count."""
    return JobSpec(
        image=BUSYBOX_IMAGE,
        entrypoint=["sh", "-c", "wc -w < /inputs/text.txt > /outputs/count"],
        inputs=[InputSource(source=f"ipfs://{input_cid}", target="/inputs/text.txt")],
        outputs=[OutputPath(name="outputs", path="/outputs")],
        resources=Resources(cpu=0.5, memory="64Mi"),
        timeout=60,
    )


def sum_combine_spec() -> JobSpec:
    """Example combine job: the sum of every map result's count, in /outputs/total."""
    return JobSpec(
        image=BUSYBOX_IMAGE,
        entrypoint=["sh", "-c", "cat /inputs/*/outputs/count | awk '{s+=$1} END {print s}' > /outputs/total"],
        outputs=[OutputPath(name="outputs", path="/outputs")],
        resources=Resources(cpu=0.5, memory="64Mi"),
        timeout=60,
    )
