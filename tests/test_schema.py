"""config/topology.schema.json: the topology's JSON Schema, generated, never hand-edited.

The core model keeps provider blocks opaque (only the adapter knows its keys); the
schema fills them in from each adapter's own config models, so editors can check a
topology file. `pytest tests/test_schema.py --update-goldens` regenerates it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from nsgsync.model import Topology
from nsgsync.sources import load_topology
from nsgsync_aws.config import AwsConfig, AwsSegmentConfig
from nsgsync_azure.config import AzureConfig, AzureSegmentConfig
from nsgsync_gcp.config import GcpConfig, GcpSegmentConfig
from tests.test_goldens import check_golden

ROOT = Path(__file__).parent.parent
SCHEMA = ROOT / "config/topology.schema.json"
BLOCKS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "aws": (AwsConfig, AwsSegmentConfig),
    "azure": (AzureConfig, AzureSegmentConfig),
    "gcp": (GcpConfig, GcpSegmentConfig),
}


def schema() -> dict[str, Any]:
    doc = Topology.model_json_schema(by_alias=True)
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = "nsgsync Topology"
    defs = doc.setdefault("$defs", {})
    for name, (cluster_model, segment_model) in BLOCKS.items():
        for model, where in ((cluster_model, doc), (segment_model, defs["Segment"])):
            sub = model.model_json_schema(by_alias=True)
            defs.update(sub.pop("$defs", {}))
            defs[model.__name__] = sub
            where["properties"][name] = {
                "anyOf": [{"$ref": f"#/$defs/{model.__name__}"}, {"type": "null"}],
                "default": None,
            }
    return doc


def test_schema_is_current(update_goldens: bool) -> None:
    check_golden(SCHEMA, json.dumps(schema(), indent=2, sort_keys=True) + "\n", update_goldens)


def test_the_example_topology_fits_its_schema() -> None:
    path = ROOT / "config/example/topology.yaml"
    load_topology(path)  # valid for nsgsync
    jsonschema.validate(yaml.safe_load(path.read_text()), json.loads(SCHEMA.read_text()))
    # and the schema says no to what nsgsync says no to: an unknown key
    bad = {**yaml.safe_load(path.read_text()), "colour": "blue"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json.loads(SCHEMA.read_text()))
