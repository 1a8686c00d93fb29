"""Spec templates for contracts: a spec rendered off-chain around a CID placeholder.

A contract never builds JSON from caller text: it stores a `prefix` and a `suffix` rendered here from
a typed `JobSpec` and splices a checked CID between them (see docs/contracts.md). `CID_MARK` is also
what `cod run` puts in place of a local input while it checks the spec, before adding the file.
"""

from __future__ import annotations

from protocol.spec import JobSpec, parse_spec

# A real CID (the identity CID of "cod-cid-placeholder") that stands for one while rendering.
CID_MARK = "bafkqae3dn5sc2y3jmqwxa3dbmnswq33mmrsxe"
# Another real CID, spliced in to check that a template still makes a valid spec.
SAMPLE_CID = "bafkreidvkskpsgfvnp5qdoeschlih3sd4xx2apdawiyjrawhrf4f46njoi"


def split_template(spec: JobSpec) -> tuple[str, str]:
    """Render a spec whose only CID is `CID_MARK` into the (prefix, suffix) around that CID."""
    text = spec.to_json()
    if text.count(CID_MARK) != 1:
        raise ValueError("a template must contain the CID placeholder exactly once")
    prefix, suffix = text.split(CID_MARK)
    parse_spec(prefix + SAMPLE_CID + suffix)  # still a valid spec once a CID is spliced in
    return prefix, suffix
